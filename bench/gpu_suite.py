"""The GPU suite: every CUDA path of zimage-nb measured at real size, in one command, into one results folder.

    python bench/gpu_suite.py --out results/                       # everything (about 25 min on an H100-class GPU)
    python bench/gpu_suite.py --group b --out results/             # one group of parts (each within 10 min), appending
    python bench/gpu_suite.py --part train-nf4 cards --out results/
    python bench/gpu_suite.py --smoke --out /tmp/smoke             # the same code at tiny scale on the CPU (make test runs it)
    python bench/gpu_suite.py --report results/ --update-results   # results/table.md and the section in bench/RESULTS.md
    python bench/gpu_suite.py --calibrate results/                 # fit the planner: zimage_nb/assets/cuda_calibration.json

Real size = the real Z-Image transformer config (dim 3840, 30 + 2 + 2 blocks) with random weights made straight into
NF4 / bf16 on the device, rank 16, batch 1, 128 caption tokens, gradient checkpointing, AdamW8bit. Parts:
  h2d         pinned host -> GPU copy rate and the PCIe link (training offload's budget)
  load        NF4 streamed onto the GPU from a real-size single-file checkpoint and from a diffusers folder: wall time,
              host RAM peak, VRAM after load (each in a fresh process)
  train-nf4   training steps at 512, 768, 1024 with an NF4 base, compute bf16 and fp16-safe (the T4 path):
  train-bf16  the same with a bf16 base; max_memory_allocated / reserved, median s/step over 10 steps after a warm-up,
              tensors counted by TensorPeak in one more step, model FLOPs and MFU
  cards       small cards emulated with set_per_process_memory_fraction (T4 15 GiB, RTX 3060 11.8, RTX 3080 9.8): the
              default preset after suggest_settings trains 10 steps at its largest suggested resolution, or runs out
  offload     training offload (advanced.train_offload) at 512 and 1024: resident blocks, prefetch on / off, the
              step-time cost against no offload; the 6 GB and 4 GB cards emulated; the LoRA with offload equal to the
              one without, and no operation reading an offloaded block (OffloadCheck), on this GPU
  infer       1024², Turbo 8 steps vs non-accelerated 30 steps with CFG: latency and peak VRAM, sampling offload
              none / model / group
  cache       after build_caches (real-size Qwen3-4B text encoder and VAE, random weights), allocated VRAM back at its
              baseline (goal: within 64 MiB)
  peer        diffusers' examples/dreambooth/train_dreambooth_lora_z_image.py on the same random-weight model folder
              (--peer-script PATH: a copy of that script; the package does not ship it): s/step and peak reserved VRAM
Every row is one JSON line in <out>/results.jsonl (device, date, versions in <out>/env.json, the output in
<out>/log.txt); a failing measurement is recorded with its error and the suite goes on.
"""
import argparse, datetime, gc, json, platform, statistics, subprocess, sys, tempfile, time, traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
GIB, MIB = 2**30, 2**20
PARTS = ("h2d", "load", "train-nf4", "train-bf16", "cards", "offload", "infer", "cache", "peer")
GROUPS = {"a": ("h2d", "load"), "b": ("train-nf4", "cards"), "c": ("train-bf16", "offload"), "d": ("infer", "cache"), "e": ("peer",)}


class Suite:
    "Where rows go, and what every part needs to know."
    def __init__(self, out, smoke=False, steps=10, peer_script=None):
        import torch
        self.out, self.smoke, self.peer_script = Path(out), smoke, peer_script
        self.out.mkdir(parents=True, exist_ok=True)
        self.cuda = torch.cuda.is_available() and not smoke
        self.device = "cuda" if self.cuda else "cpu"
        self.name = torch.cuda.get_device_name(0) if self.cuda else f"CPU ({torch.get_num_threads()} threads)"
        self.scale = "tiny" if smoke else "real"
        self.steps = 1 if smoke else steps
        self.res = (64, 96) if smoke else (512, 768, 1024)      # smoke: every code path once, at the smallest sizes
        self.date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        self.tmp = Path(tempfile.mkdtemp(prefix="zimage-gpu-suite-"))
        from zimage_nb.hardware import detect_hardware, KNOWN_GPUS
        self.profile = detect_hardware() if self.cuda else KNOWN_GPUS["A100"]   # the planner's speed estimate needs a GPU: smoke rows use an A100's

    def row(self, part, **kw):
        r = dict(part=part, device=self.name, date=self.date, smoke=self.smoke, **kw)
        with open(self.out / "results.jsonl", "a") as f: f.write(json.dumps(r, default=str) + "\n")
        short = {k: (f"{v / GIB:.2f} GiB" if k in ("alloc", "reserved", "tensors", "vram_after", "rss_peak", "released_bytes") and isinstance(v, (int, float)) else v)
                 for k, v in r.items() if k not in ("device", "date", "smoke")}
        log(f"  {json.dumps(short, default=str)[:400]}")
        return r

    def guarded(self, part, fn, **ctx):
        "Run one measurement; a failure becomes a row with the error, and the suite goes on."
        try: return fn()
        except Exception as e:
            self.row(part, error=f"{type(e).__name__}: {e}"[:600], **ctx)
            log(traceback.format_exc(limit=4))
        finally: self.free()

    def free(self):
        import torch
        gc.collect()
        if self.cuda: torch.cuda.empty_cache(); torch.cuda.reset_peak_memory_stats()


