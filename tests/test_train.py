"Training engine on the tiny stack (CPU): learning, adapters, export, NaN handling, kill-safe checkpoints, two processes."
import json, os, signal, subprocess, sys
import numpy as np, pytest, torch
from safetensors.torch import load_file
import zimage_nb.train as T
from zimage_nb.tiny import write_demo_dataset
import zimage_nb.checkpoints as C
from zimage_nb.config import preset, save_config
from zimage_nb.core import ZImageError
from zimage_nb.lora import TRAINED, adapters_off, trained_state, lora_metadata
from zimage_nb.tiny import tiny_pipeline, tiny_image, write_tiny_lora

@pytest.fixture(scope="module")
def setup(tmp_path_factory, tiny):
    d = tmp_path_factory.mktemp("train")
    data = write_demo_dataset(d / "photos")
    adapter = write_tiny_lora(tiny.transformer, d / "adapter.safetensors", "ostris", rank=4, seed=3, scale=0.1)
    return d, data, adapter

def make_cfg(setup, name, **kw):
    d, data, adapter = setup
    base = dict(job__output_dir=str(d / "runs"), job__name=name, job__trigger_word="zxq", datasets__0__path=str(data),
                model__variant="turbo", model__training_adapter=str(adapter), training__steps=20, save__every=10, sample__every=0)
    return preset("tiny", **{**base, **kw})

def work(setup): return setup[0] / "work"   # caches shared by all runs: encoded once

def same_lora(a, b): return set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)

@pytest.fixture(scope="module")
def trained(setup):
    "40 steps with the training adapter: the run every quality test looks at."
    return T.train(make_cfg(setup, "quality", training__steps=40, save__every=20, sample__every=20), work=work(setup), progress=False)

def test_loss_falls(trained):
    run = trained["run"]
    after = T.eval_loss(run)
    with adapters_off(run.transformer, TRAINED): before = T.eval_loss(run)
    # measured 2026-11-24: 40 steps at the tiny preset's lr 3e-3 lower the fixed-noise loss by about 12%
    assert after < 0.92 * before, (before, after)
    assert all(np.isfinite(trained["losses"])) and len(trained["losses"]) == 40

