"""The tiny model draws, so training shows what it does: the demo's subject is learned, DOP keeps the class prompt,
the weight sweep moves from class to subject, and the exported LoRA file reproduces the in-training samples in diffusers.

The metric is `tiny.subject_share`, the share of a sample's pixels in the subject's red or yellow. The tiny world the base
was pretrained on has neither colour (tools/train_tiny_zimage.py never draws them), so the base scores about 0 whatever it
is asked, and the renderer's own pictures of the subject score 0.05-0.3 (03_tiny): a sample that draws the subject scores
like them, one that draws a disc of another colour scores 0. The class prompt is compared with the base pixel by pixel
(mean absolute difference over 0-255, same seeds)."""
import numpy as np, pytest, torch
from zimage_nb.config import preset
from zimage_nb.lora import TRAINED
from zimage_nb.models import load_pipeline
from zimage_nb.sample import Sampler
from zimage_nb.tiny import SCENE_COLOURS, subject_share
from zimage_nb.train import train
from zimage_nb.tiny import write_demo_dataset

SUBJECT_PROMPT, CLASS_PROMPT, SEEDS = "zxq disc on a blue background", "a disc on a blue background", (1, 2, 3, 4)
KW = dict(width=64, height=64, setting="turbo")
STEPS = 160                                   # on the base, uniform timesteps (the subject's details are learned at low noise)

def px(img): return np.asarray(img, dtype=np.float32)

def trained(tmp, **over):
    cfg = preset("tiny", job__output_dir=str(tmp), job__name="draw", job__trigger_word="zxq",
                 datasets__0__path=str(write_demo_dataset(tmp / "photos")), training__steps=STEPS, save__every=STEPS, sample__every=0,
                 training__timestep_type="uniform", **over)
    res = train(cfg, work=tmp / "work", progress=False)
    return res, Sampler.from_run(res["run"])

def share(sampler, weight, prompt=SUBJECT_PROMPT, seeds=SEEDS):
    return float(np.mean([subject_share(sampler.image(prompt, seed=s, adapters={TRAINED: weight}, **KW)) for s in seeds]))

def class_change(sampler, seeds=SEEDS):
    "Mean |LoRA on - base| of the class prompt's samples, 0-255."
    return float(np.mean([np.abs(px(sampler.image(CLASS_PROMPT, seed=s, adapters={TRAINED: 1.0}, **KW)) -
                                 px(sampler.image(CLASS_PROMPT, seed=s, adapters={}, **KW))).mean() for s in seeds]))

@pytest.fixture(scope="module")
def plain(tmp_path_factory): return trained(tmp_path_factory.mktemp("plain"))

@pytest.fixture(scope="module")
def dop(tmp_path_factory): return trained(tmp_path_factory.mktemp("dop"), training__dop_class_word="a", training__dop_weight=1.0)

def test_the_base_draws_the_requested_colours():
    "The shipped base draws the background asked for; a disc of the asked colour covers a visible part of the picture."
    from zimage_nb.tiny import tiny_pipeline
    pipe = tiny_pipeline()
    pal = np.array(list(SCENE_COLOURS.values()), np.float32)
    hits = []
    for bg, col in (("blue", "white"), ("grey", "pink"), ("teal", "orange"), ("black", "green")):
        img = pipe(f"a large {col} disc in the middle on a {bg} background", height=64, width=64, num_inference_steps=8, guidance_scale=0.0,
                   generator=torch.Generator().manual_seed(1), max_sequence_length=64).images[0]
        idx = ((px(img).reshape(-1, 1, 3) - pal[None]) ** 2).sum(-1).argmin(1)
        counts = np.bincount(idx, minlength=len(pal)) / idx.size
        hits.append((list(SCENE_COLOURS)[counts.argmax()] == bg, counts[list(SCENE_COLOURS).index(col)] >= 0.05))
    assert all(b for b, _ in hits) and sum(c for _, c in hits) >= 3, hits

def test_the_lora_draws_the_subject_and_the_base_does_not(plain):
    _, s = plain
    off, on = share(s, 0.0), share(s, 1.0)
    print(f"subject share: LoRA off {off:.3f}, on {on:.3f}")
    assert off < 0.005 and on > 0.04 and on > 10 * max(off, 1e-3)

def test_the_weight_sweep_moves_from_class_to_subject(plain):
    _, s = plain
    sweep = [share(s, w) for w in (0.0, 0.25, 0.5, 0.75, 1.0)]
    print("subject share by LoRA weight:", [f"{v:.3f}" for v in sweep])
    assert all(b >= a - 0.01 for a, b in zip(sweep, sweep[1:])) and sweep[-1] - sweep[0] > 0.05

def test_dop_keeps_the_class_prompt_as_the_base_drew_it(plain, dop):
    (_, s_plain), (_, s_dop) = plain, dop
    without, with_dop = class_change(s_plain), class_change(s_dop)
    print(f"class prompt change (mean |diff| /255): without DOP {without:.1f}, with DOP {with_dop:.1f}")
    assert with_dop < 0.5 * without and with_dop < 15
    assert share(s_dop, 1.0) > 0.04                                       # and it still learned the subject

def test_the_exported_file_reproduces_the_samples_in_diffusers(plain):
    res, s = plain
    run, lora = res["run"], res["lora"]
    pipe = load_pipeline(run.model_folder, run.cfg.quantization.transformer, run.cfg.quantization.text_encoder, dtype=torch.float32, device="cpu", progress=False)
    pipe.load_lora_weights(str(lora.parent), weight_name=lora.name, adapter_name="exported")
    shares = []
    for seed in SEEDS:
        ours = px(s.image(SUBJECT_PROMPT, seed=seed, adapters={TRAINED: 1.0}, **KW))
        theirs = px(pipe(prompt_embeds=[s.encode([SUBJECT_PROMPT])[0]], height=64, width=64, num_inference_steps=8, guidance_scale=0.0,
                         generator=torch.Generator("cpu").manual_seed(seed)).images[0])
        assert np.abs(ours - theirs).mean() < 1.0                          # the same picture, up to rounding
        shares.append(subject_share(theirs))
    assert np.mean(shares) > 0.04
