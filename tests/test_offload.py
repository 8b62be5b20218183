"Training offload on the CPU (device copies simulated in RAM): the same LoRA bit for bit, no operation reading an offloaded block, at most resident + 1 blocks on the device, kill and resume."
import json
import pytest, torch
import zimage_nb.train as T
import zimage_nb.checkpoints as C
from zimage_nb.config import ConfigError, preset, validate_config
from zimage_nb.lora import trained_state
from zimage_nb.offload import BlockOffload, OffloadCheck, transformer_blocks
from zimage_nb.planner import offload_copies
from test_train import setup, make_cfg, killed_run, same_lora, work  # noqa: F401 (setup: a fixture) the tiny run set-up of the engine's tests

def off_cfg(setup, name, resident=1, prefetch=True, **kw):
    return make_cfg(setup, name, advanced__train_offload=True, advanced__offload_resident=resident, advanced__offload_prefetch=prefetch, **kw)

@pytest.mark.parametrize("quant,extra", [("nf4", {}), ("bf16", {"training__dop_class_word": "disc"}), ("int8", {})])
def test_offloaded_training_gives_the_same_lora(setup, quant, extra):
    "fp16-safe compute (clamping hooks, loss scaling) and gradient checkpointing on, the training adapter frozen beside the LoRA."
    kw = dict(quantization__transformer=quant, quantization__compute="fp16-safe", training__steps=100, **extra)
    plain = T.train(make_cfg(setup, f"plain-{quant}", **kw), work=work(setup), until=5, progress=False)
    off = T.train(off_cfg(setup, f"off-{quant}", **kw), work=work(setup), until=5, progress=False)
    run = off["run"]
    assert run.fp16_hooks and run.transformer.is_gradient_checkpointing and run.training_adapter
    assert same_lora(trained_state(plain["run"].transformer), trained_state(run.transformer))
    st = run.offload.stats()
    assert st["blocks"] == 6 and st["loads"] >= 5 * offload_copies(run.cfg, 6)
    if not extra: assert st["misses"] == 1      # only the very first block was not copied in ahead (DOP's extra passes start cold)
    assert all(p.device.type == "cpu" and p.requires_grad for p in run.params)                         # the LoRA stays where the optimizer has it

@pytest.mark.parametrize("resident,prefetch", [(1, True), (2, False)])
def test_no_host_reads_and_at_most_resident_plus_one_on_the_device(setup, resident, prefetch):
    "Forward, checkpoint recompute, backward, DOP's no-grad prior pass and sampling, watched on every operation."
    run = T.setup_run(off_cfg(setup, f"res{resident}{prefetch}", resident, prefetch, training__dop_class_word="disc"), work(setup), "cpu", progress=False)
    run.offload.trace = []
    with OffloadCheck(run.offload) as chk:
        T.train_step(run); T.train_step(run)
        if prefetch: T.render_samples(run)
    assert chk.violations == [] and chk.ops > 1000
    assert chk.max_resident == resident + prefetch            # reached, never passed
    names = [n for n, _ in transformer_blocks(run.transformer)]
    rec = [n for p, n, _ in run.offload.trace if p == "recompute"]
    assert set(rec) == set(names) and rec[:6] == names[::-1]   # the backward recomputes every block, last first
    assert max(n for _, _, n in run.offload.trace) <= resident + prefetch

def test_the_check_catches_a_wrong_schedule(setup):
    "Blocks sent back when their forward returns (diffusers' group offloading): all stay on in backward, or the backward reads host copies."
    run = T.setup_run(off_cfg(setup, "group", 64, quantization__transformer="bf16"), work(setup), "cpu", progress=False)
    o = run.offload
    hooks = [b.module.register_forward_hook(lambda m, a, out, b=b: o._evict(b)) for b in o.blocks]
    with OffloadCheck(o) as early: T.train_step(run)
    o.evict_all()
    with torch.utils.checkpoint.set_checkpoint_early_stop(False), OffloadCheck(o) as late: T.train_step(run)
    for h in hooks: h.remove()
    assert early.max_resident == len(o.blocks) and len(late.violations) > 10

def test_kill_and_resume_with_offload_is_bit_exact(setup):
    kw = dict(training__steps=8, save__every=4)
    straight = T.train(make_cfg(setup, "off-straight", **kw), work=work(setup), progress=False)     # no offload
    cfg = off_cfg(setup, "off-killed", 2, **kw)
    killed_run(setup, cfg, 6)
    out = T.run_folder(cfg)
    assert [p.name for p in C.list_checkpoints(out / "checkpoints")] == ["step_0000004"]
    resumed = T.train(cfg, work=work(setup), progress=False)
    assert resumed["run"].offload is not None and resumed["steps"] == 8
    assert same_lora(trained_state(straight["run"].transformer), trained_state(resumed["run"].transformer))
    assert [json.loads(l)["step"] for l in (out / "log.jsonl").read_text().splitlines()] == list(range(1, 9))

def test_remove_puts_every_block_back_on_the_device(setup):
    run = T.setup_run(off_cfg(setup, "remove"), work(setup), "cpu", progress=False)
    o = run.offload
    before = T.eval_loss(run)
    o.remove(to_device=True)
    assert all(b.on_device for b in o.blocks) and T.eval_loss(run) == before
    with OffloadCheck(o) as chk: T.eval_loss(run)
    assert chk.violations == [] and chk.max_resident == len(o.blocks)

def test_config_and_errors():
    with pytest.raises(ConfigError, match="needs training.gradient_checkpointing"):
        validate_config(preset(advanced__train_offload=True, training__gradient_checkpointing=False))
    with pytest.raises(ConfigError, match="advanced.offload_resident"):
        validate_config(preset(advanced__train_offload=True, advanced__offload_resident=0))
    with pytest.raises(Exception, match="no transformer blocks"):
        BlockOffload(torch.nn.Linear(4, 4), "cpu")
