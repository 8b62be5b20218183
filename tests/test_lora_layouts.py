"""LoRA files as the trainers people use write them load through our path (`lora.read_lora`) and change the model exactly as
the same weights in AI Toolkit's layout do. The key layouts are taken from those projects' own code and from public bug
reports, cited per layout below; the weights are random, on the tiny model (a real file's names, a tiny model's shapes)."""
import pytest, torch
from safetensors.torch import save_file
from zimage_nb.lora import read_lora, add_frozen_lora, use_adapters, normalize_lora_keys
from zimage_nb.models import tiny_forward
from zimage_nb.tiny import tiny_pipeline, LORA_TARGETS
from zimage_nb.arch import BLOCK_LISTS

RANK = 4

def modules(tr, blocks=BLOCK_LISTS, targets=LORA_TARGETS):
    return {n: m for n, m in tr.named_modules() if isinstance(m, torch.nn.Linear) and n.split(".")[0] in blocks and n.split(".", 2)[-1] in targets}

def weights(tr, **kw):
    "One random (A, B) pair per targeted module: the same numbers for every layout."
    g = torch.Generator().manual_seed(0)
    return {n: (torch.randn(RANK, m.in_features, generator=g) * 0.1, torch.randn(m.out_features, RANK, generator=g) * 0.1) for n, m in modules(tr, **kw).items()}

# --- the layouts, each as its project writes it -------------------------------------------------------------------------
def ai_toolkit(w):
    "AI Toolkit (and ostris' training adapter v1/v2): `diffusion_model.<diffusers module>.lora_A/B.weight`, alpha = rank (the keys diffusion-pipe issue 470 lists for zimage_turbo_training_adapter_v1.safetensors)."
    return {f"diffusion_model.{n}.lora_{x}.weight": t for n, (a, b) in w.items() for x, t in (("A", a), ("B", b))}

def diffusers_peft(w):
    "diffusers' examples/dreambooth/train_dreambooth_lora_z_image.py and SimpleTuner save through ZImagePipeline.save_lora_weights: `transformer.<module>.lora_A/B.weight` (the layout sglang PR 23655 calls diffusers PEFT Z-Image)."
    return {f"transformer.{n}.lora_{x}.weight": t for n, (a, b) in w.items() for x, t in (("A", a), ("B", b))}

def kohya(n): return "lora_unet_" + n.replace(".", "_")

def musubi(w):
    "musubi-tuner (networks/lora_zimage.py: prefix lora_unet, refiners and modulation excluded): `lora_unet_layers_0_attention_to_q.lora_down.weight`, `.alpha`."
    out = {}
    for n, (a, b) in w.items(): out.update({f"{kohya(n)}.lora_down.weight": a, f"{kohya(n)}.lora_up.weight": b, f"{kohya(n)}.alpha": torch.tensor(float(RANK))})
    return out

def musubi_comfy(w):
    "musubi-tuner's networks/convert_z_image_lora_to_comfy.py: q, k, v fused into `attention_qkv` (rank 3r, up block-diagonal, alpha x3), `attention_out` for to_out.0."
    out, done = {}, set()
    for n, (a, b) in w.items():
        blk, _, proj = n.rpartition(".attention.")
        if proj in ("to_q", "to_k", "to_v"):
            if blk in done: continue
            done.add(blk)
            parts = [w[f"{blk}.attention.to_{p}"] for p in "qkv"]
            down = torch.cat([p[0] for p in parts]); up = torch.block_diag(*[p[1] for p in parts])
            name = kohya(f"{blk}.attention.qkv")
            out.update({f"{name}.lora_down.weight": down, f"{name}.lora_up.weight": up, f"{name}.alpha": torch.tensor(3.0 * RANK)})
        else:
            name = kohya(n).replace("attention_to_out_0", "attention_out")
            out.update({f"{name}.lora_down.weight": a, f"{name}.lora_up.weight": b, f"{name}.alpha": torch.tensor(float(RANK))})
    return out