def log(msg):
    print(msg, flush=True)
    if LOG: 
        with open(LOG, "a") as f: f.write(msg + "\n")
LOG = None


def environment(s):
    import torch, diffusers, transformers, peft, accelerate, bitsandbytes
    from zimage_nb.hardware import detect_hardware, _pcie_link
    env = dict(device=s.name, date=s.date, smoke=s.smoke, command=" ".join(sys.argv), python=platform.python_version(),
               torch=torch.__version__, cuda=torch.version.cuda, diffusers=diffusers.__version__, transformers=transformers.__version__,
               peft=peft.__version__, accelerate=accelerate.__version__, bitsandbytes=bitsandbytes.__version__,
               hardware=str(detect_hardware()), pcie_link=_pcie_link(0) if s.cuda else None, cpu=platform.processor() or platform.machine())
    try:
        import zimage_nb; env["zimage_nb"] = zimage_nb.__version__
        env["git"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=HERE).stdout.strip()
    except Exception: pass
    return env


# ---------------------------------------------------------------- parts

def part_h2d(s):
    "Pinned host -> device copy rate (GB/s) against the link's nominal rate."
    import torch
    from zimage_nb.hardware import _pcie_link, PCIE_LANE_GBPS
    n = (256 if s.cuda else 16) * MIB
    src = torch.empty(n, dtype=torch.uint8)
    if s.cuda: src = src.pin_memory()
    dst = torch.empty(n, dtype=torch.uint8, device=s.device)
    for _ in range(3): dst.copy_(src, non_blocking=True)
    if s.cuda: torch.cuda.synchronize()
    t0, reps = time.perf_counter(), 20
    for _ in range(reps): dst.copy_(src, non_blocking=True)
    if s.cuda: torch.cuda.synchronize()
    gbps = n * reps / (time.perf_counter() - t0) / 1e9
    link = _pcie_link(0) if s.cuda else None
    s.row("h2d", gbps=round(gbps, 2), bytes=n, link=link, nominal_gbps=round(PCIE_LANE_GBPS.get(link[0], 0) * link[1], 2) if link else None)

def _load_child(folder, single_file, device):
    "In a fresh process: stream the transformer into NF4 on `device`; print wall time, host RAM peak, VRAM after."
    import torch
    from zimage_nb.core import peak_rss
    from zimage_nb.models import load_transformer
    from zimage_nb.weights import weight_report
    t0 = time.time()
    with peak_rss() as m:
        tr = load_transformer(folder, "nf4", torch.bfloat16, device, single_file=single_file or None, progress=False)
        if device == "cuda": torch.cuda.synchronize()
    print(json.dumps(dict(seconds=round(time.time() - t0, 2), rss_peak=m.extra, quantized_layers=weight_report(tr)["quantized_layers"],
                          vram_after=torch.cuda.memory_allocated() if device == "cuda" else None)))

def part_load(s):
    from load_peak_ram import write_checkpoint
    scale = "tiny" if s.smoke else "real"
    for layout in ("original", "diffusers"):
        def one():
            folder = s.tmp / f"load-{layout}"
            t0 = time.time(); path = write_checkpoint(folder, scale, layout); wrote = time.time() - t0
            out = subprocess.run([sys.executable, __file__, "--_load", str(folder), str(path) if layout == "original" else "", s.device],
                                 capture_output=True, text=True, timeout=600)
            if out.returncode: raise RuntimeError(out.stderr[-800:])
            r = json.loads(out.stdout.strip().splitlines()[-1])
            s.row("load", layout="single file (original keys)" if layout == "original" else "diffusers folder", file_bytes=path.stat().st_size,
                  write_s=round(wrote, 1), **r)
            import shutil; shutil.rmtree(folder, ignore_errors=True)
        s.guarded("load", one, layout=layout)

