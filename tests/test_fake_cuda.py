"""CUDA paths rehearsed on the CPU build (tests/fake_cuda.py): the real-size models on fake CUDA tensors (no data, no memory),
and training on tracked CUDA (real numbers at tiny size, every would-be GPU tensor tracked, any mix with a host tensor refused).
Every other test runs on device "cpu", where a tensor left on the host cannot fail; these run on "cuda"."""
import importlib.util
from pathlib import Path
import pytest, torch
from PIL import Image

import fake_cuda as FC

import zimage_nb.train as T
from zimage_nb.tiny import write_demo_dataset
from zimage_nb.config import preset
from zimage_nb.tiny import tiny_pipeline, write_tiny_lora

# ------------------------------------------------------------------------------------------------ the harnesses catch what they should
def test_fake_cuda_moves_refuses_mixes_and_stands_in_for_torch_cuda():
    from torch._subclasses.fake_tensor import FakeTensorDeviceMismatchError
    lin = torch.nn.Linear(8, 4).requires_grad_(False)
    with FC.FakeCuda("T4") as fc:
        lin.to("cuda")
        x = torch.randn(2, 8).cuda()
        assert lin.weight.device == x.device == FC.CUDA0 and lin(x).shape == (2, 4)
        assert torch.tensor([3, 1], device="cuda").tolist() == [3, 1]          # small tensors keep their values
        with pytest.raises(FakeTensorDeviceMismatchError): lin(torch.randn(2, 8))
        assert torch.cuda.get_device_properties(0).total_memory == 15 * 2**30 and not torch.cuda.is_bf16_supported(including_emulation=False)
    assert ("get_device_properties", True) in fc.cuda_calls and torch.cuda.is_available() is False   # restored afterwards

def test_every_stand_in_takes_the_real_functions_parameters():
    """Each torch.cuda stand-in has the real function's parameters (names, kinds, defaults) on the installed torch, and is called as
    libraries call the real one: transformers 5.25's kernelize asks get_device_capability(device=...), which a `d=None` stand-in refused."""
    import inspect
    with FC.DeviceTracker("T4") as dt:
        assert torch.cuda.get_device_capability(device="cuda:0") == (7, 5) and torch.cuda.mem_get_info(device=0)[1] == 15 * 2**30
        with pytest.raises(TypeError): torch.cuda.get_device_capability(d=0)       # what the real function refuses is refused
        for name, f in dt.stand_in.functions().items():
            if name in FC._REAL_CUDA: assert inspect.signature(f).parameters.keys() == inspect.signature(FC._REAL_CUDA[name]).parameters.keys(), name
    with pytest.raises(FC.StandInMismatch, match=r"torch.cuda.get_device_capability takes \(d=None\) but torch"):
        FC.like_real("get_device_capability", lambda d=None: (7, 5))           # how the next release's change shows up

def test_tracker_refuses_host_tensors_and_unwaited_copies():
    lin = torch.nn.Linear(8, 4)
    with FC.DeviceTracker():
        lin.to("cuda")
        x = torch.randn(2, 8, device="cuda")
        y = lin(x)
        assert y.device == FC.CUDA0 and (y + torch.zeros(4, device=y.device)).device == FC.CUDA0
        y.sum().backward()
        assert lin.weight.grad.device == FC.CUDA0
        assert (y * torch.tensor(2.0)).device == FC.CUDA0                     # a 0-dim host scalar is allowed, as on a GPU
        with pytest.raises(FC.DeviceMismatch, match=r"host tensor\(s\) of shape \(2, 4\)"): y + torch.randn(2, 4)
        with pytest.raises(FC.DeviceMismatch): torch.nn.Linear(8, 4)(x)        # a layer left on the host
        side, host = torch.cuda.Stream(), torch.ones(4).pin_memory()
        with torch.cuda.stream(side):
            d = host.to("cuda", non_blocking=True); ev = torch.cuda.Event(); ev.record(side)
        with pytest.raises(FC.StreamOrderError): d + y
        torch.cuda.current_stream().wait_event(ev)
        assert (d + y).device == FC.CUDA0
    assert lin.weight.device.type == "cpu"                                      # outside: plain CPU tensors again