def test_outputs_of_a_run(trained):
    out = trained["run"].out
    log = [json.loads(l) for l in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == list(range(1, 41))
    assert {"loss", "lr", "peak_memory", "time", "skipped"} <= set(log[0])
    assert [p.name for p in C.list_checkpoints(out / "checkpoints")] == ["step_0000020"]
    assert (out / "samples" / "step_0000020.png").exists() and (out / "samples" / "step_0000040.png").exists()
    meta = lora_metadata(trained["lora"])
    assert meta["zimage_nb.steps"] == "40" and meta["zimage_nb.rank"] == "4" and meta["zimage_nb.trigger_word"] == "zxq"
    assert meta["zimage_nb.resolutions"] == "[64, 96]" and meta["zimage_nb.recipe"].startswith("turbo + training adapter")

def test_export_layout_and_no_adapter_weights(trained):
    f = load_file(trained["lora"])
    assert len(f) == 3 * 42 and all(k.startswith("diffusion_model.") for k in f)
    assert {k.rsplit(".", 2)[-2] if not k.endswith("alpha") else "alpha" for k in f} == {"lora_A", "lora_B", "alpha"}
    mine = trained_state(trained["run"].transformer)
    for k, v in mine.items():   # exactly the trained adapter (bf16 file), nothing of the training adapter
        torch.testing.assert_close(f[f"diffusion_model.{k}"].float(), v, rtol=1e-2, atol=1e-4)

def test_adapter_removed_equals_base(trained):
    run = trained["run"]
    from zimage_nb.models import load_transformer, tiny_forward, relative_error
    ref = load_transformer(run.model_folder, "nf4", torch.float32, "cpu", progress=False); T.one_4bit_path(ref)
    with adapters_off(run.transformer): assert torch.equal(tiny_forward(run.transformer), tiny_forward(ref))
    with adapters_off(run.transformer, TRAINED): assert relative_error(tiny_forward(ref), tiny_forward(run.transformer)) > 0.01  # the adapter does act

def test_exported_lora_loads_in_diffusers(trained):
    pipe = tiny_pipeline()
    before = np.asarray(tiny_image(pipe), float)
    pipe.load_lora_weights(str(trained["lora"].parent), weight_name=trained["lora"].name, adapter_name="mine")   # as the model card shows
    after = np.asarray(tiny_image(pipe), float)
    pipe.set_adapters(["mine"], [0.0]); zero = np.asarray(tiny_image(pipe), float)
    assert np.abs(after - before).mean() > 1.0
    assert np.array_equal(zero, before)

def test_lora_on_off_changes_samples(trained):
    run = trained["run"]
    on = np.asarray(T.render_samples(run)[0], float)
    off = np.asarray(T.render_samples(run, adapters={})[0], float)   # base model
    assert np.abs(on - off).mean() > 1.0

KILL = """
import os, signal, sys
import zimage_nb.train as T
from zimage_nb.config import load_config
cfg, work, at, where = load_config(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
die = lambda: os.kill(os.getpid(), signal.SIGKILL)
if where == "step": cb = [lambda e: e["event"] == "step" and e["step"] == at and die()]
else:  # in the middle of writing the checkpoint of step `at`
    import zimage_nb.checkpoints as C                # where checkpoints are written
    cb, real = [], C.save_config
    C.save_config = lambda c, p: die() if p.parent.name.startswith(f".step_{at:07d}") else real(c, p)
T.train(cfg, work=work, callbacks=cb, progress=False)
"""

def killed_run(setup, cfg, at, where="step"):
    path = save_config(cfg, setup[0] / f"{cfg.job.name}.yaml")
    p = subprocess.run([sys.executable, "-c", KILL, str(path), str(work(setup)), str(at), where], capture_output=True, text=True)
    assert p.returncode == -signal.SIGKILL, p.stderr[-2000:]

def test_kill_and_resume_is_bit_exact(setup):
    straight = T.train(make_cfg(setup, "straight"), work=work(setup), progress=False)
    cfg = make_cfg(setup, "killed")
    killed_run(setup, cfg, 13)
    out = T.run_folder(cfg)
    assert [p.name for p in C.list_checkpoints(out / "checkpoints")] == ["step_0000010"]
    assert len((out / "log.jsonl").read_text().splitlines()) == 13
    resumed = T.train(cfg, work=work(setup), progress=False)
    assert same_lora(trained_state(straight["run"].transformer), trained_state(resumed["run"].transformer))
    assert [json.loads(l)["step"] for l in (out / "log.jsonl").read_text().splitlines()] == list(range(1, 21))
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator   # TensorBoard's view: each step once, none missing
    acc = EventAccumulator(str(out / "tensorboard")); acc.Reload()
    for tag in ("train/loss", "train/lr", "train/grad_norm", "train/seconds_per_step"):
        assert [e.step for e in acc.Scalars(tag)] == list(range(1, 21)), tag
    assert load_file(straight["lora"]).keys() == load_file(resumed["lora"]).keys()
    assert all(torch.equal(load_file(straight["lora"])[k], load_file(resumed["lora"])[k]) for k in load_file(straight["lora"]))

def test_kill_during_save_keeps_previous_checkpoint(setup):
    cfg = make_cfg(setup, "killsave", training__steps=30)
    killed_run(setup, cfg, 20, "save")
    out = T.run_folder(cfg)
    assert [p.name for p in C.list_checkpoints(out / "checkpoints")] == ["step_0000010"] and C.checkpoint_ok(out / "checkpoints" / "step_0000010")
    assert list((out / "checkpoints").glob(".step_0000020*"))        # the half-written one is there, under its temporary name
    res = T.train(cfg, work=work(setup), progress=False)
    assert res["steps"] == 30 and res["lora"].exists()
    assert not list((out / "checkpoints").glob(".step_*"))           # and cleaned up by the next save

def test_damaged_checkpoint_is_skipped(setup):
    cfg = make_cfg(setup, "damaged", training__steps=30)
    first = T.train(cfg, work=work(setup), until=20, progress=False)
    good = trained_state(first["run"].transformer)
    ck = T.run_folder(cfg) / "checkpoints" / "step_0000020"
    with open(ck / "optimizer.pt", "r+b") as f: f.seek(100); f.write(b"\0garbage\0")
    assert not C.checkpoint_ok(ck)
    with pytest.warns(UserWarning, match="damaged"):
        again = T.train(cfg, work=work(setup), until=20, progress=False)   # from step 10, redoing 11..20
    assert same_lora(good, trained_state(again["run"].transformer))

class Payload:
    "What a tampered checkpoint could hold: unpickling it would run a command."
    def __init__(self, mark): self.mark = str(mark)
    def __reduce__(self): return (os.system, (f"touch {self.mark}",))

def rewrite(ck, name, obj):
    "Replace one checkpoint file and record its new checksum, as a tamperer (or an old version) would leave it."
    torch.save(obj, ck / name)
    st = json.loads((ck / "state.json").read_text()); st["files"][name] = C._sha_file(ck / name)
    (ck / "state.json").write_text(json.dumps(st))

def test_checkpoints_load_without_running_code(setup, tmp_path):
    cfg = make_cfg(setup, "pickled", training__steps=20)
    T.train(cfg, work=work(setup), until=10, progress=False)
    ck = T.run_folder(cfg) / "checkpoints" / "step_0000010"
    states = torch.load(ck / "states.pt", weights_only=True)               # what a run writes loads with weights_only=True
    assert set(states) == {"scheduler", "scaler"}                          # no RNG state: training draws none from the global RNG
    mark = tmp_path / "code-ran"
    rewrite(ck, "states.pt", {**states, "extra": Payload(mark)})
    with pytest.raises(ZImageError, match="could run code when loaded") as e: T.train(cfg, work=work(setup), progress=False)
    assert not mark.exists() and "move" in str(e.value)

def test_checkpoints_from_before_still_resume_bit_exactly(setup):
    "Checkpoints written before held the global RNG states, numpy's as arrays: they resume, the states are ignored, and the result is the same."
    cfg = make_cfg(setup, "oldformat", training__steps=20)
    T.train(cfg, work=work(setup), until=10, progress=False)
    ck = T.run_folder(cfg) / "checkpoints" / "step_0000010"
    states = torch.load(ck / "states.pt", weights_only=True)
    import random
    old = dict(torch=torch.get_rng_state(), python=random.getstate(), numpy=np.random.get_state(), cuda=None)
    rewrite(ck, "states.pt", {**states, "rng": old})
    resumed = T.train(cfg, work=work(setup), progress=False)
    straight = T.train(make_cfg(setup, "oldformat-straight", training__steps=20), work=work(setup), progress=False)
    assert same_lora(trained_state(straight["run"].transformer), trained_state(resumed["run"].transformer))

def test_a_full_disk_stops_with_one_message_and_loses_nothing(setup, monkeypatch):
    from safetensors import SafetensorError
    cfg = make_cfg(setup, "fulldisk", training__steps=30)
    import zimage_nb.checkpoints as C
    real = C.export_lora
    def full(*a, **k):
        if "step_0000020" in str(a[1]): raise SafetensorError('Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: "No space left on device" })')
        return real(*a, **k)
    monkeypatch.setattr(C, "export_lora", full)                            # checkpoints are written by zimage_nb.checkpoints
    with pytest.raises(ZImageError) as e: T.train(cfg, work=work(setup), progress=False)
    msg, out = str(e.value), T.run_folder(cfg)
    for part in (f"the disk holding {out} is full", "checkpoint step_0000020 could not be written", "save.keep = ", "step_0000010, is intact", "resumes", "Fix:"):
        assert part in msg, part
    assert [p.name for p in C.list_checkpoints(out / "checkpoints")] == ["step_0000010"] and C.checkpoint_ok(out / "checkpoints" / "step_0000010")
    assert not list((out / "checkpoints").glob(".step_*"))                  # the half-written folder is removed
    monkeypatch.setattr(C, "export_lora", real)                            # space freed: the same call resumes and finishes
    assert T.train(cfg, work=work(setup), progress=False)["steps"] == 30

def test_free_space_is_checked_before_training(setup, monkeypatch):
    import collections, shutil
    usage = collections.namedtuple("usage", "total used free")
    cfg = make_cfg(setup, "nospace", training__steps=20)
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(10**9, 10**9, 1000))
    with pytest.raises(ZImageError, match="a first checkpoint could not be written"): T.train(cfg, work=work(setup), progress=False)
    assert not C.run_checkpoints(cfg)
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(10**9, 10**9, 3 * 2**20))
    with pytest.warns(UserWarning, match="may stop with a full disk"): T.train(cfg, work=work(setup), until=1, progress=False)

