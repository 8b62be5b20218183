"""Make the tiny Turbo family that ships as package data, so the Turbo recipes can be measured offline:

    student  zimage_nb/assets/tiny_zimage_turbo.safetensors     the tiny base distilled to sample in 1-2 steps
    adapter  zimage_nb/assets/tiny_training_adapter.safetensors a LoRA that undoes the distillation while training
    patch    zimage_nb/assets/tiny_distill_patch.safetensors    a LoRA that restores few-step sampling after plain training
    fewstep  zimage_nb/assets/tiny_fewstep_lora.safetensors     a few-step LoRA for the tiny base (what alibaba-pai's Fun distill LoRA is to Z-Image)

The method, step by step (run on CPU, seeded; times in bench/RESULTS.md):

1. Teacher trajectories. The pretrained tiny base (`tiny_pipeline()`) integrates the flow ODE with many small Euler
   steps from seeded noise, for captions of the tiny world (`tiny_scene`, 10% empty), and keeps the latent at every
   noise level that the pipeline's 1-, 2- and 4-step schedules land on.
2. Student: trajectory-matching distillation. A copy of the base is trained so that ONE of its Euler steps from a
   schedule point lands where the teacher's many steps landed: its velocity at (x_a, sigma_a) is regressed onto the
   teacher's average velocity over the segment, (x_b - x_a) / (sigma_b - sigma_a). This is knowledge distillation of the
   sampler (Luhman & Luhman 2021, "Knowledge distillation in iterative generative models") applied per segment of
   few-step schedules, close to what DiffSynth describe as trajectory imitation; it is not DMD (Z-Image-Turbo's own
   method). The student is what Z-Image-Turbo is to Z-Image: good at few steps, no longer a plain flow model there.
3. Training adapter, as the AI Toolkit guide describes ostris' adapter: a LoRA trained on the student with the plain
   flow-matching loss on the base's own training pictures, so that student + adapter behaves like a plain flow model
   again ("breaks down" the distillation); users train their LoRA with it in place and sample without it.
4. DistillPatch-style patch: a LoRA trained with the same trajectory loss as the student, on top of the student with
   the training adapter merged in (a model drifted the way plain flow-matching training drifts it), so it learns to
   put the few-step behaviour back. Loaded at inference beside a plainly trained LoRA. (DiffSynth have not published how
   their patch was trained; this is our construction, named as such.)
5. Few-step LoRA for the base: a LoRA trained with the student's trajectory loss on the tiny base itself (no student, no
   adapter), so base + LoRA samples in few steps: the tiny analogue of alibaba-pai's Z-Image-Fun-Lora-Distill, sampled
   at weight 0.8 beside a LoRA trained plainly on the base (the `base-fun-distill` preset). Our construction too: the Fun
   LoRAs' training is not published here.

The shipped files were made with (2026-11-30, 2 CPU cores; 35 min in all):

    python tools/distil_tiny_turbo.py --phase trajectories --threads 2
    python tools/distil_tiny_turbo.py --phase student --minutes 15 --lr 4e-4
    python tools/distil_tiny_turbo.py --phase adapter --minutes 12 --lr 1e-3 --rank 32
    python tools/distil_tiny_turbo.py --phase patch --minutes 5 --lr 1e-3 --rank 16
    python tools/distil_tiny_turbo.py --phase fewstep --minutes 8 --lr 1e-3 --rank 16      # 2026-12-02

The phases are time-boxed, so other CPUs end at other step counts; each writes its file atomically every 2 minutes.
"""
import argparse, copy, json, math, random, time
from pathlib import Path
import numpy as np, torch
from safetensors.torch import save_file
from zimage_nb.core import atomic_path
from zimage_nb.tiny import tiny_pipeline, tiny_scene, tiny_purity as purity, image_distance, TINY_VERSION
from zimage_nb.cache import encode_prompts
from zimage_nb.flow import predict, flow_loss, sample_sigmas
from zimage_nb.config import TargetConfig
from zimage_nb.lora import TRAINED, TRAINING_ADAPTER, add_trainable_lora, add_frozen_lora, use_adapters, export_lora

SCHEDULES = {1: 0.4, 2: 0.3, 4: 0.3}         # pipeline step counts the student learns, and how often each is drawn
ASSETS = Path("zimage_nb/assets")   # --assets changes it (e.g. a scratch folder for a trial run)
HELD = ["a large pink disc in the middle on a grey background", "a large white square on a blue background",
        "a small orange triangle on the left on a teal background", "a large green disc on the right on a black background"]

def schedule(pipe, n:int)->list:
    "The sigmas the pipeline's scheduler visits with n steps (ends with 0)."
    pipe.scheduler.set_timesteps(n)
    return [round(float(s), 6) for s in pipe.scheduler.sigmas]

