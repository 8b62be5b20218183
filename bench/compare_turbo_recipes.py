"""The three ways to train a LoRA for a few-step (Turbo) model, measured offline on the tiny Turbo family.

The same subject ("zxq", the demo's red disc with a yellow ring, `write_demo_dataset`), the same training settings
(the tiny preset with 300 steps at lr 1e-3, uniform timesteps, DOP with the class word "a", as the demo) and four recipes:

    turbo + training adapter   LoRA trained on the tiny Turbo with the tiny training adapter in place; sampled without it
    base (de-Turbo)            LoRA trained on the tiny base; sampled at 30 steps, its own regime
    plain + DistillPatch       LoRA trained plainly on the tiny Turbo; sampled with the tiny DistillPatch beside it
    plain (drifts)             LoRA trained plainly on the tiny Turbo; sampled as is: the failure the recipes exist for
    base + few-step LoRA       the base row's LoRA, sampled in the Turbo's step count with the tiny few-step LoRA beside it
                               at 0.8 (the `base-fun-distill` preset's recipe: alibaba-pai's Fun distill LoRA on Z-Image base)

Each LoRA is loaded into a fresh pipeline with diffusers' `load_lora_weights` (the patch as a second adapter) and scored:

    subject           share of red/yellow pixels (`subject_share`) in the trigger prompt's samples: the subject is drawn
    1-step vs 30-step mean |pixel difference| / 255 between the LoRA'd model's 1-step and 30-step samples (trigger and
                      class prompts, same noise): a model that kept its few-step sampling draws in one step what it
                      draws in thirty (a plain flow model, like the base, does not)
    class sharpness   `tiny_purity` of the class prompts' samples at the recipe's steps: few-step blur mixes colours
    class drift       mean |pixel difference| / 255 between the class prompts' samples and the same model's without the
                      LoRA (same steps and noise): what the LoRA changed beyond its subject

and by the report card's formulas (`zimage_nb.report`, 09b) with `TinyWorldScorers` as DINO, to check that the card's
verdicts on recipes agree with the measures above:

    card: few-step kept   DINO similarity of the class prompts' 1-step samples to the same model's 30-step ones (the
                          card's few-step kept, paired by prompt and seed); the truth it stands for: which Turbo recipe keeps
                          the class prompts' sharpness (`tiny_purity`), and the 1-step vs 30-step gap
    card: base kept       DINO similarity of the class prompts' samples with the LoRA to without (paired by prompt and
                          seed); the truth: class drift
    card: DINO gained     DINO similarity of the trigger prompt's samples to the training pictures, with the LoRA minus
                          without; the truth: subject
    card: sharpness kept  the class prompts' samples' sharpness (variance of the Laplacian) with the LoRA over without,
                          at the recipe's steps (the card's sharpness on/off); the truth: class sharpness (`tiny_purity`)

Three reference rows (no LoRA) come first. `python bench/compare_turbo_recipes.py --out /tmp/recipes` (~4 min on 2 CPU cores).
One training per recipe varies a lot from seed to seed (the subject's share most), so bench/RESULTS.md reports three
training seeds and their spread:

    python bench/compare_turbo_recipes.py --out /tmp/recipes --seed 42     # and --seed 1, --seed 2 into other folders
    python bench/compare_turbo_recipes.py --summarize /tmp/recipes /tmp/recipes_s1 /tmp/recipes_s2 --out /tmp/summary

Writes <out>/recipes.json, <out>/recipes.md (the table) and <out>/recipes.png (rows: recipes; columns: the trigger
prompt at three seeds, then two class prompts; all at the tiny Turbo's step count, the base row at 30 steps).
"""
import argparse, json, time
from pathlib import Path
import numpy as np, torch
from PIL import Image, ImageDraw
from zimage_nb.config import preset
from zimage_nb.models import tiny_model_folder
from zimage_nb.tiny import tiny_pipeline, tiny_image, subject_share, tiny_purity, tiny_turbo_file, image_distance as mad, TINY_TURBO_STEPS
from zimage_nb.train import train
from zimage_nb.tiny import write_demo_dataset
from zimage_nb.report import TinyWorldScorers, embed_images, mean_paired, mean_pairwise, sharpness

TRIGGER = "zxq disc on a blue background"
CLASS = ["a large pink disc in the middle on a grey background", "a large white square on a blue background",
         "a small orange triangle on the left on a teal background", "a large green disc on the right on a black background"]
SEEDS = (1, 2, 3)

