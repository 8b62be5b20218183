"""CUDA code paths run on the CPU build of torch, so that the bugs only a GPU shows (a tensor left on the host, a mask
or noise made without `device=`, a `torch.cuda` call too early, a prefetched block used before its copy was waited for)
fail here first. Two harnesses, one set of `torch.cuda` stand-ins:

* `FakeCuda`: tensors moved to "cuda" become `FakeTensor`s (shape, dtype and device, no data), so the real Z-Image sizes
  (6.15 B transformer, Qwen3-4B) run in seconds and take no memory; mixing devices raises
  `FakeTensorDeviceMismatchError`. No autograd: on a CPU-only torch, any op on a fake CUDA tensor that needs grad aborts
  the process (no CUDA device guard compiled in), and on PyPI's CUDA build without a driver the backward stops at
  "hasPrimaryContext expects a valid device index" (tried with torch 2.14.1+cu130, 5.4 GB installed). So: forwards,
  caching and sampling at real size. `.memory` counts the bytes of fake CUDA storages alive and their peak (what
  `torch.cuda.memory_allocated` counts, less the allocator's rounding); NF4 layers run as `FakeLinear4bit`.
* `DeviceTracker`: real numbers on the CPU at tiny size, autograd included, while every tensor that would live on the
  GPU is tracked (by storage): `.device` says cuda, and any op that mixes one with a host tensor of one element or more
  raises `DeviceMismatch` (a real GPU allows 0-dim host scalars and host indices, so these pass). Streams and events
  are recording stand-ins: a tensor copied on a side stream and used on another before an event recorded after the copy
  was waited for, or freed after such a use without `record_stream`, raises `StreamOrderError`. So: loading, training
  steps, the 8-bit optimizer, EMA, validation, training offload, captioning, sampling with offload.

Both record every `torch.cuda` call in `.cuda_calls` (name, whether it would initialise CUDA on a real machine).
`python tests/fake_cuda.py` runs the real-size rows and prints them; tests/test_fake_cuda.py runs all of it.
"""
from __future__ import annotations
import contextlib, functools, io, re, traceback, types
import numpy as np
import torch
from torch._subclasses.fake_tensor import FakeTensorMode, FakeTensor
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._mode_utils import no_dispatch
from torch.utils._pytree import tree_map, tree_leaves
from torch.utils.weak import WeakTensorKeyDictionary, WeakIdKeyDictionary

CUDA0 = torch.device("cuda", 0)
SHADOW_NUMEL = 1 << 16   # FakeCuda: small tensors (ids, masks, timesteps, sigmas) keep their real values beside the fake
GPUS = {   # what the stand-ins report: name, memory, compute capability, bf16
    "T4": ("Tesla T4", 15 * 2**30, (7, 5), False), "P100": ("Tesla P100-PCIE-16GB", 16 * 2**30, (6, 0), False),
    "A100": ("NVIDIA A100-SXM4-40GB", 40 * 2**30, (8, 0), True), "H200": ("NVIDIA H200", 139 * 2**30, (9, 0), True)}

class DeviceMismatch(RuntimeError): "An op mixed a tensor that would be on the GPU with one on the host."
class StreamOrderError(RuntimeError): "A tensor copied on a side stream was used on another before that stream was waited for."

def _dev(a):
    if isinstance(a, torch.device): return a
    if isinstance(a, str) and a.split(":")[0] in ("cuda", "cpu", "meta"): return torch.device(a)
    if isinstance(a, int) and not isinstance(a, bool): return torch.device("cuda", a)
    return None
def _cuda0(d): return CUDA0 if d.type == "cuda" and d.index is None else d
class _RealCtx:
    "Plain torch inside (no mode, no dispatch subclass handling): for the real values beside the fakes."
    def __enter__(self): self.a = no_dispatch(); self.b = torch._C.DisableTorchFunction(); self.a.__enter__(); self.b.__enter__()
    def __exit__(self, *e): self.b.__exit__(*e); self.a.__exit__(*e)

def _to_target(args, kwargs, device_of=lambda t: t.device):
    "(device or None, dtype or None) that a Tensor.to / cuda / cpu call asks for."
    dev = dt = None
    for a in list(args[1:]) + [kwargs.get(k) for k in ("device", "dtype", "other") if k in kwargs]:
        if isinstance(a, torch.dtype): dt = a
        elif isinstance(a, torch.Tensor): dev, dt = device_of(a), a.dtype
        elif _dev(a) is not None: dev = _dev(a)
    return dev, dt

# ---------------------------------------------------------------------------------------------------------------- torch.cuda
class _Stream:
    "A recording stand-in for torch.cuda.Stream: counts the copies made on it; `wait_event` records what is waited for."
    def __init__(self, cuda, name): self.c, self.name, self.seq, self.waited = cuda, name, 0, {}
    def wait_event(self, ev):
        if ev.stream is not None: self.waited[ev.stream] = max(self.waited.get(ev.stream, 0), ev.seq)
    def wait_stream(self, s): self.waited[s] = max(self.waited.get(s, 0), s.seq)
    def synchronize(self): pass
    def query(self): return True
    def record_event(self, ev=None): ev = ev or _Event(); ev.record(self); return ev
    def __repr__(self): return f"<stand-in stream {self.name}>"
class _Event:
    def __init__(self, *a, **k): self.stream, self.seq = None, 0
    def record(self, stream=None): self.stream = stream or _CudaStandIn.active.current; self.seq = self.stream.seq
    def synchronize(self): pass
    def wait(self, stream=None): (stream or _CudaStandIn.active.current).wait_event(self)
    def query(self): return True
class _Props(types.SimpleNamespace): pass