# ------------------------------------------------------------------------------------------------ real size, fake CUDA
def test_real_size_transformer_on_fake_cuda():
    "The published config (6.15 B): bf16 at 1024², and fp16 with the fp16-safe hooks on a T4 at 512²."
    bf = FC.real_transformer_forward(1024, torch.bfloat16)
    assert 6.1e9 < bf["params"] < 6.2e9
    assert bf["shape"] == (1, 16, 128, 128) and bf["device"] == "cuda:0" and bf["dtype"] == torch.float32
    t4 = FC.real_transformer_forward(512, torch.float16, fp16_safe=True, gpu="T4")
    assert t4["shape"] == (1, 16, 64, 64) and t4["device"] == "cuda:0" and t4["hooks"] > 30
    assert not [e for e in bf["log"] + t4["log"] if e[0] == "to host"]        # nothing went back to the host on the way

def test_real_size_text_encoder_on_fake_cuda():
    "Qwen3-4B's model card (Qwen/Qwen3-4B-Base README; a copy in github.com/Robojiang/qwen_mlsys): 4.0 B parameters, 3.6 B of them not embeddings."
    r = FC.text_encoder_caching_peak("bf16", torch.bfloat16, 512, "H200")
    assert 3.95e9 < r["params"] < 4.05e9 and 3.55e9 < r["params"] - 151936 * 2560 < 3.65e9   # the embedding tied to the LM head, as published
    assert r["emb"][0][1] == 2560 and r["emb"][1:] == (torch.bfloat16, "cuda:0")

# ------------------------------------------------------------------------------------------------ tiny, fake CUDA: sampling and caching
def test_sampling_on_fake_cuda():
    "Turbo (1 step, no CFG) and the non-accelerated setting with CFG, through the whole pipeline (text encoder, scheduler, VAE)."
    from zimage_nb.sample import Sampler
    pipe = tiny_pipeline()
    for m in (pipe.transformer, pipe.text_encoder, pipe.vae): m.requires_grad_(False)
    with FC.FakeCuda():
        pipe.to("cuda")
        s = Sampler(pipe)
        assert str(s.device) == "cuda:0"
        turbo = s.image("zxq, a photo", width=64, height=64, steps=1)
        cfg = s.image("zxq, a photo", width=64, height=64, setting="non-accelerated", steps=1, cfg_scale=3.0)
    assert turbo.size == cfg.size == (64, 64)

def test_a_weight_sweep_grid_on_tracked_cuda(tmp_path):
    "A LoRA added to a sampler on 'cuda' and swept (0 and 1): the grid, and the two cells differ."
    from zimage_nb.lora import TRAINED
    from zimage_nb.sample import Sampler, render_grid, prompt_rows, weight_sweep
    pipe = tiny_pipeline()
    lora = write_tiny_lora(pipe.transformer, tmp_path / "l.safetensors", "ostris", rank=4, seed=1, scale=0.5)
    with FC.DeviceTracker() as dt:
        pipe.to("cuda")
        s = Sampler(pipe); s.add_lora(lora, TRAINED)
        g = render_grid(s, prompt_rows(["zxq, a photo"]), weight_sweep(TRAINED, (0.0, 1.0)), base=dict(width=64, height=64, steps=1), progress=False)
        assert all(dt.on_gpu(p) for n, p in pipe.transformer.named_parameters() if "lora_" in n)
    im = g.image()
    assert im.size[0] > 2 * 64 and g.images[0][0].tobytes() != g.images[0][1].tobytes()

