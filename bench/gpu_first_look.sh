#!/usr/bin/env bash
# GPU first contact (issue 22): one command on the GPU machine, ending within 8 minutes, whatever happens.
#   bash bench/gpu_first_look.sh OUT [--budget SECONDS] [--smoke]
# Send the ignored .gpu-wheels/ along (made here by ../shared/gpu/pack_wheels.sh: bitsandbytes + diffusers, which the GPU
# machine lacks). It installs them offline, records nvidia-smi and the versions, measures the rows of
# bench/gpu_first_look.py until the budget (default 420 s from the start, install included) is spent, then writes
# OUT/calibration.json and OUT/table.md. Every row is in OUT/results.jsonl the moment it is measured, so a kill keeps them.
# PYTHON (default python3) picks the interpreter; `make gpu-rehearsal` runs all of this on the CPU in a throwaway venv.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: bash bench/gpu_first_look.sh OUT [--budget SECONDS] [--smoke]}; shift
budget=420; smoke=""
while [ $# -gt 0 ]; do
  case $1 in --smoke) smoke=--smoke ;; --budget) budget=$2; shift ;; *) echo "unknown option $1"; exit 2 ;; esac; shift
done
PY=${PYTHON:-python3}
start=$(date +%s)
mkdir -p "$out"
exec > >(tee -a "$out/log.txt") 2>&1
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
echo "== install, offline ($(date -u '+%F %T') UTC)"
if ls .gpu-wheels/*.whl > /dev/null 2>&1; then
  $PY -m pip install -q --no-index --no-deps --no-cache-dir .gpu-wheels/*.whl || echo "!! the wheels did not install"
else echo "!! no .gpu-wheels/ here (make it with ../shared/gpu/pack_wheels.sh and carry it)"; fi
if ! $PY -m pip install -q --no-index --no-deps --no-build-isolation -e . > "$out/.pip-e.txt" 2>&1; then
  echo "!! pip install -e . failed offline (tail below): using PYTHONPATH=$PWD instead"; tail -3 "$out/.pip-e.txt"
  export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
fi
rm -f "$out/.pip-e.txt"
{ nvidia-smi; nvidia-smi --query-gpu=name,memory.total,compute_cap,driver_version,pcie.link.gen.max,pcie.link.width.max --format=csv; } > "$out/nvidia-smi.txt" 2>&1 \
  || echo "no nvidia-smi on this machine" > "$out/nvidia-smi.txt"
$PY - <<'PY'
import importlib.metadata as md, platform
names = ("torch", "diffusers", "bitsandbytes", "transformers", "peft", "accelerate", "huggingface_hub", "safetensors", "numpy", "pillow", "zimage-nb")
def v(n):
    try: return md.version(n)
    except md.PackageNotFoundError: return "MISSING"
print("python", platform.python_version(), "|", ", ".join(f"{n} {v(n)}" for n in names))
import bitsandbytes, diffusers, zimage_nb.train   # fails here, loudly, if the install did not take
print("imports ok: zimage_nb", zimage_nb.__version__, "from", zimage_nb.__file__)
PY
left=$(( budget - ($(date +%s) - start) - 20 ))       # 20 s kept for --finish
echo "== measure ($left s)"
timeout -k 10 $(( left + 30 )) $PY bench/gpu_first_look.py --out "$out" --budget "$left" $smoke
echo "== measure exit code $? after $(( $(date +%s) - start )) s"
echo "== finish"
timeout -k 5 60 $PY bench/gpu_first_look.py --finish "$out" > /dev/null
echo "== done after $(( $(date +%s) - start )) s: $(ls "$out" | tr '\n' ' ')"