_REAL_CUDA = {n: getattr(torch.cuda, n) for n in (   # the functions the stand-ins replace, as this torch has them (read before any stand-in is in)
    "is_available", "device_count", "is_initialized", "init", "_lazy_init", "current_device", "set_device", "get_device_properties", "get_device_name",
    "get_device_capability", "is_bf16_supported", "mem_get_info", "memory_allocated", "max_memory_allocated", "memory_reserved", "max_memory_reserved",
    "reset_peak_memory_stats", "empty_cache", "synchronize", "manual_seed", "manual_seed_all", "get_rng_state_all", "set_rng_state_all", "get_rng_state",
    "set_rng_state", "stream", "current_stream", "default_stream")}

class StandInMismatch(TypeError):
    "A stand-in whose parameters differ from the torch.cuda function it replaces (a new torch release changed it)."

def like_real(name:str, impl, note=None):
    """`impl` standing in for `torch.cuda.<name>`: its parameter names, kinds and defaults must be the real function's (checked here,
    so a torch release that changes one stops with StandInMismatch naming both), and every call is bound by the real signature first."""
    import inspect
    real = inspect.signature(_REAL_CUDA[name]); mine = inspect.signature(impl)
    strip = lambda sig: [(p.name, p.kind, p.default) for p in sig.parameters.values()]
    if strip(real) != strip(mine):
        raise StandInMismatch(f"the stand-in for torch.cuda.{name} takes {mine} but torch {torch.__version__} has {real}: update it in tests/fake_cuda.py")
    @functools.wraps(impl)
    def call(*a, **k):
        real.bind(*a, **k)                       # a call the real function refuses is refused here too
        if note: note()
        return impl(*a, **k)
    return call

class _CudaStandIn:
    "Replaces torch.cuda's functions while active; records each call and whether a real machine would initialise CUDA."
    active = None
    INIT = {"init", "_lazy_init", "set_device", "current_device", "get_device_properties", "get_device_name", "get_device_capability",
            "is_bf16_supported", "mem_get_info", "synchronize", "Stream", "current_stream", "get_rng_state", "get_rng_state_all",
            "set_rng_state", "set_rng_state_all", "stream", "device"}
    def __init__(self, gpu="H200", n=1):
        self.gpu, self.n, self.calls, self.initialised = GPUS[gpu], n, [], False
        self.default = _Stream(self, "default"); self.current = self.default
        self.memory = None   # a CudaMemory (FakeCuda's), read by memory_allocated and the like
    def used(self, peak=False): return 0 if self.memory is None else (self.memory.peak if peak else self.memory.current)
    def tensor_made(self): self._note("a tensor on cuda"); self.calls[-1] = ("a tensor on cuda", True); self.initialised = True
    def _note(self, name):
        inits = name in self.INIT
        self.calls.append((name, inits)); self.initialised |= inits
    def functions(self):
        "The stand-ins, each checked against the real torch.cuda function's parameters (see `like_real`)."
        name, mem, cc, bf16 = self.gpu
        s = self
        def rec(n, f): return like_real(n, f, lambda: s._note(n))
        @contextlib.contextmanager
        def stream(stream):
            s._note("stream"); prev = s.current; s.current = stream or prev
            try: yield
            finally: s.current = prev
        class Stream(_Stream):
            def __init__(self, *a, **k): s._note("Stream"); super().__init__(s, f"side{len(s.calls)}")
        class Event(_Event):
            def __init__(self, *a, **k): s._note("Event"); super().__init__()
        zeros = lambda: torch.zeros(16, dtype=torch.uint8)
        return dict(
            is_available=rec("is_available", lambda: True), device_count=rec("device_count", lambda: s.n),
            is_initialized=like_real("is_initialized", lambda: s.initialised), init=rec("init", lambda: None), _lazy_init=rec("_lazy_init", lambda: None),
            current_device=rec("current_device", lambda: 0), set_device=rec("set_device", lambda device: None),
            get_device_properties=rec("get_device_properties", lambda device=None: _Props(name=name, total_memory=mem, major=cc[0], minor=cc[1], multi_processor_count=40)),
            get_device_name=rec("get_device_name", lambda device=None: name), get_device_capability=rec("get_device_capability", lambda device=None: cc),
            is_bf16_supported=rec("is_bf16_supported", lambda including_emulation=True: bf16 or bool(including_emulation)),
            mem_get_info=rec("mem_get_info", lambda device=None: (mem - s.used(), mem)),
            memory_allocated=rec("memory_allocated", lambda device=None: s.used()), max_memory_allocated=rec("max_memory_allocated", lambda device=None: s.used(True)),
            memory_reserved=rec("memory_reserved", lambda device=None: s.used()), max_memory_reserved=rec("max_memory_reserved", lambda device=None: s.used(True)),
            reset_peak_memory_stats=rec("reset_peak_memory_stats", lambda device=None: s.memory and s.memory.reset_peak()),
            empty_cache=rec("empty_cache", lambda: None), synchronize=rec("synchronize", lambda device=None: None),
            manual_seed=rec("manual_seed", lambda seed: None), manual_seed_all=rec("manual_seed_all", lambda seed: None),
            get_rng_state_all=rec("get_rng_state_all", lambda: [zeros()] * s.n), set_rng_state_all=rec("set_rng_state_all", lambda new_states: None),
            get_rng_state=rec("get_rng_state", lambda device="cuda": zeros()), set_rng_state=rec("set_rng_state", lambda new_state, device="cuda": None),
            Stream=Stream, Event=Event, stream=like_real("stream", stream), current_stream=rec("current_stream", lambda device=None: s.current),
            default_stream=rec("default_stream", lambda device=None: s.default))
    def __enter__(self):
        self.saved = {k: getattr(torch.cuda, k, None) for k in self.functions()}
        for k, f in self.functions().items(): setattr(torch.cuda, k, f)
        _CudaStandIn.active = self; return self
    def __exit__(self, *e):
        for k, f in self.saved.items(): setattr(torch.cuda, k, f)
        _CudaStandIn.active = None