def union_points(pipe)->list:
    return sorted({s for n in SCHEDULES for s in schedule(pipe, n)}, reverse=True)

@torch.no_grad()
def teacher_path(tr, x, embeds, points, sub:int):
    "Euler integration of the teacher from sigma=points[0] through every point, `sub` substeps between two points; latents at each point."
    out = [x]
    for a, b in zip(points[:-1], points[1:]):
        for k in range(sub):
            sa, sb = a + (b - a) * k / sub, a + (b - a) * (k + 1) / sub
            x = x + (sb - sa) * predict(tr, x, torch.full((len(x),), sa), embeds)
        out.append(x)
    return torch.stack(out, 1)          # [B, points, C, h, w]

def phase_trajectories(a, pipe):
    torch.manual_seed(0); rng = random.Random(0)
    points = union_points(pipe)
    sizes = {}
    for i in range(a.trajectories):
        im, cap = tiny_scene(3_000_000 + i)
        sizes.setdefault((im.height // 8, im.width // 8), []).append("" if rng.random() < 0.1 else cap)
    caps = sorted({c for cs in sizes.values() for c in cs})
    texts = {}
    for k in range(0, len(caps), 256):
        for c, e in zip(caps[k:k + 256], encode_prompts(pipe.tokenizer, pipe.text_encoder, caps[k:k + 256], max_sequence_length=64)): texts[c] = e
    data, t0 = {}, time.time()
    for (h, w), cs in sizes.items():
        xs = []
        for k in range(0, len(cs), a.batch_teacher):
            part = cs[k:k + a.batch_teacher]
            noise = torch.randn(len(part), 16, h, w)
            xs.append(teacher_path(pipe.transformer, noise, [texts[c] for c in part], points, a.sub).half())
            print(f"  teacher {h}x{w}: {k + len(part)}/{len(cs)}  {time.time() - t0:.0f} s", flush=True)
        data[(h, w)] = (torch.cat(xs), cs)
    torch.save(dict(points=points, data=data, texts=texts, sub=a.sub), a.traj_cache)
    print(f"trajectories: {a.trajectories} x {len(points)} points, {a.sub} teacher steps between points, {time.time() - t0:.0f} s")

def segment_batch(tr_data, points, rng, batch:int, pipe_sched:dict):
    "A batch of (x_a, sigma_a, x_b, sigma_b, caption) from one size group, segments drawn from the schedules."
    sizes = list(tr_data); weights = [len(tr_data[s][1]) for s in sizes]
    size = rng.choices(sizes, weights)[0]
    X, cs = tr_data[size]
    idx = [rng.randrange(len(cs)) for _ in range(batch)]
    ka, kb = [], []
    for _ in idx:
        n = rng.choices(list(SCHEDULES), list(SCHEDULES.values()))[0]
        j = rng.randrange(n)
        s = pipe_sched[n]; ka.append(points.index(s[j])); kb.append(points.index(s[j + 1]))
    ii = torch.tensor(idx)
    xa, xb = X[ii, torch.tensor(ka)].float(), X[ii, torch.tensor(kb)].float()
    sa, sb = torch.tensor([points[k] for k in ka]), torch.tensor([points[k] for k in kb])
    return xa, sa, xb, sb, [cs[i] for i in idx]

def trajectory_loss(model, xa, sa, xb, sb, embeds):
    "Mean squared error between the model's velocity and the teacher's average velocity over each segment."
    target = (xb - xa) / (sb - sa).view(-1, 1, 1, 1)
    return flow_loss(predict(model, xa, sa, embeds), target)

@torch.no_grad()
def report(pipe, label:str, steps=(1, 2, 30), seeds=(1, 2))->dict:
    out = {}
    for n in steps:
        ims = [pipe(p, height=64, width=64, num_inference_steps=n, guidance_scale=0.0, generator=torch.Generator().manual_seed(s), max_sequence_length=64).images[0]
               for p in HELD for s in seeds]
        out[n] = (round(float(np.mean([purity(i) for i in ims])), 3), ims)
    print(f"  {label}: purity " + ", ".join(f"{n} steps {v[0]}" for n, v in out.items()), flush=True)
    return out

def gap(pipe_a, pipe_b, n_a:int, n_b:int, seeds=(1, 2))->float:
    "Mean |pixel difference| / 255 between pipe_a at n_a steps and pipe_b at n_b steps, same prompts and noise."
    draw = lambda pipe, n: [pipe(p, height=64, width=64, num_inference_steps=n, guidance_scale=0.0, generator=torch.Generator().manual_seed(s),
                                 max_sequence_length=64).images[0] for p in HELD for s in seeds]
    return round(image_distance(draw(pipe_a, n_a), draw(pipe_b, n_b)), 4)

def train_loop(a, model, params, loss_fn, label:str, save):
    opt = torch.optim.AdamW(params, lr=a.lr, weight_decay=0.0, betas=(0.9, 0.99))
    t0, step, last, total, losses = time.time(), 0, time.time(), a.minutes * 60, []
    while time.time() - t0 < total:
        frac = (time.time() - t0) / total
        for g in opt.param_groups: g["lr"] = a.lr * min(1, (step + 1) / 100) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))
        loss = loss_fn(step)
        opt.zero_grad(); loss.backward(); torch.nn.utils.clip_grad_norm_(params, 1.0); opt.step()
        step += 1; losses.append(loss.item())
        if time.time() - last > 120 or time.time() - t0 >= total:
            last = time.time()
            save(step, float(np.mean(losses[-100:])), (time.time() - t0) / 60)
            print(f"{(time.time() - t0) / 60:5.1f} min  {label} step {step}  loss {np.mean(losses[-100:]):.4f}", flush=True)
    return step

