"""Training-step memory and speed: the zimage-nb engine's `train_step` on a Z-Image transformer built straight into
NF4/bf16 with random weights (no checkpoint file), rank-16 LoRA on the default targets, batch 1 (--batch), 128 cached caption
tokens, AdamW8bit.

    python bench/train_memory.py --scale real --res 512 1024 --quant nf4 bf16 --offload 0 2       # on a CUDA GPU
    python bench/train_memory.py --scale real --layers 1 2 --res 512 1024                        # CPU, tensor accounting
    python bench/train_memory.py --scale tiny --res 64 128                                       # anywhere

Every row measures, after one warm-up step (so the optimizer state exists):
- persistent tensors on the device: transformer weights (4-bit codes + scales; with training offload only what stays on
  the device between steps), LoRA weights, optimizer state;
- the peak of the tensors created during one step (activations, gradients, dequantized weights, blocks copied in by the
  offloader, temporaries), counted by `zimage_nb.planner.TensorPeak` on any device: their sum is what CUDA's
  `max_memory_allocated` counts, less the caching allocator's rounding and cuBLAS workspace;
- on CUDA also peak allocated / reserved VRAM as the driver's allocator reports them;
- median s/it, and the planner's estimate of the same tensors for the same transformer config.
`--offload K` trains with `advanced.train_offload` and K resident blocks (0 = off); the blocks are sent back to host
memory before the measured step, so everything the step brings in is counted.
`--layers` builds the real-width model with fewer main layers (the two + two refiner layers stay): the memory of a
checkpointed model is linear in the layer count, so two counts give the 30-layer value (printed as "extrapolated").
"""
import argparse, json, statistics, time
import torch
from accelerate import init_empty_weights
from diffusers import ZImageTransformer2DModel
from zimage_nb.config import preset
from zimage_nb.weights import quantize_linears, place_tensor
from zimage_nb.arch import BLOCK_LISTS
from zimage_nb.planner import estimate_training, measured_parts, TensorPeak, GUESS
from zimage_nb.tiny import TINY_TRANSFORMER
import zimage_nb.train as T

GIB = 2**30

def random_transformer(config, quant, dtype, device, seed=0):
    "The transformer on `device` with random weights, quantized while placed (never a full-precision copy)."
    with init_empty_weights(include_buffers=False): m = ZImageTransformer2DModel(**config)
    quantize_linears(m, quant, dtype, BLOCK_LISTS)
    g = torch.Generator(device).manual_seed(seed)      # made on the device: a real-size model is built in seconds on a GPU
    for name, p in list(m.named_parameters()):
        v = torch.randn(p.shape, generator=g, dtype=torch.float32, device=device) * 0.02 if p.dim() > 1 else torch.ones(p.shape, device=device)
        place_tensor(m, name, v.to(torch.bfloat16), device, dtype); del v
    return m.eval().requires_grad_(False)

def bench_config(scale, quant, res, ckpt, offload, compute, batch=1, rank=16, prefetch=True):
    "The run's config: `offload` = resident blocks (0 = no training offload); compute bf16 | fp16-safe | fp32."
    return preset("tiny" if scale == "tiny" else "turbo-adapter-v2", datasets__0__path="x", datasets__0__resolutions=[res],
                  target__rank=rank, target__alpha=float(rank), quantization__transformer=quant, quantization__compute=compute,
                  model__training_adapter="", training__caption_dropout=0.0, training__gradient_checkpointing=ckpt,
                  advanced__train_offload=bool(offload), advanced__offload_resident=max(1, offload), advanced__offload_prefetch=prefetch,
                  training__batch_size=batch)

def default_compute(scale, device): return "bf16" if device.startswith("cuda") or scale == "real" else "fp32"

def fake_run(cfg, tr, device, res, batch, cap=128):
    "A Run with the engine's training attached to `tr`, on random cached latents and caption embeddings."
    from zimage_nb.models import compute_dtype
    run = T.Run(cfg, None, None, device, compute_dtype(cfg.quantization.compute, device))
    T.attach_training(run, tr)
    h = w = res // 8
    run.latents = {f"lat{i}": torch.randn(16, h, w) for i in range(batch)}
    run.texts = {"t": torch.randn(cap, tr.config.cap_feat_dim), "": torch.randn(1, tr.config.cap_feat_dim)}
    run.items = [T.Item(f"lat{i}", "t", (h, w), f"f{i}", res, 0) for i in range(batch)]; run.plan = T.BatchPlan(run.items, batch, 0); run.empty = ""
    return run

