"Sampling and grids on the tiny stack: labels and shapes, determinism, LoRA weight 0 = off = base, toggles that restore exactly, files."
import json
import numpy as np, pytest, torch
from PIL import Image
from zimage_nb.lora import TRAINING_ADAPTER, DISTILL_PATCH, active_adapters
from zimage_nb.sample import Sampler, render_grid, weight_sweep, toggle, combine, setting_columns, seed_rows, prompt_rows, checkpoint_grid
from zimage_nb.tiny import tiny_pipeline, write_tiny_lora

px = lambda im: np.asarray(im, dtype=float)
SMALL = dict(width=64, height=64, steps=4)

@pytest.fixture(scope="module")
def sampler(tmp_path_factory):
    d = tmp_path_factory.mktemp("sample")
    pipe = tiny_pipeline()
    s = Sampler(pipe, max_sequence_length=64)
    for name, layout, seed in (("mine", "ostris", 1), (TRAINING_ADAPTER, "ostris", 2), (DISTILL_PATCH, "diffsynth", 3), ("kohya_style", "kohya", 4)):
        s.add_lora(write_tiny_lora(pipe.transformer, d / f"{name}.safetensors", layout, rank=4, seed=seed, scale=0.15), name)
    return s

def base_image(prompt="a red cube", seed=42):
    return px(tiny_pipeline()(prompt, height=64, width=64, num_inference_steps=4, guidance_scale=0.0, max_sequence_length=64,
                              generator=torch.Generator("cpu").manual_seed(seed)).images[0])

def test_grid_shape_labels_and_files(sampler, tmp_path):
    g = render_grid(sampler, seed_rows("a red cube", [1, 2, 3]), combine(setting_columns("turbo", "non-accelerated"), toggle("mine")),
                    base=dict(width=64, height=64), title="t", path=tmp_path / "cmp_grid.png", progress=False)
    assert (len(g.images), len(g.images[0])) == (3, 4)
    assert g.col_labels == ["turbo: 8 steps, CFG 1 | mine off", "turbo: 8 steps, CFG 1 | mine on",
                            "non-accelerated: 30 steps, CFG 2 | mine off", "non-accelerated: 30 steps, CFG 2 | mine on"]
    assert g.row_labels == ["a red cube · seed 1", "a red cube · seed 2", "a red cube · seed 3"]
    meta = json.loads((tmp_path / "cmp_grid.json").read_text())
    assert meta["cells"][2][3] | {"seconds": 0} == {"prompt": "a red cube", "seed": 3, "setting": "non-accelerated", "width": 64, "height": 64,
                                                    "adapters": {"mine": 1.0}, "steps": 30, "cfg_scale": 2.0, "diffusers_guidance": 1.0, "seconds": 0}
    assert meta["column_seconds"][2] > meta["column_seconds"][0]          # 30 steps with CFG cost more than 8 without
    w, h = Image.open(tmp_path / "cmp_grid.png").size
    assert w >= 4 * 192 and h >= 3 * 192

def test_same_seed_same_image_other_seed_other_image(sampler):
    a, b = px(sampler.image("a red cube", seed=5, **SMALL)), px(sampler.image("a red cube", seed=5, **SMALL))
    assert np.array_equal(a, b) and np.abs(a - px(sampler.image("a red cube", seed=6, **SMALL))).mean() > 1

def test_weight_zero_equals_off_equals_base(sampler):
    g = render_grid(sampler, prompt_rows(["a red cube"]), weight_sweep("mine", (0.0, 0.6, 1.0)) + [dict(adapters={}, label="off")], base=SMALL, progress=False)
    w0, w6, w1, off = (px(x) for x in g.images[0])
    base = base_image()
    assert np.array_equal(w0, base) and np.array_equal(off, base)
    assert np.abs(w6 - base).mean() > 0.5 and np.abs(w1 - base).mean() > np.abs(w6 - base).mean() * 0.8

@pytest.mark.parametrize("name", [TRAINING_ADAPTER, DISTILL_PATCH, "kohya_style"])
def test_toggles_change_and_restore_exactly(sampler, name):
    on_lora = {"mine": 1.0}
    a = px(sampler.image("a red cube", adapters=on_lora, **SMALL))
    b = px(sampler.image("a red cube", adapters={**on_lora, name: 1.0}, **SMALL))
    c = px(sampler.image("a red cube", adapters=on_lora, **SMALL))
    assert np.abs(a - b).mean() > 0.5 and np.array_equal(a, c)
    assert active_adapters(sampler.tr) == {}