def test_flip_adds_a_mirrored_copy_of_each_image(setup):
    plain = T.train(make_cfg(setup, "noflip", training__steps=2), work=work(setup), progress=False)["run"]
    flipped = T.train(make_cfg(setup, "flip", training__steps=2, datasets__0__flip=True), work=work(setup), progress=False)["run"]
    assert len(flipped.items) == 2 * len(plain.items)
    assert {it.latent for it in plain.items} < {it.latent for it in flipped.items}          # the unmirrored latents are the same cache entries
    assert len({it.latent for it in flipped.items}) == 2 * len({it.latent for it in plain.items})

def test_validation_loss_on_held_out_images(setup):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    res = T.train(make_cfg(setup, "val", training__steps=10, save__every=5, training__eval_every=5, training__eval_holdout=2), work=work(setup), progress=False)
    run = res["run"]
    held = {it.file for it in run.eval_items}
    assert len(held) == 2 and not held & {it.file for it in run.items}                     # held out of training
    log = [json.loads(l) for l in (run.out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if "val_loss" in r] == [5, 10]
    assert abs(log[-1]["val_loss"] - T.eval_loss(run, items=run.eval_items)) < 1e-6        # fixed noise: the same number again
    acc = EventAccumulator(str(run.out / "tensorboard")); acc.Reload()
    assert [e.step for e in acc.Scalars("val/loss")] == [5, 10]
    with pytest.raises(ZImageError, match="training.eval_holdout = 8 would hold out every image"):
        T.train(make_cfg(setup, "val2", training__eval_every=5, training__eval_holdout=8), work=work(setup), progress=False)

def test_ema_update_rule():
    import types
    run = types.SimpleNamespace(cfg=preset("tiny", training__ema_decay=0.9, training__ema_start=2), params=[torch.nn.Parameter(torch.zeros(3))], ema=[torch.ones(3)], step=2)
    T.ema_update(run); assert torch.equal(run.ema[0], torch.zeros(3))                 # up to ema_start it follows the weights
    run.params[0].data.fill_(1.0); run.step = 3; T.ema_update(run)
    assert torch.allclose(run.ema[0], torch.full((3,), 0.1))                           # then moves (1 - decay) of the way

def test_ema_is_exported_and_resumes_bit_exactly(setup):
    kw = dict(training__ema_decay=0.9, training__ema_start=5)
    straight = T.train(make_cfg(setup, "ema", **kw), work=work(setup), progress=False)
    assert straight["lora"].name == "ema.safetensors" and straight["ema_lora"].name == "ema_ema.safetensors"
    raw, ema = load_file(straight["lora"]), load_file(straight["ema_lora"])
    assert raw.keys() == ema.keys() and any(not torch.equal(raw[k], ema[k]) for k in raw)   # the average is not the last weights
    assert lora_metadata(straight["ema_lora"])["zimage_nb.ema_decay"] == "0.9"
    cfg = make_cfg(setup, "ema-killed", **kw)
    killed_run(setup, cfg, 13)
    assert (C.run_checkpoints(cfg)[-1] / "ema.safetensors").exists()
    resumed = load_file(T.train(cfg, work=work(setup), progress=False)["ema_lora"])
    assert all(torch.equal(ema[k], resumed[k]) for k in ema)
    instead = T.train(make_cfg(setup, "ema-instead", save__ema_export="instead", **kw), work=work(setup), progress=False)
    assert instead["lora"] == instead["ema_lora"] and instead["lora"].name == "ema-instead.safetensors"
    assert all(torch.equal(ema[k], load_file(instead["lora"])[k]) for k in ema)

def test_resume_refuses_a_different_lora(setup):
    T.train(make_cfg(setup, "shape", training__steps=30), work=work(setup), until=10, progress=False)
    with pytest.raises(ZImageError, match="different LoRA"):
        T.train(make_cfg(setup, "shape", training__steps=30, target__rank=8), work=work(setup), progress=False)

def test_one_nan_step_is_skipped(setup, monkeypatch):
    real = T.micro_loss
    monkeypatch.setattr(T, "micro_loss", lambda run, idx, g: real(run, idx, g) * (float("nan") if run.step == 3 else 1.0))
    res = T.train(make_cfg(setup, "onenan", training__steps=12), work=work(setup), resume=False, progress=False)
    summary = json.loads((T.run_folder(res["run"].cfg) / "summary.json").read_text())
    assert summary["skipped"] == 1 and np.isnan(res["losses"][3]) and np.isfinite(res["losses"][4:]).all()
    assert all(torch.isfinite(v).all() for v in load_file(res["lora"]).values())

def test_repeated_nans_stop_the_run_without_saving(setup, monkeypatch):
    real = T.micro_loss
    monkeypatch.setattr(T, "micro_loss", lambda run, idx, g: real(run, idx, g) * (float("nan") if run.step >= 6 else 1.0))
    cfg = make_cfg(setup, "nans", save__every=5)
    with pytest.raises(ZImageError, match="diverged.*5 steps in a row") as e:
        T.train(cfg, work=work(setup), resume=False, progress=False)
    assert "lower training.lr" in str(e.value)
    out = T.run_folder(cfg)
    assert not (out / f"{cfg.job.name}.safetensors").exists()
    # steps 7-11 fail and are skipped (the error comes at 11): the checkpoint of step 10 holds the last good weights
    assert [p.name for p in C.list_checkpoints(out / "checkpoints")] == ["step_0000005", "step_0000010"]
    for ck in C.list_checkpoints(out / "checkpoints"): assert all(torch.isfinite(v).all() for v in load_file(ck / "lora.safetensors").values())
    assert json.loads((out / "checkpoints" / "step_0000010" / "state.json").read_text())["nan_streak"] == 4

def test_two_processes_match_one_with_accumulation(setup):
    kw = dict(training__steps=6, save__every=6, training__optimizer="adamw", save__dtype="fp32", training__caption_dropout=0.0)
    from zimage_nb.launch import launch_training
    two = launch_training(make_cfg(setup, "ddp", **kw), num_processes=2, work=str(work(setup)), progress=False)
    assert two["world"] == 2 and two["ranks_in_sync"] and two["steps"] == 6
    one = T.train(make_cfg(setup, "accum", training__grad_accum=2, **kw), work=work(setup), progress=False)
    a, b = load_file(two["lora"]), load_file(one["lora"])
    assert a.keys() == b.keys()
    for k in a: torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-6)

