"""One training step of the zimage-nb engine vs a minimal hand-written diffusers + peft loop (tiny model, CPU).

Both train the same LoRA (rank 4, default targets) on the same NF4 transformer with gradient checkpointing,
AdamW8bit and the same cached latents / caption embeddings; the hand-written loop has none of the engine's
extras (caption dropout, NaN guard, clipping, per-batch generators, logging). Steps are timed alternately,
A B A B ..., after warm-up, in one process. Goal: engine <= 1.1x the hand-written loop.

    python bench/train_step.py --steps 40
"""
import argparse, statistics, tempfile, time
from pathlib import Path
import torch, torch.nn.functional as F
import bitsandbytes as bnb
from peft import LoraConfig
from zimage_nb.config import preset
from zimage_nb.models import load_transformer
import zimage_nb.train as T
from zimage_nb.tiny import write_demo_dataset

def hand_written(run):
    "The minimal loop: what someone writes from the diffusers and peft docs."
    tr = load_transformer(run.model_folder, "nf4", torch.float32, "cpu", progress=False); T.one_4bit_path(tr)
    torch.manual_seed(0)
    tr.add_adapter(LoraConfig(r=4, lora_alpha=4, target_modules=["to_q", "to_k", "to_v", "to_out.0", "w1", "w2", "w3"]))
    tr.enable_gradient_checkpointing(); tr.train()
    params = [p for p in tr.parameters() if p.requires_grad]
    opt = bnb.optim.AdamW8bit(params, lr=3e-3, weight_decay=1e-4)
    it = run.items[0]
    x0, emb = run.latents[it.latent][None].float(), [run.texts[it.text]]
    def step():
        sig = torch.rand(1); noise = torch.randn_like(x0)
        noisy = (1 - sig.view(-1, 1, 1, 1)) * x0 + sig.view(-1, 1, 1, 1) * noise
        out = tr(list(noisy.unsqueeze(2).unbind(0)), 1 - sig, emb, return_dict=False)[0]
        loss = F.mse_loss(-torch.stack(out).squeeze(2), noise - x0)
        loss.backward(); opt.step(); opt.zero_grad(set_to_none=True)
    return step

def main():
    ap = argparse.ArgumentParser(); ap.add_argument("--steps", type=int, default=40); ap.add_argument("--warmup", type=int, default=5)
    a = ap.parse_args()
    d = Path(tempfile.mkdtemp())
    data = write_demo_dataset(d / "photos", n=2)
    cfg = preset("tiny", job__output_dir=str(d / "runs"), job__name="bench", datasets__0__path=str(data), datasets__0__resolutions=[64],
                 training__steps=10**6, model__training_adapter="", training__caption_dropout=0.0)
    run = T.setup_run(cfg, d / "work", "cpu", progress=False)
    run.items = run.items[:1]; run.plan = T.BatchPlan(run.items, 1, 0)   # the same single image for both
    engine = lambda: T.train_step(run)
    hand = hand_written(run)
    for _ in range(a.warmup): engine(); hand()
    te, th = [], []
    for _ in range(a.steps):
        t0 = time.perf_counter(); engine(); te.append(time.perf_counter() - t0)
        t0 = time.perf_counter(); hand(); th.append(time.perf_counter() - t0)
    me, mh = statistics.median(te), statistics.median(th)
    print(f"threads {torch.get_num_threads()}, {a.steps} steps each, 64x64 latents 8x8, rank 4, NF4, checkpointing, AdamW8bit")
    print(f"engine      median {me * 1000:.1f} ms/step")
    print(f"hand-written median {mh * 1000:.1f} ms/step")
    print(f"ratio {me / mh:.3f} (goal <= 1.1)")

if __name__ == "__main__": main()
