"""GPU first contact: the rows that matter most, measured in one command that fits a 15-minute device window.

    bash bench/gpu_first_look.sh OUT                 # on the GPU machine: installs offline from .gpu-wheels/, then this
    python bench/gpu_first_look.py --out OUT --budget 400
    python bench/gpu_first_look.py --smoke --out OUT # the same code at tiny scale on the CPU (make gpu-rehearsal)
    python bench/gpu_first_look.py --finish OUT      # calibration + table from OUT's rows (no GPU needed; the .sh runs it)

Rows, most valuable first, each appended to OUT/results.jsonl the moment it exists; a row whose expected time no longer
fits the budget is recorded as skipped, so a run always ends on time with what it measured:
  1. NF4 base, rank 16, bf16 compute, gradient checkpointing, batch 1, real config with random weights: a training step
     at 512² and 1024² (max_memory_allocated / reserved, median s/step over 5 steps after a warm-up, MFU);
  2. the same with training offload (2 resident blocks, prefetch): VRAM, s/step, the LoRA after 3 steps against the
     one trained without offload from the same seed, and one more step watched by OffloadCheck (no host reads);
  3. the T4 compute path at 512²: 10 steps of what a card without bf16 gets for Turbo and for base / De-Turbo
     (`zimage_nb.arch.no_bf16_compute`), every loss finite, s/step beside the bf16 row;
  4. a T4 emulated (set_per_process_memory_fraction, 15 GiB): the default preset after suggest_settings(T4) trains 5
     steps at its largest suggested resolution;
  5. inference at 1024²: Turbo 8 steps against 30 steps with CFG 2 (latency, peak VRAM);
  6. a bf16-base step at 1024² (the NF4 / bf16 ratio), if time is left.
Then (--finish): the planner calibrated on the rows (OUT/calibration.json; copy it to zimage_nb/assets/cuda_calibration.json
after reading it) and OUT/table.md with the planner's estimate beside each row.
OUT holds at most 8 files: log.txt, nvidia-smi.txt, env.json, results.jsonl, calibration.json, table.md.
"""
import argparse, json, math, sys, time, traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
import gpu_suite as GS

# (name, seconds it is expected to take on an H100/H200 at real size: a row is skipped when less than this is left)
PLAN = [("train-512", 40), ("train-1024", 50), ("offload-512", 60), ("offload-1024", 70), ("t4-compute", 80),
        ("t4-card", 50), ("infer-1024", 70), ("bf16-1024", 60)]
FILES = ("log.txt", "nvidia-smi.txt", "env.json", "results.jsonl", "calibration.json", "table.md")


def lora_diff(a:dict, b:dict)->float:
    "Largest absolute difference between two LoRA state dicts (same keys)."
    return max(float((a[k] - b[k]).abs().max()) for k in a)

def snapshot_at(n, store):
    "An `on_step` callback that keeps the trained LoRA after the n-th step in store['lora']."
    from zimage_nb.lora import trained_state
    def cb(run, k):
        if k == n: store["lora"] = trained_state(run.transformer)
    return cb

def offload_check(run)->dict:
    "One more step watched by OffloadCheck: operations that read a block's host copy, most blocks on the device."
    import zimage_nb.train as T
    from zimage_nb.offload import OffloadCheck
    with OffloadCheck(run.offload) as chk: T.train_step(run)
    return dict(host_reads=len(chk.violations), first_host_read=chk.violations[:1], max_resident=chk.max_resident)

def finite(row:dict)->bool: return all(isinstance(x, (int, float)) and math.isfinite(x) for x in row.get("losses", [])) and row.get("skipped", 0) == 0