def lora_drift(run, text_of):
    "Mean squared change the LoRA makes to the prediction for each item's `text_of(item)` embedding (fixed noise, σ 0.6)."
    tot = 0.0
    with torch.no_grad():
        for it in run.items:
            x0 = run.latents[it.latent][None]; noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(0))
            s, e = torch.tensor([0.6]), [run.texts[text_of(it)]]
            on = T.predict(run.transformer, 0.4 * x0 + 0.6 * noise, s, e)
            with adapters_off(run.transformer, TRAINED): off = T.predict(run.transformer, 0.4 * x0 + 0.6 * noise, s, e)
            tot += float((on - off).pow(2).mean())
    return tot / len(run.items)

def test_blank_prompt_preservation_keeps_the_empty_prompt(setup):
    kw = dict(training__steps=30, model__training_adapter="")
    plain = T.train(make_cfg(setup, "noblank", **kw), work=work(setup), progress=False)["run"]
    kept = T.train(make_cfg(setup, "blank", training__blank_prompt_preservation=1.0, **kw), work=work(setup), progress=False)["run"]
    a, b = lora_drift(plain, lambda it: plain.empty), lora_drift(kept, lambda it: kept.empty)
    assert b < 0.5 * a, (a, b)    # measured on the pretrained tiny model: 0.040 vs 0.104 (tests/test_tiny_draws.py measures it in pixels)      # measured: 0.22 -> 0.023
    assert lora_drift(kept, lambda it: it.text) > 2 * b   # it still learned the captions

