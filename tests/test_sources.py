"""Every preset downloads what it needs from the real repositories, and nothing they do not hold: a fake Hub serves exactly
the file names of `sources.REPOS` (each list read from a public source named there), filled with the tiny model in the
layouts the real files have (sharded diffusers folders, ComfyUI single files, LoRAs as their makers write them)."""
import fnmatch, json, shutil
from pathlib import Path
from types import SimpleNamespace as NS
import pytest, torch
from safetensors.torch import save_file, load_file
import zimage_nb.models as M, zimage_nb.sources as S
from huggingface_hub.errors import RepositoryNotFoundError
from zimage_nb.config import preset, PRESETS
from zimage_nb.lora import lora_file, read_lora
from zimage_nb.sources import REPOS, download_plan
from zimage_nb.weights import weight_report
from zimage_nb.tiny import tiny_pipeline, to_original_layout, write_tiny_lora
from zimage_nb.report import tiny_scorer_folders

def shard(sd:dict, folder:Path, stem:str, n:int):
    "A state dict split over the shards a real folder has, with its index."
    keys = sorted(sd); per = -(-len(keys) // n); wmap = {}
    for i in range(n):
        name = f"{stem}-{i + 1:05d}-of-{n:05d}.safetensors"
        part = {k: sd[k].contiguous() for k in keys[i * per:(i + 1) * per]}
        save_file(part, str(folder / name)); wmap.update({k: name for k in part})
    (folder / f"{stem}.safetensors.index.json").write_text(json.dumps(dict(metadata={}, weight_map=wmap)))

def tongyi_repo(root:Path, pipe, transformer_shards:int):
    "A Tongyi-MAI diffusers repository with the real file names and the tiny model's contents."
    pipe.save_pretrained(root / "tmp")
    t = root / "tmp"
    for part in ("vae", "scheduler"): shutil.copytree(t / part, root / part)
    shutil.copy(t / "model_index.json", root / "model_index.json")
    (root / "transformer").mkdir(); shutil.copy(t / "transformer" / "config.json", root / "transformer" / "config.json")
    shard(load_file(str(t / "transformer" / "diffusion_pytorch_model.safetensors")), root / "transformer", "diffusion_pytorch_model", transformer_shards)
    (root / "text_encoder").mkdir(); shutil.copy(t / "text_encoder" / "config.json", root / "text_encoder" / "config.json")
    shard(load_file(str(t / "text_encoder" / "model.safetensors")), root / "text_encoder", "model", 3)
    tok = json.loads((t / "tokenizer" / "tokenizer.json").read_text())           # the real folder: tokenizer.json, its config, vocab.json, merges.txt
    (root / "tokenizer").mkdir(); shutil.copy(t / "tokenizer" / "tokenizer.json", root / "tokenizer" / "tokenizer.json")
    conf = json.loads((t / "tokenizer" / "tokenizer_config.json").read_text())
    if (t / "tokenizer" / "chat_template.jinja").exists(): conf["chat_template"] = (t / "tokenizer" / "chat_template.jinja").read_text()
    (root / "tokenizer" / "tokenizer_config.json").write_text(json.dumps(conf))
    (root / "tokenizer" / "vocab.json").write_text(json.dumps(tok["model"]["vocab"]))
    (root / "tokenizer" / "merges.txt").write_text("#version: 0.2\n" + "\n".join(m if isinstance(m, str) else " ".join(m) for m in tok["model"]["merges"]))
    shutil.rmtree(t)

@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    "The fake Hub: REPOS' files, and nothing else."
    root = tmp_path_factory.mktemp("hub")
    pipe = tiny_pipeline(); tr = pipe.transformer
    original = to_original_layout({k: v.to(torch.bfloat16) for k, v in tr.state_dict().items()}, prefix="")   # ComfyUI's diffusion_models files: fused qkv
    for repo in REPOS:
        r = root / repo; r.mkdir(parents=True)
        if repo.startswith("Tongyi-MAI/"): tongyi_repo(r, pipe, 3 if repo.endswith("Turbo") else 2)
    save_file(original, str(root / "ostris/Z-Image-De-Turbo/z_image_de_turbo_v1_bf16.safetensors"))
    c = root / "Comfy-Org/z_image_turbo/split_files"
    for sub in ("diffusion_models", "text_encoders", "vae"): (c / sub).mkdir(parents=True)
    save_file(original, str(c / "diffusion_models/z_image_turbo_bf16.safetensors"))
    (root / "Comfy-Org/z_image/split_files/diffusion_models").mkdir(parents=True)                   # base's ComfyUI file (named in the workflows)
    save_file(original, str(root / "Comfy-Org/z_image/split_files/diffusion_models/z_image_bf16.safetensors"))
    for f in ("text_encoders/qwen_3_4b.safetensors", "vae/ae.safetensors"): save_file({"x": torch.zeros(1)}, str(c / f))
    for v in ("v1", "v2"): write_tiny_lora(tr, root / f"ostris/zimage_turbo_training_adapter/zimage_turbo_training_adapter_{v}.safetensors", "ostris", rank=4, seed=1)
    write_tiny_lora(tr, root / "DiffSynth-Studio/Z-Image-Turbo-DistillPatch/model.safetensors", "diffsynth", rank=4, seed=2)
    for f in REPOS["alibaba-pai/Z-Image-Fun-Lora-Distill"]["files"]:               # VideoX-Fun's layout (tests/test_lora_layouts.py)
        sd = {("lora_unet_" + k[len("lora_unet_"):].replace("layers_", "_layers_", 1)) if k.startswith("lora_unet_layers_") else k: v
              for k, v in load_file(str(write_tiny_lora(tr, root / "tmp.safetensors", "kohya", rank=4, seed=3, blocks=("layers",)))).items()}
        save_file(sd, str(root / "alibaba-pai/Z-Image-Fun-Lora-Distill" / f))
    (root / "tmp.safetensors").unlink()
    for f in REPOS["Qwen/Qwen3-VL-2B-Instruct"]["files"]:                           # names only: the captioner itself is tested offline (05b_caption)
        (root / "Qwen/Qwen3-VL-2B-Instruct" / f).write_text("{}")
    scorers = tiny_scorer_folders(root / "tiny-scorers")                              # the report card's scorers, in their repositories' names
    d, c = root / "facebook/dinov2-small", root / "openai/clip-vit-base-patch32"
    for f in ("config.json", "preprocessor_config.json", "model.safetensors"): shutil.copy(scorers["dino"] / f, d / f)
    torch.save(load_file(str(d / "model.safetensors")), d / "pytorch_model.bin")         # the twin a download must not fetch
    for f in ("config.json", "preprocessor_config.json", "tokenizer.json", "tokenizer_config.json"): shutil.copy(scorers["clip"] / f, c / f)
    torch.save(load_file(str(scorers["clip"] / "model.safetensors")), c / "pytorch_model.bin")   # main's only PyTorch weights
    for f in ("vocab.json", "special_tokens_map.json"): (c / f).write_text("{}")
    for f in ("merges.txt", "tf_model.h5", "flax_model.msgpack"): (c / f).write_text("")
    shutil.rmtree(root / "tiny-scorers")
    served = {repo: sorted(str(p.relative_to(root / repo)) for p in (root / repo).rglob("*") if p.is_file()) for repo in REPOS}
    for repo, files in served.items(): assert set(files) == set(REPOS[repo]["files"]), repo   # the fake Hub holds exactly the listed names
    return root

@pytest.fixture
def fake(hub, tmp_path, monkeypatch):
    "The Hub calls zimage-nb makes, served from `hub`; `fetched` records every file handed out."
    fetched, cache = [], tmp_path / "cache"
    def files(repo):
        if repo not in REPOS: raise RepositoryNotFoundError.__new__(RepositoryNotFoundError)
        return REPOS[repo]["files"]
    class Api:
        def model_info(self, repo, token=None, files_metadata=False):
            return NS(siblings=[NS(rfilename=f, size=(hub / repo / f).stat().st_size) for f in files(repo)])
    def snapshot(repo, allow_patterns, ignore_patterns=None, token=None, cache_dir=None):
        for f in files(repo):
            if any(fnmatch.fnmatch(f, p) for p in allow_patterns) and not any(fnmatch.fnmatch(f, i) for i in ignore_patterns or []):
                (cache / repo / f).parent.mkdir(parents=True, exist_ok=True); shutil.copy(hub / repo / f, cache / repo / f); fetched.append(f"{repo}/{f}")
        return str(cache / repo)
    def file(repo, filename, token=None, cache_dir=None, **kw):
        if filename not in files(repo): pytest.fail(f"asked {repo} for {filename}, which it does not hold")
        (cache / repo / filename).parent.mkdir(parents=True, exist_ok=True); shutil.copy(hub / repo / filename, cache / repo / filename)
        fetched.append(f"{repo}/{filename}"); return str(cache / repo / filename)
    monkeypatch.setattr(S, "HfApi", Api); monkeypatch.setattr(S, "snapshot_download", snapshot)
    import huggingface_hub; monkeypatch.setattr(huggingface_hub, "hf_hub_download", file)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda repo, token=None, allow_patterns=None, **kw: snapshot(repo, allow_patterns or ["*"]))
    return fetched