def measure(s, budget:float, only=None):
    "Run the plan's rows in order within `budget` seconds; returns the names measured."
    from zimage_nb.arch import no_bf16_compute
    t_end, done, kept = time.time() + budget, [], {}
    scale = 0.05 if s.smoke else 1.0                   # smoke rows take seconds: every row runs
    lo, hi = s.res[0], s.res[-1]
    steps = 5
    def row_512():
        GS._train_row(s, "train", "nf4", lo, "bf16", timed=steps, run_kw=dict(on_step=snapshot_at(3, kept)), lora_after=3)
    def row_1024(): GS._train_row(s, "train", "nf4", hi, "bf16", timed=steps)
    def off_512():
        mine = {}
        r = GS._train_row(s, "offload", "nf4", lo, "bf16", 2, True, timed=steps,
                          run_kw=dict(on_step=snapshot_at(3, mine), after=offload_check))
        if "lora" in kept and "lora" in mine:
            d = lora_diff(kept["lora"], mine["lora"])
            s.row("offload", check=f"LoRA after 3 steps at {lo}², 2 resident blocks + prefetch, against the same seed without offload; one more step watched by OffloadCheck",
                  res=lo, max_abs_diff=d, equal=d == 0.0, host_reads=r.get("host_reads"), max_resident=r.get("max_resident"))
    def off_1024(): GS._train_row(s, "offload", "nf4", hi, "bf16", 2, True, timed=steps, run_kw=dict(after=offload_check))
    def t4_compute_rows():
        for family in ("turbo", "base"):                      # De-Turbo takes base's choice
            c = no_bf16_compute(family)
            if any(r.get("part") == "t4-compute" and r.get("compute") == c for r in GS.read_rows(s.out)): continue   # one row per compute
            r = GS._train_row(s, "train", "nf4", lo, c, timed=9, family=family)   # 10 steps with the warm-up, + 1 counted
            s.row("t4-compute", check=f"{family}: {c} at {lo}², 11 steps", compute=c, family=family, all_finite=finite(r))
    def t4_card(): GS.part_cards(s, ("T4",), timed=steps)
    def infer(): GS.part_infer(s, [("nf4", "none")], repeat=1)
    def bf16_1024(): GS._train_row(s, "train", "bf16", hi, "bf16", timed=steps)
    fns = {"train-512": row_512, "train-1024": row_1024, "offload-512": off_512, "offload-1024": off_1024, "t4-compute": t4_compute_rows,
           "t4-card": t4_card, "infer-1024": infer, "bf16-1024": bf16_1024}
    for name, cost in PLAN:
        if only and name not in only: continue
        left = t_end - time.time()
        if left < cost * scale:
            s.row("skipped", what=name, reason=f"time budget: {left:.0f} s left, about {cost} s needed"); continue
        t0 = time.time(); GS.log(f"== {name} ({left:.0f} s left)")
        s.guarded(name, fns[name])
        done.append(name); GS.log(f"== {name}: {time.time() - t0:.0f} s")
    return done


def finish(out:Path)->dict:
    "Calibrate the planner on the rows (calibration.json; never from smoke rows) and write table.md."
    from zimage_nb.planner import calibrate_cuda
    rows = [r for r in GS.read_rows(out) if "error" not in r]
    try: cal = calibrate_cuda([r for r in rows if r.get("ok", True)])
    except ValueError as e: cal = dict(ok=False, error=str(e))
    cal["smoke"] = any(r.get("smoke") for r in rows)
    (out / "calibration.json").write_text(json.dumps(cal, indent=1, default=str) + "\n")
    skipped = [f"- {r['what']}: {r['reason']}" for r in rows if r["part"] == "skipped"]
    md = GS.report(out) + "\n" + planner_table(rows, cal) + ("\n**Not measured**\n\n" + "\n".join(skipped) + "\n" if skipped else "")
    (out / "table.md").write_text(md)
    print(md)
    return cal