def test_caching_on_fake_cuda(tmp_path, tiny_folder):
    "The text encoder and the VAE on the device, what they make written to the cache (zeros: fake tensors carry no data)."
    from zimage_nb.cache import build_caches
    from zimage_nb.data import prepare_dataset
    rep = prepare_dataset(write_demo_dataset(tmp_path / "photos", n=2), tmp_path / "prep", resolutions=(64,))
    with FC.FakeCuda() as fc:
        res = build_caches([rep], tiny_folder, tmp_path / "w", max_sequence_length=64, progress=False, device="cuda",
                           text_encoder_quant="bf16", dtype=torch.bfloat16)
    saved = [e for e in fc.log if e[0] == "saved"]
    assert len(list((tmp_path / "w").rglob("*.safetensors"))) >= 4 and len(saved) >= 4
    assert res["latents"]["vae_loaded"] and res["text"]["encoder_loaded"] and res["released"]   # both ran on the device, then let go

# ------------------------------------------------------------------------------------------------ tiny, tracked CUDA: training
@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("fakecuda")
    data = write_demo_dataset(d / "photos", n=6)
    for p in data.glob("*.png"):                      # a mask per image: the centre square
        m = Image.new("L", Image.open(p).size, 0); m.paste(255, (16, 16, m.size[0] - 16, m.size[1] - 16)); m.save(p.with_name(p.stem + ".mask.png"))
    adapter = write_tiny_lora(tiny_pipeline().transformer, d / "adapter.safetensors", "ostris", rank=4, seed=3, scale=0.1)
    return d, data, adapter

def tracked_run(setup, name, gpu="H200", **kw):
    d, data, adapter = setup
    base = dict(job__output_dir=str(d / "runs"), job__name=name, job__trigger_word="zxq", datasets__0__path=str(data),
                model__variant="turbo", model__training_adapter=str(adapter), training__steps=2, save__every=2, sample__every=2,
                training__ema_decay=0.9, training__eval_every=1, training__eval_holdout=1)
    with FC.DeviceTracker(gpu) as dt:
        res = T.train(preset("tiny", **{**base, **kw}), work=d / f"work-{name}", progress=False, device="cuda:0")
    return res, dt

CASES = {   # NF4 + 8-bit AdamW + the training adapter + EMA + validation + sampling in every case
    "nf4-bf16": dict(quantization__compute="bf16", training__dop_class_word="disc", datasets__0__flip=True, datasets__0__masks=True),
    "nf4-fp16-safe-T4": dict(quantization__compute="fp16-safe", datasets__0__masks=True),
    "bf16-base": dict(quantization__transformer="bf16", quantization__compute="bf16"),
    "offload-fp16-safe-T4": dict(quantization__compute="fp16-safe", advanced__train_offload=True, advanced__offload_resident=1)}

@pytest.mark.parametrize("name", list(CASES))
def test_training_on_tracked_cuda(setup, name):
    "2 steps on 'cuda' (caching included: each case has its own work folder): no tensor meets one on the other side."
    res, dt = tracked_run(setup, name, gpu="T4" if "T4" in name else "H200", **CASES[name])
    run = res["run"]
    assert res["steps"] == 2 and all(dt.on_gpu(p) for p in run.params)      # the LoRA trained on the device, offload or not
    assert run.dtype == (torch.float16 if "fp16" in name else torch.bfloat16)
    assert Path(res["lora"]).exists()
    if run.offload:
        assert ("Stream", True) in dt.cuda_calls and ("Event", False) in dt.cuda_calls   # the prefetch ran on the side stream
        assert not [e for e in dt.log if e[0].startswith("non-blocking copy from unpinned")]

def test_tracked_training_catches_a_host_tensor(setup, monkeypatch):
    "A bug put in on purpose: a target built with torch.zeros(shape), no device: on a GPU a device error; here too."
    real = T.guided_target
    monkeypatch.setattr(T, "guided_target", lambda pred, target, g: real(pred, target, g) + torch.zeros(target.shape))
    with pytest.raises(FC.DeviceMismatch): tracked_run(setup, "bug-host", training__eval_every=0, sample__every=0)