def _train_row(s, part, quant, res, compute, offload=0, prefetch=True, timed=None, run_kw=None, **extra):
    """One training row through bench/train_memory.py's engine run, with FLOPs, MFU and the planner's estimate beside it
    (`planner_vram`: peak reserved VRAM with the calibration in use; `planner_s`: s/step on this device)."""
    import train_memory as TM
    from zimage_nb.planner import row_config, step_flops, transformer_shape, peak_tflops, estimate_training
    from zimage_nb.tiny import TINY_TRANSFORMER
    r = TM.run_one(s.scale, None, quant, res, True, offload, 1, s.device, compute=compute, prefetch=prefetch,
                   timed=s.steps if timed is None else timed, **(run_kw or {}))
    tcfg = TINY_TRANSFORMER if s.smoke else None
    flops = step_flops(row_config(dict(r, offload=offload)), transformer_shape(tcfg))
    r["s_per_step"] = r.pop("s_per_it")
    mfu = flops / (r["s_per_step"] * peak_tflops(s.name) * 1e12) if s.cuda else None
    est = estimate_training(row_config(dict(r, offload=offload)), s.profile, tcfg)
    return s.row(part, **r, flops=flops, mfu=round(mfu, 4) if mfu else None, planner_vram=est.vram, planner_s=round(est.seconds_per_step, 4), **extra)

def part_train(s, quant):
    for compute in ("bf16", "fp16-safe"):
        for res in s.res:
            s.guarded("train", lambda: _train_row(s, "train", quant, res, compute), quant=quant, res=res, compute=compute)

def part_cards(s, cards=("T4", "3060-12G", "3080-10G"), timed=None):
    import torch
    from zimage_nb.config import preset
    from zimage_nb.hardware import KNOWN_GPUS
    from zimage_nb.planner import apply_suggestions, suggest_settings
    for card in cards:
        hw = KNOWN_GPUS[card]
        cfg = apply_suggestions(preset(), suggest_settings(hw))
        res = max(cfg.datasets[0].resolutions) if not s.smoke else s.res[0]
        compute = cfg.quantization.compute if cfg.quantization.compute != "auto" else "bf16"
        off = cfg.advanced.offload_resident if cfg.advanced.train_offload else 0
        def one():
            if s.cuda: torch.cuda.set_per_process_memory_fraction(min(1.0, hw.vram_gb * GIB / torch.cuda.get_device_properties(0).total_memory))
            try: _train_row(s, "cards", cfg.quantization.transformer, res, compute, off, timed=timed, card=card, cap_gib=hw.vram_gb, ok=True)
            except torch.cuda.OutOfMemoryError as e:
                s.row("cards", card=card, cap_gib=hw.vram_gb, quant=cfg.quantization.transformer, res=res, compute=compute, offload=off, ok=False, error=f"out of memory: {e}"[:300])
            finally:
                if s.cuda: torch.cuda.set_per_process_memory_fraction(1.0)
        s.guarded("cards", one, card=card)

def part_offload(s):
    import torch
    from zimage_nb.config import preset
    from zimage_nb.hardware import KNOWN_GPUS
    from zimage_nb.planner import apply_suggestions, suggest_settings
    for res in (s.res[0],) if s.smoke else (s.res[0], s.res[-1]):
        for off, prefetch in ((0, True), (2, True), (2, False)) if s.smoke else ((0, True), (2, True), (2, False), (1, True)):
            s.guarded("offload", lambda: _train_row(s, "offload", "nf4", res, "bf16", off, prefetch), res=res, offload=off, prefetch=prefetch)
    for card, res in (("2060-6G", s.res[-1]), ("3050L-4G", s.res[0])):          # the cards offload is for, emulated
        hw = KNOWN_GPUS[card]
        cfg = apply_suggestions(preset(datasets__0__resolutions=[res]), suggest_settings(hw, preset(datasets__0__resolutions=[res])))
        cfg.datasets[0].resolutions, cfg.advanced.train_offload = [res], True
        compute = "fp16-safe" if not hw.bf16 else "bf16"
        def one():
            if s.cuda: torch.cuda.set_per_process_memory_fraction(min(1.0, hw.vram_gb * GIB / torch.cuda.get_device_properties(0).total_memory))
            try: _train_row(s, "offload", "nf4", res, compute, cfg.advanced.offload_resident, card=card, cap_gib=hw.vram_gb, ok=True)
            except torch.cuda.OutOfMemoryError as e: s.row("offload", card=card, res=res, ok=False, error=f"out of memory: {e}"[:300])
            finally:
                if s.cuda: torch.cuda.set_per_process_memory_fraction(1.0)
        s.guarded("offload", one, card=card)
    s.guarded("offload", lambda: _offload_equal(s), check="same LoRA with and without offload on this device")

