#!/usr/bin/env bash
# A copy of the workplace's ../shared/gpu/pack_wheels.sh, for machines without ../shared (CI): .ci/gpu_rehearsal.sh uses
# the shared one where it exists. It differs in one place: a missing .git/info is made, and a .git that is not a folder
# (a worktree) is left alone (.gitignore lists /.gpu-wheels/ anyway). Keep the rest the same.
# Packs what the GPU machine lacks into <repo>/.gpu-wheels (ignored by git; with the tracked tree it stays under
# the 64 MiB that can be sent to that machine), so one command there installs it offline in seconds.
#   bash ../shared/gpu/pack_wheels.sh [REPO=.] [BNB=0.50.2] [DIFFUSERS=0.42.1]
# The GPU machine seen so far: torch 2.11 + CUDA 13.0, transformers, peft, accelerate, huggingface_hub,
# safetensors, torchvision, tensorboard; no diffusers, no bitsandbytes. bitsandbytes' wheel (43 MB) holds one
# library per CUDA/ROCm release; only the CPU and CUDA 13.x ones are kept (about 8 MB).
# Then, on the GPU machine (with .gpu-wheels/ sent along):
#   pip install -q --no-deps .gpu-wheels/*.whl && pip install -q --no-deps -e . && python -c "import bitsandbytes, diffusers"
set -euo pipefail
repo=$(realpath "${1:-.}"); bnb=${2:-0.50.2}; dif=${3:-0.42.1}
out=$repo/.gpu-wheels; tmp=$(mktemp -d)
rm -rf "$out"; mkdir -p "$out"
python -m pip download -q --no-deps --only-binary=:all: --platform manylinux_2_24_x86_64 --python-version 3.12 \
  -d "$tmp" "bitsandbytes==$bnb" "diffusers==$dif"
python -m pip install -q wheel
( cd "$tmp" && python -m wheel unpack -d un bitsandbytes-*.whl >/dev/null
  d=$(ls -d un/bitsandbytes-*)
  find "$d/bitsandbytes" -name 'libbitsandbytes_*.so' ! -name 'libbitsandbytes_cpu.so' ! -name 'libbitsandbytes_cuda13*.so' -delete
  python -m wheel pack -d "$out" "$d" >/dev/null )
cp "$tmp"/diffusers-*.whl "$out"/
[ -d "$repo/.git/info" ] || [ ! -d "$repo/.git" ] || mkdir -p "$repo/.git/info"
[ ! -d "$repo/.git/info" ] || grep -qxF "/.gpu-wheels/" "$repo/.git/info/exclude" 2>/dev/null || echo "/.gpu-wheels/" >> "$repo/.git/info/exclude"
rm -rf "$tmp"
du -ch "$out"/* | sed 's/^/  /'
tree=$(cd "$repo" && git ls-files -z | xargs -0 du -cb | tail -1 | cut -f1)
w=$(du -cb "$out"/* | tail -1 | cut -f1)
echo "tracked tree $((tree / 1048576)) MiB + wheels $((w / 1048576)) MiB = $(((tree + w) / 1048576)) MiB (device limit 64 MiB, untracked files count too)"
