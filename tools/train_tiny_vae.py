"""Train the tiny VAE that ships as package data (zimage_nb/assets/tiny_vae.safetensors).

The tiny pipeline's transformer and text encoder stay random, but its VAE must really
reconstruct images so that tests can check "cached latents decode back to the image".
This script trains `AutoencoderKL(**TINY_VAE)` on generated images (gradients, shapes,
stripes, noise) and writes fp16 weights atomically. Run on CPU:

    python tools/train_tiny_vae.py --minutes 25 --threads 1

Measured results go into bench/RESULTS.md (reconstruction error on held-out images).
"""
import argparse, math, random, time
import numpy as np, torch, torch.nn.functional as F
from PIL import Image, ImageDraw
from safetensors.torch import save_file
from diffusers import AutoencoderKL
from zimage_nb.tiny import TINY_VAE
from zimage_nb.core import atomic_path

def random_image(rng: random.Random, size=64):
    "A synthetic picture: gradient background, a few shapes, sometimes stripes or noise."
    w = h = size
    a, b = [tuple(rng.randrange(256) for _ in range(3)) for _ in range(2)]
    t = np.linspace(0, 1, w)[None, :, None] if rng.random() < .5 else np.linspace(0, 1, h)[:, None, None]
    bg = (np.array(a) * (1 - t) + np.array(b) * t) * np.ones((h, w, 1))
    im = Image.fromarray(bg.astype(np.uint8))
    d = ImageDraw.Draw(im)
    for _ in range(rng.randrange(1, 6)):
        x0, y0 = rng.randrange(-8, w), rng.randrange(-8, h)
        x1, y1 = x0 + rng.randrange(6, w), y0 + rng.randrange(6, h)
        col = tuple(rng.randrange(256) for _ in range(3))
        kind = rng.randrange(3)
        if kind == 0: d.ellipse([x0, y0, x1, y1], fill=col)
        elif kind == 1: d.rectangle([x0, y0, x1, y1], fill=col)
        else: d.polygon([(x0, y0), (x1, y1), (x0, y1)], fill=col)
    if rng.random() < .2:
        for x in range(0, w, rng.randrange(4, 16)): d.line([x, 0, x, h], fill=tuple(rng.randrange(256) for _ in range(3)), width=2)
    x = torch.from_numpy(np.asarray(im, dtype=np.float32) / 127.5 - 1).permute(2, 0, 1)
    if rng.random() < .2: x = (x + 0.1 * torch.randn_like(x)).clamp(-1, 1)
    return x

def batch(rng, n, size=64): return torch.stack([random_image(rng, size) for _ in range(n)])

def main():
    p = argparse.ArgumentParser()
    p.add_argument("--minutes", type=float, default=25)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default="zimage_nb/assets/tiny_vae.safetensors")
    p.add_argument("--batch", type=int, default=8)
    a = p.parse_args()
    torch.set_num_threads(a.threads); torch.manual_seed(0); rng = random.Random(0)
    vae = AutoencoderKL(**TINY_VAE).train()
    opt = torch.optim.AdamW(vae.parameters(), lr=2e-3, weight_decay=0)
    held = batch(random.Random(1234), 16)
    t0, step, last = time.time(), 0, 0
    total = a.minutes * 60
    while time.time() - t0 < total:
        frac = (time.time() - t0) / total
        for g in opt.param_groups: g["lr"] = 2e-3 * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * frac)))
        x = batch(rng, a.batch)
        post = vae.encode(x).latent_dist
        z = post.mean + 0.1 * post.std * torch.randn_like(post.mean)   # mostly-deterministic: the cache uses .mode()
        rec = vae.decode(z).sample
        kl = post.kl().mean() / x[0].numel()
        loss = F.l1_loss(rec, x) + F.mse_loss(rec, x) + 1e-4 * kl
        opt.zero_grad(); loss.backward(); torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0); opt.step()
        step += 1
        if time.time() - last > 60:
            last = time.time()
            with torch.no_grad():
                vae.eval(); r = vae.decode(vae.encode(held).latent_dist.mode()).sample.clamp(-1, 1); vae.train()
            mae = (r - held).abs().mean().item() * 127.5
            print(f"{(time.time()-t0)/60:5.1f} min  step {step}  loss {loss.item():.4f}  held-out MAE {mae:.2f}/255", flush=True)
            sd = {k: v.detach().half().contiguous() for k, v in vae.state_dict().items()}
            with atomic_path(a.out) as tmp: save_file(sd, str(tmp), metadata={"steps": str(step), "heldout_mae_255": f"{mae:.2f}"})
    print("done", step)

if __name__ == "__main__": main()