def _offload_equal(s):
    "The tiny model trained 4 steps on this device with and without offload: the LoRAs, and no host reads."
    import zimage_nb.train as T
    from zimage_nb.tiny import write_demo_dataset
    from zimage_nb.config import preset
    from zimage_nb.lora import trained_state
    from zimage_nb.offload import OffloadCheck
    d = s.tmp / "offload-equal"; data = write_demo_dataset(d / "photos", n=4)
    compute = "bf16" if s.cuda else "fp32"
    cfg = lambda name, **kw: preset("tiny", job__output_dir=str(d / "runs"), job__name=name, datasets__0__path=str(data), quantization__compute=compute,
                                    training__steps=100, sample__every=0, **kw)
    plain = T.train(cfg("plain"), work=d / "work", until=4, device=s.device, progress=False)
    off = T.train(cfg("off", advanced__train_offload=True, advanced__offload_resident=1), work=d / "work", until=4, device=s.device, progress=False)
    a, b = trained_state(plain["run"].transformer), trained_state(off["run"].transformer)
    diff = max(float((a[k] - b[k]).abs().max()) for k in a)
    with OffloadCheck(off["run"].offload) as chk: T.train_step(off["run"])
    s.row("offload", check="tiny model, 4 steps: LoRA with offload vs without; one more step watched by OffloadCheck",
          max_abs_diff=diff, equal=diff == 0.0, host_reads=len(chk.violations), max_resident=chk.max_resident)

def part_infer(s, variants=None, repeat=2):
    import torch
    import inference_latency as IL
    from zimage_nb.config import SAMPLING
    from zimage_nb.sample import fit_small_gpu
    res, dtype = (s.res[-1], torch.bfloat16) if not s.smoke else (64, torch.float32)
    variants = variants or ([("nf4", "none"), ("nf4", "model"), ("nf4", "group"), ("bf16", "none")] if not s.smoke else [("nf4", "none"), ("nf4", "group")])
    for quant, offload in variants:
        def one():
            p = IL.pipeline(s.scale, quant, s.device, dtype)
            done = fit_small_gpu(p, offload, False, s.device) if offload != "none" else []
            for name in ("turbo", "non-accelerated"):
                steps, cfg = SAMPLING[name]["steps"], SAMPLING[name]["cfg_scale"]
                if s.cuda: torch.cuda.synchronize(); torch.cuda.reset_peak_memory_stats()
                sec, calls = IL.time_one(p, res, steps, cfg, s.device, dtype, 1 if s.smoke else repeat)
                s.row("infer", quant=quant if not s.smoke else "fp32 (tiny)", offload=offload, applied=done, res=res, setting=name, steps=steps,
                      cfg_scale=cfg, calls=calls, s_per_image=round(sec, 3), peak_alloc=torch.cuda.max_memory_allocated() if s.cuda else None,
                      peak_reserved=torch.cuda.max_memory_reserved() if s.cuda else None)
        s.guarded("infer", one, quant=quant, offload=offload)

def _real_model_folder(folder):
    "A diffusers folder with a real-size Qwen3-4B text encoder and VAE (random weights, written tensor by tensor), the tiny model's tokenizer and scheduler."
    import shutil, torch
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKL
    from transformers import Qwen3Config, Qwen3Model
    from safetensors.torch import save_file
    import inference_latency as IL
    from zimage_nb.models import tiny_model_folder
    from zimage_nb.planner import QWEN3_4B
    tiny = tiny_model_folder()
    for part in ("tokenizer", "scheduler"): shutil.copytree(tiny / part, folder / part, dirs_exist_ok=True)
    shutil.copy(tiny / "model_index.json", folder / "model_index.json")
    te = folder / "text_encoder"; te.mkdir(parents=True, exist_ok=True)
    cfg = Qwen3Config(**QWEN3_4B); cfg.save_pretrained(te)
    with init_empty_weights(): m = Qwen3Model(cfg)
    g = torch.Generator().manual_seed(0)
    shard, n, size = {}, 0, 0
    for k, p in m.state_dict().items():
        shard[k] = (torch.randn(p.shape, generator=g) * 0.02 if p.dim() > 1 else torch.ones(p.shape)).to(torch.bfloat16); size += shard[k].nbytes
        if size > 2 * GIB: save_file(shard, str(te / f"model-{n:05d}.safetensors")); shard, size, n = {}, 0, n + 1
    if shard: save_file(shard, str(te / f"model-{n:05d}.safetensors"))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0); AutoencoderKL(**IL.REAL_VAE).save_pretrained(folder / "vae")
    return folder

