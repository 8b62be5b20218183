"The GPU suite in its smoke mode (the same code paths at tiny scale on the CPU), its report, goals and the calibration it feeds."
import json, shutil, subprocess, sys
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
GIB = 2**30

@pytest.fixture(scope="module")
def suite():
    import gpu_suite   # bench/ is on the tests' path (pyproject.toml: pytest's pythonpath)
    return gpu_suite

@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("suite") / "results"
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu_suite.py"), "--smoke", "--out", str(out)], capture_output=True, text=True, timeout=1200)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    return out

def test_smoke_run_measures_every_part(smoke):
    rows = [json.loads(l) for l in (smoke / "results.jsonl").read_text().splitlines()]
    assert [r for r in rows if "error" in r] == []
    assert {r["part"] for r in rows} == {"h2d", "load", "train", "cards", "offload", "infer", "cache", "peer"}
    train = [r for r in rows if r["part"] == "train"]
    assert {(r["quant"], r["compute"]) for r in train} == {(q, c) for q in ("nf4", "bf16") for c in ("bf16", "fp16-safe")}
    assert all(r["tensors"] > r["persistent"] > 0 and r["s_per_step"] > 0 and r["flops"] > 0 and r["skipped"] == 0 for r in train)
    assert {r["layout"] for r in rows if r["part"] == "load"} == {"single file (original keys)", "diffusers folder"}
    assert all(r["quantized_layers"] == 46 for r in rows if r["part"] == "load")
    assert {r["card"] for r in rows if r["part"] == "cards"} == {"T4", "3060-12G", "3080-10G"} and all(r["ok"] for r in rows if r["part"] == "cards")
    off = [r for r in rows if r["part"] == "offload" and "check" not in r]
    assert {r.get("card") for r in off} >= {None, "2060-6G", "3050L-4G"} and any(r["offload"] == 2 and not r["prefetch"] for r in off)
    check = next(r for r in rows if r.get("check"))
    assert check["equal"] and check["host_reads"] == 0 and check["max_resident"] == 2
    assert {r["setting"] for r in rows if r["part"] == "infer"} == {"turbo", "non-accelerated"}
    assert [r["calls"] for r in rows if r["part"] == "infer"][:2] == [8, 30]
    assert next(r for r in rows if r["part"] == "cache")["released"]
    env = json.loads((smoke / "env.json").read_text())
    assert env["smoke"] and env["torch"] and "--smoke" in env["command"]
    assert sorted(p.name for p in smoke.iterdir()) == ["env.json", "log.txt", "results.jsonl", "table.md"]   # at most 8 small files to copy back

def test_report_of_a_smoke_run_says_so(smoke, suite):
    md = (smoke / "table.md").read_text()
    assert "smoke run on the CPU at tiny scale: not a GPU measurement" in md
    for title in ("Training step", "Small cards emulated", "Training offload (NF4)", "correctness on this device", "Inference", "VRAM after caching", "Goals"):
        assert title in md, title
    with pytest.raises(ValueError, match="run bench/gpu_suite.py on a CUDA GPU"):
        suite.calibrate(smoke)                  # CPU rows carry no max_memory_reserved: nothing to fit, nothing written

def gpu_rows(device="NVIDIA H100 80GB HBM3"):
    "Rows shaped like a GPU run's: reserved = tensors x 1.05 + 0.8 GiB, steps at 40% / 30% MFU (bf16 / NF4)."
    from zimage_nb.planner import estimate_training, row_config, step_flops, transformer_shape, GUESS
    rows = [dict(part="h2d", gbps=50.0, nominal_gbps=63.0, device=device, date="d")]
    for part, q, res, off in [("train", q, r, 0) for q in ("nf4", "bf16") for r in (512, 768, 1024)] + [("offload", "nf4", r, o) for r in (512, 1024) for o in (0, 2)]:
        r = dict(part=part, quant=q, compute="bf16", res=res, rank=16, offload=off, prefetch=True, device=device, date="d")
        e = estimate_training(row_config(r), "A100", calibration=GUESS)
        t = e.vram - e.parts["CUDA overhead"]
        flops = step_flops(row_config(r), transformer_shape())
        r.update(tensors=t, alloc=t * 1.01, reserved=t * 1.05 + 0.8 * GIB, flops=flops, s_per_step=flops / (989e12 * (0.4 if q == "bf16" else 0.3)) * (1.1 if off else 1),
                 mfu=0.4 if q == "bf16" else 0.3)
        rows.append(r)
    rows.append(dict(part="cache", seconds=3.0, released=True, released_bytes=12 * 2**20, ok=True, device=device, date="d"))
    return rows