# ---------------------------------------------------------------------------------------------------------------- FakeCuda
class CudaMemory:
    "Bytes of the fake CUDA storages alive (`current`) and the most at once (`peak`): what `torch.cuda.memory_allocated` counts, less the allocator's rounding."
    def __init__(self): self.current = self.peak = 0; self._live = set()
    def reset_peak(self): self.peak = self.current
    def _freed(self, key, n): self.current -= n; self._live.discard(key)
    def add(self, out, args, kwargs):
        import weakref
        ins = {id(t.untyped_storage()) for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)}
        for t in tree_leaves(out):
            if not isinstance(t, torch.Tensor) or t.device.type != "cuda": continue
            st = t.untyped_storage(); key = id(st)
            if key in self._live or key in ins: continue           # a view or an in-place result
            n = st.nbytes(); self._live.add(key); self.current += n; self.peak = max(self.peak, self.current)
            weakref.finalize(st, self._freed, key, n)

class _Mode(FakeTensorMode):
    avoid_device_init = property(lambda self: True)   # no real CUDA: never constant-fold an op that moves to it
    def __init__(self, memory, **kw): super().__init__(**kw); self.memory = memory
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = super().__torch_dispatch__(func, types, args, kwargs)
        self.memory.add(out, args, kwargs or {})
        return out

