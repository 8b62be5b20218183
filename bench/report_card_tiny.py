"""The report card's verdicts checked where the truth is known: the tiny world (09b_report).

Two runs of the demo's recipe (tiny Turbo + the tiny training adapter, the demo's 8 pictures of "zxq"):
  normal        the demo's settings, a checkpoint every 60 steps to 240
  over-trained  5x the learning rate and 480 steps, a checkpoint every 120
Each checkpoint is scored by the card with `TinyWorldScorers` (the foreground's colour histogram stands in for DINO and
CLIP's image features, the named colours for CLIP's text features) and by the
tiny world's own measures: `subject_share` of the trigger prompts' samples (the subject learned), `subject_share` of
the class prompts' samples (the subject leaking where it should not) and `image_distance` of the class prompts' samples
with and without the LoRA (what changed), and `tiny_purity` of the few-step and non-accelerated samples.
The card's scores are compared with the truth's by rank (Spearman), its suggestion with the truth's pick (the most subject
among checkpoints whose class samples hold at most 2%, or 6.5%, of the subject's colours), and the over-trained run's
broken final must be flagged.

    python bench/report_card_tiny.py --out /tmp/card          # about 5 min on 2 CPU cores
writes OUT/rows.jsonl and OUT/table.md.
"""
import argparse, json, time
from pathlib import Path
import numpy as np

def main():
    ap = argparse.ArgumentParser(); ap.add_argument("--out", default="/tmp/report-card-tiny"); ap.add_argument("--smoke", action="store_true")
    a = ap.parse_args(); out = Path(a.out); out.mkdir(parents=True, exist_ok=True)
    from PIL import Image
    from zimage_nb.config import preset
    from zimage_nb.models import tiny_model_folder
    from zimage_nb.report import TinyWorldScorers, card_prompts, report_card, KEEP_MIN, LEAK_MAX
    from zimage_nb.sample import Sampler, checkpoint_loras, checkpoint_adapter
    from zimage_nb.tiny import write_demo_dataset, tiny_turbo_file, subject_share, tiny_purity, image_distance, TINY_TURBO_STEPS
    from zimage_nb.train import train
    model, photos = tiny_model_folder(out / "tiny-model", 0, turbo=True), write_demo_dataset(out / "photos")
    refs = [Image.open(f) for f in sorted(photos.glob("*.png"))]
    prompts = card_prompts("zxq", ["[trigger] disc on a blue background", "[trigger] disc on a grey background"], ["[trigger] disc on a green background"], seeds=(1, 2, 3))
    few, full, size = dict(setting="turbo", steps=TINY_TURBO_STEPS), "non-accelerated", dict(width=64, height=64)
    steps = 4 if a.smoke else 1
    runs = {"normal": dict(training__steps=240 // steps, save__every=60 // steps),
            "over-trained": dict(training__steps=480 // steps, save__every=120 // steps, training__lr=1.5e-2)}
    rows, t0 = [], time.time()
    for name, kw in runs.items():
        cfg = preset("tiny", job__output_dir=str(out), job__name=name, job__trigger_word="zxq", datasets__0__path=str(photos),
                     model__name_or_path=str(model), model__variant="turbo", model__training_adapter=str(tiny_turbo_file("adapter")),
                     sample__steps=TINY_TURBO_STEPS, sample__every=0, save__every_minutes=0, training__timestep_type="uniform", training__dop_class_word="a", **kw)   # the demo's recipe; no timed checkpoints
        res = train(cfg, work=out / "work", progress=False)
        s = Sampler.from_run(res["run"])
        card = report_card(s, res["run"].out, refs, prompts, TinyWorldScorers(), size=size, setting=few, full_setting=full, full_rows="all",
                           path=out / f"{name}.card.json", progress=False)
        for label, f in checkpoint_loras(res["run"].out).items():
            on = {checkpoint_adapter(s, f): 1.0}
            img = lambda ps, ad, st: [s.image(p, sd, adapters=ad, **({"setting": st} if isinstance(st, str) else st), **size) for p in ps for sd in prompts.seeds]
            subj, k_on, k_off, subj_full = img(prompts.subject, on, few), img(prompts.klass, on, few), img(prompts.klass, {}, few), img(prompts.subject, on, full)
            v = card.values(label)
            rows.append(dict(run=name, checkpoint=label, dino_gain=v["dino_gain"], kept=v["kept"], leak=v["leak"], few_step_kept=v["few_step_kept"], clip_t=v["clip_t"],
                             sharp=v["sharp"], suggested=label == card.suggested,
                             subject=float(np.mean([subject_share(i) for i in subj])), class_leak=float(np.mean([subject_share(i) for i in k_on])),
                             class_change=image_distance(k_on, k_off), purity_few=float(np.mean([tiny_purity(i) for i in subj])),
                             purity_full=float(np.mean([tiny_purity(i) for i in subj_full]))))
            print(json.dumps(rows[-1]), flush=True)
    with open(out / "rows.jsonl", "w") as fh:
        for r in rows: fh.write(json.dumps(r) + "\n")
    lines = ["| run | checkpoint | card: DINO gained | card: base kept | card: class leak | card: few-step kept | truth: subject share | truth: class leak | truth: class change | purity few / full |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['run']} | {r['checkpoint']}{' (suggested)' if r['suggested'] else ''} | {r['dino_gain']:+.3f} | {r['kept']:.3f} | {r['leak']:+.3f} | {r['few_step_kept']:.3f} | "
                     f"{r['subject']:.1%} | {r['class_leak']:.1%} | {r['class_change']:.3f} | {r['purity_few']:.2f} / {r['purity_full']:.2f} |")
    ranks = lambda x: np.argsort(np.argsort(x))
    spearman = lambda a, b: float(np.corrcoef(ranks([r[a] for r in rows]), ranks([r[b] for r in rows]))[0, 1])
    pairs = [("dino_gain", "subject"), ("leak", "class_leak"), ("kept", "class_change"), ("few_step_kept", "purity_few")]
    corr = [f"Spearman rank correlation over the {len(rows)} rows: " + ", ".join(f"card {a} / truth {b} {spearman(a, b):+.2f}" for a, b in pairs)]
    verdicts = []
    for name in runs:
        rr = [r for r in rows if r["run"] == name]
        truth = lambda tol: (max(ok, key=lambda r: r["subject"])["checkpoint"] if (ok := [r for r in rr if r["class_leak"] <= tol]) else None)
        card_pick = next((r["checkpoint"] for r in rr if r["suggested"]), None)
        flagged = [r["checkpoint"] for r in rr if r["kept"] < KEEP_MIN or r["leak"] > LEAK_MAX]
        verdicts.append(f"{name}: card suggests {card_pick}; the truth (most subject within a class-leak tolerance) picks {truth(0.02)} at 2%, {truth(0.065)} at 6.5%; "
                        f"flagged (base kept < {KEEP_MIN} or class leak > {LEAK_MAX}): {', '.join(flagged) or 'none'}")
    (out / "table.md").write_text("\n".join(lines) + "\n\n" + "\n".join(corr + verdicts) + f"\n\n{time.time() - t0:.0f} s\n")
    print("\n".join(lines)); print("\n".join(corr + verdicts)); print(f"{time.time() - t0:.0f} s")

if __name__ == "__main__": main()
