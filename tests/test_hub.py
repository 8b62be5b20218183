"Hub push without network: the card and plan are built, errors say what to do, the token is never shown."
import pytest
from zimage_nb.config import preset
from zimage_nb.core import ZImageError
from zimage_nb.hub import push_to_hub, token_source
from zimage_nb.train import train
from zimage_nb.tiny import write_demo_dataset

@pytest.fixture(scope="module")
def done_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("hub")
    cfg = preset("tiny", job__output_dir=str(d), job__name="zxq-disc", job__trigger_word="zxq", datasets__0__path=str(write_demo_dataset(d / "photos", n=2)),
                 training__steps=2, save__every=2, sample__every=0, save__hub_repo="someone/zxq-disc", save__push_to_hub=True)
    train(cfg, progress=False)
    return cfg

def test_dry_run_plan_and_card(done_run):
    r = push_to_hub(done_run, dry_run=True)
    assert r["files"] == ["zxq-disc.safetensors", "config.yaml", "zxq-disc.comfyui.json", "README.md"] and r["url"] == "https://huggingface.co/someone/zxq-disc"

def test_a_runs_report_card_goes_into_the_model_card_and_the_upload(done_run, tmp_path):
    "The card `report_card` saved in the run folder is uploaded (JSON and plot) and its table and suggestion are in the model card."
    import shutil
    from zimage_nb.config import run_folder
    from zimage_nb.report import Card
    cfg = done_run; out = tmp_path / "run"; shutil.copytree(run_folder(cfg), out)
    Card({"step 2": dict(dino=0.61, dino_off=0.40, clip_i=0.8, clip_i_off=0.7, kept=0.93)}, "step 2", 0.85, dict(scorers=dict(dino="facebook/dinov2-small"))).save(out / "report_card.json")
    r = push_to_hub(cfg, run_folder=out, dry_run=True)
    assert r["files"] == ["zxq-disc.safetensors", "config.yaml", "zxq-disc.comfyui.json", "report_card.json", "report_card.png", "README.md"]
    card = (out / "README.md").read_text()
    assert "## Report card" in card and "| step 2 **(suggested)** | 0.610 | 0.210 | 0.800 | 0.100 |" in card and "use step 2: DINO 0.610 (+0.210" in card

def test_offline_upload_fails_clearly_and_never_shows_the_token(done_run, monkeypatch, capsys):
    import huggingface_hub.constants as C
    monkeypatch.setenv("HF_TOKEN", "hf_secret_value_123"); monkeypatch.setattr(C, "HF_HUB_OFFLINE", True)
    assert token_source() == "environment variable HF_TOKEN"
    with pytest.raises(ZImageError, match="cannot be reached to upload to someone/zxq-disc") as e:
        push_to_hub(done_run)
    assert "hf_secret_value_123" not in str(e.value) + capsys.readouterr().out

# ------------------------------------------------------------------------------------------------ the same samples in ComfyUI
import json
from pathlib import Path
NODES = json.loads((Path(__file__).parent / "data" / "comfyui_nodes_3cd7b32f.json").read_text())   # ComfyUI's INPUT_TYPES at 3cd7b32f (see _source)

def check_against_comfyui(api:dict):
    "Every node is one ComfyUI defines, with its required inputs, values it allows, and links of the type the input takes."
    for nid, n in api.items():
        spec = NODES[n["class_type"]]
        names = [i[0] for i in spec["inputs"]]
        assert list(n["inputs"]) == [x for x in names if x in n["inputs"]], (nid, "input order")
        for name, typ, rule in spec["inputs"]:
            if name not in n["inputs"]: assert rule.get("optional"), (nid, name); continue
            v = n["inputs"][name]
            if isinstance(v, list):                                        # a link: [source id, output slot]
                src = api[v[0]]; assert NODES[src["class_type"]]["outputs"][v[1]] == typ, (nid, name)
            elif typ == "COMBO": assert v in rule["choices"], (nid, name, v)
            elif typ in ("INT", "FLOAT"):
                assert isinstance(v, (int, float)) and rule.get("min", v) <= v <= rule.get("max", v), (nid, name, v)
                if "step" in rule and typ == "INT": assert v % rule["step"] == 0, (nid, name, v)
            elif typ.startswith("FILE:"): assert isinstance(v, str) and v.endswith(".safetensors"), (nid, name, v)
            else: assert isinstance(v, str), (nid, name)
    assert any(n["class_type"] == "SaveImage" for n in api.values())     # ComfyUI refuses a prompt without an output node