def test_tracked_offload_catches_a_missing_record_stream(setup, monkeypatch):
    "Offload's record_stream taken out: a prefetched block used by the compute stream is freed when evicted, and its memory could be reused under it."
    monkeypatch.setattr(FC.DeviceTracker, "_record", lambda self, t, stream: None)
    with pytest.raises(FC.StreamOrderError, match="freed without record_stream"):
        tracked_run(setup, "bug-record", quantization__compute="bf16", advanced__train_offload=True, advanced__offload_resident=1,
                    training__eval_every=0, sample__every=0)

def test_tracked_offload_catches_a_missing_wait(setup, monkeypatch):
    "Offload's prefetch with the wait for its copy taken out: the block is used before its copy is known to be done."
    monkeypatch.setattr(FC._Stream, "wait_event", lambda self, ev: None)
    with pytest.raises(FC.StreamOrderError):
        tracked_run(setup, "bug-wait", quantization__compute="bf16", advanced__train_offload=True, advanced__offload_resident=1,
                    training__eval_every=0, sample__every=0)

# ------------------------------------------------------------------------------------------------ captions, and what runs before the launcher
def test_captioning_on_tracked_cuda(tmp_path):
    "The GPU branch of the captioner (bitsandbytes NF4 config, device_map on the GPU, memory counters) with the tiny Qwen3-VL."
    import zimage_nb.caption as C
    photos = write_demo_dataset(tmp_path / "p", n=2)
    for f in photos.glob("*.txt"): f.unlink()
    with FC.DeviceTracker("T4") as dt:
        rep = C.caption_images(photos, batch_size=2, model="tiny", device="cuda", dtype=torch.float32, progress=False)
    assert [r.status for r in rep.rows] == ["captioned"] * 2 and len(list(photos.glob("*.txt"))) == 2 and rep.released
    assert ("mem_get_info", True) in dt.cuda_calls and ("reset_peak_memory_stats", False) in dt.cuda_calls

def test_the_captioner_loads_without_hub_kernels_offline_on_a_gpu(monkeypatch):
    """Why load_captioner passes use_kernels=False: with transformers' default (on since 5.x when `kernels` is installed), loading
    the captioner on a GPU with the Hub offline (Kaggle without Internet, HF_HUB_OFFLINE) stops at the first kernel not cached.
    What the kernels would replace is read from transformers' own mapping: norms, activations and rotary, not the 4-bit linears."""
    import transformers
    from zimage_nb.caption import load_captioner
    from huggingface_hub import constants
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)                              # the Hub out of reach, as on Kaggle without Internet
    with FC.DeviceTracker("T4"):
        cap = load_captioner("tiny", "nf4", device="cuda", dtype=torch.float32)          # a T4's load: NF4, device_map on the GPU
        assert not cap.model.use_kernels
        hub = {getattr(type(m), "kernel_layer_name", None) for m in cap.model.modules()} - {None}
        assert hub == {"RMSNorm", "SiLU", "GeluTanh"}                                  # what a kernelized load would swap
        if int(transformers.__version__.split(".")[0]) >= 5 and importlib.util.find_spec("kernels"):
            from transformers.integrations.hub_kernels import get_kernel_mapping_transformers
            repos = {next(iter(get_kernel_mapping_transformers()[k]["cuda"].values()))._repo_id for k in hub}
            assert repos == {"kernels-community/liger-kernels", "kernels-community/activation"}
            with pytest.raises(ValueError, match="kernels-community/.*not available in the local cache"):
                cap.model.set_use_kernels(True, device_map={"": "cuda"})                # what from_pretrained's default ends with