def part_cache(s):
    import torch
    from PIL import Image
    from zimage_nb.cache import build_caches
    from zimage_nb.data import prepare_dataset
    from zimage_nb.models import tiny_model_folder
    def one():
        folder = tiny_model_folder() if s.smoke else _real_model_folder(s.tmp / "real-model")
        res = 64 if s.smoke else 1024
        imgs = s.tmp / "cache-images"; imgs.mkdir(exist_ok=True)
        for i in range(3):
            Image.new("RGB", (res, res), (40 * i, 90, 200 - 40 * i)).save(imgs / f"{i}.png"); (imgs / f"{i}.txt").write_text(f"a test image number {i}")
        rep = prepare_dataset(imgs, s.tmp / "cache-work", [res], progress=False)
        dtype = torch.bfloat16 if s.cuda else torch.float32
        if s.cuda: torch.cuda.synchronize()
        base = torch.cuda.memory_allocated() if s.cuda else None
        t0 = time.time()
        c = build_caches([rep], folder, s.tmp / "cache-work", ["a sample prompt"], "nf4", dtype, s.device, progress=False)
        peak = torch.cuda.max_memory_allocated() if s.cuda else None
        after = torch.cuda.memory_allocated() if s.cuda else None
        s.row("cache", seconds=round(time.time() - t0, 1), released=c["released"], baseline=base, after=after, peak_alloc=peak,
              released_bytes=(after - base) if s.cuda else None, ok=c["released"] and (not s.cuda or after - base <= 64 * MIB))
    s.guarded("cache", one)

def part_peer(s):
    "diffusers' Z-Image LoRA example on the same kind of random-weight folder, NF4 through its bitsandbytes config, rank 16."
    if s.smoke or not s.peer_script or not Path(s.peer_script).exists():
        s.row("peer", skipped="no copy of diffusers' examples/dreambooth/train_dreambooth_lora_z_image.py given (--peer-script)" if not s.smoke else "smoke run"); return
    def one():
        from load_peak_ram import write_checkpoint
        folder = s.tmp / "peer-model"
        if not (folder / "text_encoder").exists(): _real_model_folder(folder)
        write_checkpoint(folder, "real", "diffusers")
        data = s.tmp / "peer-data"; data.mkdir(exist_ok=True)
        from PIL import Image
        for i in range(4): Image.new("RGB", (1024, 1024), (50 * i, 100, 150)).save(data / f"{i}.png")
        (s.tmp / "bnb.json").write_text(json.dumps(dict(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype="bfloat16")))
        for res in (512, 1024):
            args = [s.peer_script, f"--pretrained_model_name_or_path={folder}", f"--instance_data_dir={data}", f"--output_dir={s.tmp / 'peer-out'}",
                    "--instance_prompt=a photo of sks dog", f"--resolution={res}", "--train_batch_size=1", "--gradient_checkpointing", "--cache_latents",
                    "--mixed_precision=bf16", "--rank=16", "--use_8bit_adam", "--optimizer=adamW", "--learning_rate=1e-4", "--max_train_steps=12",
                    f"--bnb_quantization_config_path={s.tmp / 'bnb.json'}", "--seed=0", "--report_to=tensorboard"]
            wrapper = ("import json, runpy, sys, time, atexit, torch\n"
                       "from torch.optim.optimizer import register_optimizer_step_post_hook\n"
                       "ts = []; register_optimizer_step_post_hook(lambda *a: ts.append(time.perf_counter()))\n"
                       "atexit.register(lambda: print('PEER ' + json.dumps(dict(steps=ts, reserved=torch.cuda.max_memory_reserved(), alloc=torch.cuda.max_memory_allocated()))))\n"
                       "sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')\n")
            out = subprocess.run([sys.executable, "-c", wrapper, *args], capture_output=True, text=True, timeout=540)
            line = next((l for l in out.stdout.splitlines() if l.startswith("PEER ")), None)
            if not line: raise RuntimeError(f"the peer script did not finish: {out.stderr[-800:]}")
            r = json.loads(line[5:]); d = [b - a for a, b in zip(r["steps"], r["steps"][1:])][1:]
            s.row("peer", script="diffusers train_dreambooth_lora_z_image.py", res=res, quant="nf4", rank=16, steps=len(r["steps"]),
                  s_per_step=statistics.median(d) if d else None, reserved=r["reserved"], alloc=r["alloc"], returncode=out.returncode)
    s.guarded("peer", one)