@pytest.mark.parametrize("name", [p for p in PRESETS if p != "tiny"])
def test_every_preset_downloads_what_it_needs_and_loads_it(name, fake):
    cfg = preset(name)
    folder = M.components_folder(cfg, ("tokenizer", "vae", "scheduler"))
    assert {"tokenizer", "vae", "scheduler"} <= {p.name for p in folder.iterdir()} and not (folder / "text_encoder").exists()   # the 8 GB part waits
    M.components_folder(cfg, ("text_encoder",))
    tr = M.load_run_transformer(cfg, torch.float32, "cpu")
    assert weight_report(tr)["quantized_layers"] > 0
    for spec, field in ((cfg.model.training_adapter if cfg.model.variant == "turbo" else "", "model.training_adapter"), (cfg.model.distill_patch, "model.distill_patch")):
        if spec: assert read_lora(lora_file(spec, field), field)
    want = {f"{f.repo}/{p}" for f in download_plan(cfg) for p in REPOS[f.repo]["files"] if any(fnmatch.fnmatch(p, x) for x in f.patterns)}
    assert set(fake) == want, (set(fake) ^ want)          # the plan the planner times is what was downloaded
    if name.startswith("turbo"): assert not any("Tongyi-MAI/Z-Image-Turbo/transformer/diffusion" in f for f in fake)   # the 12 GB ComfyUI file, not the 24.6 GB folder
    if name == "de-turbo": assert "ostris/Z-Image-De-Turbo/z_image_de_turbo_v1_bf16.safetensors" in fake and any(f.startswith("Tongyi-MAI/Z-Image-Turbo/text_encoder/") for f in fake)

