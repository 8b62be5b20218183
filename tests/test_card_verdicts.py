"""The report card's verdicts where the truth is known: two runs of the demo's recipe (tiny Turbo + the tiny training
adapter) scored by the card with `TinyWorldScorers`, against the tiny world's own measures of the same checkpoints.
The full table, with more prompts and seeds, is bench/report_card_tiny.py's (bench/RESULTS.md).

    normal        the demo's settings, 240 steps, a checkpoint every 60
    over-trained  5x the learning rate, a checkpoint every 80 to 240"""
import numpy as np
import pytest
from PIL import Image
from zimage_nb.config import preset
from zimage_nb.models import tiny_model_folder
from zimage_nb.report import TinyWorldScorers, card_prompts, report_card, KEEP_MIN, LEAK_MAX
from zimage_nb.sample import Sampler, checkpoint_loras, checkpoint_adapter
from zimage_nb.tiny import write_demo_dataset, tiny_turbo_file, subject_share, tiny_purity, TINY_TURBO_STEPS
from zimage_nb.train import train

PROMPTS = card_prompts("zxq", ["[trigger] disc on a blue background", "[trigger] disc on a grey background"], seeds=(1, 2))
FEW, SIZE = dict(setting="turbo", steps=TINY_TURBO_STEPS), dict(width=64, height=64)

def scored(out, steps:int, every:int, lr:float)->tuple:
    "Train, score every checkpoint with the card, and measure the same checkpoints in the tiny world's terms."
    photos = write_demo_dataset(out / "photos")
    cfg = preset("tiny", job__output_dir=str(out), job__name="run", job__trigger_word="zxq", datasets__0__path=str(photos),
                 model__name_or_path=str(tiny_model_folder(turbo=True)), model__variant="turbo", model__training_adapter=str(tiny_turbo_file("adapter")),
                 sample__steps=TINY_TURBO_STEPS, sample__every=0, save__every_minutes=0, training__timestep_type="uniform", training__dop_class_word="a",
                 training__steps=steps, save__every=every, training__lr=lr)
    res = train(cfg, work=out / "work", progress=False)
    s = Sampler.from_run(res["run"])
    card = report_card(s, res["run"].out, [Image.open(f) for f in sorted(photos.glob("*.png"))], PROMPTS, TinyWorldScorers(),
                       size=SIZE, setting=FEW, full_setting="non-accelerated", full_rows="all", progress=False)
    truth = {}
    for label, f in checkpoint_loras(res["run"].out).items():
        on = {checkpoint_adapter(s, f): 1.0}
        pics = lambda ps: [s.image(p, sd, adapters=on, **FEW, **SIZE) for p in ps for sd in PROMPTS.seeds]
        subj, klass = pics(PROMPTS.subject), pics(PROMPTS.klass)
        truth[label] = dict(subject=np.mean([subject_share(i) for i in subj]), class_leak=np.mean([subject_share(i) for i in klass]),
                            purity=np.mean([tiny_purity(i) for i in subj]))
    return card, truth

@pytest.fixture(scope="module")
def normal(tmp_path_factory): return scored(tmp_path_factory.mktemp("normal"), 240, 60, 3e-3)

@pytest.fixture(scope="module")
def over(tmp_path_factory): return scored(tmp_path_factory.mktemp("over"), 240, 80, 1.5e-2)

def order(d:dict)->list: return sorted(d, key=d.get)

def spearman(a:list, b:list)->float:
    r = lambda x: np.argsort(np.argsort(x))
    return float(np.corrcoef(r(a), r(b))[0, 1])

def test_dino_gained_ranks_the_checkpoints_as_the_subject_drawn(normal, over):
    for card, truth in (normal, over):
        labels = list(truth)
        assert order({l: card.values(l)["dino_gain"] for l in labels}) == order({l: truth[l]["subject"] for l in labels})

def test_few_step_kept_follows_the_few_step_pictures_purity(normal):
    card, truth = normal
    labels = list(truth)
    assert spearman([card.values(l)["few_step_kept"] for l in labels], [truth[l]["purity"] for l in labels]) >= 0.8

def test_the_suggested_checkpoint_is_the_truths_and_the_last_is_flagged(normal):
    "The truth's pick: the most subject drawn among checkpoints whose class pictures hold at most 6.5% of the subject's colours (a class leak of 0.1 in the card's terms, bench/RESULTS.md)."
    card, truth = normal
    ok = [l for l in truth if truth[l]["class_leak"] <= 0.065]
    assert card.suggested == max(ok, key=lambda l: truth[l]["subject"])
    final = card.values("final")
    assert final["kept"] < KEEP_MIN or final["leak"] > LEAK_MAX          # trained on: the subject leaks into the class pictures
    assert truth["final"]["class_leak"] > 0.065

def test_an_over_trained_run_is_flagged(normal, over):
    "Five times the learning rate: the first checkpoints already break the base (muddier pictures than any of the normal run's) and the card flags them."
    card, truth = over
    broken = ["step 80", "step 160"]
    assert max(truth[l]["purity"] for l in broken) < min(t["purity"] for t in normal[1].values())
    assert all(card.values(l)["kept"] < KEEP_MIN for l in broken) and card.suggested not in broken