RUN = {"h2d": part_h2d, "load": part_load, "train-nf4": lambda s: part_train(s, "nf4"), "train-bf16": lambda s: part_train(s, "bf16"),
       "cards": part_cards, "offload": part_offload, "infer": part_infer, "cache": part_cache, "peer": part_peer}


# ---------------------------------------------------------------- report and calibration

def read_rows(folder):
    f = Path(folder) / "results.jsonl"
    return [json.loads(l) for l in f.read_text().splitlines() if l.strip()] if f.exists() else []

def _g(b): return f"{b / GIB:.2f}" if isinstance(b, (int, float)) else "—"

def goals(rows):
    "The issue's goals, each with the measured value (None where the rows lack it)."
    tr = {(r["quant"], r["res"], r.get("compute")): r for r in rows if r["part"] == "train" and "error" not in r}
    off = {(r["res"], r.get("offload"), r.get("prefetch")): r for r in rows if r["part"] == "offload" and "card" not in r and "check" not in r and "error" not in r}
    lo, hi = min((k[1] for k in tr), default=None), max((k[1] for k in tr), default=None)
    g = []
    def add(name, value, ok): g.append(dict(goal=name, value=value, ok=ok))
    for res, bound in ((lo, 6), (hi, 8)):
        r = tr.get(("nf4", res, "bf16"))
        add(f"NF4 rank 16 peak reserved at {res}² ≤ {bound} GiB", r and r.get("reserved") and _g(r["reserved"]), r and r.get("reserved") and r["reserved"] <= bound * GIB)
    for res, bound in ((lo, 4), (hi, 5)):
        r = off.get((res, 2, True))
        add(f"NF4 rank 16 with training offload (2 resident) peak reserved at {res}² ≤ {bound} GiB", r and r.get("reserved") and _g(r["reserved"]),
            r and r.get("reserved") and r["reserved"] <= bound * GIB)
    r = tr.get(("nf4", hi, "bf16"))
    fast = r and r.get("device") and any(k in r["device"] for k in ("H100", "H200"))
    add(f"on an H100/H200, NF4 rank 16 at {hi}² ≤ 1.0 s/step", fast and f"{r['s_per_step']:.3f} s", fast and r["s_per_step"] <= 1.0)
    for res in (lo, hi):
        a, b = tr.get(("nf4", res, "bf16")), tr.get(("bf16", res, "bf16"))
        ratio = a and b and a["s_per_step"] / b["s_per_step"]
        add(f"NF4 step ≤ 1.5× the bf16 step at {res}²", ratio and f"{ratio:.2f}×", ratio and ratio <= 1.5)
    r = tr.get(("bf16", hi, "bf16"))
    add(f"MFU of the bf16 step at {hi}² ≥ 35%", r and r.get("mfu") and f"{r['mfu']:.1%}", r and r.get("mfu") and r["mfu"] >= 0.35)
    for res in sorted({k[0] for k in off}):
        a, b = off.get((res, 0, True)), off.get((res, 2, True))
        ratio = a and b and b["s_per_step"] / a["s_per_step"]
        add(f"training offload (2 resident, prefetch) ≤ 1.3× the step without at {res}²", ratio and f"{ratio:.2f}×", ratio and ratio <= 1.3)
    measured = [r for r in rows if r.get("reserved") and r.get("planner_vram") and r["part"] in ("train", "offload", "cards") and "error" not in r]
    worst = max((abs(r["planner_vram"] / r["reserved"] - 1) for r in measured), default=None)
    add("the planner within 15% of measured peak reserved VRAM on every training row", worst is not None and f"worst {worst:.0%} over {len(measured)} rows",
        worst is not None and worst <= 0.15)
    c = next((r for r in rows if r["part"] == "cache" and "error" not in r), None)
    add("VRAM back at its baseline after build_caches (≤ 64 MiB)", c and c.get("released_bytes") is not None and f"{c['released_bytes'] / MIB:+.0f} MiB", c and c.get("ok"))
    return g