def planner_table(rows:list, cal:dict)->str:
    "Measured peak reserved VRAM and s/step beside the planner's, before and after calibrating on these rows."
    from zimage_nb.planner import estimate_training, row_config, _row_shape
    from zimage_nb.tiny import TINY_TRANSFORMER
    L = ["**The planner beside each training row** (reserved VRAM; the goal is within 15% on every row)", "",
         "| part | base | compute | res | offload | measured reserved GiB | planner GiB (shipped calibration) | after calibrating on these rows | measured s/step | planner s/step |",
         "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "s_per_step" not in r or "quant" not in r: continue
        shape = TINY_TRANSFORMER if r.get("smoke") else _row_shape(r)
        after = estimate_training(row_config(r), "A100", shape, cal).vram if cal.get("ok") or cal.get("workspace") is not None else None
        err = lambda v: f"{GS._g(v)} ({v / r['reserved'] - 1:+.0%})" if v and r.get("reserved") else GS._g(v)
        L.append(f"| {r['part']} | {r['quant']} | {r.get('compute')} | {r['res']} | {r.get('offload') or 'off'} | {GS._g(r.get('reserved'))} | "
                 f"{err(r.get('planner_vram'))} | {err(after) if after else '—'} | {r['s_per_step']:.3f} | {r.get('planner_s', '—')} |")
    L += ["", f"Calibration: {'fits every row within 15%' if cal.get('ok') else 'not within 15% on every row, or nothing to fit'}"
          + (f" (worst {cal['worst']:.1%})" if cal.get("worst") is not None else "") + (f"; {cal['error']}" if cal.get("error") else "")
          + ("; smoke rows: not a GPU measurement" if cal.get("smoke") else ""), ""]
    return "\n".join(L)


def check(out:Path)->list[str]:
    "What a rehearsal (or a GPU run) must show: every row measured without an error, the checks passed, at most 8 files."
    rows, bad = GS.read_rows(out), []
    def need(ok, what):
        if not ok: bad.append(what)
    part = lambda p, **kw: [r for r in rows if r["part"] == p and all(r.get(k) == v for k, v in kw.items())]
    need(not [r for r in rows if "error" in r], f"rows with an error: {[(r['part'], r['error'][:120]) for r in rows if 'error' in r]}")
    need(not part("skipped"), f"rows skipped for time: {[r['what'] for r in part('skipped')]}")
    tr = part("train")
    need({(r["quant"], r["compute"]) for r in tr} >= {("nf4", "bf16"), ("nf4", "fp16-safe"), ("nf4", "fp32"), ("bf16", "bf16")}, "training rows missing")
    need(len({r["res"] for r in tr if r["quant"] == "nf4" and r["compute"] == "bf16"}) == 2, "NF4 bf16 rows at both resolutions")
    need(all(r["s_per_step"] > 0 and r["tensors"] > r["persistent"] > 0 and r.get("planner_vram") for r in tr), "training rows without time, tensors or planner estimate")
    need(len([r for r in part("offload") if "check" not in r]) == 2, "two offload rows")
    eq = next((r for r in part("offload") if r.get("check")), {})
    need(eq.get("check") and eq.get("max_abs_diff") is not None and eq.get("host_reads") == 0, f"offload check: {eq}")
    need(len(part("t4-compute")) == 2 and all(r["all_finite"] for r in part("t4-compute")), "T4 compute rows with finite losses")
    need(any(r.get("card") == "T4" and r.get("ok") for r in part("cards")), "the emulated T4 trained")
    need([r["calls"] for r in part("infer")] == [8, 30], "inference: Turbo 8 calls, non-accelerated 30")
    files = sorted(p.name for p in out.iterdir())
    need(set(files) <= set(FILES) and len(files) <= 8, f"files in {out}: {files}")
    log = (out / "log.txt").read_text() if (out / "log.txt").exists() else ""
    need("imports ok" in log and "!!" not in log, "the install step: 'imports ok' and no '!!' line in log.txt")
    return bad

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", help="results folder")
    ap.add_argument("--budget", type=float, default=400, help="seconds for the measurements (rows that would not fit are skipped)")
    ap.add_argument("--smoke", action="store_true", help="tiny scale on the CPU: the same code paths")
    ap.add_argument("--only", nargs="+", choices=[n for n, _ in PLAN], help="just these rows")
    ap.add_argument("--finish", metavar="OUT", help="calibration.json and table.md from OUT's rows")
    ap.add_argument("--check", metavar="OUT", help="exit 1 unless OUT shows every row measured (the rehearsal's test)")
    a = ap.parse_args(argv)
    if a.finish: finish(Path(a.finish)); return 0
    if a.check:
        bad = check(Path(a.check))
        print("\n".join(f"FAIL {b}" for b in bad) or f"ok: every row of the first look measured in {a.check}")
        return 1 if bad else 0
    import torch
    if not a.smoke and not torch.cuda.is_available(): sys.exit("no CUDA GPU: run with --smoke for the CPU rehearsal")
    s = GS.Suite(a.out, a.smoke, steps=5)
    env = GS.environment(s); (s.out / "env.json").write_text(json.dumps(env, indent=1))
    GS.log(f"first look on {s.name} ({'smoke, tiny scale' if s.smoke else 'real size'}), budget {a.budget:.0f} s; versions: {env.get('torch')}, "
           f"diffusers {env.get('diffusers')}, bitsandbytes {env.get('bitsandbytes')}, transformers {env.get('transformers')}, peft {env.get('peft')}")
    try: measure(s, a.budget, a.only)
    except Exception: GS.log(traceback.format_exc())
    return 0

if __name__ == "__main__": sys.exit(main())