class _Route(TorchFunctionMode):
    "Sends what the CPU build refuses at the Python binding (Tensor.to('cuda'), .cuda(), factories on cuda) to fake tensors."
    def __init__(self, owner): super().__init__(); self.o = owner

    def fake(self, t, device):
        "A fake tensor on `device` for `t` (real or fake), keeping a small real tensor's values."
        real = t if not isinstance(t, FakeTensor) else self.o.shadow.get(t)
        if not isinstance(t, FakeTensor): t = self.o.mode.from_tensor(t)
        out = torch.ops.aten._to_copy.default(t, device=device)
        if real is not None and real.numel() <= SHADOW_NUMEL: self.o.shadow[out] = real
        return out

    def real_args(self, args, kwargs):
        "args with every fake replaced by its real value (None when one has none) and cuda devices by cpu."
        missing = []
        def sub(a):
            if isinstance(a, FakeTensor):
                r = self.o.shadow.get(a)
                if r is None: missing.append(a)
                return r
            if isinstance(a, torch.device) and a.type == "cuda": return torch.device("cpu")
            if isinstance(a, str) and a.startswith("cuda"): return "cpu"
            return a
        ra, rk = tree_map(sub, args), tree_map(sub, kwargs)
        return (None, None) if missing else (ra, rk)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = self.call(func, args, kwargs)
        name = getattr(func, "__name__", "")
        if not self.o.stand_in.initialised and isinstance(out, torch.Tensor) and out.device.type == "cuda": self.o.stand_in.tensor_made()
        if isinstance(out, FakeTensor) and out.numel() == 1 and out not in self.o.shadow and name in ("all", "any"):
            # a check on values a fake run does not have (isfinite(x).all(), isnan(x).any()): the well-behaved answer, logged
            with _RealCtx(): self.o.shadow[out] = torch.tensor(name == "all")
            self.o.log.append(("assumed", name, tuple(args[0].shape)))
        # small tensors keep real values (token ids, masks, timesteps): computed again on the real values beside them
        ins = [a for a in tree_leaves((args, kwargs)) if isinstance(a, torch.Tensor)]
        outs = [o for o in tree_leaves(out) if isinstance(o, FakeTensor) and o not in self.o.shadow] if isinstance(out, (torch.Tensor, tuple, list)) else []
        if ins and outs and all(o.numel() <= SHADOW_NUMEL for o in outs) and func is not torch.Tensor.__setitem__:
            ra, rk = self.real_args(args, kwargs)
            if ra is not None:
                with _RealCtx():
                    try: rout = func(*ra, **rk)
                    except Exception: rout = None
                if rout is not None:
                    for o, r in zip(tree_leaves(out), tree_leaves(rout)):
                        if isinstance(o, FakeTensor) and isinstance(r, torch.Tensor) and tuple(o.shape) == tuple(r.shape): self.o.shadow[o] = r
        return out

    def call(self, func, args, kwargs):
        o = self.o
        if func in (torch.Tensor.to, torch.Tensor.cuda, torch.Tensor.cpu):
            t = args[0]; dev, dt = _to_target(args, kwargs)
            dev, dt = dev or t.device, dt or t.dtype
            if func is torch.Tensor.cuda: dev = CUDA0 if not args[1:] else _dev(args[1])
            if func is torch.Tensor.cpu: dev = torch.device("cpu")
            dev = _cuda0(dev)
            if dev == t.device and dt == t.dtype and not kwargs.get("copy"): return t
            if dev.type == "cuda" or t.device.type == "cuda":
                real = t if not isinstance(t, FakeTensor) else o.shadow.get(t)
                if isinstance(t, FakeTensor): out = torch.ops.aten._to_copy.default(t, device=dev, dtype=dt)
                else: out = self.fake(t.to(dt), dev)
                if real is not None and real.numel() <= SHADOW_NUMEL:
                    with _RealCtx(): o.shadow[out] = real.to(dt)
                if dev.type == "cpu": o.log.append(("to host", tuple(t.shape)))
                return out
            return func(*args, **kwargs)
        if func is torch.Tensor.__getitem__ and isinstance(args[0], FakeTensor) and args[0].device.type == "cuda": return self.getitem(*args)
        if func in (torch.tensor, torch.as_tensor, torch.asarray, torch.frombuffer, torch.from_numpy) and not any(isinstance(a, FakeTensor) for a in tree_leaves(args)):
            dev = _dev(kwargs.pop("device", None))
            with _RealCtx(): t = func(*args, **kwargs)   # real values
            return self.fake(t, _cuda0(dev)) if dev is not None and dev.type == "cuda" else t
        if func is torch.Tensor.numpy and isinstance(args[0], FakeTensor):
            r = o.shadow.get(args[0])
            if r is not None: return r.numpy()
            o.log.append(("unknown value", "numpy", tuple(args[0].shape)))
            with _RealCtx(): return torch.zeros(tuple(args[0].shape), dtype=args[0].dtype).numpy()
        if func in (torch.Tensor.item, torch.Tensor.tolist, torch.Tensor.__bool__, torch.Tensor.__float__, torch.Tensor.__int__) and isinstance(args[0], FakeTensor):
            r = o.shadow.get(args[0])
            if r is not None:
                with _RealCtx(): return func(r, *args[1:], **kwargs)
            o.log.append(("unknown value", func.__name__, tuple(args[0].shape)))   # a data-dependent read without data: 0
            if func is torch.Tensor.tolist: return np.zeros(tuple(args[0].shape)).tolist()
            return {torch.Tensor.__bool__: False, torch.Tensor.__int__: 0}.get(func, 0.0)
        if func is torch.Tensor.__setitem__ and isinstance(args[0], FakeTensor) and args[0].device.type == "cuda":
            t, idx, v = args
            if isinstance(v, torch.Tensor) and v.device != t.device and v.dim() > 0:
                raise RuntimeError(f"setting part of a {t.device} tensor from a {v.device} tensor of shape {tuple(v.shape)}")
            return None
        if func is torch.Tensor.new_tensor and isinstance(args[0], FakeTensor):
            return self.fake(torch.tensor(*args[1:], **{"dtype": args[0].dtype, **kwargs}), args[0].device)
        if func in (torch.Tensor.pin_memory,): return args[0]
        if func is torch.Tensor.is_pinned: return True
        dev = _dev(kwargs.get("device"))
        if dev is not None and dev.type == "cuda" and not any(isinstance(a, FakeTensor) for a in tree_leaves(args)):   # a factory on the GPU
            with o.mode: return func(*args, **{**kwargs, "device": _cuda0(dev)})
        try:
            if any(isinstance(a, FakeTensor) for a in tree_leaves((args, kwargs))):
                with o.mode: return func(*args, **kwargs)   # ops that make tensors inside (sdpa's mask) make fakes too
            return func(*args, **kwargs)
        except RuntimeError as e:
            if "not linked with support for cuda" not in str(e): raise
            op = getattr(torch.ops.aten, getattr(func, "__name__", ""), None)
            if op is None: raise
            with o.mode: return op(*args, **kwargs)

    def getitem(self, t, idx):
        "Indexing a fake CUDA tensor (boolean masks need their values: known for small ones)."
        def mv(i):
            if isinstance(i, torch.Tensor):
                if i.device != t.device and i.dim() > 0 and i.dtype == torch.bool: raise DeviceMismatch(f"indexing a {t.device} tensor with a {i.device} mask")
                if i.dtype == torch.bool:
                    r = self.o.shadow.get(i) if isinstance(i, FakeTensor) else i
                    if r is None: raise RuntimeError("a boolean index whose values a fake run does not know")
                    with _RealCtx(): cols = r.nonzero(as_tuple=True)
                    return tuple(self.fake(c, t.device) for c in cols)
            return i
        idx = tuple(mv(i) for i in idx) if isinstance(idx, tuple) else (mv(idx),)
        flat = []
        for i in idx: flat.extend(i) if isinstance(i, tuple) else flat.append(i)
        with self.o.mode:
            host = torch.ops.aten._to_copy.default(t, device="cpu")
            flat = [torch.ops.aten._to_copy.default(i, device="cpu") if isinstance(i, torch.Tensor) else i for i in flat]
            return torch.ops.aten._to_copy.default(torch.Tensor.__getitem__(host, tuple(flat)), device=t.device)

