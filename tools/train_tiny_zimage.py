"""Pretrain the tiny Z-Image transformer that ships as package data (zimage_nb/assets/tiny_zimage.safetensors).

The tiny pipeline must draw what its captions say, so that the demo and the tests can show what a LoRA learns.
This script trains `ZImageTransformer2DModel(**TINY_TRANSFORMER)` from scratch with flow matching (the engine's
own `predict`, `flow_loss` and `sample_sigmas`) on pictures of the tiny world (`tiny_scene`: one shape of a named
colour and size on a plain background, captioned from a small grammar), encoded once with the tiny VAE and the
seeded random tiny text encoder (which is saved with it). Captions are dropped 10% of the time so that CFG works.
It keeps an EMA of the weights and writes the EMA, in fp16, atomically every few minutes (a killed run leaves the
last good file). Run on CPU:

    python tools/train_tiny_zimage.py --minutes 45 --threads 2

It prints a held-out check as it goes: how often 8-step samples of held-out captions show the requested background
and shape colour. The numbers of the shipped file are in bench/RESULTS.md.
"""
import argparse, copy, math, random, time
from pathlib import Path
import numpy as np, torch
from safetensors.torch import save_file
from zimage_nb.core import atomic_path
from zimage_nb.tiny import SCENE_COLOURS, tiny_pipeline, tiny_scene, TINY_VERSION
from zimage_nb.cache import encode_latents, encode_prompts
from zimage_nb.flow import predict, flow_loss, sample_sigmas

HELD = [("a large pink disc in the middle on a grey background", "pink", "grey"),
        ("a large white square on a blue background", "white", "blue"),
        ("a large orange triangle on the left on a teal background", "orange", "teal"),
        ("a large green disc on the right on a black background", "green", "black"),
        ("a large black square in the middle on a olive background", "black", "olive"),
        ("a large blue triangle on a white background", "blue", "white")]

def nearest(rgb):
    return min(SCENE_COLOURS, key=lambda n: sum((a - b) ** 2 for a, b in zip(SCENE_COLOURS[n], rgb)))

def colour_check(img, shape_colour, bg):
    "1 point for the background (the most common colour), 1 for the shape's colour covering >= 3% of the picture."
    a = np.asarray(img, dtype=np.float32).reshape(-1, 3)
    pal = np.array(list(SCENE_COLOURS.values()), np.float32)
    idx = ((a[:, None] - pal[None]) ** 2).sum(-1).argmin(1)
    counts = np.bincount(idx, minlength=len(pal)) / len(a)
    names = list(SCENE_COLOURS)
    return int(names[counts.argmax()] == bg) + int(counts[names.index(shape_colour)] >= 0.03)

def held_out(pipe, seeds=(1, 2)):
    score = 0
    for cap, col, bg in HELD:
        for s in seeds:
            img = pipe(cap, height=64, width=64, num_inference_steps=8, guidance_scale=0.0,
                       generator=torch.Generator().manual_seed(s), max_sequence_length=64).images[0]
            score += colour_check(img, col, bg)
    return score / (2 * len(HELD) * len(seeds))

@torch.no_grad()
def encode_pool(a, vae, tok, te, groups, texts):
    "Latents of a.images pictures grouped by size, and the embedding of every caption (and of the empty one)."
    lists = {}
    for i in range(0, a.images, 64):
        scenes = [tiny_scene(1_000_000 + j) for j in range(i, min(i + 64, a.images))]
        for size in {im.size for im, _ in scenes}:
            part = [(im, c) for im, c in scenes if im.size == size]
            px = torch.stack([torch.from_numpy(np.asarray(im, np.float32) / 127.5 - 1).permute(2, 0, 1) for im, _ in part])
            g = lists.setdefault(size, ([], []))
            g[0].extend(encode_latents(vae, px)); g[1].extend(c for _, c in part)
    caps = sorted({c for g in lists.values() for c in g[1]} | {""})
    for k in range(0, len(caps), 256):
        for c, e in zip(caps[k:k + 256], encode_prompts(tok, te, caps[k:k + 256], max_sequence_length=64)): texts[c] = e
    groups.update({s: (torch.stack(l), c) for s, (l, c) in lists.items()})