RECIPES = {   # name: (job name, model, config overrides, frozen LoRA beside it at inference and its weight, sampling steps)
    "turbo + training adapter": ("adapter", "turbo", dict(model__variant="turbo", model__training_adapter="ADAPTER"), None, TINY_TURBO_STEPS),
    "base (de-Turbo)": ("base", "base", dict(model__variant="base"), None, 30),
    "plain + DistillPatch": ("patch", "turbo", dict(model__variant="turbo", model__distill_patch="PATCH"), ("patch", 1.0), TINY_TURBO_STEPS),
    "plain (drifts)": ("plain", "turbo", dict(model__variant="turbo"), None, TINY_TURBO_STEPS),
    "base + few-step LoRA": ("base", "base", dict(model__variant="base"), ("fewstep", 0.8), TINY_TURBO_STEPS),   # the base row's LoRA, trained once
}

def images(pipe, prompts, steps):
    return [tiny_image(pipe, p, height=64, width=64, steps=steps, seed=s) for p in prompts for s in SEEDS]

SC = TinyWorldScorers()
dino = lambda ims: embed_images(SC, ims, "dino")

def card_scores(one, many, cls, own_cls, trig, own_trig, refs)->dict:
    "The report card's few-step kept, base kept, DINO gained and sharpness on/off for one recipe (score_adapters' formulas on these samples)."
    n, ref = len(SEEDS), dino(refs)
    return dict(card_few_step_kept=round(mean_paired(dino(one[n:]), dino(many[n:])), 4), card_kept=round(mean_paired(dino(cls), dino(own_cls)), 4),
                card_dino_gain=round(mean_pairwise(dino(trig), ref) - mean_pairwise(dino(own_trig), ref), 4),
                card_sharp_kept=round(float(np.mean([sharpness(i) for i in cls]) / np.mean([sharpness(i) for i in own_cls])), 4))

