"Tiny stack, folder and single-file round-trips, NF4/int8 loading, and the errors users meet."
import json
import numpy as np
import pytest, torch
import bitsandbytes as bnb
from safetensors.torch import load_file, save_file
from diffusers import ZImageTransformer2DModel
from zimage_nb.core import ZImageError
from zimage_nb.arch import in_blocks
from zimage_nb.tiny import tiny_image, tiny_pipeline, write_single_file, write_tiny_lora, to_original_layout
from zimage_nb.models import load_pipeline, load_text_encoder, load_transformer, relative_error, tiny_forward
from zimage_nb.sources import model_folder
from zimage_nb.weights import weight_report, weight_files

def arr(img): return np.asarray(img, dtype=np.int16)

@pytest.mark.parametrize("hw", [(64, 64), (64, 96), (128, 64)])
def test_tiny_pipeline_generates_the_requested_size_deterministically(tiny, hw):
    h, w = hw
    a, b = tiny_image(tiny, height=h, width=w), tiny_image(tiny, height=h, width=w)
    assert a.size == (w, h) and (arr(a) == arr(b)).all()
    assert arr(a).std() > 5  # an image, not a flat field

def test_same_seed_same_model_other_seed_other_model(tiny):
    assert (arr(tiny_image(tiny_pipeline(0))) == arr(tiny_image(tiny))).all()
    untrained = arr(tiny_image(tiny_pipeline(1, trained=False)))
    assert (untrained != arr(tiny_image(tiny))).any() and (untrained == arr(tiny_image(tiny_pipeline(1, trained=False)))).all()

def test_tiny_keeps_the_real_structure(tiny):
    c = tiny.transformer.config
    assert c.n_refiner_layers == 2 and len(tiny.transformer.noise_refiner) == 2 and len(tiny.transformer.context_refiner) == 2
    assert c.dim // c.n_heads == sum(c.axes_dims) and c.cap_feat_dim == tiny.text_encoder.config.hidden_size
    assert tiny.vae.config.latent_channels == 16 and (tiny.vae.config.scaling_factor, tiny.vae.config.shift_factor) == (0.3611, 0.1159)
    assert tiny.scheduler.config.shift == 3.0 and not tiny.scheduler.config.use_dynamic_shifting

def test_diffusers_folder_round_trip_gives_identical_images(tiny, tiny_folder):
    pipe = load_pipeline(tiny_folder, "bf16", "bf16", dtype=torch.float32, device="cpu", progress=False)
    assert (arr(tiny_image(pipe)) == arr(tiny_image(tiny))).all()

def test_single_file_layout_is_the_one_diffusers_reads(tiny, tiny_folder, tmp_path):
    f = write_single_file(tiny.transformer, tmp_path / "z.safetensors", dtype=torch.float32)
    keys = load_file(str(f)).keys()
    assert "model.diffusion_model.layers.1.attention.qkv.weight" in keys and "model.diffusion_model.final_layer.linear.weight" in keys
    theirs = ZImageTransformer2DModel.from_single_file(str(f), config=str(tiny_folder), subfolder="transformer", torch_dtype=torch.float32)
    ours = load_transformer(tiny_folder, "bf16", torch.float32, "cpu", single_file=f, progress=False)
    ref = tiny.transformer.state_dict()
    for sd in (theirs.state_dict(), ours.state_dict()):
        assert sd.keys() == ref.keys() and all(torch.equal(sd[k], ref[k]) for k in ref)

def test_single_file_pipeline_gives_identical_images(tiny, tiny_folder, tmp_path):
    f = write_single_file(tiny.transformer, tmp_path / "z.safetensors", dtype=torch.float32)
    pipe = load_pipeline(tiny_folder, "bf16", "bf16", dtype=torch.float32, device="cpu", transformer_file=f, progress=False)
    assert (arr(tiny_image(pipe)) == arr(tiny_image(tiny))).all()