def test_what_the_panels_call_before_the_launcher_leaves_cuda_uninitialised(monkeypatch, tmp_path):
    """A two-GPU Kaggle machine: detecting the GPUs, the suggestions, the estimate and the GPU count ask nvidia-smi and NVML only.
    (The caching before the launch does run on cuda:0 in the notebook's process, on purpose: the workers are fresh processes,
    `torchrun`, so an initialised CUDA there does not reach them; see tests/test_launch.py.)"""
    import zimage_nb.hardware as H, zimage_nb.launch as L
    from zimage_nb.panels import ConfigPanels
    monkeypatch.setattr(H, "_smi_props", lambda index=0: ("Tesla T4", 15.0, (7, 5)))   # what nvidia-smi answers on Kaggle's T4 x2
    monkeypatch.setattr(H, "_pcie_link", lambda index=0: (3, 16))
    with FC.FakeCuda("T4", n=2) as fc:
        hw = H.detect_hardware()
        panels = ConfigPanels(preset(job__output_dir=str(tmp_path)))
        panels.apply_hardware("kaggle"); panels.check()
        n = L.gpu_count()
    assert hw.gpu_name == "Tesla T4" and hw.gpu_count == 2 and n == 2
    assert not fc.stand_in.initialised, [c for c in fc.cuda_calls if c[1]]
    assert panels.cfg.quantization.compute == "fp16-safe"                      # the T4's suggestion, applied

def test_the_launchers_preparation_on_tracked_cuda(setup):
    "What `launch_training` does in the notebook's process before the workers start (download, captions, caches) on cuda:0 of two."
    import zimage_nb.launch as L
    d, data, adapter = setup
    cfg = preset("tiny", job__output_dir=str(d / "runs"), job__name="prelaunch", datasets__0__path=str(data), model__variant="turbo",
                 model__training_adapter=str(adapter), advanced__num_processes=2)
    with FC.DeviceTracker("T4", n=2) as dt:
        folder = L.prepare_shared(cfg, d / "work-prelaunch", progress=False)
    assert (Path(folder) / "vae").is_dir() and list((d / "work-prelaunch" / "cache" / "latents").glob("*.safetensors"))
    assert dt.stand_in.initialised and ("empty_cache", False) in dt.cuda_calls   # on purpose (see above), and let go before the launch

@pytest.mark.parametrize("offload", ["model", "group"])
@pytest.mark.parametrize("quant", ["fp32", "nf4"])
def test_sampling_offload_on_tracked_cuda(offload, quant):
    """`fit_small_gpu` (advanced.offload) on 'cuda'. Found here: "group" used diffusers' group offloading on the transformer only,
    so the VAE decoded GPU latents on the host, and an NF4 transformer met its 4-bit scales on the host (bitsandbytes.gemm_4bit).
    The same kind of failure is reported for diffusers' group offloading with other quantizers' weight parts: huggingface/diffusers
    issues 12610 (quanto int8: "weights on cpu, mat1 on gpu") and 13281 (torchao float8 with use_stream)."""
    from zimage_nb.models import load_transformer, tiny_model_folder
    from zimage_nb.sample import Sampler, fit_small_gpu
    pipe = tiny_pipeline()
    ref = Sampler(tiny_pipeline()).image("zxq", width=64, height=64, steps=1)
    if quant == "nf4": pipe.transformer = load_transformer(tiny_model_folder(), quant="nf4", dtype=torch.float32, device="cpu", progress=False)
    with FC.DeviceTracker("T4") as dt:
        done = fit_small_gpu(pipe, offload, device="cuda")
        im = Sampler(pipe).image("zxq", width=64, height=64, steps=1)
    assert len(done) == 1 and im.size == (64, 64)
    if offload == "group": assert pipe._block_offload[0].stats()["loads"] >= 6 and dt.on_gpu(next(pipe.vae.parameters()))
    if quant == "fp32": assert im.tobytes() == ref.tobytes()                # moved around, the same picture