def main():
    p = argparse.ArgumentParser()
    p.add_argument("--out", default="/tmp/recipes")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--lr", type=float, default=1e-3, help="the LoRA's learning rate (the tiny preset's 3e-3 changes the class prompts too much to compare)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=42, help="the trainings' seed (noise, timesteps); the samples' seeds stay 1-3")
    p.add_argument("--smoke", action="store_true", help="2 training steps, 1 seed, 2 class prompts: checks the tool runs (tests/test_tiny_turbo.py), measures nothing")
    p.add_argument("--summarize", nargs="+", metavar="FOLDER", help="instead of training: the mean and range over these runs' recipes.json (one per training seed)")
    a = p.parse_args()
    if a.summarize: return summarize([Path(f) for f in a.summarize], Path(a.out))
    global SEEDS, CLASS
    if a.smoke: a.steps, SEEDS, CLASS = 2, SEEDS[:1], CLASS[:2]
    torch.set_num_threads(a.threads)
    out = Path(a.out); out.mkdir(parents=True, exist_ok=True)
    photos = write_demo_dataset(out / "photos")
    refs = [Image.open(f).convert("RGB") for f in sorted(photos.glob("*.png"))]
    folders = {"base": tiny_model_folder(out / "tiny-base"), "turbo": tiny_model_folder(out / "tiny-turbo", turbo=True)}
    adapter, patch = str(tiny_turbo_file("adapter")), str(tiny_turbo_file("patch"))
    ref = images(tiny_pipeline(turbo=True), CLASS, TINY_TURBO_STEPS)             # the tiny Turbo's own few-step samples
    ref_base = images(tiny_pipeline(), CLASS, 30)                                 # the base's own 30-step samples
    def with_lora(pipe, kind, weight):
        pipe.load_lora_weights(str(Path(tiny_turbo_file(kind)).parent), weight_name=Path(tiny_turbo_file(kind)).name, adapter_name=kind)
        pipe.set_adapters([kind], [weight]); return pipe
    ref_fewstep = images(with_lora(tiny_pipeline(), "fewstep", 0.8), CLASS, TINY_TURBO_STEPS)   # the base + few-step LoRA's own samples
    trig_off = {"turbo": images(tiny_pipeline(turbo=True), [TRIGGER], TINY_TURBO_STEPS), "base": images(tiny_pipeline(), [TRIGGER], 30),
                "fewstep": images(with_lora(tiny_pipeline(), "fewstep", 0.8), [TRIGGER], TINY_TURBO_STEPS)}   # the trigger prompt without a subject LoRA
    rows, table, trained = [], [], {}
    for name, turbo, steps in (("tiny Turbo, no LoRA", True, TINY_TURBO_STEPS), ("tiny base, no LoRA", False, 30), ("tiny base + few-step LoRA, no subject LoRA", None, TINY_TURBO_STEPS)):
        pipe = tiny_pipeline(turbo=bool(turbo)) if turbo is not None else with_lora(tiny_pipeline(), "fewstep", 0.8)
        trig, cls = images(pipe, [TRIGGER], steps), images(pipe, CLASS, steps)
        one = images(pipe, [TRIGGER] + CLASS, TINY_TURBO_STEPS); many = images(pipe, [TRIGGER] + CLASS, 30)
        table.append(dict(recipe=name, seed=a.seed, sampling_steps=steps, train_seconds=0, subject=round(float(np.mean([subject_share(i) for i in trig])), 3),
                          few_step_gap=round(mad(one, many), 4), class_sharpness=round(float(np.mean([tiny_purity(i) for i in cls])), 3), class_drift=0.0,
                          **card_scores(one, many, cls, cls, trig, trig, refs)))
        rows.append((f"{name}, {steps} step{'s' * (steps > 1)}", trig + [cls[0], cls[len(SEEDS)]]))
    for name, (job, model, over, extra, steps) in RECIPES.items():
        over = {k: {"ADAPTER": adapter, "PATCH": patch}.get(v, v) for k, v in over.items()}
        cfg = preset("tiny", job__output_dir=str(out / "runs"), job__name=job,
                     job__trigger_word="zxq", job__seed=a.seed, datasets__0__path=str(photos), model__name_or_path=str(folders[model]), training__steps=a.steps, training__lr=a.lr,
                     save__every=a.steps, sample__every=0, training__timestep_type="uniform", training__dop_class_word="a", sample__steps=steps, **over)
        if job not in trained:
            t0 = time.time(); trained[job] = (train(cfg, work=out / f"work-{model}", resume=False, progress=False), time.time() - t0)
        res, secs = trained[job]
        pipe = tiny_pipeline(turbo=model == "turbo")
        pipe.load_lora_weights(str(res["lora"].parent), weight_name=res["lora"].name, adapter_name="subject")
        if extra:
            kind, weight = extra
            pipe.load_lora_weights(str(Path(tiny_turbo_file(kind)).parent), weight_name=Path(tiny_turbo_file(kind)).name, adapter_name=kind)
            pipe.set_adapters(["subject", kind], [1.0, weight])
        trig, cls = images(pipe, [TRIGGER], steps), images(pipe, CLASS, steps)
        one = images(pipe, [TRIGGER] + CLASS, TINY_TURBO_STEPS); many = images(pipe, [TRIGGER] + CLASS, 30)
        own = ref if model == "turbo" else ref_fewstep if extra and extra[0] == "fewstep" else ref_base   # the same model without the LoRA, same steps
        row = dict(recipe=name, seed=a.seed, sampling_steps=steps, train_seconds=round(secs, 1),
                   subject=round(float(np.mean([subject_share(i) for i in trig])), 3),
                   few_step_gap=round(mad(one, many), 4),
                   class_sharpness=round(float(np.mean([tiny_purity(i) for i in cls])), 3),
                   class_drift=round(mad(cls, own), 4),
                   **card_scores(one, many, cls, own, trig, trig_off["turbo" if model == "turbo" else "fewstep" if extra and extra[0] == "fewstep" else "base"], refs))
        print(row, flush=True); table.append(row)
        rows.append((f"{name}, {steps} step{'s' * (steps > 1)}", trig + [cls[0], cls[len(SEEDS)]]))
    (out / "recipes.json").write_text(json.dumps(table, indent=1))
    md = ["| recipe | sampled at | " + " | ".join(t for _, t, _ in METRICS) + " |", "|---" * (2 + len(METRICS)) + "|"]
    md += [f"| {r['recipe']} | {r['sampling_steps']} step{'s' * (r['sampling_steps'] > 1)} | " + " | ".join(f(r[k]) for k, _, f in METRICS) + " |" for r in table]
    (out / "recipes.md").write_text("\n".join(md) + "\n")
    from zimage_nb.sample import label_font
    cell, left = 96, 330
    grid = Image.new("RGB", (left + cell * (len(SEEDS) + 2), cell * len(rows)), "white"); d = ImageDraw.Draw(grid)
    for r, (label, ims) in enumerate(rows):
        f = label_font(label, 14)
        if d.textlength(label, font=f) > left - 12:   # two lines: the last two parts of the label on the second
            a, b = ", ".join(label.split(", ")[:-2]), ", ".join(label.split(", ")[-2:])
            d.text((6, r * cell + cell // 2 - 17), a + ",", fill="black", font=f); d.text((6, r * cell + cell // 2 + 1), b, fill="black", font=f)
        else: d.text((6, r * cell + cell // 2 - 8), label, fill="black", font=f)
        for c, im in enumerate(ims): grid.paste(im.resize((cell, cell), Image.NEAREST), (left + c * cell, r * cell))
    grid.save(out / "recipes.png")
    print("\n".join(md)); print(f"wrote {out / 'recipes.png'}")

METRICS = (("subject", "subject", lambda v: f"{v:.1%}"), ("few_step_gap", "1-step vs 30-step gap", lambda v: f"{v:.3f}"),
           ("class_sharpness", "class prompts: sharpness", lambda v: f"{v:.3f}"), ("class_drift", "class prompts: drift", lambda v: f"{v:.3f}"),
           ("card_few_step_kept", "card: few-step kept", lambda v: f"{v:.3f}"), ("card_kept", "card: base kept", lambda v: f"{v:.3f}"),
           ("card_dino_gain", "card: DINO gained", lambda v: f"{v:+.3f}"), ("card_sharp_kept", "card: sharpness kept", lambda v: f"{v:.2f}"))
CARD_VS_TRUTH = (("card_few_step_kept", "few_step_gap", -1), ("card_kept", "class_drift", -1), ("card_dino_gain", "subject", 1), ("card_sharp_kept", "class_sharpness", 1))   # (card, truth, the sign that means agreement)

def spearman(a, b)->float:
    r = lambda x: np.argsort(np.argsort(x))
    return float(np.corrcoef(r(a), r(b))[0, 1])

def summarize(folders:list, out:Path):
    "One table over several runs (training seeds): each metric's mean and, in brackets, its lowest and highest value."
    runs = [json.loads((f / "recipes.json").read_text()) for f in folders]
    seeds = [r[0]["seed"] for r in runs]
    if len(set(seeds)) != len(seeds): raise SystemExit(f"two runs with the same training seed: {seeds}")
    names = [r["recipe"] for r in runs[0]]
    md = [f"| recipe | sampled at | " + " | ".join(t for _, t, _ in METRICS) + " |", "|---" * (2 + len(METRICS)) + "|"]
    for name in names:
        rows = [next(x for x in run if x["recipe"] == name) for run in runs]
        cells = []
        for key, _, fmt in METRICS:
            v = [x[key] for x in rows]
            cells.append(fmt(np.mean(v)) if max(v) == min(v) else f"{fmt(np.mean(v))} ({fmt(min(v))}-{fmt(max(v))})")
        n = rows[0]["sampling_steps"]
        md.append(f"| {name} | {n} step{'s' * (n > 1)} | " + " | ".join(cells) + " |")
    rows = [x for run in runs for x in run if x["recipe"] in RECIPES]   # the card's case: a subject LoRA (the reference rows have none)
    md += ["", f"Spearman rank correlation over the {len(rows)} rows with a subject LoRA (recipes x training seeds; agreement: +1 or -1 as given): "
           + ", ".join(f"{c} / {t} {spearman([x[c] for x in rows], [x[t] for x in rows]):+.2f} (agreement: {s:+d})" for c, t, s in CARD_VS_TRUTH)]
    turbo = [n for n in names if n in RECIPES and RECIPES[n][1] == "turbo"]
    for run, seed in zip(runs, seeds):   # per training seed: which Turbo recipe keeps the few-step quality best, by the card and by the truth
        by = {x["recipe"]: x for x in run if x["recipe"] in turbo}
        best = lambda k, f=max: f(by, key=lambda n: by[n][k])
        md.append(f"seed {seed}, the Turbo recipes: card's best few-step kept: {best('card_few_step_kept')}; smallest 1-step vs 30-step gap: {best('few_step_gap', min)}; "
                  f"card's best sharpness kept: {best('card_sharp_kept')}; sharpest class prompts: {best('class_sharpness')}")
    out.mkdir(parents=True, exist_ok=True)
    (out / "recipes_seeds.json").write_text(json.dumps([x for run in runs for x in run], indent=1))
    (out / "recipes_summary.md").write_text(f"training seeds {', '.join(map(str, seeds))}: mean (lowest-highest)\n\n" + "\n".join(md) + "\n")
    print((out / "recipes_summary.md").read_text())

if __name__ == "__main__": main()
