"""Host-RAM peak while loading and quantizing a Z-Image transformer from a single-file checkpoint.

Writes a random checkpoint in the original/ComfyUI layout (fused qkv, `model.diffusion_model.` keys, bf16) at the
chosen scale, tensor by tensor (the full model is never in RAM, even at --scale real), then loads it in a fresh
process per mode and reports the peak resident memory above the level before loading:
  stream: zimage_nb.models.load_transformer (tensor by tensor, quantized as it arrives)
  safe_open: the same placement, tensors read through safetensors.safe_open (memory-mapped)
  naive:  safetensors.torch.load_file of the whole file, then quantize (what a plain load does)

    python bench/load_peak_ram.py --scale small                # ~126 MB file, seconds
    python bench/load_peak_ram.py --scale real --modes stream  # 12.3 GB file: needs ~13 GB disk, minutes on CPU
"""
import argparse, json, subprocess, sys, tempfile, time
from pathlib import Path

SCALES = {  # transformer configs; "real" = diffusers defaults = Tongyi-MAI/Z-Image-Turbo
    "tiny": None,  # zimage_nb.tiny.TINY_TRANSFORMER
    "small": dict(dim=768, n_layers=6, n_refiner_layers=1, n_heads=6, n_kv_heads=6, cap_feat_dim=256, axes_dims=[32, 48, 48]),
    "real": {},
}

def write_checkpoint(folder: Path, scale: str, layout: str = "original") -> Path:
    "A random bf16 checkpoint plus transformer/config.json, written one tensor at a time: a single file in the original layout, or transformer/diffusion_pytorch_model.safetensors (diffusers)."
    import torch
    from accelerate import init_empty_weights
    from diffusers import ZImageTransformer2DModel
    from zimage_nb.tiny import TINY_TRANSFORMER, to_original_layout
    cfg = TINY_TRANSFORMER if scale == "tiny" else SCALES[scale]
    with init_empty_weights(): model = ZImageTransformer2DModel(**cfg)
    (folder / "transformer").mkdir(parents=True, exist_ok=True)
    (folder / "transformer" / "config.json").write_text(json.dumps(dict(model.config)))
    sd = model.state_dict()
    shapes = {k: tuple(v.shape) for k, v in (to_original_layout(sd) if layout == "original" else sd).items()}
    header, off = {}, 0
    for k, s in shapes.items():
        n = 2 * int(torch.Size(s).numel()); header[k] = {"dtype": "BF16", "shape": list(s), "data_offsets": [off, off + n]}; off += n
    raw = json.dumps(header).encode(); raw += b" " * (-len(raw) % 8)
    path = folder / f"z_image_{scale}_bf16.safetensors" if layout == "original" else folder / "transformer" / "diffusion_pytorch_model.safetensors"
    g = torch.Generator().manual_seed(0)
    with open(path, "wb") as f:
        f.write(len(raw).to_bytes(8, "little")); f.write(raw)
        for k, s in shapes.items(): f.write((torch.randn(s, generator=g) * 0.02).to(torch.bfloat16).view(torch.uint8).numpy().tobytes())
    return path

def measure(folder: Path, path: Path, mode: str, quant: str) -> dict:
    "Run in a fresh process: load `path` in `mode`, return the peak RSS above the pre-load level."
    import torch
    from zimage_nb.core import peak_rss
    from zimage_nb.models import load_transformer
    from zimage_nb.weights import weight_report, quantize_linears, place_tensor, transformer_key_targets
    from zimage_nb.arch import BLOCK_LISTS
    t0 = time.time()
    with peak_rss() as m:
        if mode == "stream":
            model = load_transformer(folder, quant=quant, dtype=torch.bfloat16, device="cpu", single_file=path, progress=False)
        elif mode == "safe_open":  # the same tensor-by-tensor placement, read through safetensors' memory map
            from safetensors import safe_open
            from accelerate import init_empty_weights
            from diffusers import ZImageTransformer2DModel
            from zimage_nb.core import release_freed_memory
            with init_empty_weights(include_buffers=False): model = ZImageTransformer2DModel(**json.loads((folder / "transformer" / "config.json").read_text()))
            quantize_linears(model, quant, torch.bfloat16, BLOCK_LISTS)
            known = set(model.state_dict().keys())
            with safe_open(str(path), "pt") as f:
                for k in f.keys():
                    t, ts = f.get_tensor(k), transformer_key_targets(k, known)
                    for name, part in zip(ts, t.chunk(len(ts)) if len(ts) > 1 else [t]): place_tensor(model, name, part, "cpu", torch.bfloat16)
                    del t, part; release_freed_memory()
        else:
            from safetensors.torch import load_file
            from accelerate import init_empty_weights
            from diffusers import ZImageTransformer2DModel
            sd = load_file(str(path))
            with init_empty_weights(include_buffers=False): model = ZImageTransformer2DModel(**json.loads((folder / "transformer" / "config.json").read_text()))
            quantize_linears(model, quant, torch.bfloat16, BLOCK_LISTS)
            for k, v in sd.items():
                ts = transformer_key_targets(k)
                for name, part in zip(ts, v.chunk(len(ts)) if len(ts) > 1 else [v]): place_tensor(model, name, part, "cpu", torch.bfloat16)
    rep = weight_report(model)
    return dict(mode=mode, quant=quant, peak_extra=m.extra, seconds=round(time.time() - t0, 2),
                model_bytes=sum(v for k, v in rep.items() if k != "quantized_layers"))

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", choices=list(SCALES), default="small")
    ap.add_argument("--quant", choices=["nf4", "int8", "bf16"], default="nf4")
    ap.add_argument("--modes", default="stream,naive", help="comma-separated: stream, safe_open, naive")
    ap.add_argument("--dir", default=None, help="work folder (default: a temporary one)")
    ap.add_argument("--json", default=None, help="write the results here")
    ap.add_argument("--_measure", nargs=2, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a._measure:
        print(json.dumps(measure(Path(a.dir), Path(a._measure[0]), a._measure[1], a.quant))); return
    folder = Path(a.dir or tempfile.mkdtemp(prefix="zimage-bench-"))
    path = write_checkpoint(folder, a.scale)
    res = {"scale": a.scale, "file_bytes": path.stat().st_size, "runs": []}
    for mode in a.modes.split(","):
        out = subprocess.run([sys.executable, __file__, "--dir", str(folder), "--quant", a.quant, "--_measure", str(path), mode],
                             capture_output=True, text=True, check=True)
        res["runs"].append(json.loads(out.stdout.strip().splitlines()[-1]))
    for r in res["runs"]:
        print(f"{a.scale} {r['mode']:6s} {r['quant']}: peak +{r['peak_extra'] / 2**20:.0f} MiB for a {res['file_bytes'] / 2**20:.0f} MiB file "
              f"(model in RAM {r['model_bytes'] / 2**20:.0f} MiB) in {r['seconds']} s")
    if a.json: Path(a.json).write_text(json.dumps(res, indent=1))

if __name__ == "__main__": main()