def main():
    p = argparse.ArgumentParser()
    p.add_argument("--minutes", type=float, default=45)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--images", type=int, default=24000, help="pictures in the training pool")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--out", default="zimage_nb/assets/tiny_zimage.safetensors")
    p.add_argument("--pool-cache", default="", help="a .pt file keeping the encoded pool between runs (made if missing)")
    a = p.parse_args()
    torch.set_num_threads(a.threads); torch.manual_seed(0); rng = random.Random(0)
    pipe = tiny_pipeline(0, trained=False)
    tok, te, vae, tr = pipe.tokenizer, pipe.text_encoder, pipe.vae, pipe.transformer
    t0 = time.time()
    groups, texts = {}, {}
    if a.pool_cache and Path(a.pool_cache).exists(): groups, texts = torch.load(a.pool_cache, weights_only=False)   # our own file
    else: encode_pool(a, vae, tok, te, groups, texts)
    if a.pool_cache and not Path(a.pool_cache).exists(): torch.save((groups, texts), a.pool_cache)
    caps = list(texts)
    print(f"pool: {a.images} pictures in {len(groups)} sizes, {len(caps)} captions, ready in {time.time() - t0:.0f} s", flush=True)
    tr.train().requires_grad_(True)
    ema = copy.deepcopy(tr).eval().requires_grad_(False)
    opt = torch.optim.AdamW(tr.parameters(), lr=a.lr, weight_decay=0.0, betas=(0.9, 0.99))
    sizes, weights = list(groups), [len(groups[s][1]) for s in groups]
    t0, step, last, total, losses = time.time(), 0, time.time(), a.minutes * 60, []
    while time.time() - t0 < total:
        frac = (time.time() - t0) / total
        lr = a.lr * min(1, (step + 1) / 200) * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * frac)))
        for g in opt.param_groups: g["lr"] = lr
        size = rng.choices(sizes, weights)[0]
        lat, cs = groups[size]
        idx = [rng.randrange(len(cs)) for _ in range(a.batch)]
        x0 = lat[idx].float()
        embeds = [texts["" if rng.random() < 0.1 else cs[i]] for i in idx]
        sig = sample_sigmas(a.batch, "uniform", "balanced", 3.0)
        noise = torch.randn_like(x0); s4 = sig.view(-1, 1, 1, 1)
        loss = flow_loss(predict(tr, (1 - s4) * x0 + s4 * noise, sig, embeds), noise - x0)
        opt.zero_grad(); loss.backward(); torch.nn.utils.clip_grad_norm_(tr.parameters(), 1.0); opt.step()
        d = min(0.999, (1 + step) / (10 + step))
        with torch.no_grad():
            for pe, pt in zip(ema.parameters(), tr.parameters()): pe.lerp_(pt, 1 - d)
        step += 1; losses.append(loss.item())
        if time.time() - last > 180 or time.time() - t0 >= total:
            last = time.time()
            pipe.transformer = ema
            check = held_out(pipe)
            pipe.transformer = tr
            sd = {f"transformer.{k}": v.detach().half().contiguous() for k, v in ema.state_dict().items()}
            sd.update({f"text_encoder.{k}": v.detach().float().contiguous() for k, v in te.state_dict().items()})
            meta = {"steps": str(step), "minutes": f"{(time.time() - t0) / 60:.1f}", "loss_last_200": f"{np.mean(losses[-200:]):.4f}",
                    "heldout_colour_check": f"{check:.3f}", "tiny_version": str(TINY_VERSION), "batch": str(a.batch), "pool": str(a.images)}
            with atomic_path(a.out) as tmp: save_file(sd, str(tmp), metadata=meta)
            print(f"{meta['minutes']:>5} min  step {step}  loss {meta['loss_last_200']}  held-out colour check {check:.2f}  lr {lr:.2e}", flush=True)
    print("done", step)

if __name__ == "__main__": main()
