"""Training-step memory and speed: the zimage-nb engine on a Z-Image transformer built straight into NF4/bf16
with random weights (no checkpoint file), rank-16 LoRA, batch 1, cached-embedding shapes.

    python bench/train_memory.py --scale real --res 512 1024 --quant nf4 bf16      # on a CUDA GPU
    python bench/train_memory.py --scale tiny --res 64 128 --quant nf4 bf16        # anywhere (CPU: peak RSS, no VRAM)

Prints one table row per (quant, res, offload) with peak allocated / reserved VRAM (CUDA) or peak RSS (CPU),
median s/it over --steps after --warmup, and the planner's estimate for the same settings.
"""
import argparse, statistics, time
import torch
from accelerate import init_empty_weights
from diffusers import ZImageTransformer2DModel
from zimage_nb.config import preset
from zimage_nb.core import peak_rss
from zimage_nb.models import quantize_linears, place_tensor, TRANSFORMER_BLOCKS
from zimage_nb.planner import estimate_training
from zimage_nb.tiny import TINY_TRANSFORMER
import zimage_nb.train as T

def random_transformer(config, quant, dtype, device, seed=0):
    "The transformer on `device` with random weights, quantized while placed (never a full-precision copy)."
    with init_empty_weights(include_buffers=False): m = ZImageTransformer2DModel(**config)
    quantize_linears(m, quant, dtype, TRANSFORMER_BLOCKS)
    g = torch.Generator().manual_seed(seed)
    for name, p in list(m.named_parameters()):
        v = torch.randn(p.shape, generator=g, dtype=torch.float32) * 0.02 if p.dim() > 1 else torch.ones(p.shape)
        place_tensor(m, name, v.to(torch.bfloat16), device, dtype)
    return m.eval().requires_grad_(False)

def run_one(scale, quant, res, steps, warmup, device, offload):
    cfgd = TINY_TRANSFORMER if scale == "tiny" else {}
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    cfg = preset("tiny" if scale == "tiny" else "turbo-adapter-v2", datasets__0__path="x", datasets__0__resolutions=[res], target__rank=16, target__alpha=16.0,
                 quantization__transformer=quant, quantization__compute="bf16" if dtype == torch.bfloat16 else "fp32", model__training_adapter="",
                 training__caption_dropout=0.0, advanced__offload=offload)
    if device.startswith("cuda"): torch.cuda.reset_peak_memory_stats(); torch.cuda.empty_cache()
    with peak_rss() as pk:
        tr = random_transformer(cfgd, quant, dtype, device); T.one_4bit_path(tr)
        run = T.Run(cfg, None, None, device, dtype)
        run.transformer = tr
        torch.manual_seed(0)
        from zimage_nb.lora import add_trainable_lora, use_adapters
        run.params = add_trainable_lora(tr, cfg.target); use_adapters(tr, {"default": 1.0})
        tr.enable_gradient_checkpointing(); tr.train()
        if offload == "group" and device.startswith("cuda"):
            tr.enable_group_offload(onload_device=torch.device(device), offload_device=torch.device("cpu"), offload_type="block_level", num_blocks_per_group=1, use_stream=True)
        run.optimizer = T.make_optimizer(run.params, cfg.training); run.scheduler = T.make_scheduler(run.optimizer, cfg.training)
        h = w = res // 8; cap = 128
        key = "lat"; run.latents = {key: torch.randn(16, h, w)}; run.texts = {"t": torch.randn(cap, tr.config.cap_feat_dim), "": torch.randn(1, tr.config.cap_feat_dim)}
        run.items = [T.Item(key, "t", (h, w), "f", res, 0)]; run.plan = T.BatchPlan(run.items, 1, 0); run.empty = ""
        times = []
        for i in range(warmup + steps):
            if device.startswith("cuda"): torch.cuda.synchronize()
            t0 = time.perf_counter(); T.train_step(run)
            if device.startswith("cuda"): torch.cuda.synchronize()
            if i >= warmup: times.append(time.perf_counter() - t0)
    est = estimate_training(cfg, "A100")
    row = dict(quant=quant, res=res, offload=offload, s_per_it=statistics.median(times), rss=pk.extra, est=est.vram)
    if device.startswith("cuda"): row.update(alloc=torch.cuda.max_memory_allocated(), reserved=torch.cuda.max_memory_reserved())
    del run, tr
    return row

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", choices=("tiny", "real"), default="tiny")
    ap.add_argument("--res", type=int, nargs="+", default=[64, 128])
    ap.add_argument("--quant", nargs="+", default=["nf4", "bf16"])
    ap.add_argument("--offload", nargs="+", default=["none"])
    ap.add_argument("--steps", type=int, default=5); ap.add_argument("--warmup", type=int, default=2)
    a = ap.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    name = torch.cuda.get_device_name(0) if device == "cuda" else "CPU"
    gib = lambda b: f"{b / 2**30:.2f} GiB"
    print(f"device: {name}; scale {a.scale}; rank 16; batch 1; 128 caption tokens; gradient checkpointing; AdamW8bit")
    print("| quant | res | offload | peak allocated | peak reserved | peak RSS above start | s/it | planner estimate (VRAM) |")
    print("|---|---|---|---|---|---|---|---|")
    for q in a.quant:
        for r in a.res:
            for o in a.offload:
                x = run_one(a.scale, q, r, a.steps, a.warmup, device, o)
                print(f"| {q} | {r} | {o} | {gib(x['alloc']) if 'alloc' in x else 'n/a (CPU)'} | {gib(x['reserved']) if 'reserved' in x else 'n/a'} | {gib(x['rss'])} | {x['s_per_it']:.3f} | {gib(x['est'])} |", flush=True)

if __name__ == "__main__": main()