def test_dop_keeps_the_class_prompt(setup):
    kw = dict(training__steps=30, model__training_adapter="", training__dop_class_word="disc")
    off = T.train(make_cfg(setup, "nodop", training__dop_weight=0.0, **kw), work=work(setup), progress=False)["run"]
    on = T.train(make_cfg(setup, "dop", **kw), work=work(setup), progress=False)["run"]
    assert on.items[0].class_text and on.texts[on.items[0].class_text].shape[0] > 0
    a, b = lora_drift(off, lambda it: it.class_text), lora_drift(on, lambda it: it.class_text)
    assert b < 0.5 * a, (a, b)    # measured on the pretrained tiny model: 0.040 vs 0.104 (tests/test_tiny_draws.py measures it in pixels)

def test_lokr_trains_exports_and_resumes(setup):
    from zimage_nb.config import ConfigError
    with pytest.raises(ConfigError, match="LoKr cannot wrap 4-bit layers"):
        T.train(make_cfg(setup, "lokr4", target__type="lokr"), work=work(setup), progress=False)
    kw = dict(target__type="lokr", target__modules="attention", training__steps=20, quantization__transformer="int8")
    straight = T.train(make_cfg(setup, "lokr", **kw), work=work(setup), progress=False)
    f = load_file(straight["lora"])
    assert any(k.endswith(".lokr_w1") for k in f) and sum(k.endswith(".alpha") for k in f) == 24
    T.train(make_cfg(setup, "lokr2", **kw), work=work(setup), until=10, progress=False)
    resumed = T.train(make_cfg(setup, "lokr2", **kw), work=work(setup), progress=False)
    assert same_lora(trained_state(straight["run"].transformer), trained_state(resumed["run"].transformer))