# ------------------------------------------------------------------------------------------------ memory where the GPU would count it
@pytest.mark.parametrize("quant,dtype", [("nf4", torch.float32), ("bf16", torch.bfloat16)])
def test_text_encoder_caching_memory_beside_the_planner(quant, dtype):
    """Qwen3-4B's caching step at real size on fake CUDA (NF4 through bitsandbytes' registered ops), counted per storage:
    the planner's `text_encoder_bytes` within 5% (weights to 0.01%), and the measured bytes as bench/RESULTS.md has them."""
    from zimage_nb.planner import text_encoder_bytes
    r = FC.text_encoder_caching_peak(quant, dtype, 512)
    est = text_encoder_bytes(quant, 4 if dtype == torch.float32 else 2, 512)
    assert abs(est["weights"] / r["weights"] - 1) < 1e-4 and abs(est["total"] / r["peak"] - 1) < 0.05
    assert r["emb"][0][1] == 2560 and r["emb"][1] == dtype and r["emb"][2] == "cuda:0"
    assert r["weights"] == {"nf4": 3_431_184_112, "bf16": 8_044_936_704}[quant]     # bench/RESULTS.md, 2026-12-02

# ------------------------------------------------------------------------------------------------ loading
@pytest.mark.parametrize("quant,single", [("nf4", False), ("nf4", True), ("int8", False), ("bf16", True)])
def test_loading_onto_tracked_cuda(tiny, tiny_folder, tmp_path, quant, single):
    "The streaming loader (a diffusers folder or a single file) straight onto 'cuda': every weight there, the forward as on the CPU."
    from zimage_nb.models import load_transformer, tiny_forward, relative_error
    from zimage_nb.tiny import write_single_file
    f = write_single_file(tiny.transformer, tmp_path / "z.safetensors", dtype=torch.float32) if single else None
    ref = tiny_forward(load_transformer(tiny_folder, quant, torch.float32, "cpu", single_file=f, progress=False))
    with FC.DeviceTracker("T4") as dt:
        tr = load_transformer(tiny_folder, quant, torch.float32, "cuda", single_file=f, progress=False)
        out = tiny_forward(tr, device="cuda")
    assert all(dt.on_gpu(t) for t in list(tr.parameters()) + list(tr.buffers()))
    if quant == "nf4": assert relative_error(out, ref) < 0.01   # bitsandbytes takes its GPU code path (dequantize, then matmul), not the CPU kernel
    else: assert torch.equal(out, ref)

from torch._subclasses.fake_tensor import DynamicOutputShapeException
INT8_NOT_COVERED = pytest.mark.xfail(raises=DynamicOutputShapeException, strict=True,
    reason="bitsandbytes' int8_vectorwise_quant has a data-dependent output size (its outlier columns): a fake mode without symbolic shapes refuses it")

@pytest.mark.parametrize("quant,layout", [("nf4", "original"), ("nf4", "diffusers"), ("bf16", "diffusers"), pytest.param("int8", "original", marks=INT8_NOT_COVERED)])
def test_streaming_loader_at_real_width_on_fake_cuda(tmp_path, quant, layout):
    """The real width (1 main layer, the 4 refiners) from a sparse checkpoint in ComfyUI's single-file layout (fused qkv,
    model.diffusion_model.) or a diffusers folder, quantized as it streams onto fake CUDA, then a 512² forward. NF4: the
    loader quantizes through bitsandbytes' code and fake ops; `Params4bit` cannot hold the packed codes (they arrive as meta),
    so `nf4_stand_ins` gives them back beside the scales the loader made. The bytes on the device are the planner's."""
    from zimage_nb.planner import transformer_shape, WEIGHT_BYTES
    src = FC.sparse_checkpoint(tmp_path, layout, dict(n_layers=1))
    r = FC.real_size_loading(tmp_path, quant, src if layout == "original" else None, 512)
    assert r["skipped"] == 0 and r["on_cuda"] and r["shape"] == (1, 16, 64, 64) and r["device"] == "cuda:0"
    s = transformer_shape(dict(n_layers=1))
    assert abs(r["weights"] / (s["quantized"] * WEIGHT_BYTES[quant] + s["other"] * 2) - 1) < 0.01
    assert (r["nf4_layers"] > 30) == (quant == "nf4")