class FakeLinear4bit(torch.nn.Module):
    """A bitsandbytes NF4 `Linear4bit` (as `quantize_linears` builds it: blocksize 64, nested scales) whose tensors are
    plain buffers with bitsandbytes' bytes and dtypes: packed codes (uint8, 2 per byte), 8-bit scales per 64 values, their
    fp32 scales per 256, the 256-entry code and the offset. `bnb.nn.Params4bit` cannot wrap a fake tensor; these can, and
    the forward goes through bitsandbytes' own registered ops (dequantize_blockwise, dequantize_4bit: fake kernels since
    0.46) and F.linear, as `Linear4bit.forward` does for more than one token. Not covered: the one-token `gemv_4bit` path
    and `matmul_4bit`'s autograd function (no autograd on fake CUDA)."""
    def __init__(self, lin, device):
        super().__init__()
        import math
        self.shape, self.compute_dtype, self.bs = (lin.out_features, lin.in_features), lin.compute_dtype or torch.float32, lin.weight.blocksize
        n = lin.out_features * lin.in_features; blocks = math.ceil(n / self.bs)
        qs = getattr(lin.weight, "quant_state", None)
        self.register_buffer("packed", torch.empty((n + 1) // 2, 1, dtype=torch.uint8, device=device))
        if qs is not None and isinstance(qs.absmax, FakeTensor):
            # quantized by the loader through bitsandbytes' own code and registered fake ops: its scales are kept as they came;
            # only the packed codes, which Params4bit could not hold (they arrived as meta), are made again
            self.w_dtype = qs.dtype
            for k, v in dict(absmax=qs.absmax, absmax2=qs.state2.absmax, code2=qs.state2.code, offset=qs.offset).items(): self.register_buffer(k, v)
            self.bias = lin.bias
            return
        self.w_dtype = self.compute_dtype
        self.register_buffer("absmax", torch.empty(blocks, dtype=torch.uint8, device=device))
        self.register_buffer("absmax2", torch.empty(math.ceil(blocks / 256), dtype=torch.float32, device=device))
        self.register_buffer("code2", torch.empty(256, dtype=torch.float32, device=device))
        self.register_buffer("offset", torch.empty((), dtype=torch.float32, device=device))
        self.bias = None if lin.bias is None else torch.nn.Parameter(torch.empty(lin.out_features, dtype=self.compute_dtype, device=device), requires_grad=False)
    def forward(self, x):
        absmax = torch.ops.bitsandbytes.dequantize_blockwise(self.absmax, self.absmax2, self.code2, 256, torch.float32) + self.offset
        w = torch.ops.bitsandbytes.dequantize_4bit(self.packed, absmax, self.bs, "nf4", list(self.shape), self.w_dtype).to(self.compute_dtype)
        return torch.nn.functional.linear(x.to(self.compute_dtype), w, self.bias)

def nf4_stand_ins(model, device="cuda")->int:
    "Replace every bitsandbytes Linear4bit (of a meta model from `quantize_linears`, or one `load_transformer` quantized on fake CUDA) by a `FakeLinear4bit` on `device`; how many."
    import bitsandbytes as bnb
    n = 0
    for name, mod in list(model.named_modules()):
        if isinstance(mod, bnb.nn.Linear4bit):
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent), child, FakeLinear4bit(mod, device)); n += 1
    import gc; gc.collect()   # a loaded Params4bit and its module refer to each other: freed (and its bytes uncounted) by the collector
    return n

def _fake_or_shadow(owner, v):
    "A real CPU tensor for `v` (its known values, or zeros of its shape and dtype): what a fake run writes to files."
    if not isinstance(v, FakeTensor): return v
    r = owner.shadow.get(v)
    owner.log.append(("saved", "values" if r is not None else "zeros", tuple(v.shape)))
    with _RealCtx(): return r.clone().contiguous() if r is not None else torch.zeros(tuple(v.shape), dtype=v.dtype)

class FakeCuda:
    "Within: 'cuda' works without a GPU, tensors there carry no data (see the module's docstring)."
    def __init__(self, gpu:str="H200", n:int=1):
        self.log, self.shadow, self.stand_in, self.memory = [], WeakTensorKeyDictionary(), _CudaStandIn(gpu, n), CudaMemory()
        self.stand_in.memory = self.memory
    @property
    def cuda_calls(self): return self.stand_in.calls
    def __enter__(self):
        import safetensors.torch as st
        self.mode = _Mode(self.memory, allow_non_fake_inputs=True); self.route = _Route(self)
        self._saved = torch.utils.swap_tensors, st._flatten_as_ptr, getattr(st, "_flatten", None)
        orig = torch.utils.swap_tensors
        def swap(t1, t2):    # Module.to on fake parameters: the fake mode's memo holds weak references, which swapping refuses
            try: return orig(t1, t2)
            except RuntimeError:
                if not isinstance(t2, FakeTensor): raise
                with torch.no_grad(): t1.data = t2.data if isinstance(t2, torch.nn.Parameter) else t2
        torch.utils.swap_tensors = swap
        fl = st._flatten_as_ptr
        st._flatten_as_ptr = lambda tensors, keep: fl({k: _fake_or_shadow(self, v) for k, v in tensors.items()}, keep)
        if self._saved[2] is not None:
            f2 = self._saved[2]; st._flatten = lambda tensors: f2({k: _fake_or_shadow(self, v) for k, v in tensors.items()})
        self.stand_in.__enter__(); self.route.__enter__(); return self
    def __exit__(self, *e):
        import safetensors.torch as st
        self.route.__exit__(*e); self.stand_in.__exit__(*e)
        torch.utils.swap_tensors, st._flatten_as_ptr = self._saved[:2]
        if self._saved[2] is not None: st._flatten = self._saved[2]

# ---------------------------------------------------------------------------------------------------------------- DeviceTracker
GPU, NEUTRAL = "gpu", "neutral"   # storages absent from the table are on the host
_MIX_OK = {"copy_", "_to_copy", "index", "index_put_", "_index_put_impl_", "set_", "_local_scalar_dense", "detach", "alias", "lift_fresh"}

