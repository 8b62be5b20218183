"""Inference latency: Turbo's 8 steps without CFG against the non-accelerated setting (30 steps, CFG 2), one image,
cached caption embeddings (the text encoder is not timed), VAE decode included.

    python bench/inference_latency.py --scale real --res 1024 --quant nf4 bf16    # on a CUDA GPU
    python bench/inference_latency.py --scale tiny --res 256                      # anywhere

`real` builds the real-size transformer with random weights straight into NF4 / bf16 (bench/train_memory.py) and a
VAE with the real model's config (random weights); `tiny` uses `zimage_nb.tiny.tiny_pipeline()`.
Prints one row per (quant, res, setting): median seconds per image over --repeat runs after one warm-up, transformer
calls, and on CUDA the peak allocated VRAM.
"""
import argparse, statistics, time
import torch
from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, ZImagePipeline
from zimage_nb.config import SAMPLING, diffusers_guidance
from zimage_nb.tiny import tiny_pipeline, TURBO_SCHEDULER

REAL_VAE = dict(in_channels=3, out_channels=3, latent_channels=16, block_out_channels=(128, 256, 512, 512), layers_per_block=2,
                down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4, norm_num_groups=32,
                scaling_factor=0.3611, shift_factor=0.1159, use_quant_conv=False, use_post_quant_conv=False)
SETTINGS = ("turbo", "non-accelerated")     # zimage_nb.config.SAMPLING: 8 steps without CFG; 30 steps, CFG 2

def pipeline(scale, quant, device, dtype):
    if scale == "tiny":
        p = tiny_pipeline(dtype=dtype).to(device); tr, vae, sched = p.transformer, p.vae, p.scheduler
    else:
        from train_memory import random_transformer
        tr = random_transformer({}, quant, dtype, device)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0); vae = AutoencoderKL(**REAL_VAE).to(device, dtype).eval()
        sched = FlowMatchEulerDiscreteScheduler(**TURBO_SCHEDULER)
    p = ZImagePipeline(scheduler=sched, vae=vae, text_encoder=None, tokenizer=None, transformer=tr)
    p.set_progress_bar_config(disable=True)
    return p

def time_one(p, res, steps, cfg, device, dtype, repeat):
    cap = p.transformer.config.cap_feat_dim
    pe, ne = [torch.randn(128, cap, device=device, dtype=dtype)], [torch.randn(32, cap, device=device, dtype=dtype)]
    calls = []
    h = p.transformer.register_forward_hook(lambda *a: calls.append(1))
    out = []
    for i in range(repeat + 1):
        calls.clear()
        if device == "cuda": torch.cuda.synchronize()
        t0 = time.perf_counter()
        p(prompt_embeds=pe, negative_prompt_embeds=ne if diffusers_guidance(cfg) else None, height=res, width=res, num_inference_steps=steps,
          guidance_scale=diffusers_guidance(cfg), generator=torch.Generator(device).manual_seed(i), output_type="pil")
        if device == "cuda": torch.cuda.synchronize()
        if i: out.append(time.perf_counter() - t0)
    h.remove()
    return statistics.median(out), len(calls)

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", choices=("tiny", "real"), default="tiny")
    ap.add_argument("--res", type=int, nargs="+", default=[256])
    ap.add_argument("--quant", nargs="+", default=["bf16"])
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    name = torch.cuda.get_device_name(0) if device == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    print(f"device: {name}; scale {a.scale}; {dtype}; 128 caption tokens; median of {a.repeat} after 1 warm-up")
    print("| quant | res | setting | transformer calls | s / image | × turbo | peak allocated (CUDA) |")
    print("|---|---|---|---|---|---|---|")
    for q in a.quant:
        p = pipeline(a.scale, q if a.scale == "real" else "none", device, dtype)
        for r in a.res:
            base = None
            for name_ in SETTINGS:
                steps, cfg = SAMPLING[name_]["steps"], SAMPLING[name_]["cfg_scale"]
                if device == "cuda": torch.cuda.reset_peak_memory_stats()
                s, calls = time_one(p, r, steps, cfg, device, dtype, a.repeat)
                base = base or s
                peak = f"{torch.cuda.max_memory_allocated() / 2**30:.2f} GiB" if device == "cuda" else "n/a (no CUDA)"
                print(f"| {q if a.scale == 'real' else 'fp32 (tiny)'} | {r} | {name_} ({steps} steps, CFG {cfg:g}) | {calls} | {s:.3f} | {s / base:.1f} | {peak} |", flush=True)
        del p

if __name__ == "__main__": main()