def phase_student(a, pipe):
    torch.manual_seed(0); rng = random.Random(0)
    T = torch.load(a.traj_cache, weights_only=False)           # our own file
    points, data, texts = T["points"], T["data"], T["texts"]
    sched = {n: schedule(pipe, n) for n in SCHEDULES}
    teacher = pipe.transformer
    student = copy.deepcopy(teacher).train().requires_grad_(True)
    ema = copy.deepcopy(teacher).eval().requires_grad_(False)
    base_report = report(pipe, "teacher")
    def loss_fn(step):
        xa, sa, xb, sb, cs = segment_batch(data, points, rng, a.batch, sched)
        return trajectory_loss(student, xa, sa, xb, sb, [texts[c] for c in cs])
    def save(step, loss, minutes):
        pipe.transformer = ema; r = report(pipe, "student (EMA)"); g1, g2 = gap(pipe, tiny_pipeline(), 1, 30), gap(pipe, tiny_pipeline(), 2, 30); pipe.transformer = teacher
        meta = dict(kind="tiny-turbo-student", steps=str(step), minutes=f"{minutes:.1f}", loss_last_100=f"{loss:.5f}", tiny_version=str(TINY_VERSION),
                    schedules=json.dumps(SCHEDULES), **{f"purity_{n}_steps": str(r[n][0]) for n in r}, **{f"teacher_purity_{n}_steps": str(base_report[n][0]) for n in base_report},
                    gap_1_step_to_teacher_30=str(g1), gap_2_steps_to_teacher_30=str(g2))
        print("  gap of 1- and 2-step samples to the teacher's 30-step samples:", g1, g2, flush=True)
        with atomic_path(ASSETS / "tiny_zimage_turbo.safetensors") as tmp:
            save_file({f"transformer.{k}": v.detach().half().contiguous() for k, v in ema.state_dict().items()}, str(tmp), metadata=meta)
    def loss_and_ema(step):   # the EMA follows the student, one update per step
        if step:
            with torch.no_grad():
                d = min(0.998, (1 + step) / (10 + step))
                for pe, ps in zip(ema.parameters(), student.parameters()): pe.lerp_(ps, 1 - d)
        return loss_fn(step)
    train_loop(a, student, list(student.parameters()), loss_and_ema, "student", save)

def student_transformer():
    "The distilled student, as written by the student phase."
    from safetensors.torch import load_file
    tr = copy.deepcopy(tiny_pipeline().transformer)
    tr.load_state_dict({k.removeprefix("transformer."): v.float() for k, v in load_file(str(ASSETS / "tiny_zimage_turbo.safetensors")).items()})
    return tr

def lora_meta(kind, step, loss, minutes, **more):
    return dict(kind=kind, steps=step, minutes=f"{minutes:.1f}", loss_last_100=f"{loss:.5f}", tiny_version=TINY_VERSION, **more)

def phase_adapter(a, pipe):
    "A LoRA on the student trained with plain flow matching on the base's own training pictures."
    import sys
    sys.path.insert(0, str(Path(__file__).parent))
    from train_tiny_zimage import encode_pool
    torch.manual_seed(0); rng = random.Random(0)
    groups, texts = {}, {}
    if Path(a.pool_cache).exists(): groups, texts = torch.load(a.pool_cache, weights_only=False)   # our own file
    else:
        encode_pool(argparse.Namespace(images=a.pool_images), pipe.vae, pipe.tokenizer, pipe.text_encoder, groups, texts)
        torch.save((groups, texts), a.pool_cache)
    tr = student_transformer().train()
    params = add_trainable_lora(tr, TargetConfig(rank=a.rank, alpha=float(a.rank)))
    sizes = list(groups); weights = [len(groups[s][1]) for s in sizes]
    def loss_fn(step):
        lat, cs = groups[rng.choices(sizes, weights)[0]]
        idx = [rng.randrange(len(cs)) for _ in range(a.batch)]
        x0 = lat[idx].float(); embeds = [texts["" if rng.random() < 0.1 else cs[i]] for i in idx]
        sig = sample_sigmas(a.batch, "uniform", "balanced", 3.0); noise = torch.randn_like(x0); s4 = sig.view(-1, 1, 1, 1)
        return flow_loss(predict(tr, (1 - s4) * x0 + s4 * noise, sig, embeds), noise - x0)
    def save(step, loss, minutes):
        tr.eval(); pipe.transformer = tr; r = report(pipe, "student + adapter"); tr.train()
        export_lora(tr, ASSETS / "tiny_training_adapter.safetensors", "fp16", lora_meta("tiny-training-adapter", step, loss, minutes, rank=a.rank, purity_1_step=r[1][0], purity_2_steps=r[2][0]))
    train_loop(a, tr, params, loss_fn, "adapter", save)