class _TrackFn(TorchFunctionMode):
    def __init__(self, owner): super().__init__(); self.o = owner
    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}; o = self.o
        if func == torch.Tensor.device.__get__: return CUDA0 if o.on_gpu(args[0]) else func(*args)
        if func == torch.Tensor.is_cuda.__get__: return o.on_gpu(args[0])
        if func is torch.Tensor.get_device: return 0 if o.on_gpu(args[0]) else -1
        if func in (torch.Tensor.to, torch.Tensor.cuda, torch.Tensor.cpu):
            t = args[0]; dev, dt = _to_target(args, kwargs, lambda a: CUDA0 if o.on_gpu(a) else torch.device("cpu"))
            if func is torch.Tensor.cuda: dev = CUDA0
            if func is torch.Tensor.cpu: dev = torch.device("cpu")
            dt = dt or t.dtype
            if dev is None or (dev.type == "cuda") == o.on_gpu(t):   # dtype only, or already there
                return func(t, dtype=dt) if dt != t.dtype else t
            if dev.type == "cuda" and kwargs.get("non_blocking") and not o.on_gpu(t) and o.stand_in.current is not o.stand_in.default and not o.is_pinned(t):
                o.log.append(("non-blocking copy from unpinned memory", tuple(t.shape)))
            with torch._C.DisableTorchFunction(): out = torch.Tensor.to(t, dtype=dt, copy=True)
            o.set(out, GPU if dev.type == "cuda" else None)
            cur = o.stand_in.current
            if dev.type == "cuda" and cur is not o.stand_in.default: cur.seq += 1; o.side_copy(out, cur)
            else: o.log.append(("to host", tuple(t.shape)))
            return out
        if func in (torch.Tensor.backward, torch.autograd.backward) and not kwargs.get("inputs") and len(args) <= 2:
            # a mode is off while its handler runs: the backward (hooks, checkpoint recompute, offload's prefetch) runs under it again
            t, g = args[0], kwargs.get("gradient", kwargs.get("grad_tensors", args[1] if len(args) > 1 else None))
            keep = kwargs.get("retain_graph"); create = bool(kwargs.get("create_graph", False))
            with self:
                g = torch.ones_like(t) if g is None else g
                from torch.autograd.graph import _engine_run_backward
                _engine_run_backward((t,), (g,), create if keep is None else keep, create, (), allow_unreachable=True, accumulate_grad=True)
            return None
        if func is torch.Tensor.pin_memory:
            o.pinned[args[0].untyped_storage()] = True; return args[0]
        if func is torch.Tensor.is_pinned: return o.is_pinned(args[0])
        dev = _dev(kwargs.get("device"))
        if dev is not None and dev.type in ("cuda", "cpu"):   # a factory (or a copy) with an explicit device
            out = func(*args, **{**kwargs, "device": "cpu"})
            for t in tree_leaves(out):
                if isinstance(t, torch.Tensor): o.set(t, GPU if dev.type == "cuda" else None)
            return out
        out = func(*args, **kwargs)
        if func in (torch.tensor, torch.as_tensor, torch.from_numpy, torch.frombuffer, torch.zeros, torch.ones, torch.empty, torch.full,
                    torch.randn, torch.rand, torch.randint, torch.arange, torch.linspace):
            for t in tree_leaves(out):   # made on the host on purpose (no device given)
                if isinstance(t, torch.Tensor): o.set(t, None)
        return out

class _TrackDispatch(TorchDispatchMode):
    def __init__(self, owner): super().__init__(); self.o = owner
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}; o = self.o
        ins = [a for a in tree_leaves((args, kwargs)) if isinstance(a, torch.Tensor)]
        states = [o.state(t) for t in ins]
        gpu = GPU in states
        host = [tuple(t.shape) for t, s in zip(ins, states) if s is None and t.dim() > 0]
        name = func.overloadpacket.__name__
        if gpu and host and name not in _MIX_OK:
            raise DeviceMismatch(f"{func}: tensors that would be on the GPU meet host tensor(s) of shape {', '.join(map(str, host))}")
        if gpu:   # used on the current stream: anything copied on another stream must have been waited for
            cur = o.stand_in.current
            for t in ins:
                made = o.copies.get(id(t.untyped_storage()))
                if made and made["stream"] is not cur:
                    if cur.waited.get(made["stream"], 0) < made["seq"]:
                        raise StreamOrderError(f"{func} used a tensor of shape {tuple(t.shape)} copied on {made['stream']} before that stream was waited for")
                    made["used_on"].add(cur)
        dev = kwargs.get("device")
        if isinstance(dev, torch.device) and dev.type == "cuda":   # reached dispatch with its device (made inside another op): the CPU
            kwargs = {**kwargs, "device": torch.device("cpu")}; gpu = True
        out = func(*args, **kwargs)
        st = GPU if gpu else (None if host else NEUTRAL)
        seen = {id(t.untyped_storage()) for t in ins}
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor) and id(t.untyped_storage()) not in seen: o.set(t, st)
        return out

