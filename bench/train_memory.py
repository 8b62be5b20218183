"""Training-step memory and speed: the zimage-nb engine's `train_step` on a Z-Image transformer built straight into
NF4/bf16 with random weights (no checkpoint file), rank-16 LoRA on the default targets, batch 1 (--batch), 128 cached caption
tokens, AdamW8bit.

    python bench/train_memory.py --scale real --res 512 1024 --quant nf4 bf16 --offload none group   # on a CUDA GPU
    python bench/train_memory.py --scale real --layers 1 2 --res 512 1024                            # CPU, tensor accounting
    python bench/train_memory.py --scale tiny --res 64 128                                           # anywhere

Every row measures, after one warm-up step (so the optimizer state exists):
- persistent tensors: transformer weights (4-bit codes + scales), LoRA weights, optimizer state;
- the peak of the tensors created during one step (activations, gradients, dequantized weights, temporaries),
  counted by `zimage_nb.planner.TensorPeak` on any device: their sum is what CUDA's `max_memory_allocated` counts,
  less the caching allocator's rounding and cuBLAS workspace;
- on CUDA also peak allocated / reserved VRAM as the driver's allocator reports them;
- median s/it, and the planner's estimate of the same tensors for the same transformer config.
`--layers` builds the real-width model with fewer main layers (the two + two refiner layers stay): the memory of a
checkpointed model is linear in the layer count, so two counts give the 30-layer value (printed as "extrapolated").
"""
import argparse, json, statistics, time
import torch
from accelerate import init_empty_weights
from diffusers import ZImageTransformer2DModel
from zimage_nb.config import preset
from zimage_nb.models import quantize_linears, place_tensor, TRANSFORMER_BLOCKS
from zimage_nb.planner import estimate_training, measured_parts, TensorPeak
from zimage_nb.tiny import TINY_TRANSFORMER
from zimage_nb.lora import add_trainable_lora, use_adapters
import zimage_nb.train as T

GIB = 2**30

def random_transformer(config, quant, dtype, device, seed=0):
    "The transformer on `device` with random weights, quantized while placed (never a full-precision copy)."
    with init_empty_weights(include_buffers=False): m = ZImageTransformer2DModel(**config)
    quantize_linears(m, quant, dtype, TRANSFORMER_BLOCKS)
    g = torch.Generator().manual_seed(seed)
    for name, p in list(m.named_parameters()):
        v = torch.randn(p.shape, generator=g, dtype=torch.float32) * 0.02 if p.dim() > 1 else torch.ones(p.shape)
        place_tensor(m, name, v.to(torch.bfloat16), device, dtype)
    return m.eval().requires_grad_(False)

def bench_config(scale, quant, res, ckpt, offload, dtype, batch=1):
    return preset("tiny" if scale == "tiny" else "turbo-adapter-v2", datasets__0__path="x", datasets__0__resolutions=[res],
                  target__rank=16, target__alpha=16.0, quantization__transformer=quant,
                  quantization__compute="bf16" if dtype == torch.bfloat16 else "fp32", model__training_adapter="",
                  training__caption_dropout=0.0, training__gradient_checkpointing=ckpt, advanced__offload=offload,
                  training__batch_size=batch)

def run_one(scale, layers, quant, res, ckpt, offload, steps, device, batch=1, cap=128):
    tcfg = TINY_TRANSFORMER if scale == "tiny" else ({} if layers in (None, 30) else dict(n_layers=layers))
    dtype = torch.bfloat16 if device.startswith("cuda") or scale == "real" else torch.float32
    cfg = bench_config(scale, quant, res, ckpt, offload, dtype, batch)
    cuda = device.startswith("cuda")
    if cuda: torch.cuda.empty_cache(); torch.cuda.reset_peak_memory_stats()
    tr = random_transformer(tcfg, quant, dtype, device); T.one_4bit_path(tr)
    run = T.Run(cfg, None, None, device, dtype); run.transformer = tr
    torch.manual_seed(0)
    run.params = add_trainable_lora(tr, cfg.target); use_adapters(tr, {"default": 1.0})
    if ckpt: tr.enable_gradient_checkpointing()
    tr.train()
    if offload == "group" and cuda:
        tr.enable_group_offload(onload_device=torch.device(device), offload_device=torch.device("cpu"), offload_type="block_level", num_blocks_per_group=1, use_stream=True)
    run.optimizer = T.make_optimizer(run.params, cfg.training); run.scheduler = T.make_scheduler(run.optimizer, cfg.training)
    h = w = res // 8
    run.latents = {f"lat{i}": torch.randn(16, h, w) for i in range(batch)}
    run.texts = {"t": torch.randn(cap, tr.config.cap_feat_dim), "": torch.randn(1, tr.config.cap_feat_dim)}
    run.items = [T.Item(f"lat{i}", "t", (h, w), f"f{i}", res, 0) for i in range(batch)]; run.plan = T.BatchPlan(run.items, batch, 0); run.empty = ""
    T.train_step(run)                                  # warm-up: optimizer state created
    parts = measured_parts(tr, run.params, run.optimizer)
    persistent = sum(parts.values())
    times = []
    if cuda: torch.cuda.synchronize(); torch.cuda.reset_peak_memory_stats()
    with TensorPeak() as tp:
        for i in range(steps):
            t0 = time.perf_counter(); T.train_step(run)
            if cuda: torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
    est = estimate_training(cfg, "A100", transformer_config=tcfg)
    row = dict(quant=quant, res=res, batch=batch, layers=tr.config.n_layers, ckpt=ckpt, offload=offload, persistent=persistent, step_peak=tp.peak,
               tensors=persistent + tp.peak, s_per_it=statistics.median(times), est=est.vram - est.parts["workspace"])
    if cuda: row.update(alloc=torch.cuda.max_memory_allocated(), reserved=torch.cuda.max_memory_reserved())
    del run, tr
    return row