def report(folder):
    "Markdown tables of a results folder."
    rows, env = read_rows(folder), json.loads((Path(folder) / "env.json").read_text()) if (Path(folder) / "env.json").exists() else {}
    L = [f"Device: {env.get('device', '?')}; {env.get('date', '?')}; torch {env.get('torch')} (CUDA {env.get('cuda')}), diffusers {env.get('diffusers')}, "
         f"transformers {env.get('transformers')}, peft {env.get('peft')}, bitsandbytes {env.get('bitsandbytes')}; zimage-nb {env.get('zimage_nb')} ({env.get('git')}). "
         f"Command: `{env.get('command', '?')}`" + (" **(smoke run on the CPU at tiny scale: not a GPU measurement)**" if env.get("smoke") else ""), ""]
    errs = [r for r in rows if "error" in r]
    def table(title, head, keep, cells):
        sel = [r for r in rows if keep(r) and "error" not in r]
        if not sel: return
        L.extend([f"**{title}**", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)])
        L.extend("| " + " | ".join(str(c) for c in cells(r)) + " |" for r in sel); L.append("")
    table("Copy rate, pinned host → GPU", ["GB/s", "link (gen, lanes)", "nominal GB/s", "share"], lambda r: r["part"] == "h2d",
          lambda r: [r["gbps"], r.get("link"), r.get("nominal_gbps"), f"{r['gbps'] / r['nominal_gbps']:.0%}" if r.get("nominal_gbps") else "—"])
    table("Loading the transformer into NF4 on the device", ["source", "file GiB", "wall s", "host RAM peak GiB", "VRAM after GiB", "4-bit layers"], lambda r: r["part"] == "load",
          lambda r: [r["layout"], _g(r["file_bytes"]), r["seconds"], _g(r["rss_peak"]), _g(r.get("vram_after")), r["quantized_layers"]])
    table("Training step (rank 16, batch 1, 128 caption tokens, gradient checkpointing, AdamW8bit)",
          ["base", "compute", "res", "tensors GiB", "peak allocated GiB", "peak reserved GiB", "planner GiB", "s/step", "MFU", "skipped steps"], lambda r: r["part"] == "train",
          lambda r: [r["quant"], r["compute"], r["res"], _g(r["tensors"]), _g(r.get("alloc")), _g(r.get("reserved")), _g(r.get("planner_vram")), f"{r['s_per_step']:.3f}",
                     f"{r['mfu']:.1%}" if r.get("mfu") else "—", r.get("skipped", 0)])
    table("Small cards emulated (memory capped): the default preset after suggest_settings", ["card", "cap GiB", "base", "compute", "res", "offload", "trained", "peak reserved GiB", "planner GiB", "s/step"],
          lambda r: r["part"] == "cards", lambda r: [r["card"], r["cap_gib"], r.get("quant"), r.get("compute"), r.get("res"), r.get("offload") or "off", "yes" if r.get("ok") else "**out of memory**",
                                                     _g(r.get("reserved")), _g(r.get("planner_vram")), f"{r['s_per_step']:.3f}" if r.get("s_per_step") else "—"])
    table("Training offload (NF4)", ["res", "resident blocks", "prefetch", "card (cap)", "peak reserved GiB", "tensors GiB", "s/step", "block copies / step"],
          lambda r: r["part"] == "offload" and "check" not in r,
          lambda r: [r.get("res"), r.get("offload") or "off", r.get("prefetch", "—") if r.get("offload") else "—", f"{r['card']} ({r['cap_gib']})" if r.get("card") else "—",
                     _g(r.get("reserved")), _g(r.get("tensors")), f"{r['s_per_step']:.3f}" if r.get("s_per_step") else "—", round(r.get("copies_per_step", 0), 1)])
    table("Training offload: correctness on this device", ["check", "max |ΔLoRA|", "host reads", "most blocks on the device"], lambda r: r["part"] == "offload" and "check" in r,
          lambda r: [r["check"], r["max_abs_diff"], r["host_reads"], r["max_resident"]])
    table("Inference (cached prompt embeddings; VAE decode included)", ["base", "sampling offload", "res", "setting", "transformer calls", "s / image", "peak reserved GiB"],
          lambda r: r["part"] == "infer", lambda r: [r["quant"], r["offload"], r["res"], f"{r['setting']} ({r['steps']} steps, CFG {r['cfg_scale']:g})", r["calls"], r["s_per_image"], _g(r.get("peak_reserved"))])
    table("VRAM after caching (text encoder and VAE released)", ["seconds", "released (weak refs)", "allocated after − before", "ok"], lambda r: r["part"] == "cache",
          lambda r: [r["seconds"], r["released"], f"{r['released_bytes'] / MIB:+.1f} MiB" if r.get("released_bytes") is not None else "—", r["ok"]])
    table("Peer: diffusers' Z-Image LoRA example (NF4, rank 16, checkpointing, cached latents)", ["res", "s/step", "peak reserved GiB"], lambda r: r["part"] == "peer" and "skipped" not in r,
          lambda r: [r["res"], f"{r['s_per_step']:.3f}" if r.get("s_per_step") else "—", _g(r.get("reserved"))])
    for r in rows:
        if r["part"] == "peer" and "skipped" in r: L.extend([f"Peer: skipped ({r['skipped']}).", ""])
    L.extend(["**Goals**", "", "| goal | measured | met |", "|---|---|---|"])
    L.extend(f"| {x['goal']} | {x['value'] or 'not measured'} | {'yes' if x['ok'] else ('no' if x['value'] else '—')} |" for x in goals(rows))
    if errs: L.extend(["", "**Failed measurements**", ""] + [f"- {r['part']}: {r['error']}" for r in errs])
    return "\n".join(L) + "\n"