def trajectory_data(a, pipe, seed):
    "The seeded generators, the cached trajectories (points, latents, texts) and the sampling schedules the LoRA phases train on."
    torch.manual_seed(0); rng = random.Random(seed)
    T = torch.load(a.traj_cache, weights_only=False)           # our own file
    return rng, T["points"], T["data"], T["texts"], {n: schedule(pipe, n) for n in SCHEDULES}

def phase_patch(a, pipe):
    "A LoRA trained with the student's trajectory loss on the student with the training adapter in place."
    rng, points, data, texts, sched = trajectory_data(a, pipe, 1)
    tr = student_transformer().train()
    add_frozen_lora(tr, ASSETS / "tiny_training_adapter.safetensors", TRAINING_ADAPTER)
    params = add_trainable_lora(tr, TargetConfig(rank=a.rank, alpha=float(a.rank)))
    use_adapters(tr, {TRAINING_ADAPTER: 1.0, TRAINED: 1.0})
    def loss_fn(step):
        xa, sa, xb, sb, cs = segment_batch(data, points, rng, a.batch, sched)
        return trajectory_loss(tr, xa, sa, xb, sb, [texts[c] for c in cs])
    def save(step, loss, minutes):
        tr.eval(); pipe.transformer = tr; r = report(pipe, "student + adapter + patch"); tr.train()
        export_lora(tr, ASSETS / "tiny_distill_patch.safetensors", "fp16", lora_meta("tiny-distill-patch", step, loss, minutes, rank=a.rank, purity_1_step=r[1][0], purity_2_steps=r[2][0]))
    train_loop(a, tr, params, loss_fn, "patch", save)

def phase_fewstep(a, pipe):
    "A LoRA trained with the student's trajectory loss on the tiny base itself: base + LoRA samples in few steps."
    rng, points, data, texts, sched = trajectory_data(a, pipe, 2)
    tr = copy.deepcopy(pipe.transformer).train()
    params = add_trainable_lora(tr, TargetConfig(rank=a.rank, alpha=float(a.rank)))
    def loss_fn(step):
        xa, sa, xb, sb, cs = segment_batch(data, points, rng, a.batch, sched)
        return trajectory_loss(tr, xa, sa, xb, sb, [texts[c] for c in cs])
    def save(step, loss, minutes):
        tr.eval(); keep = pipe.transformer; pipe.transformer = tr; r = report(pipe, "base + few-step LoRA"); pipe.transformer = keep; tr.train()
        export_lora(tr, ASSETS / "tiny_fewstep_lora.safetensors", "fp16", lora_meta("tiny-fewstep-lora", step, loss, minutes, rank=a.rank, purity_1_step=r[1][0], purity_2_steps=r[2][0]))
    train_loop(a, tr, params, loss_fn, "fewstep", save)

def main():
    p = argparse.ArgumentParser()
    p.add_argument("--phase", choices=("trajectories", "student", "adapter", "patch", "fewstep"), required=True)
    p.add_argument("--minutes", type=float, default=15)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--trajectories", type=int, default=3072)
    p.add_argument("--sub", type=int, default=8, help="teacher Euler steps between two schedule points")
    p.add_argument("--batch-teacher", type=int, default=128)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--traj-cache", default="/tmp/tiny_trajectories.pt")
    p.add_argument("--pool-cache", default="/tmp/pool16k.pt", help="the base's encoded training pictures (tools/train_tiny_zimage.py --pool-cache)")
    p.add_argument("--pool-images", type=int, default=16000)
    p.add_argument("--rank", type=int, default=16, help="rank of the adapter and the patch")
    p.add_argument("--assets", default=str(ASSETS))
    a = p.parse_args()
    globals()["ASSETS"] = Path(a.assets); ASSETS.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(a.threads)
    pipe = tiny_pipeline()
    {"trajectories": phase_trajectories, "student": phase_student, "adapter": phase_adapter, "patch": phase_patch, "fewstep": phase_fewstep}[a.phase](a, pipe)

if __name__ == "__main__": main()