@pytest.mark.parametrize("name", ["turbo-adapter-v2", "turbo-distillpatch", "de-turbo", "base", "base-fun-distill"])
def test_each_presets_comfyui_workflow_is_valid_and_samples_as_the_trainer(name):
    from zimage_nb.config import SAMPLING
    from zimage_nb.hub import comfyui_graph, comfyui_prompt, comfyui_workflow, sampling_recipe, COMFYUI_SAMPLER
    from zimage_nb.sources import COMFYUI_FILES
    cfg = preset(name, job__trigger_word="zxq"); r = sampling_recipe(cfg)
    api = comfyui_prompt(comfyui_graph(cfg, "mine.safetensors", shift=3.0))
    check_against_comfyui(api)
    by = {n["class_type"]: n["inputs"] for n in api.values()}
    k = by["KSampler"]
    assert (k["steps"], k["cfg"], k["sampler_name"], k["scheduler"], k["seed"]) == (r["steps"], r["cfg_scale"], "euler", "simple", cfg.sample.seed)
    assert k["cfg"] == SAMPLING[{"de-turbo": "de-turbo", "base": "base", "base-fun-distill": "fun-distill"}.get(name, "turbo")]["cfg_scale"]   # ComfyUI's scale = ours
    assert by["ModelSamplingAuraFlow"]["shift"] == 3.0 and by["CLIPLoader"]["type"] == "lumina2"
    assert (by["CLIPLoader"]["clip_name"], by["VAELoader"]["vae_name"]) == ("qwen_3_4b.safetensors", "ae.safetensors")
    unet = {"de-turbo": "z_image_de_turbo_v1_bf16.safetensors", "base": "z_image_bf16.safetensors", "base-fun-distill": "z_image_bf16.safetensors"}.get(name, "z_image_turbo_bf16.safetensors")
    assert by["UNETLoader"]["unet_name"] == unet and any(f.endswith("/" + unet) for f in COMFYUI_FILES.values())
    loras = [(n["inputs"]["lora_name"], n["inputs"]["strength_model"]) for n in api.values() if n["class_type"] == "LoraLoaderModelOnly"]
    assert loras[0] == ("mine.safetensors", 1.0)
    assert loras[1:] == ({"turbo-distillpatch": [("Z-Image-Turbo-DistillPatch.safetensors", 1.0)],
                          "base-fun-distill": [("Z-Image-Fun-Lora-Distill-8-Steps.safetensors", 0.8)]}.get(name, []))
    wf = comfyui_workflow(comfyui_graph(cfg, "mine.safetensors"), "note")       # the drag-in format: widget values in input order, links typed
    ks = next(n for n in wf["nodes"] if n["type"] == "KSampler")
    assert ks["widgets_values"] == [cfg.sample.seed, "fixed", r["steps"], r["cfg_scale"], COMFYUI_SAMPLER["sampler_name"], COMFYUI_SAMPLER["scheduler"], 1.0]
    assert all(l[5] == NODES[next(n["type"] for n in wf["nodes"] if n["id"] == l[1])]["outputs"][l[2]] for l in wf["links"])

def test_comfyuis_simple_schedule_at_the_shift_is_the_pipelines():
    """ComfyUI: ModelSamplingAuraFlow(shift) builds σ(t) = s·t / (1 + (s−1)·t) for t = 1/1000 … 1 (comfy/model_sampling.py, time_snr_shift with
    multiplier 1), and `simple` takes every (1000/steps)-th from the top, then 0 (comfy/samplers.py, simple_scheduler). The tiny pipeline runs
    diffusers' own scheduler with the Turbo config (shift 3, static): the same noise levels, so Euler steps through the same points."""
    import torch
    from zimage_nb.tiny import tiny_pipeline
    pipe = tiny_pipeline(turbo=True)
    assert (pipe.scheduler.config.shift, pipe.scheduler.config.use_dynamic_shifting) == (3.0, False)
    for steps in (8, 25):
        pipe("a cube", height=64, width=64, num_inference_steps=steps, guidance_scale=0.0, max_sequence_length=64, output_type="latent")
        table = [3.0 * t / (1 + 2.0 * t) for t in (torch.arange(1, 1001) / 1000).tolist()]
        comfy = [table[-(1 + int(x * 1000 / steps))] for x in range(steps)] + [0.0]
        assert torch.allclose(pipe.scheduler.sigmas.float(), torch.tensor(comfy), atol=1e-6), steps

def test_a_trained_loras_workflow_is_written_beside_it(done_run):
    from zimage_nb.config import run_folder
    out = run_folder(done_run)
    wf = json.loads((out / "zxq-disc.comfyui.json").read_text())
    assert wf["version"] == 0.4 and any(n["type"] == "LoraLoaderModelOnly" and n["widgets_values"] == ["zxq-disc.safetensors", 1.0] for n in wf["nodes"])
    note = next(n for n in wf["nodes"] if n["type"] == "Note")["widgets_values"][0]
    assert "models/loras/zxq-disc.safetensors  <- this LoRA" in note and "huggingface.co/Comfy-Org/z_image_turbo (split_files/text_encoders/qwen_3_4b.safetensors)" in note