def test_fp16_safe_training_runs(setup):
    res = T.train(make_cfg(setup, "fp16", quantization__compute="fp16-safe", training__steps=10), work=work(setup), progress=False)
    run = res["run"]
    assert run.dtype == torch.float16 and run.scaler is not None and run.fp16_hooks
    assert all(p.dtype == torch.float32 for p in run.params)                  # LoRA weights stay fp32
    assert np.isfinite(res["losses"]).all() and all(torch.isfinite(v).all() for v in load_file(res["lora"]).values())

def test_distillpatch_recipe_is_for_sampling_only(setup, tiny):
    patch = write_tiny_lora(tiny.transformer, setup[0] / "patch.safetensors", "diffsynth", rank=4, seed=5, scale=0.1)
    res = T.train(make_cfg(setup, "distill", model__training_adapter="", model__distill_patch=str(patch), training__steps=6, save__every=6),
                  work=work(setup), progress=False)
    run = res["run"]
    from zimage_nb.lora import DISTILL_PATCH, active_adapters
    assert active_adapters(run.transformer) == {TRAINED: 1.0}                       # not in effect while training
    assert T.sampling_adapters(run) == {TRAINED: 1.0, DISTILL_PATCH: 1.0}
    with_patch = np.asarray(T.render_samples(run)[0], float)
    without = np.asarray(T.render_samples(run, adapters={TRAINED: 1.0})[0], float)
    assert np.abs(with_patch - without).mean() > 0.5                                # the samples use it
    assert len(load_file(res["lora"])) == 3 * 42 and lora_metadata(res["lora"])["zimage_nb.recipe"] == "turbo + DistillPatch at inference"

def test_adapter_names_resolve_to_the_hub_with_clear_errors(monkeypatch, tmp_path):
    from zimage_nb.lora import lora_file, ADAPTER_FILES
    assert ADAPTER_FILES["v2"] == "ostris/zimage_turbo_training_adapter/zimage_turbo_training_adapter_v2.safetensors"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1"); monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    import huggingface_hub.constants as C; monkeypatch.setattr(C, "HF_HUB_OFFLINE", True)
    with pytest.raises(ZImageError, match="model.training_adapter: the Hub cannot be reached .*zimage_turbo_training_adapter_v2"):
        lora_file("v2")
    with pytest.raises(ZImageError, match="model.distill_patch: the Hub cannot be reached .*Z-Image-Turbo-DistillPatch/model.safetensors"):
        lora_file("DiffSynth-Studio/Z-Image-Turbo-DistillPatch", "model.distill_patch")

def test_repeats_and_a_second_dataset(setup, tmp_path):
    reg = write_demo_dataset(tmp_path / "reg", n=3, seed=7)
    cfg = make_cfg(setup, "repeats", datasets__0__repeats=3)
    from zimage_nb.config import DatasetConfig
    cfg.datasets.append(DatasetConfig(path=str(reg), resolutions=[64], is_regularization=True, default_caption="a disc"))
    run = T.setup_run(cfg, work(setup), "cpu", progress=False)
    assert len(run.items) == 3 * 8 + 3 and sum(it.dataset == 1 for it in run.items) == 3
    seen = [i for k in range(run.plan.per_epoch) for i in run.plan(k)]
    assert sorted(seen) == list(range(len(run.items)))              # one epoch = every item once

def _masked_pair(root, data):
    "The demo images with sidecar masks around the subject (A), and the same with everything outside the mask inverted (B)."
    from PIL import Image, ImageFilter
    import shutil
    A, B = root / "maskA", root / "maskB"
    for f in (A, B): f.mkdir(exist_ok=True)
    for p in sorted(data.glob("*.png")):
        a = np.asarray(Image.open(p).convert("RGB")).astype(int)
        m = Image.fromarray((((a[..., 0] > 150) & (a[..., 2] < 100)) * 255).astype(np.uint8)).filter(ImageFilter.MaxFilter(5))  # red/yellow subject, grown 2 px
        inside = np.asarray(m) > 0; b = a.copy(); b[~inside] = 255 - a[~inside]
        shutil.copy(p, A / p.name); Image.fromarray(b.astype(np.uint8)).save(B / p.name)
        for f in (A, B): m.save(f / f"{p.stem}.mask.png"); shutil.copy(p.with_suffix(".txt"), f / f"{p.stem}.txt")
    return A, B

def _lora_b(res): return {k: v.clone() for k, v in trained_state(res["run"].transformer).items() if "lora_B" in k}   # zero at the start: all of it is training