def test_goals_report_calibration_and_results_md(tmp_path, suite):
    (tmp_path / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in gpu_rows()))
    (tmp_path / "env.json").write_text(json.dumps(dict(device="NVIDIA H100 80GB HBM3", date="d", command="python bench/gpu_suite.py", smoke=False)))
    g = {x["goal"]: x for x in suite.goals(suite.read_rows(tmp_path))}
    assert g["NF4 rank 16 peak reserved at 512² ≤ 6 GiB"]["ok"] and g["NF4 rank 16 peak reserved at 1024² ≤ 8 GiB"]["ok"]
    assert g["NF4 step ≤ 1.5× the bf16 step at 1024²"]["value"] == "1.33×" and g["MFU of the bf16 step at 1024² ≥ 35%"]["ok"]
    assert g["training offload (2 resident, prefetch) ≤ 1.3× the step without at 1024²"]["value"] == "1.10×"
    assert g["VRAM back at its baseline after build_caches (≤ 64 MiB)"]["ok"]
    cal = suite.calibrate(tmp_path, write=False)
    assert cal["ok"] and cal["worst"] < 0.02 and abs(cal["frag"] - 0.05) < 0.01 and abs(cal["workspace"] / GIB - 0.8) < 0.02
    assert abs(cal["mfu"]["nf4"] - 0.3) < 1e-9 and abs(cal["pcie_efficiency"] - 50 / 63) < 1e-9
    md = tmp_path / "RESULTS.md"; shutil.copy(ROOT / "bench" / "RESULTS.md", md)
    suite.update_results_md(tmp_path, md); once = md.read_text()
    suite.update_results_md(tmp_path, md); assert md.read_text() == once                     # replaced, not added twice
    assert once.count(suite.BEGIN) == 1 and "| nf4 | bf16 | 1024 |" in once and "## Training-step memory at real size" in once


# ---- the first look (bench/gpu_first_look.py): its full smoke run is `make gpu-rehearsal` (in .ci/run)

@pytest.fixture(scope="module")
def first_look():
    import gpu_first_look
    return gpu_first_look

def test_first_look_skips_what_the_budget_cannot_hold(tmp_path, suite, first_look):
    s = suite.Suite(tmp_path, smoke=True, steps=5)
    assert first_look.measure(s, budget=0) == []                        # nothing fits in no time: nothing runs, nothing hangs
    rows = suite.read_rows(tmp_path)
    assert [r["what"] for r in rows] == [n for n, _ in first_look.PLAN] and all("time budget" in r["reason"] for r in rows)
    bad = first_look.check(tmp_path)
    assert any("skipped for time" in b for b in bad) and any("training rows missing" in b for b in bad)

def test_first_look_finish_calibrates_and_puts_the_planner_beside_each_row(tmp_path, suite, first_look):
    from zimage_nb.planner import estimate_training, row_config
    rows = gpu_rows("NVIDIA H200")
    for r in rows:
        if "quant" in r: r["planner_vram"] = estimate_training(row_config(r), "A100").vram
    rows.append(dict(part="skipped", what="bf16-1024", reason="time budget: 12 s left, about 60 s needed", device="NVIDIA H200", date="d"))
    (tmp_path / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "env.json").write_text(json.dumps(dict(device="NVIDIA H200", date="d", command="bash bench/gpu_first_look.sh out", smoke=False)))
    cal = first_look.finish(tmp_path)
    assert cal["ok"] and cal["worst"] < 0.02 and not cal["smoke"]
    assert json.loads((tmp_path / "calibration.json").read_text())["workspace"] == pytest.approx(cal["workspace"])
    md = (tmp_path / "table.md").read_text()
    assert "The planner beside each training row" in md and "| train | nf4 | bf16 | 1024 | off |" in md
    assert "- bf16-1024: time budget: 12 s left" in md                    # what was not measured is said
    assert "on an H100/H200, NF4 rank 16 at 1024² ≤ 1.0 s/step" in md