def test_nf4_weights_are_really_4bit_and_close_to_full_precision(tiny, tiny_folder):
    tr = load_transformer(tiny_folder, "nf4", torch.float32, "cpu", progress=False)
    q = [m for m in tr.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert len(q) == weight_report(tr)["quantized_layers"] == 46
    assert all(m.weight.dtype == torch.uint8 and m.weight.numel() * 2 == m.in_features * m.out_features for m in q)
    assert weight_report(tr)["nf4"] == sum(m.in_features * m.out_features // 2 for m in q)
    assert not any(type(m) is torch.nn.Linear for n, m in tr.named_modules() if in_blocks(n))
    err = relative_error(tiny_forward(tiny.transformer), tiny_forward(tr))
    assert 0.005 < err < 0.15  # measured 9.2%: quantized, and close

def test_int8_is_closer_than_nf4(tiny, tiny_folder):
    tr8 = load_transformer(tiny_folder, "int8", torch.float32, "cpu", progress=False)
    assert all(m.weight.dtype == torch.int8 for m in tr8.modules() if isinstance(m, bnb.nn.Linear8bitLt))
    assert relative_error(tiny_forward(tiny.transformer), tiny_forward(tr8)) < 0.02

def test_nf4_text_encoder_prompt_embeddings_stay_close(tiny, tiny_folder):
    te = load_text_encoder(tiny_folder, "nf4", torch.float32, "cpu", progress=False)
    assert sum(isinstance(m, bnb.nn.Linear4bit) for m in te.modules()) == 2 * 7
    ids = tiny.tokenizer(["a photo of a cat"], return_tensors="pt").input_ids
    ref, got = (m(input_ids=ids, output_hidden_states=True).hidden_states[-2] for m in (tiny.text_encoder, te))
    assert 0 < relative_error(ref, got) < 0.15

def test_bf16_compute_keeps_every_unquantized_weight_in_bf16(tiny_folder):
    tr = load_transformer(tiny_folder, "nf4", torch.bfloat16, "cpu", progress=False)
    rep = weight_report(tr)
    assert "float32" not in rep and rep["bfloat16"] > 0 and rep["nf4"] > rep["bfloat16"]

def test_wrong_checkpoints_fail_before_reading_with_a_fix(tiny, tiny_folder, tmp_path):
    save_file({"double_blocks.0.img_attn.qkv.weight": torch.zeros(4, 4)}, str(tmp_path / "flux.safetensors"))
    with pytest.raises(ZImageError, match="is not a Z-Image transformer checkpoint"):
        load_transformer(tiny_folder, single_file=tmp_path / "flux.safetensors", device="cpu", progress=False)
    sd = to_original_layout(tiny.transformer.state_dict()); sd.pop("model.diffusion_model.layers.1.feed_forward.w2.weight")
    save_file(sd, str(tmp_path / "partial.safetensors"))
    with pytest.raises(ZImageError, match="lacks 1 of .* tensors, e.g. layers.1.feed_forward.w2.weight"):
        load_transformer(tiny_folder, single_file=tmp_path / "partial.safetensors", device="cpu", progress=False)
    with pytest.raises(ZImageError, match="does not match this checkpoint"):  # real-size config, tiny file
        load_transformer(None, single_file=write_single_file(tiny.transformer, tmp_path / "t.safetensors"), device="cpu", progress=False)
    with pytest.raises(ZImageError, match="transformer_file .* does not exist"):
        load_transformer(tiny_folder, single_file=tmp_path / "nope.safetensors", device="cpu", progress=False)

def test_truncated_download_is_named(tiny, tiny_folder, tmp_path):
    f = write_single_file(tiny.transformer, tmp_path / "t.safetensors")
    f.write_bytes(f.read_bytes()[:-1000])
    with pytest.raises(ZImageError, match="is truncated"):
        load_transformer(tiny_folder, single_file=f, device="cpu", progress=False)

def test_folder_errors(tiny_folder, tmp_path):
    with pytest.raises(ZImageError, match="has no vae/ subfolder"): model_folder(tmp_path, parts=("vae",))
    with pytest.raises(ZImageError, match="is a file"): model_folder(tiny_folder / "model_index.json")
    with pytest.raises(ZImageError, match="does not exist"): model_folder("./no/such/folder")
    (tmp_path / "transformer").mkdir(); (tmp_path / "transformer" / "w.bin").write_bytes(b"0")
    with pytest.raises(ZImageError, match=r"no \.safetensors weights .* \(only \.bin files\)"): weight_files(tmp_path / "transformer")

def test_hub_download_asks_only_for_needed_subfolders(monkeypatch, tiny_folder):
    import zimage_nb.sources as M
    from types import SimpleNamespace as NS
    seen = {}
    class Api:
        def model_info(self, repo, token=None, files_metadata=False):
            return NS(siblings=[NS(rfilename="vae/diffusion_pytorch_model.safetensors", size=1), NS(rfilename="vae/diffusion_pytorch_model.bin", size=10**18)])
    def snap(repo, allow_patterns, ignore_patterns, token, cache_dir):
        seen.update(allow=allow_patterns, ignore=ignore_patterns); return str(tiny_folder)
    monkeypatch.setattr(M, "HfApi", Api); monkeypatch.setattr(M, "snapshot_download", snap)
    assert model_folder("Tongyi-MAI/Z-Image-Turbo", parts=("vae", "scheduler")) == tiny_folder
    assert seen["allow"] == ["model_index.json", "vae/*", "scheduler/*"] and "*.bin" in seen["ignore"]  # the .bin twin is not counted or fetched

@pytest.mark.parametrize("layout,key", [("ostris", "diffusion_model.layers.0.attention.to_k.lora_A.weight"),
                                        ("diffsynth", "layers.0.attention.to_k.lora_A.default.weight"),
                                        ("kohya", "lora_unet_layers_0_attention_to_k.lora_down.weight")])
def test_lora_fixtures_use_the_third_party_key_layouts(tiny, tmp_path, layout, key):
    sd = load_file(str(write_tiny_lora(tiny.transformer, tmp_path / "l.safetensors", layout=layout, rank=4)))
    assert key in sd and sd[key].shape == (4, 192)
    assert any("noise_refiner" in k for k in sd) and any("context_refiner" in k for k in sd)
    only_layers = load_file(str(write_tiny_lora(tiny.transformer, tmp_path / "m.safetensors", layout=layout, blocks=("layers",))))
    assert not any("refiner" in k for k in only_layers)

def test_tiny_model_folder_replaces_a_half_written_one(tmp_path):
    from zimage_nb.models import tiny_model_folder
    d = tmp_path / "tiny"; d.mkdir(); (d / "transformer").mkdir()  # what a killed first run leaves
    assert tiny_model_folder(d) == d and (d / "model_index.json").exists()
    assert tiny_model_folder(d) == d and [p.name for p in tmp_path.iterdir()] == ["tiny"]  # second call: reused, no temp left
    pipe = load_pipeline(d, "bf16", "bf16", dtype=torch.float32, device="cpu", progress=False)
    assert (arr(tiny_image(pipe)) == arr(tiny_image(tiny_pipeline()))).all()

def test_hub_model_with_a_single_file_transformer_fetches_only_its_config(monkeypatch, tiny, tiny_folder, tmp_path):
    import zimage_nb.sources as M
    from types import SimpleNamespace as NS
    seen = {}
    class Api:
        def model_info(self, *a, **k): return NS(siblings=[])
    def snap(repo, allow_patterns, ignore_patterns, token, cache_dir):
        seen["allow"] = allow_patterns; return str(tiny_folder)
    monkeypatch.setattr(M, "HfApi", Api); monkeypatch.setattr(M, "snapshot_download", snap)
    f = write_single_file(tiny.transformer, tmp_path / "z.safetensors", dtype=torch.float32)
    pipe = load_pipeline("Tongyi-MAI/Z-Image-Turbo", "bf16", "bf16", dtype=torch.float32, device="cpu", transformer_file=f, progress=False)
    assert "transformer/config.json" in seen["allow"] and "transformer/*" not in seen["allow"]
    assert (arr(tiny_image(pipe)) == arr(tiny_image(tiny))).all()

def test_unreadable_tensor_types_are_named(tmp_path):
    import struct
    header = json.dumps({"w": {"dtype": "F4", "shape": [2], "data_offsets": [0, 1]}}).encode()
    (tmp_path / "f.safetensors").write_bytes(struct.pack("<Q", len(header)) + header + b"\0")
    from zimage_nb.weights import safetensors_entries
    with pytest.raises(ZImageError, match="stores tensors as F4"): safetensors_entries(tmp_path / "f.safetensors")