def _rel(x, y): return (sum(float((x[k] - y[k]).pow(2).sum()) for k in x) / sum(float(x[k].pow(2).sum()) for k in x)) ** .5

def test_masked_loss(setup, monkeypatch):
    d, data, _ = setup
    A, _ = _masked_pair(d, data)
    res = T.train(make_cfg(setup, "maskA0", datasets__0__path=str(A), datasets__0__masks=True, datasets__0__unmasked_weight=0.0,
                           training__steps=10, save__every=1000, training__eval_every=5), work=work(setup), progress=False)
    run = res["run"]
    assert len(run.masks) == len({it.mask for it in run.items + run.eval_items}) == 8 and all(it.mask for it in run.items + run.eval_items)
    log = [json.loads(l) for l in (run.out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if np.isfinite(r.get("val_loss", np.nan))] == [5, 10]
    # In the trainer, the loss reaches the prediction exactly where the mask (as cached, at latent size) is non-zero
    preds, predict = [], T.predict
    def capture(*a, **k):
        p = predict(*a, **k); p.retain_grad(); preds.append(p); return p
    monkeypatch.setattr(T, "predict", capture)
    T.micro_loss(run, run.plan(0), T._batch_generator(0, 0)).backward()
    g = preds[0].grad.abs().sum(1, keepdim=True)                              # [B, 1, h, w]
    m = torch.stack([run.masks[run.items[i].mask] for i in run.plan(0)])
    assert (g[m == 0] == 0).all() and (g[m > 0] > 0).all() and 0.05 < (m > 0).float().mean() < 0.95
    # Outside the mask the loss has no weight, but the transformer still sees those pixels (attention mixes all positions):
    # a changed background still moves the LoRA, less than unmasked (measured 2026-11-30, relative LoRA difference with the
    # background inverted: 0.55-0.91 with unmasked_weight 0 against 1.02-1.05 with 1, by settings). Not asserted: it depends on them.

def test_pixels_with_zero_weight_do_not_move_the_lora(setup, tmp_path):
    "All-black masks with unmasked_weight 0: every pixel has weight 0, so two different pictures train the very same LoRA."
    from PIL import Image
    d, data, _ = setup
    pics = []
    for name, colour in (("black_a", (200, 30, 30)), ("black_b", (20, 160, 240))):
        f = tmp_path / name; f.mkdir()
        for i in range(2):
            Image.new("RGB", (64, 64), colour).save(f / f"{i}.png"); Image.new("L", (64, 64), 0).save(f / f"{i}.mask.png")
        pics.append(f)
    runs = [T.train(make_cfg(setup, p.name, datasets__0__path=str(p), datasets__0__masks=True, datasets__0__unmasked_weight=0.0,
                             training__steps=5, save__every=1000), work=tmp_path / "w", progress=False) for p in pics]
    assert runs[0]["losses"] == [0.0] * 5
    assert same_lora(trained_state(runs[0]["run"].transformer), trained_state(runs[1]["run"].transformer))

def test_tracker_gets_every_step_and_a_resumed_run_continues_it(setup, monkeypatch):
    "job.report_to = [tensorboard, wandb] with a stand-in wandb module (through accelerate's WandBTracker): the same scalars as TensorBoard, one W&B run across a resume, closed at the end."
    import types
    wb = types.ModuleType("wandb"); wb.calls = []
    class Run:
        def log(self, values, step=None, **kw): wb.calls.append(("log", step, values))
        def finish(self): wb.calls.append(("finish",))
    wb.init = lambda **kw: (wb.calls.append(("init", kw)), Run())[1]
    wb.Image = lambda im: ("image", im.size)
    wb.config = types.SimpleNamespace(update=lambda values, allow_val_change=True: wb.calls.append(("config", values)))
    monkeypatch.setitem(sys.modules, "wandb", wb)
    cfg = make_cfg(setup, "tracked", training__steps=10, save__every=5, sample__every=5, job__report_to=["tensorboard", "wandb"])
    T.train(cfg, work=work(setup), until=5, progress=False)
    T.train(cfg, work=work(setup), progress=False)
    inits = [c[1] for c in wb.calls if c[0] == "init"]
    assert len(inits) == 2 and inits[0]["id"] == inits[1]["id"] and inits[1]["resume"] == "allow"
    assert next(c[1] for c in wb.calls if c[0] == "config")["training.steps"] == 10
    assert [c[1] for c in wb.calls if c[0] == "log" and "train/loss" in c[2]] == list(range(1, 11))
    assert [c[1] for c in wb.calls if c[0] == "log" and "samples" in c[2]] == [5, 10]
    assert [c[0] for c in wb.calls].count("finish") == 2 and wb.calls[-1] == ("finish",)

def test_one_training_at_a_time_in_a_run_folder(setup, tmp_path):
    "The same job started twice (a train cell run again while its thread trains; the CLI beside a notebook) is refused with one message."
    import threading
    from zimage_nb.core import FolderLock
    cfg = make_cfg(setup, "locked", training__steps=40, save__every=40)
    stepping, done = threading.Event(), threading.Event()
    def first():
        try: T.train(cfg, work=work(setup), progress=False, callbacks=[lambda e: (stepping.set(), done.wait(30)) if e["event"] == "step" else None])
        finally: stepping.set()
    t = threading.Thread(target=first, name="first-run"); t.start(); stepping.wait(120)
    with pytest.raises(ZImageError, match="already used by training locked") as e:       # a second thread of this kernel
        T.train(cfg, work=work(setup), progress=False)
    assert "(thread first-run)" in str(e.value) and "another job.name" in str(e.value)
    done.set(); t.join()
    yaml = save_config(cfg, tmp_path / "locked.yaml")
    with FolderLock(T.run_folder(cfg), "training locked"):                               # another process: the CLI
        r = subprocess.run(["zimage-nb", "train", str(yaml)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "already used by training locked" in r.stderr and f"process {os.getpid()}" in r.stderr, r.stderr[-500:]
    log = [json.loads(l)["step"] for l in (T.run_folder(cfg) / "log.jsonl").read_text().splitlines()]
    assert log == list(range(1, len(log) + 1))                                           # one run's steps, none twice

def test_a_new_session_samples_the_lora_from_its_files(trained):
    "After a several-GPU run or in a new session there is no run in memory: Sampler.from_config draws what the run drew, from the LoRA file and the cached prompts (no text encoder loaded)."
    from zimage_nb.sample import Sampler
    run = trained["run"]
    prompt = T.trigger_prompts(run.cfg.sample.prompts, run.cfg.job.trigger_word)[0]
    mine = np.asarray(Sampler.from_run(run).image(prompt, seed=3, steps=4, width=64, height=64, adapters=T.sampling_adapters(run)), dtype=float)
    fresh = Sampler.from_config(run.cfg, trained["lora"], work=run.work, device="cpu", progress=False)
    again = np.asarray(fresh.image(prompt, seed=3, steps=4, width=64, height=64), dtype=float)
    assert fresh.encoder_loads == 0 and prompt in fresh.embeds
    assert np.abs(mine - again).mean() < 2.0, np.abs(mine - again).mean()       # the LoRA file is bf16: close, not bit-identical

def test_a_step_leaves_the_callers_random_state_as_it_was(setup):
    "train_step draws from its own seeded fork of the global RNG (LoRA dropout): a notebook's own torch.rand is not reseeded by training."
    run = T.setup_run(make_cfg(setup, "rng", target__dropout=0.1), work=work(setup), progress=False)
    torch.manual_seed(123); expected = torch.rand(3)
    torch.manual_seed(123); T.train_step(run); T.train_step(run)
    assert torch.equal(torch.rand(3), expected)

def test_training_neither_uses_nor_changes_the_callers_rng(setup):
    "A notebook's own random draws after `train` are what they would have been without it, and its RNG's state does not change the LoRA: the adapters' init and each step draw from job.seed in a fork (`seeded`)."
    torch.manual_seed(123); expected = torch.rand(3)
    torch.manual_seed(123); a = T.train(make_cfg(setup, "rng-a", training__steps=2, save__every=2), work=work(setup), resume=False, progress=False)
    assert torch.equal(torch.rand(3), expected)
    torch.manual_seed(7); b = T.train(make_cfg(setup, "rng-b", training__steps=2, save__every=2), work=work(setup), resume=False, progress=False)
    assert same_lora(load_file(str(a["lora"])), load_file(str(b["lora"])))

def test_resuming_leaves_the_callers_rng_as_it_was(setup, capsys):
    "Checkpoints keep no RNG state, so a resume does not set the notebook's global RNG to the saved one."
    cfg = make_cfg(setup, "rng-resume", training__steps=4, save__every=2)
    T.train(cfg, work=work(setup), until=2, progress=False)
    torch.manual_seed(5); expected = torch.rand(3)
    torch.manual_seed(5); T.train(cfg, work=work(setup), progress=False)
    assert "resumed from step_0000002" in capsys.readouterr().out and torch.equal(torch.rand(3), expected)