class DeviceTracker:
    "Within: 'cuda' means the CPU, with every would-be GPU tensor tracked and mixes refused (see the module's docstring)."
    def __init__(self, gpu:str="H200", n:int=1):
        self.table, self.pinned, self.log = WeakIdKeyDictionary(), WeakIdKeyDictionary(), []
        self.stand_in, self.copies, self.violations = _CudaStandIn(gpu, n), {}, []
    def side_copy(self, t, stream):
        "`t` was copied on side stream `stream`: its use elsewhere must wait for it, and its memory must not be freed unrecorded."
        import weakref
        st = t.untyped_storage()   # keyed by id while alive: the finalizer below takes the entry out when it is freed
        self.copies[id(st)] = dict(stream=stream, seq=stream.seq, shape=tuple(t.shape), used_on=set(), recorded=set())
        weakref.finalize(st, self._copy_freed, id(st))
    def _record(self, t, stream):
        info = self.copies.get(id(t.untyped_storage()))
        if info is not None: info["recorded"].add(stream)
    def _copy_freed(self, key):
        # the caching allocator gives a block back to the stream it was made on: used on another stream without
        # record_stream, it can be handed out again while that stream still reads it
        info = self.copies.pop(key, None)
        if info and info["used_on"] - info["recorded"]:
            self.violations.append(f"a tensor of shape {info['shape']} copied on {info['stream']} and used on {sorted(map(repr, info['used_on'] - info['recorded']))} was freed without record_stream")
    @property
    def cuda_calls(self): return self.stand_in.calls
    def state(self, t):
        try: return self.table.get(t.untyped_storage())
        except Exception: return NEUTRAL   # sparse, meta or other storage-less tensors: no opinion
    def on_gpu(self, t): return self.state(t) == GPU
    def is_pinned(self, t): return t.untyped_storage() in self.pinned
    def set(self, t, state):
        if state == GPU and not self.stand_in.initialised: self.stand_in.tensor_made()
        s = t.untyped_storage()
        if state is None: self.table.pop(s, None)
        else: self.table[s] = state
    def __enter__(self):
        self.stand_in.__enter__(); self.fn = _TrackFn(self); self.dispatch = _TrackDispatch(self)
        self._record_stream = torch.Tensor.record_stream   # its binding checks the stream's type before any mode sees it
        torch.Tensor.record_stream = lambda t, stream: self._record(t, stream)
        import torch.utils.checkpoint as ck   # its recompute check compares .device, which this harness answers per call site
        self._determinism = ck._allowed_determinism_checks_to_fns["default"]
        ck._allowed_determinism_checks_to_fns["default"] = lambda x: {"shape": x.shape, "dtype": x.dtype}
        self.fn.__enter__(); self.dispatch.__enter__(); return self
    def __exit__(self, *e):
        self.dispatch.__exit__(*e); self.fn.__exit__(*e); self.stand_in.__exit__(*e)
        torch.Tensor.record_stream = self._record_stream
        import torch.utils.checkpoint as ck; ck._allowed_determinism_checks_to_fns["default"] = self._determinism
        if self.violations and e[0] is None: raise StreamOrderError(f"{len(self.violations)} side-stream copies freed unsafely, e.g. {self.violations[0]}")

# ---------------------------------------------------------------------------------------------------------------- the rehearsal
from zimage_nb.planner import QWEN3_4B   # Z-Image's text encoder, as published

def real_transformer_forward(res:int=1024,                 # image side in pixels
                             dtype:torch.dtype=torch.bfloat16, # the compute dtype (fp16: a T4's)
                             fp16_safe:bool=False,         # the project's fp16 hooks (what quantization.compute=fp16-safe applies)
                             gpu:str="H200", tokens:int=100)->dict:
    "The real Z-Image transformer (random config defaults = the published config) on fake CUDA: one `predict` as training and sampling call it."
    from accelerate import init_empty_weights
    from diffusers import ZImageTransformer2DModel
    from zimage_nb.flow import predict
    from zimage_nb.precision import fp16_safe as hooks
    with init_empty_weights(): tr = ZImageTransformer2DModel()
    tr.requires_grad_(False)
    with FakeCuda(gpu) as fc:
        tr = tr.to_empty(device="cuda").to(dtype)
        h = hooks(tr) if fp16_safe else []
        lat = res // 8
        noisy = torch.randn(1, 16, lat, lat, device="cuda")
        sig = torch.tensor([0.5], device="cuda")
        emb = [torch.randn(tokens, 2560, device="cuda", dtype=torch.bfloat16 if dtype == torch.bfloat16 else torch.float32)]   # as cached
        with torch.no_grad(): pred = predict(tr, noisy, sig, emb, dtype)
        for x in h: x.remove()
    params = sum(p.numel() for p in tr.parameters())
    return dict(params=params, shape=tuple(pred.shape), device=str(pred.device), dtype=pred.dtype, hooks=len(h), log=fc.log, cuda_calls=fc.cuda_calls)

def sparse_checkpoint(folder, layout:str="original", # "original" (ComfyUI single file, fused qkv) or "diffusers" (a model folder)
                      config:dict=None)->Path:          # transformer config (default: the real one); e.g. dict(n_layers=1)
    """A Z-Image transformer checkpoint at real size whose tensors read as zeros: a sparse file (12.3 GB at full depth
    takes no disk). Writes `folder/transformer/config.json` and returns the single file, or the folder for "diffusers"."""
    import json, struct
    from pathlib import Path
    from accelerate import init_empty_weights
    from diffusers import ZImageTransformer2DModel
    from zimage_nb.tiny import to_original_layout
    folder = Path(folder); (folder / "transformer").mkdir(parents=True, exist_ok=True)
    with init_empty_weights(): m = ZImageTransformer2DModel(**(config or {}))
    m.save_config(folder / "transformer")
    sd = {k: v.to(torch.bfloat16) for k, v in m.state_dict().items()}
    if layout == "original": sd = to_original_layout(sd)
    header, off = {}, 0
    for k, v in sd.items():
        header[k] = dict(dtype="BF16", shape=list(v.shape), data_offsets=[off, off + 2 * v.numel()]); off += 2 * v.numel()
    h = json.dumps(header).encode(); h += b" " * (-len(h) % 8)
    f = folder / ("z_image_bf16.safetensors" if layout == "original" else "transformer/diffusion_pytorch_model.safetensors")
    with open(f, "wb") as fh: fh.write(struct.pack("<Q", len(h))); fh.write(h); fh.truncate(8 + len(h) + off)
    return f if layout == "original" else folder

