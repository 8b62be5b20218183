"""The tiny Turbo family (tools/distil_tiny_turbo.py): the distilled student samples in one step what the base needs many
steps for, the training adapter undoes that, and the DistillPatch puts it back. Sampling only: a few seconds."""
import json, re, subprocess, sys
from pathlib import Path
import numpy as np, pytest
from zimage_nb.lora import TRAINING_ADAPTER, DISTILL_PATCH
from zimage_nb.tiny import tiny_pipeline, tiny_image, tiny_purity, tiny_turbo_file, image_distance as dist, TINY_TURBO_STEPS

CAPS = ["a large pink disc in the middle on a grey background", "a large white square on a blue background",
        "a small orange triangle on the left on a teal background", "a large green disc on the right on a black background"]

def pics(pipe, steps): return [tiny_image(pipe, c, height=64, width=64, steps=steps, seed=s) for c in CAPS for s in (1, 2)]
def sharp(ims): return float(np.mean([tiny_purity(i) for i in ims]))

@pytest.fixture(scope="module")
def family():
    base, turbo = tiny_pipeline(), tiny_pipeline(turbo=True)
    return dict(base=base, turbo=turbo, ref=pics(base, 30))

def load(pipe, kind, name):
    f = tiny_turbo_file(kind)
    pipe.load_lora_weights(str(f.parent), weight_name=f.name, adapter_name=name)

def test_the_tiny_turbo_samples_in_one_step_what_the_base_needs_thirty_for(family):
    # measured 2026-11-30: sharpness 0.539 (base, 1 step) -> 0.735 (tiny Turbo, 1 step), base at 30 steps 0.829;
    # distance to the base's 30-step pictures from the same noise 0.057 -> 0.028
    base1, turbo1 = pics(family["base"], TINY_TURBO_STEPS), pics(family["turbo"], TINY_TURBO_STEPS)
    assert sharp(turbo1) > sharp(base1) + 0.12
    assert dist(turbo1, family["ref"]) < 0.65 * dist(base1, family["ref"])

def test_the_adapter_undoes_the_distillation_and_the_patch_restores_it(family):
    turbo = tiny_pipeline(turbo=True)
    load(turbo, "adapter", TRAINING_ADAPTER)
    with_adapter = pics(turbo, TINY_TURBO_STEPS)
    load(turbo, "patch", DISTILL_PATCH); turbo.set_adapters([TRAINING_ADAPTER, DISTILL_PATCH], [1.0, 1.0])
    patched = pics(turbo, TINY_TURBO_STEPS)
    plain = pics(family["turbo"], TINY_TURBO_STEPS)
    # measured 2026-11-30 (sharpness at 1 step): tiny Turbo 0.735, with the adapter 0.597, adapter + patch 0.741
    assert sharp(with_adapter) < sharp(plain) - 0.10
    assert sharp(patched) > sharp(with_adapter) + 0.10
    assert dist(patched, plain) < dist(with_adapter, plain)

def test_the_recipe_comparison_runs(tmp_path):
    "bench/compare_turbo_recipes.py --smoke: every recipe trains, loads in diffusers and is scored (the numbers mean nothing at 2 steps)."
    tool = Path(__file__).parents[1] / "bench" / "compare_turbo_recipes.py"
    r = subprocess.run([sys.executable, str(tool), "--smoke", "--out", str(tmp_path)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    rows = json.loads((tmp_path / "recipes.json").read_text())
    assert [x["recipe"] for x in rows] == ["tiny Turbo, no LoRA", "tiny base, no LoRA", "tiny base + few-step LoRA, no subject LoRA", "turbo + training adapter",
                                          "base (de-Turbo)", "plain + DistillPatch", "plain (drifts)", "base + few-step LoRA"]
    assert all(0 <= x["subject"] <= 1 and 0 <= x["class_sharpness"] <= 1 and x["few_step_gap"] > 0 for x in rows)
    assert rows[0]["class_drift"] == 0 and all(x["class_drift"] > 0 for x in rows[3:])   # every subject LoRA changes something
    # the report card's formulas (TinyWorldScorers as DINO): the reference rows compare a model with itself
    assert all(0 < x["card_few_step_kept"] <= 1.0001 and x["card_sharp_kept"] > 0 for x in rows)
    assert all(abs(x["card_kept"] - 1) < 1e-4 and x["card_dino_gain"] == 0 and x["card_sharp_kept"] == 1 for x in rows[:3])
    assert (tmp_path / "recipes.md").read_text().count("\n") == 10 and (tmp_path / "recipes.png").exists()
    # --summarize: the table over training seeds (here one run, so no ranges)
    r = subprocess.run([sys.executable, str(tool), "--summarize", str(tmp_path), "--out", str(tmp_path / "sum")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    table = (tmp_path / "sum" / "recipes_summary.md").read_text()
    assert table.startswith("training seeds 42:") and "| plain (drifts) | 1 step |" in table and not re.search(r"\(\d", table)
    assert "card_few_step_kept / few_step_gap" in table and "seed 42, the Turbo recipes: card's best few-step kept: " in table
