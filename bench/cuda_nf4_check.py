"""NF4 / int8 loading on CUDA: the same streamed loader as on CPU, checked against the fp32 CPU reference.

Needs a CUDA GPU (run it through the device tool); not part of the test suite, which must pass without one.

    python bench/cuda_nf4_check.py            # prints one line per precision, exits 1 on a failed check
"""
import sys, tempfile, time
from pathlib import Path
import torch
from zimage_nb.tiny import tiny_pipeline, tiny_image
from zimage_nb.models import load_pipeline, load_transformer, relative_error, tiny_forward
from zimage_nb.weights import weight_report

def main():
    if not torch.cuda.is_available(): sys.exit("needs a CUDA GPU")
    folder = Path(tempfile.mkdtemp()) / "tiny"; ref_pipe = tiny_pipeline(); ref_pipe.save_pretrained(folder)
    ref = tiny_forward(ref_pipe.transformer)
    ok = True
    print(torch.cuda.get_device_name(0), "bf16" if torch.cuda.is_bf16_supported() else "no bf16")
    for quant, dtype, bound in [("nf4", torch.bfloat16, 0.15), ("nf4", torch.float16, 0.15), ("int8", torch.float16, 0.03), ("bf16", torch.bfloat16, 0.03)]:
        torch.cuda.reset_peak_memory_stats(); t0 = time.time()
        tr = load_transformer(folder, quant, dtype, "cuda", progress=False)
        out = tiny_forward(tr, 0, "cuda", dtype)
        err = relative_error(ref, out); rep = weight_report(tr)
        on_gpu = all(p.device.type == "cuda" for p in tr.parameters())
        good = err < bound and on_gpu and (quant == "bf16" or rep["quantized_layers"] == 46)
        ok &= good
        print(f"{quant:5s} {str(dtype):15s} rel.err {err:.3%} (bound {bound:.0%}) all on GPU {on_gpu} "
              f"4/8-bit layers {rep['quantized_layers']} peak {torch.cuda.max_memory_allocated() / 2**20:.1f} MiB in {time.time() - t0:.2f} s {'OK' if good else 'FAIL'}")
    pipe = load_pipeline(folder, "nf4", "nf4", dtype=torch.bfloat16, device="cuda", progress=False)
    img = tiny_image(pipe); print("pipeline image", img.size)
    sys.exit(0 if ok else 1)

if __name__ == "__main__": main()