def real_size_loading(folder, quant:str="nf4", single_file=None, res:int=512, dtype:torch.dtype=torch.bfloat16)->dict:
    """`load_transformer` (the streaming loader: key mapping, fused-qkv split, quantizing as tensors arrive) from a
    `sparse_checkpoint` onto fake CUDA, then one `predict` at `res`: bytes of the weights and the forward's peak."""
    from zimage_nb.flow import predict
    from zimage_nb.models import load_transformer
    out = io.StringIO()
    with FakeCuda() as fc:
        with contextlib.redirect_stdout(out): tr = load_transformer(folder, quant, dtype, "cuda", single_file=single_file, progress=True)   # prints its LoadReport
        n4 = nf4_stand_ins(tr) if quant == "nf4" else 0
        weights = fc.memory.current; fc.memory.reset_peak()
        lat = res // 8
        with torch.no_grad(): pred = predict(tr, torch.randn(1, 16, lat, lat, device="cuda"), torch.tensor([0.5], device="cuda"),
                                             [torch.randn(100, 2560, device="cuda", dtype=dtype)], dtype)
        on_cuda = all(t.device == CUDA0 for t in list(tr.parameters()) + list(tr.buffers()))
    loaded, skipped = map(int, re.search(r": (\d+) tensors from .* (\d+) checkpoint tensors unused", out.getvalue()).groups())
    return dict(quant=quant, loaded=loaded, skipped=skipped, nf4_layers=n4, weights=weights,
                forward_peak=fc.memory.peak, shape=tuple(pred.shape), device=str(pred.device), on_cuda=on_cuda)

def text_encoder_caching_peak(quant:str="nf4", dtype:torch.dtype=torch.float32, tokens:int=512, gpu:str="T4")->dict:
    "Qwen3-4B (published config) as `load_text_encoder` builds it (block Linears quantized, NF4 as `FakeLinear4bit`), one prompt encoded as caching does (the tiny tokenizer's ids are valid Qwen3 ids): bytes on fake CUDA."
    from accelerate import init_empty_weights
    from transformers import Qwen3Config, Qwen3Model
    from zimage_nb.cache import encode_prompts
    from zimage_nb.weights import quantize_linears
    from zimage_nb.tiny import tiny_pipeline
    tok = tiny_pipeline().tokenizer
    with init_empty_weights(): te = Qwen3Model(Qwen3Config(**QWEN3_4B))
    quantize_linears(te, quant, dtype, ("layers",)); te.requires_grad_(False)
    with FakeCuda(gpu) as fc:
        nf4_stand_ins(te)
        te = te.to_empty(device="cuda")      # meta → fake CUDA in the config's dtype, then each tensor to the encoder dtype
        for m in te.modules():
            if not isinstance(m, FakeLinear4bit):
                for _, p in m.named_parameters(recurse=False): p.data = p.data.to(dtype)
        weights = fc.memory.current; fc.memory.reset_peak()
        with torch.no_grad(): emb = encode_prompts(tok, te, ["a photo of zxq"], tokens)[0]
    return dict(quant=quant, dtype=str(dtype).split(".")[-1], tokens=tokens, params=sum(p.numel() for p in te.parameters()),
                weights=weights, peak=fc.memory.peak, forward=fc.memory.peak - weights,
                emb=(tuple(emb.shape), emb.dtype, str(emb.device)))

def rehearse(out=None)->list:
    "Everything above once, printed as rows: (what, result)."
    import time
    rows = []
    def row(what, f):
        t0 = time.time()
        try: r = f(); rows.append((what, "ok", round(time.time() - t0, 1), r))
        except Exception as e: rows.append((what, f"FAILED: {type(e).__name__}: {e}"[:300], round(time.time() - t0, 1), traceback.format_exc()[-2000:]))
        r = rows[-1][3]
        print(rows[-1][:3], {k: v for k, v in r.items() if k not in ("log", "cuda_calls")} if isinstance(r, dict) else "", flush=True)
    row("transformer 6.15B bf16 1024² forward (fake CUDA)", lambda: real_transformer_forward(1024, torch.bfloat16))
    row("transformer fp16-safe 512² forward, T4 (fake CUDA)", lambda: real_transformer_forward(512, torch.float16, True, "T4"))
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        f = sparse_checkpoint(d, "original")
        for q in ("nf4", "bf16"):
            row(f"streaming loader, 30-layer single file (ComfyUI layout) -> {q} on fake CUDA, 1024² forward", lambda q=q: real_size_loading(d, q, f, 1024))
    for q, dt in (("nf4", torch.float32), ("nf4", torch.bfloat16), ("bf16", torch.bfloat16), ("bf16", torch.float32)):
        row(f"text-encoder caching step {q} in {dt} at 512 tokens: bytes", lambda q=q, dt=dt: text_encoder_caching_peak(q, dt))
    return rows

def caching_rows(path=None)->list:
    "The text-encoder caching step at 128, 256 and 512 tokens for NF4 and unquantized, bf16 and fp32 encoders, beside the planner; JSON lines to `path`."
    import json
    from zimage_nb.planner import text_encoder_bytes
    rows = []
    for q in ("nf4", "bf16"):
        for dt in (torch.float32, torch.bfloat16):
            for n in (128, 256, 512):
                r = text_encoder_caching_peak(q, dt, n); r.pop("emb")
                r["planner"] = text_encoder_bytes(q, 4 if dt == torch.float32 else 2, n)["total"]; rows.append(r)
                print(json.dumps(r), flush=True)
    if path:
        from pathlib import Path
        Path(path).write_text("".join(json.dumps(r) + "\n" for r in rows))
    return rows

if __name__ == "__main__":
    import argparse
    from pathlib import Path
    ap = argparse.ArgumentParser(description="CUDA paths on the CPU build: the real-size rehearsal, or the caching step's bytes")
    ap.add_argument("--caching-rows", metavar="JSONL", help="write the text-encoder caching rows here instead")
    a = ap.parse_args()
    if a.caching_rows: caching_rows(a.caching_rows)
    else: rehearse()
