"""The T4 path (no bf16): fp16 whose scaling is exact where it applies, a gradient that matches fp32's, a guard that stops a
broken fp16 run with one message, and the compute each model family gets. All on the CPU, in fp16 where the test says so."""
import pytest, torch
from PIL import Image
import zimage_nb.train as T
from zimage_nb.tiny import write_demo_dataset
import zimage_nb.checkpoints as C
from zimage_nb.config import preset
from zimage_nb.core import ZImageError
from zimage_nb.flow import predict, flow_loss
from zimage_nb.lora import add_trainable_lora
from zimage_nb.precision import fp16_safe, fp16_scale
from zimage_nb.models import relative_error
from zimage_nb.tiny import tiny_pipeline

def test_scaling_is_exact_at_real_width_in_fp32():
    "The real config's width and heads (dim 3840, 30 heads, FFN 10240) with one block of each kind, random weights: the scaled forward is the unscaled one."
    from diffusers import ZImageTransformer2DModel
    torch.manual_seed(0)
    tr = ZImageTransformer2DModel(n_layers=1, n_refiner_layers=1).eval()
    g = torch.Generator().manual_seed(1)
    x = [torch.randn(16, 1, 8, 8, generator=g)]; cap = [torch.randn(7, tr.config.cap_feat_dim, generator=g)]
    with torch.no_grad():
        ref = tr(x, torch.tensor([0.4]), cap, return_dict=False)[0][0]
        fp16_scale(tr); got = tr(x, torch.tensor([0.4]), cap, return_dict=False)[0][0]
    assert relative_error(ref, got) < 1e-6, relative_error(ref, got)

def hot(dtype=torch.float32):
    "The tiny transformer with layer 0's gate product and attention output beyond 65504 (as 04_models shows)."
    t = tiny_pipeline().transformer
    with torch.no_grad():
        b = t.layers[0]; b.feed_forward.w1.weight.mul_(80); b.feed_forward.w3.weight.mul_(80); b.attention.to_v.weight.mul_(8000)
    return t.to(dtype)

def lora_grads(tr, dtype, seed=0, loss_scale=1.0):
    "The LoRA's gradient for one flow-matching loss on fixed latents, noise and captions (lora_B set non-zero so every factor gets one); `loss_scale` as the fp16 step's GradScaler applies it."
    torch.manual_seed(seed)
    params = add_trainable_lora(tr, preset("tiny").target)
    with torch.no_grad():
        for n, p in tr.named_parameters():
            if "lora_B" in n: p.copy_(torch.randn(p.shape, generator=torch.Generator().manual_seed(hash(n) % 2**31)) * 0.01)
    g = torch.Generator().manual_seed(seed)
    x0, noise = torch.randn(1, 16, 8, 8, generator=g), torch.randn(1, 16, 8, 8, generator=g)
    cap = [torch.randn(7, tr.config.cap_feat_dim, generator=g)]
    s = torch.tensor([0.5])
    loss = flow_loss(predict(tr, (1 - s) * x0 + s * noise, s, cap, dtype), noise - x0)
    (loss * loss_scale).backward()
    return loss.detach(), torch.cat([p.grad.flatten().float() / loss_scale for p in params])

def test_the_fp16_safe_step_gets_the_fp32_gradient():
    ref_loss, ref = lora_grads(hot(), torch.float32)
    t16 = hot(torch.float16); fp16_safe(t16)
    loss16, g16 = lora_grads(t16, torch.float16, loss_scale=2.0**12)
    clamped = hot(torch.float16); fp16_safe(clamped, scale=False)
    loss_c, g_c = lora_grads(clamped, torch.float16, loss_scale=2.0**12)
    err, err_c = relative_error(ref, g16), (relative_error(ref, g_c) if torch.isfinite(g_c).all() else float("inf"))
    print(f"LoRA gradient vs fp32: scaled {err:.2e}, clamps only {err_c:.2e}")
    assert torch.isfinite(g16).all() and err < 0.02 and abs(float(loss16) - float(ref_loss)) / float(ref_loss) < 0.01
    assert err_c > 5 * err

@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("fp16")
    return d, write_demo_dataset(d / "photos", n=4)

def cfg16(data, name, **kw):
    d, photos = data
    return preset("tiny", **{**dict(job__output_dir=str(d / "runs"), job__name=name, datasets__0__path=str(photos), quantization__compute="fp16-safe",
                                    training__steps=12, save__every=4, sample__every=0), **kw})

def test_the_loss_scalers_search_is_not_divergence(data, monkeypatch):
    "fp16's GradScaler starts at 65536 and halves on every overflowing gradient: six overflows in a row are its search, not a NaN run."
    real = torch.nn.utils.clip_grad_norm_
    calls = {"n": 0}
    def overflow(params, max_norm):
        calls["n"] += 1; n = real(params, max_norm)
        return torch.tensor(float("inf")) if calls["n"] <= 6 else n
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", overflow)
    r = T.train(cfg16(data, "search"), progress=False)
    assert r["steps"] == 12 and r["run"].skipped == 6 and r["run"].scaler.get_scale() < 65536 and r["lora"].exists()

def test_a_broken_fp16_run_stops_with_one_message_and_keeps_its_checkpoint(data, monkeypatch):
    real = T.micro_loss
    monkeypatch.setattr(T, "micro_loss", lambda run, idx, g: real(run, idx, g) * (float("nan") if run.step >= 5 else 1.0))
    cfg = cfg16(data, "broken", model__variant="base")
    with pytest.warns(UserWarning, match="ComfyUI issue 12176"), pytest.raises(ZImageError) as e: T.train(cfg, progress=False)
    msg = str(e.value)
    assert "training in fp16 broke down" in msg and "set quantization.compute to fp32" in msg and "musubi-tuner issue 897" in msg and "intact" in msg
    assert [p.name for p in C.run_checkpoints(cfg)] == ["step_0000004", "step_0000008"]   # the last good one stays

def test_black_samples_in_fp16_stop_the_run(data, monkeypatch):
    from zimage_nb.sample import Sampler
    monkeypatch.setattr(Sampler, "image", lambda self, *a, **k: Image.new("RGB", (64, 64), "black"))
    with pytest.raises(ZImageError, match="samples came back all black"): T.train(cfg16(data, "black", sample__every=4), progress=False)

def test_each_family_gets_its_compute_on_a_card_without_bf16(monkeypatch):
    from zimage_nb.models import compute_dtype
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: False)
    assert compute_dtype("auto", "cuda", "turbo") == torch.float16
    assert compute_dtype("auto", "cuda", "base") == torch.float32 and compute_dtype("auto", "cuda", "de-turbo") == torch.float32
    assert compute_dtype("fp16-safe", "cuda", "base") == torch.float16           # asked for: given, with a warning at set-up (above)