BEGIN, END = "<!-- gpu-suite:begin -->", "<!-- gpu-suite:end -->"

def update_results_md(folder, md=HERE / "RESULTS.md"):
    "Put the report between the gpu-suite markers of bench/RESULTS.md (a new section at the top if there are none)."
    text, body = md.read_text(), f"{BEGIN}\n## GPU suite (`bench/gpu_suite.py`)\n\n{report(folder)}{END}"
    if BEGIN in text: text = text[:text.index(BEGIN)] + body + text[text.index(END) + len(END):]
    else:
        head, _, rest = text.partition("\n## "); text = f"{head}\n{body}\n\n## {rest}"
    md.write_text(text)

def calibrate(folder, write=True):
    "Fit the planner to the rows; write zimage_nb/assets/cuda_calibration.json (never from a smoke run)."
    from zimage_nb.planner import calibrate_cuda
    rows = read_rows(folder)
    cal = calibrate_cuda([r for r in rows if "error" not in r and r.get("ok", True)])
    print(json.dumps({k: v for k, v in cal.items()}, indent=1, default=str))
    if any(r.get("smoke") for r in rows): print("smoke rows: not written (they are not a GPU measurement)"); return cal
    if write and cal["ok"]:
        path = HERE.parent / "zimage_nb" / "assets" / "cuda_calibration.json"
        path.write_text(json.dumps({k: v for k, v in cal.items() if k not in ("ok",)}, indent=1) + "\n"); print(f"wrote {path}")
    elif write: print(f"worst row error {cal['worst']:.1%} is over the bound: not written")
    return cal


def main(argv=None):
    global LOG
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--part", nargs="+", choices=PARTS, help="parts to run (default: all)")
    ap.add_argument("--group", nargs="+", choices=list(GROUPS), help="groups of parts, each within 10 min on an H100: " + "; ".join(f"{k}: {' '.join(v)}" for k, v in GROUPS.items()))
    ap.add_argument("--out", default="gpu-suite-results", help="results folder (rows are appended)")
    ap.add_argument("--smoke", action="store_true", help="tiny scale on the CPU: the same code paths, for the tests")
    ap.add_argument("--steps", type=int, default=10, help="timed training steps per row (after one warm-up)")
    ap.add_argument("--peer-script", help="a copy of diffusers' examples/dreambooth/train_dreambooth_lora_z_image.py")
    ap.add_argument("--report", metavar="DIR", help="write DIR/table.md from DIR's rows (and print it)")
    ap.add_argument("--update-results", action="store_true", help="with --report: also put the tables into bench/RESULTS.md")
    ap.add_argument("--calibrate", metavar="DIR", help="fit the planner to DIR's rows")
    ap.add_argument("--_load", nargs=3, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a._load: return _load_child(*a._load)
    if a.report:
        md = report(a.report); (Path(a.report) / "table.md").write_text(md); print(md)
        if a.update_results: update_results_md(a.report)
        return
    if a.calibrate: calibrate(a.calibrate); return
    import torch
    if not a.smoke and not torch.cuda.is_available(): sys.exit("no CUDA GPU: run with --smoke for the CPU check, or on a GPU")
    s = Suite(a.out, a.smoke, a.steps, a.peer_script)
    LOG = s.out / "log.txt"
    parts = list(a.part or []) + [p for g in (a.group or []) for p in GROUPS[g]]
    parts = [p for p in PARTS if p in parts] if parts else list(PARTS)
    env = environment(s); (s.out / "env.json").write_text(json.dumps(env, indent=1))
    log(f"gpu suite on {s.name} ({'smoke, tiny scale' if s.smoke else 'real size'}): {', '.join(parts)}")
    for p in parts:
        t0 = time.time(); log(f"== {p}")
        s.guarded(p, lambda: RUN[p](s))
        log(f"== {p}: {time.time() - t0:.0f} s")
    (s.out / "table.md").write_text(report(s.out))

if __name__ == "__main__": main()