def test_checkpoint_grid_of_a_run(tmp_path):
    from zimage_nb.config import preset
    from zimage_nb.train import train
    from zimage_nb.tiny import write_demo_dataset
    cfg = preset("tiny", job__output_dir=str(tmp_path / "runs"), job__name="ck", job__trigger_word="zxq",
                 datasets__0__path=str(write_demo_dataset(tmp_path / "photos", n=4)), training__steps=15, save__every=5, sample__every=0)
    res = train(cfg, progress=False)
    s = Sampler.from_run(res["run"])
    g = checkpoint_grid(s, res["run"].out, ["zxq disc on a blue background", "zxq disc on a green background"], base=SMALL, path=tmp_path / "ck_grid.png", progress=False)
    assert g.col_labels == ["no LoRA", "step 5", "step 10", "final"] and len(g.images) == 2
    assert s.encoder_loads == 0 and (tmp_path / "ck_grid.json").exists()
    final, step5 = px(g.images[0][3]), px(g.images[0][1])
    assert np.abs(final - step5).mean() > 0.1

def test_checkpoint_labels_carry_the_validation_loss(tmp_path):
    import json
    from zimage_nb.sample import checkpoint_loras
    run = tmp_path / "job"
    for s in (5, 10): (run / "checkpoints" / f"step_{s:07d}").mkdir(parents=True)
    (run / "job.safetensors").write_bytes(b"")
    (run / "log.jsonl").write_text("".join(json.dumps(dict(step=s, loss=0.5, **({"val_loss": 0.1 * s} if s % 5 == 0 else {}))) + "\n" for s in range(1, 16)) + '{"step": 16, "lo')
    assert list(checkpoint_loras(run)) == ["step 5 · val 0.5000", "step 10 · val 1.0000", "final · val 1.5000"]   # a torn last line is skipped
    (run / "log.jsonl").unlink()
    assert list(checkpoint_loras(run)) == ["step 5", "step 10", "final"]

# Each preset's sampling against its source, on the usual CFG scale (1 = none), and what diffusers is then asked to do.
# diffusers' ZImagePipeline guides with pos + g·(pos − neg) whenever g > 0 (pipelines/z_image/pipeline_z_image.py,
# do_classifier_free_guidance: `self._guidance_scale > 0`), so g = CFG − 1; AI Toolkit's z_image.py passes max(0, cfg − 1) the same way.
PRESET_SAMPLING = {   # preset: (steps, CFG, diffusers guidance_scale, transformer evaluations per image), source
    "turbo-adapter-v2": (8, 1.0, 0.0, 8),     # Tongyi-MAI/Z-Image README (github.com/Tongyi-MAI/Z-Image), Turbo example: guidance_scale=0.0 ("Guidance should be 0 for the Turbo models"), 8 DiT forwards
    "turbo-adapter-v1": (8, 1.0, 0.0, 8),     # the same
    "turbo-distillpatch": (8, 1.0, 0.0, 8),   # DiffSynth-Studio's Z-Image doc and DistillPatch card: "acceleration configuration (steps=8, cfg=1)"
    "de-turbo": (25, 2.5, 1.5, 50),           # ostris/Z-Image-De-Turbo card (read in a copy; its scale is not stated): "a low CFG (2.0 - 3.0) and 20-30 steps"
    "base": (50, 5.0, 4.0, 100),              # Tongyi-MAI/Z-Image README (GitHub), base's diffusers example: num_inference_steps=50, guidance_scale=4
    "base-fun-distill": (8, 1.0, 0.0, 8),     # alibaba-pai/Z-Image-Fun-Lora-Distill (VideoX-Fun README): "does not require CFG and uses 8 steps"
}

@pytest.mark.parametrize("name", PRESET_SAMPLING)
def test_each_preset_samples_as_its_source_says(sampler, name):
    "What the trainer's samples and the model card run, counted on the tiny transformer: diffusers' guidance and its evaluations per image."
    from zimage_nb.config import preset
    from zimage_nb.hub import sampling_recipe
    cfg = preset(name); r = sampling_recipe(cfg)
    assert (cfg.sample.steps, cfg.sample.cfg_scale) == (r["steps"], r["cfg_scale"])      # in-training samples = the card's recipe
    seen = []
    h = sampler.tr.register_forward_hook(lambda m, a, o: seen.append(len(a[0])))         # the pipeline batches positive and negative
    try: sampler.image("a red cube", width=64, height=64, steps=r["steps"], cfg_scale=r["cfg_scale"], adapters={})
    finally: h.remove()
    assert (r["steps"], r["cfg_scale"], sampler.pipe.guidance_scale, sum(seen)) == PRESET_SAMPLING[name]
