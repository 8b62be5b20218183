"The planner's tensor counter and its calibration against the engine (tiny model, live) and the committed real-size rows."
import json
from pathlib import Path
import pytest, torch
from zimage_nb.config import preset
from zimage_nb.planner import TensorPeak, estimate_training, activation_bytes, transformer_shape, ACT_CKPT, GUESS
from zimage_nb.tiny import TINY_TRANSFORMER

ROOT = Path(__file__).resolve().parents[1]

def test_tensor_peak_follows_an_autograd_graph():
    lin = torch.nn.Linear(64, 32, bias=False)
    x = torch.randn(100, 64, requires_grad=True)
    with TensorPeak() as tp:
        y = torch.relu(lin(x))          # the linear's output lives until relu's exists, then only relu's (saved for backward)
        loss = y.sum()
        held, before = tp.current, tp.peak
        loss.backward()
    assert held == 100 * 32 * 4 + 4 and before == 2 * 100 * 32 * 4   # fp32 [100, 32] (+ the scalar loss); peak: both outputs
    del y, loss
    assert tp.current == x.grad.numel() * 4 + lin.weight.grad.numel() * 4   # only the gradients are left

@pytest.fixture(scope="module")
def bench():
    import train_memory   # bench/ is on the tests' path (pyproject.toml: pytest's pythonpath)
    return train_memory

def test_engine_step_counted_live_on_the_tiny_model(bench):
    on = bench.run_one("tiny", None, "nf4", 128, True, 0, 1, "cpu")
    off = bench.run_one("tiny", None, "nf4", 128, False, 0, 1, "cpu")
    assert on["persistent"] == off["persistent"] > 0
    assert off["step_peak"] > 1.5 * on["step_peak"] > 0     # checkpointing keeps fewer tensors
    lora_grads = 4 * sum(16 * (i + o) for i, o in transformer_shape(TINY_TRANSFORMER)["targets"]["default"])
    assert on["step_peak"] > lora_grads                      # at least the LoRA gradients are created in the step

def test_planner_within_15_percent_of_every_committed_real_size_row():
    rows = [json.loads(l) for f in ("train_memory_cpu.jsonl", "train_memory_cpu_holdout.jsonl") for l in (ROOT / "bench" / f).read_text().splitlines()]
    assert {(r["res"], r["quant"], r["ckpt"]) for r in rows} >= {(512, "nf4", True), (1024, "nf4", True), (512, "bf16", True), (1024, "bf16", True), (768, "nf4", True)}
    for r in rows:
        cfg = preset(datasets__0__path="x", datasets__0__resolutions=[r["res"]], quantization__transformer=r["quant"], quantization__compute="bf16",
                     target__rank=16, model__training_adapter="", training__batch_size=r.get("batch", 1), training__gradient_checkpointing=r["ckpt"])
        e = estimate_training(cfg, "A100", transformer_config={} if r["layers"] == 30 else dict(n_layers=r["layers"]))
        got = r["persistent"] + r["step_peak"]
        assert abs((e.vram - e.parts["CUDA overhead"]) / got - 1) < 0.15, r

def test_activation_model_is_linear_in_layers_and_tokens():
    a = activation_bytes(30, 1152, 3840, 2)
    assert activation_bytes(30, 2304, 3840, 2) == pytest.approx(2 * a)
    assert activation_bytes(31, 1152, 3840, 2) - a == pytest.approx(ACT_CKPT["per_layer"] * 1152 * 3840 * 2)
    assert activation_bytes(30, 1152, 3840, 2, checkpointing=False) > 10 * a

def test_estimate_says_what_is_not_measured():
    e = estimate_training(preset(datasets__0__path="x", datasets__0__resolutions=[512]), "T4", calibration=GUESS)
    assert e.fits and "CUDA overhead and speed are first guesses, not yet measured on a GPU" in str(e)
    big = estimate_training(preset(datasets__0__path="x", training__gradient_checkpointing=False), "T4")
    assert not big.fits and "turn on training.gradient_checkpointing" in big.advice

def test_the_text_encoder_caching_step_is_planned():
    "Found by tests/fake_cuda.py: on a T4 the encoders run in fp32, so an unquantized Qwen3-4B needs 15.5 GiB of tensors to cache prompts; the planner says so."
    bad = estimate_training(preset(quantization__text_encoder="bf16"), "T4")
    assert not bad.fits and any("quantization.text_encoder to nf4" in a and "15.5 GiB" in a for a in bad.advice)
    ok = estimate_training(preset(quantization__text_encoder="nf4"), "T4")
    assert ok.fits and 3.5 * 2**30 < ok.caching < 4.0 * 2**30 and "text-encoder caching step" in str(ok)
    assert estimate_training(preset(quantization__text_encoder="bf16"), "A100").fits      # bf16 there: 7.8 GiB

def test_planner_within_2_percent_of_the_fp16_safe_rows():
    "What a T4 gets (fp16-safe: scaling, clamps, loss scaling), counted at real size on the CPU: the clamps' inputs of the layer being recomputed are planned (FP16_SAFE_ACT)."
    rows = [json.loads(l) for l in (ROOT / "bench" / "train_memory_cpu_fp16.jsonl").read_text().splitlines()]
    rows = [r for r in rows if not r.get("extrapolated")]
    assert {(r["res"], r["layers"]) for r in rows} == {(512, 1), (512, 2), (1024, 1)} and all(r["compute"] == "fp16-safe" for r in rows)
    for r in rows:
        cfg = preset(datasets__0__path="x", datasets__0__resolutions=[r["res"]], quantization__transformer="nf4", quantization__compute="fp16-safe",
                     target__rank=16, model__training_adapter="")
        e = estimate_training(cfg, "T4", transformer_config=dict(n_layers=r["layers"]))
        assert abs((e.vram - e.parts["CUDA overhead"]) / (r["persistent"] + r["step_peak"]) - 1) < 0.02, r

def test_a_callers_change_to_the_shape_stays_its_own():
    from zimage_nb.planner import transformer_shape
    s = transformer_shape(); s["targets"]["default"].clear(); s["total"] = 0
    assert transformer_shape()["total"] > 6e9 and transformer_shape()["targets"]["default"]