def videox_fun(w):
    "aigc-apps/VideoX-Fun videox_fun/utils/lora_utils.py, which alibaba-pai's Z-Image-Fun-Lora-Distill files come from: LoRANetwork names each Linear from the root ZImageTransformer2DModel, `'lora_unet' + '.' + '' + '.' + name` with '.' -> '_', so `lora_unet__layers_0_...` (a double underscore diffusers does not read)."
    out = {}
    for n, (a, b) in w.items():
        k = ("lora_unet" + "." + "" + "." + n).replace(".", "_")
        out.update({f"{k}.lora_down.weight": a, f"{k}.lora_up.weight": b, f"{k}.alpha": torch.tensor(float(RANK))})
    return out

def peft_default(w):
    "peft's own parameter names with the adapter name (`...to_q.lora_A.default.weight`), as a trainer that saves its trainable parameters directly writes them (the tiny test bed's 'diffsynth' layout). DiffSynth-Studio writes this: `diffsynth/diffusion/training_module.py` (modelscope/DiffSynth-Studio) injects a peft `LoraConfig` with `inject_adapter_in_model`, and `export_trainable_state_dict` keeps the trainable parameters' own names with only a prefix such as `pipe.dit.` removed; its Z-Image DiT's module names were not checked against diffusers'."
    return {f"{n}.lora_{x}.default.weight": t for n, (a, b) in w.items() for x, t in (("A", a), ("B", b))}

LAYOUTS = {"ai-toolkit": (ai_toolkit, {}), "diffusers / SimpleTuner": (diffusers_peft, {}), "musubi-tuner": (musubi, dict(blocks=("layers",))),
           "musubi-tuner ComfyUI (fused qkv)": (musubi_comfy, dict(blocks=("layers",))), "VideoX-Fun (Fun distill)": (videox_fun, {}),
           "peft names": (peft_default, {})}

@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_layout_loads_and_acts_as_the_same_weights_in_ai_toolkit_layout(layout, tmp_path):
    make, kw = LAYOUTS[layout]
    tr = tiny_pipeline().transformer
    w = weights(tr, **kw)
    save_file({k: v.contiguous() for k, v in ai_toolkit(w).items()}, str(tmp_path / "ref.safetensors"))
    save_file({k: v.contiguous() for k, v in make(w).items()}, str(tmp_path / "it.safetensors"))
    base = tiny_forward(tr)
    add_frozen_lora(tr, tmp_path / "ref.safetensors", "ref"); use_adapters(tr, {"ref": 1.0}); ref = tiny_forward(tr)
    add_frozen_lora(tr, tmp_path / "it.safetensors", "it"); use_adapters(tr, {"it": 1.0}); got = tiny_forward(tr)
    assert (ref - base).abs().max() > 1e-3                                   # the LoRA does something
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-5)               # and the same thing in every layout

def test_what_diffusers_alone_cannot_read():
    "The two layouts normalize_lora_keys exists for: diffusers' converter fails on them without it (checked on diffusers 0.42.1)."
    from diffusers import ZImagePipeline
    tr = tiny_pipeline().transformer
    sd = videox_fun(weights(tr))
    assert any(k.startswith("transformer..") for k in ZImagePipeline.lora_state_dict(dict(sd)))       # a leading dot: no such module
    assert not any(k.startswith("transformer..") for k in read_lora_dict(sd))
    fused = musubi_comfy(weights(tr, blocks=("layers",)))
    assert any("attention_qkv" in k for k in fused) and not any("qkv" in k for k in normalize_lora_keys(fused))

def read_lora_dict(sd):
    from diffusers import ZImagePipeline
    return ZImagePipeline.lora_state_dict(normalize_lora_keys(dict(sd)))

def test_an_unknown_layout_is_refused_with_a_message(tmp_path):
    from zimage_nb.core import ZImageError
    save_file({"something.else.weight": torch.zeros(2, 2)}, str(tmp_path / "odd.safetensors"))
    with pytest.raises(ZImageError, match="model.distill_patch: .*odd.safetensors"): read_lora(tmp_path / "odd.safetensors", "model.distill_patch")