def run_one(scale, layers, quant, res, ckpt, offload, steps, device, batch=1, cap=128, compute=None, rank=16, prefetch=True, timed=0,
            on_step=None, after=None):
    """Build, warm up, then `timed` steps timed without the tensor counter (its per-operation Python hook slows a GPU)
    and `steps` steps counted by `TensorPeak` (timed too when `timed` is 0); one row (bytes, seconds, every step's loss).
    `on_step(run, n)` is called after the n-th step (the warm-up is step 1); `after(run)` before the model is freed, and
    what it returns joins the row."""
    tcfg = TINY_TRANSFORMER if scale == "tiny" else ({} if layers in (None, 30) else dict(n_layers=layers))
    compute = compute or default_compute(scale, device)
    cfg = bench_config(scale, quant, res, ckpt, offload, compute, batch, rank, prefetch)
    cuda = device.startswith("cuda")
    if cuda: torch.cuda.empty_cache(); torch.cuda.reset_peak_memory_stats()
    from zimage_nb.models import compute_dtype
    tr = random_transformer(tcfg, quant, compute_dtype(compute, device), device)
    run = fake_run(cfg, tr, device, res, batch, cap)
    losses = []
    def one():
        losses.append(T.train_step(run)["loss"])
        if on_step: on_step(run, len(losses))
    one()                                              # warm-up: optimizer state created
    if run.offload: run.offload.evict_all()
    parts = measured_parts(tr, run.params, run.optimizer, run.offload)
    persistent = sum(parts.values())
    times = []
    if cuda: torch.cuda.synchronize(); torch.cuda.reset_peak_memory_stats()
    def step():
        t0 = time.perf_counter(); one()
        if cuda: torch.cuda.synchronize()
        return time.perf_counter() - t0
    timed_times = [step() for _ in range(timed)]
    with TensorPeak() as tp: times = [step() for _ in range(steps)]
    times = timed_times or times
    est = estimate_training(cfg, "A100", transformer_config=tcfg, calibration=GUESS)
    row = dict(quant=quant, compute=compute, res=res, batch=batch, rank=rank, layers=tr.config.n_layers, ckpt=ckpt, offload=offload,
               persistent=persistent, step_peak=tp.peak, tensors=persistent + tp.peak, s_per_it=statistics.median(times),
               est=est.vram - est.parts["CUDA overhead"])
    if run.offload: row.update(copies_per_step=run.offload.stats()["loads"] / (steps + timed + 1), host_bytes=run.offload.host_bytes(),
                               misses=run.offload.stats()["misses"], prefetch=prefetch, resident=offload)
    row.update(skipped=run.skipped, steps=steps + timed, losses=[round(x, 5) for x in losses])
    if cuda: row.update(alloc=torch.cuda.max_memory_allocated(), reserved=torch.cuda.max_memory_reserved())
    if after: row.update(after(run))
    if run.offload: run.offload.remove(to_device=False)
    run = tr = None   # frees the model before the next row (the closures above share `run`)
    return row

def fmt(x, extrapolated=False):
    gib = lambda b: f"{b / GIB:.2f} GiB"
    err = (x["est"] - x["tensors"]) / x["tensors"]
    return (f"| {x['quant']} | {x['res']} | {x['layers']}{' (extrapolated)' if extrapolated else ''} | {'on' if x['ckpt'] else 'off'} | {x['offload'] or 'off'} "
            f"| {gib(x['persistent'])} | {gib(x['step_peak'])} | **{gib(x['tensors'])}** | {gib(x['alloc']) if 'alloc' in x else 'n/a (no CUDA)'} "
            f"| {gib(x['reserved']) if 'reserved' in x else 'n/a'} | {'—' if extrapolated else format(x['s_per_it'], '.2f')} | {gib(x['est'])} ({err:+.1%}) |")

def extrapolate(a, b, layers=30):
    "The row for `layers` main layers from two measured rows (memory linear in the layer count)."
    k = (layers - a["layers"]) / (b["layers"] - a["layers"])
    out = {f: v for f, v in a.items() if f not in ("copies_per_step", "misses", "s_per_it")} | dict(layers=layers, extrapolated=True)
    for f in ("persistent", "step_peak", "tensors", "host_bytes"):
        if f in a: out[f] = a[f] + k * (b[f] - a[f])
    s = estimate_training(bench_config("real", a["quant"], a["res"], a["ckpt"], a.get("offload", 0), a.get("compute", "bf16"), a.get("batch", 1)), "A100", calibration=GUESS)
    out["est"] = s.vram - s.parts["CUDA overhead"]
    return out

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", choices=("tiny", "real"), default="tiny")
    ap.add_argument("--layers", type=int, nargs="+", default=[None], help="real scale: main layers to build (default: all 30)")
    ap.add_argument("--res", type=int, nargs="+", default=[64, 128])
    ap.add_argument("--quant", nargs="+", default=["nf4", "bf16"])
    ap.add_argument("--ckpt", nargs="+", default=["on"], choices=("on", "off"), help="gradient checkpointing")
    ap.add_argument("--offload", type=int, nargs="+", default=[0], help="training offload: resident blocks (0 = off)")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--compute", choices=("bf16", "fp16-safe", "fp32"), help="compute (default: bf16 at real size or on a GPU, else fp32); fp16-safe = what a T4 gets")
    ap.add_argument("--json", help="also append each row, in bytes, to this JSON-lines file")
    a = ap.parse_args()
    def keep(row):
        if a.json:
            with open(a.json, "a") as f: f.write(json.dumps(row | dict(device=name)) + "\n")
        return row
    device = "cuda" if torch.cuda.is_available() else "cpu"
    name = torch.cuda.get_device_name(0) if device == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    print(f"device: {name}; scale {a.scale}; compute {a.compute or 'default'}; rank 16; batch {a.batch}; 128 caption tokens; AdamW8bit; {a.steps} measured step(s) after 1 warm-up")
    print("| quant | res | main layers | grad. ckpt | offload (resident) | persistent tensors | step peak above them | tensors at peak | peak allocated (CUDA) | peak reserved (CUDA) | s/it | planner (tensors) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for q in a.quant:
        for r in a.res:
            for c in a.ckpt:
                for o in a.offload:
                    rows = []
                    for L in a.layers:
                        rows.append(keep(run_one(a.scale, L, q, r, c == "on", o, a.steps, device, a.batch, compute=a.compute))); print(fmt(rows[-1]), flush=True)
                    if a.scale == "real" and len(rows) >= 2 and rows[-1]["layers"] != 30: print(fmt(keep(extrapolate(rows[0], rows[-1])), True), flush=True)

if __name__ == "__main__": main()