def test_a_file_the_repository_does_not_hold_is_named(fake):
    from zimage_nb.core import ZImageError
    cfg = preset(model__transformer_file="Comfy-Org/z_image_turbo/split_files/diffusion_models/z_image_turbo_fp8.safetensors")
    with pytest.raises(ZImageError, match="z_image_turbo_fp8.safetensors is not in Hub repo Comfy-Org/z_image_turbo"): M.transformer_weights(cfg)

def test_the_captioner_download_is_in_the_plan(fake):
    "With automatic captions on, the plan (and so the planner's set-up time) counts the captioner, and its download is what the plan says."
    from zimage_nb.caption import captioner_folder
    cfg = preset(datasets__0__auto_caption="detailed")
    plan = [f for f in download_plan(cfg) if f.what == "captioner"]
    assert [(f.repo, f.bytes > 4e9) for f in plan] == [("Qwen/Qwen3-VL-2B-Instruct", True)]
    folder = captioner_folder(cfg.advanced.caption_model)
    assert (folder / "model.safetensors").exists() and (folder / "preprocessor_config.json").exists()
    assert set(fake) == {f"Qwen/Qwen3-VL-2B-Instruct/{f}" for f in REPOS["Qwen/Qwen3-VL-2B-Instruct"]["files"]}

def test_the_report_cards_scorers_download_what_the_plan_says_and_load(fake):
    """The card's DINOv2 and CLIP come by their real repositories' file names: the weights once (CLIP's pytorch_model.bin: its main branch
    has no safetensors), no TensorFlow / Flax twins; what is fetched is what the plan counts, and it loads through the real classes."""
    from PIL import Image
    from zimage_nb.report import load_scorers, embed_images, embed_texts, release_scorers
    plan = download_plan(preset(), parts=(), adapters=False, scorers=True)
    assert [(f.repo, round(f.bytes / 1e6)) for f in plan] == [("facebook/dinov2-small", 88), ("openai/clip-vit-base-patch32", 609)]
    sc = load_scorers()
    im = Image.new("RGB", (64, 64), (200, 30, 30))
    assert embed_images(sc, [im], "dino").shape == (1, 32) and embed_images(sc, [im], "clip").shape == (1, 16) and embed_texts(sc, ["a red disc"]).shape == (1, 16)
    release_scorers(sc)
    want = {f"{f.repo}/{p}" for f in plan for p in REPOS[f.repo]["files"] if any(fnmatch.fnmatch(p, x) for x in f.patterns)}
    assert set(fake) == want and not any(f.endswith((".h5", ".msgpack", "dinov2-small/pytorch_model.bin")) for f in fake), sorted(fake)