def fmt(x, extrapolated=False):
    gib = lambda b: f"{b / GIB:.2f} GiB"
    err = (x["est"] - x["tensors"]) / x["tensors"]
    return (f"| {x['quant']} | {x['res']} | {x['layers']}{' (extrapolated)' if extrapolated else ''} | {'on' if x['ckpt'] else 'off'} | {x['offload']} "
            f"| {gib(x['persistent'])} | {gib(x['step_peak'])} | **{gib(x['tensors'])}** | {gib(x['alloc']) if 'alloc' in x else 'n/a (no CUDA)'} "
            f"| {gib(x['reserved']) if 'reserved' in x else 'n/a'} | {'—' if extrapolated else format(x['s_per_it'], '.2f')} | {gib(x['est'])} ({err:+.0%}) |")

def extrapolate(a, b, layers=30):
    "The row for `layers` main layers from two measured rows (memory linear in the layer count)."
    k = (layers - a["layers"]) / (b["layers"] - a["layers"])
    out = dict(a, layers=layers, extrapolated=True)
    for f in ("persistent", "step_peak", "tensors"): out[f] = a[f] + k * (b[f] - a[f])
    s = estimate_training(bench_config("real", a["quant"], a["res"], a["ckpt"], a["offload"], torch.bfloat16, a.get("batch", 1)), "A100")
    out["est"] = s.vram - s.parts["workspace"]
    return out

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", choices=("tiny", "real"), default="tiny")
    ap.add_argument("--layers", type=int, nargs="+", default=[None], help="real scale: main layers to build (default: all 30)")
    ap.add_argument("--res", type=int, nargs="+", default=[64, 128])
    ap.add_argument("--quant", nargs="+", default=["nf4", "bf16"])
    ap.add_argument("--ckpt", nargs="+", default=["on"], choices=("on", "off"), help="gradient checkpointing")
    ap.add_argument("--offload", nargs="+", default=["none"])
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--json", help="also append each row, in bytes, to this JSON-lines file")
    a = ap.parse_args()
    def keep(row):
        if a.json:
            with open(a.json, "a") as f: f.write(json.dumps(row | dict(device=name)) + "\n")
        return row
    device = "cuda" if torch.cuda.is_available() else "cpu"
    name = torch.cuda.get_device_name(0) if device == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    print(f"device: {name}; scale {a.scale}; rank 16; batch {a.batch}; 128 caption tokens; AdamW8bit; {a.steps} measured step(s) after 1 warm-up")
    print("| quant | res | main layers | grad. ckpt | offload | persistent tensors | step peak above them | tensors at peak | peak allocated (CUDA) | peak reserved (CUDA) | s/it | planner (tensors) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for q in a.quant:
        for r in a.res:
            for c in a.ckpt:
                for o in a.offload:
                    rows = []
                    for L in a.layers:
                        rows.append(keep(run_one(a.scale, L, q, r, c == "on", o, a.steps, device, a.batch))); print(fmt(rows[-1]), flush=True)
                    if a.scale == "real" and len(rows) >= 2 and rows[-1]["layers"] != 30: print(fmt(keep(extrapolate(rows[0], rows[-1])), True), flush=True)

if __name__ == "__main__": main()
