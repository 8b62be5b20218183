"The console script as a user runs it."
import os
import subprocess
from PIL import Image

def run(*args, cwd=None):
    "The command as a user runs it, offline (as CI is: with the Hub offline, kernels 0.19 logs a line when bitsandbytes is imported)."
    return subprocess.run(["zimage-nb", *args], capture_output=True, text=True, cwd=cwd, env=dict(os.environ, HF_HUB_OFFLINE="1"))

def test_demo_writes_a_sample_and_a_config_in_the_current_folder(tmp_path):
    r = run("demo", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    out = tmp_path / "zimage-nb-demo"
    assert Image.open(out / "sample_nf4.png").size == (64, 64)
    assert (out / "config.yaml").exists() and (out / "tiny-model" / "model_index.json").exists()
    assert "46 4-bit layers" in r.stdout and str(out / "sample_nf4.png") in r.stdout
    import re
    total, training = map(float, re.search(r"done in (\d+) s \(training (\d+) s", r.stdout).groups())   # the demo says how long it took
    assert 0 < training < total
    # the demo's LoRA: ComfyUI layout, loads into the default tiny pipeline with diffusers and changes its output
    import numpy as np
    from safetensors import safe_open
    from zimage_nb.tiny import tiny_pipeline, tiny_image, TINY_TURBO_STEPS
    lora = out / "demo" / "demo.safetensors"
    assert str(lora) in r.stdout
    from zimage_nb.cli import DEMO_STEPS, DEMO_PROMPT
    from zimage_nb.tiny import subject_share
    with safe_open(str(lora), "pt") as f: assert f.metadata()["zimage_nb.steps"] == str(DEMO_STEPS) and all(k.startswith("diffusion_model.") for k in f.keys())
    # trained with the tiny training adapter in place, exported without it, sampled on the tiny Turbo in its one step
    with safe_open(str(lora), "pt") as f:    # only the trained LoRA (rank 4), not the rank-32 training adapter
        assert {f.get_slice(k).get_shape()[0] for k in f.keys() if k.endswith("lora_A.weight")} == {4}
    pipe = tiny_pipeline(turbo=True); draw = lambda: [tiny_image(pipe, DEMO_PROMPT, height=64, width=64, steps=TINY_TURBO_STEPS, seed=s) for s in (1, 2)]
    before = draw(); pipe.load_lora_weights(str(lora.parent), weight_name=lora.name); after = draw()
    # measured 2026-11-30: 0.0% -> 16.2% (3 seeds); the model draws no red or yellow, with the LoRA the subject's colours
    assert max(map(subject_share, before)) < 0.01 and np.mean([subject_share(a) for a in after]) > 0.08
    assert "red/yellow pixels" in r.stdout
    # the grid's one-step and 30-step columns differ visibly (measured 2026-12-06: 0.088 with the LoRA, 0.025 without)
    import re
    with_lora, without = map(float, re.search(r"mean pixel difference: ([\d.]+) with the LoRA, ([\d.]+) without", r.stdout).groups())
    assert with_lora > 0.06 and without > 0.01
    # ... and the LoRA trained with the adapter keeps the Turbo's one step the sharper of the two (measured 2026-12-06: 0.52 against 0.44)
    one, thirty = map(float, re.search(r"sharpness \(tiny_purity\) ([\d.]+) in 1 step, ([\d.]+) in 30 steps", r.stdout).groups())
    assert one > thirty + 0.04
    import json
    grid = json.loads((out / "comparison_grid.json").read_text())
    assert Image.open(out / "comparison_grid.png").size[0] > 4 * 192 and len(grid["columns"]) == 4 and "non-accelerated" in grid["columns"][2]
    # the report card of its checkpoints (tiny-world features offline), named in the run's summary
    card = json.loads((out / "demo" / "report_card.json").read_text())
    assert list(card["rows"]) == [f"step {DEMO_STEPS // 2}", "final"] and "report card of the checkpoints" in r.stdout and (out / "demo" / "report_card.png").exists()
    assert json.loads((out / "demo" / "summary.json").read_text())["report_card"]["file"] == "report_card.json"

def test_demo_out_flag(tmp_path):
    assert run("demo", "--out", str(tmp_path / "x"), "--steps", "2").returncode == 0 and (tmp_path / "x" / "sample_nf4.png").exists()

def test_train_command_stops_resumes_and_names_bad_input(tmp_path):
    from zimage_nb.tiny import write_demo_dataset
    f = tmp_path / "run.yaml"
    assert run("init", str(f), "--preset", "tiny").returncode == 0
    f.write_text(f.read_text().replace("path: ''", f"path: {tmp_path / 'nowhere'}").replace("output_dir: output", f"output_dir: {tmp_path / 'out'}"))
    r = run("train", str(f))
    assert r.returncode == 2 and "nowhere" in r.stderr, r.stderr
    write_demo_dataset(tmp_path / "nowhere", n=4)
    r = run("train", str(f), "--until", "4")
    assert r.returncode == 0 and "step 4 (checkpoint saved" in r.stdout, r.stderr
    r = run("train", str(f))
    assert r.returncode == 0 and "step 20: LoRA written to" in r.stdout and "resumed from step_0000004" in r.stdout, r.stderr

def test_validate_lists_problems_and_exits_2(tmp_path):
    f = tmp_path / "run.yaml"
    assert run("init", str(f), "--preset", "tiny").returncode == 0
    f.write_text(f.read_text().replace("rank: 4", "rank: -3").replace("width: 64", "width: 70"))
    r = run("validate", str(f))
    assert r.returncode == 2 and "target.rank: -3 is below 1" in r.stderr and "sample.width: 70 is not a multiple of 32" in r.stderr

def test_bad_arguments_exit_2_with_usage(tmp_path):
    r = run("trian")
    assert r.returncode == 2 and "invalid choice: 'trian'" in r.stderr
    assert run("init", str(tmp_path / "a.yaml"), "--preset", "nope").returncode == 2

def test_hardware_prints_the_profile_and_its_suggestions():
    from zimage_nb.hardware import detect_hardware
    from zimage_nb.planner import suggest_settings
    r = run("hardware")
    hw = detect_hardware()
    assert r.returncode == 0 and r.stdout.splitlines()[0] == str(hw)
    lines = r.stdout.splitlines()
    assert [l.split(" = ")[0].strip() for l in lines[1:1 + len(suggest_settings(hw))]] == [s.path for s in suggest_settings(hw)]
    import diffusers, transformers
    assert f"diffusers {diffusers.__version__}" in r.stdout and f"transformers {transformers.__version__}" in r.stdout and "problem:" not in r.stdout

def test_estimate_and_prepare_commands(tmp_path):
    f = tmp_path / "run.yaml"
    assert run("init", str(f)).returncode == 0
    r = run("estimate", str(f), "--gpu", "T4", "--gpu", "A100")
    assert r.returncode == 0 and "Tesla T4: peak VRAM" in r.stdout and "A100" in r.stdout and "fits" in r.stdout, r.stderr
    assert "time: ~" in r.stdout and "on Colab free" in r.stdout and "on Kaggle" in r.stdout          # the run's time against the session limits
    r = run("estimate", str(f), "--gpu", "T4", "--platform", "colab-free", "--set", "training.steps=20000")
    assert "needs " in r.stdout and "sessions" in r.stdout and "To fit one: training.steps = " in r.stdout
    r = run("estimate", str(f), "--gpu", "T4", "--set", "training.lr=1e-4")     # YAML 1.1 reads 1e-4 (no dot) as text: the field's type makes it a number
    assert r.returncode == 0 and "fits" in r.stdout, r.stderr
    r = run("estimate", str(f), "--gpu", "H900")
    assert r.returncode == 2 and "--gpu H900 is not a known GPU" in r.stderr
    from zimage_nb.tiny import write_demo_dataset
    f2 = tmp_path / "tiny.yaml"
    assert run("init", str(f2), "--preset", "tiny").returncode == 0
    f2.write_text(f2.read_text().replace("path: ''", f"path: {write_demo_dataset(tmp_path / 'photos', n=3)}").replace("output_dir: output", f"output_dir: {tmp_path / 'out'}"))
    r = run("prepare", str(f2))
    assert r.returncode == 0 and "3 files -> 3 kept" in r.stdout, r.stdout + r.stderr

def test_sample_command_renders_a_grid(tmp_path):
    import json
    from zimage_nb.tiny import tiny_pipeline, write_tiny_lora
    f = tmp_path / "tiny.yaml"
    assert run("init", str(f), "--preset", "tiny").returncode == 0
    lora = write_tiny_lora(tiny_pipeline().transformer, tmp_path / "l.safetensors", "kohya", rank=4, seed=2, scale=0.1)
    r = run("sample", str(f), "--lora", str(lora), "--prompt", "a red cube", "--prompt", "a blue ball", "--setting", "turbo", "--out", str(tmp_path / "g.png"))
    assert r.returncode == 0 and "grid 2 x 2" in r.stdout, r.stderr
    meta = json.loads((tmp_path / "g.json").read_text())
    assert meta["columns"] == ["turbo: 8 steps, CFG 1 | lora × 0", "turbo: 8 steps, CFG 1 | lora × 1"] and meta["rows"][1] == "a blue ball · seed 42"
    r = run("sample", str(f), "--lora", str(tmp_path / "missing.safetensors"))
    assert r.returncode == 2 and "--lora: file" in r.stderr and "does not exist" in r.stderr

def only_our_error(stderr:str)->bool:
    """stderr is this package's error and nothing else: no library's log line (transformers 5.25 + kernels 0.19 printed "Skipping
    publisher trust check ... offline mode" when `train` loaded the training stack before checking the config), no traceback."""
    lines = stderr.strip().splitlines()
    return bool(lines) and lines[0].startswith("error: ") and all(l.startswith("  ") for l in lines[1:])

def test_validate_and_train_check_the_dataset_path_before_any_download(tmp_path):
    f = tmp_path / "run.yaml"
    assert run("init", str(f)).returncode == 0
    r = run("validate", str(f))
    assert r.returncode == 2 and "datasets[0].path: is empty" in r.stderr
    r = run("train", str(f), "--set", f"datasets.0.path={tmp_path / 'missing'}", "--set", "model.name_or_path=Some-Org/Not-Downloaded")
    assert r.returncode == 2 and "missing does not exist" in r.stderr and only_our_error(r.stderr)
    f.write_bytes("job:\n  name: x\n".encode("utf-16") + b"\x00\x00\x07\x00")
    r = run("validate", str(f))
    assert r.returncode == 2 and "is not a text file" in r.stderr and only_our_error(r.stderr)

def test_caption_command(tmp_path):
    from zimage_nb.tiny import write_demo_dataset
    photos = write_demo_dataset(tmp_path / "photos", n=3); (photos / "img_01.txt").unlink()
    f = tmp_path / "run.yaml"
    assert run("init", str(f), "--preset", "tiny", "--set", f"datasets.0.path={photos}", "--set", f"job.output_dir={tmp_path / 'out'}").returncode == 0
    r = run("caption", str(f), "--model", "tiny", "--style", "short")
    assert r.returncode == 0 and "1 captioned (short, tiny), 2 kept their caption" in r.stdout, r.stdout + r.stderr
    assert (photos / "img_01.txt").exists()
    r = run("caption", str(f), "--dataset", "3")
    assert r.returncode == 2 and "the config has 1 dataset(s)" in r.stderr

def test_prepare_expands_a_home_output_dir(tmp_path):
    "job.output_dir: ~/runs is the home folder's runs for every command (prepare used to write ./~/runs, which train never read)."
    from zimage_nb.tiny import write_demo_dataset
    home, cwd = tmp_path / "home", tmp_path / "cwd"; home.mkdir(); cwd.mkdir()
    f = tmp_path / "run.yaml"
    assert run("init", str(f), "--preset", "tiny", "--set", "job.output_dir=~/runs", "--set", f"datasets.0.path={write_demo_dataset(tmp_path / 'p', n=2)}").returncode == 0
    r = subprocess.run(["zimage-nb", "prepare", str(f)], capture_output=True, text=True, cwd=cwd, env=dict(os.environ, HOME=str(home), HF_HUB_OFFLINE="1"))
    assert r.returncode == 0, r.stderr
    assert (home / "runs" / "my_zimage_lora" / "work").is_dir() and not (cwd / "~").exists()
