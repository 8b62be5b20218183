#!/usr/bin/env bash
# The GPU first look (bench/gpu_first_look.sh) rehearsed on the CPU, as the GPU machine will meet it:
#   1. .gpu-wheels/ made by the same pack script (../shared/gpu/pack_wheels.sh; this repository's copy where it is absent);
#   2. a throwaway virtual environment holding only bench/gpu_machine.txt (what the GPU machine has: no diffusers,
#      no bitsandbytes, no ipywidgets);
#   3. the tracked tree plus .gpu-wheels/ copied to a fresh folder (what the device tool sends), and there
#      `bash bench/gpu_first_look.sh OUT --smoke` with that environment's python: the offline install, then every row
#      at tiny scale;
#   4. the rows checked (bench/gpu_first_look.py --check): every row measured, no error, at most 8 files.
# `make gpu-rehearsal` runs it (a few minutes; needs PyPI for step 1 and 2).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
tmp=$(mktemp -d /tmp/zimage-gpu-rehearsal.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
pack=../shared/gpu/pack_wheels.sh; [ -f "$pack" ] || pack=.ci/pack_gpu_wheels.sh
# The pack script appends /.gpu-wheels/ to .git/info/exclude; a checkout may lack .git/info (CI's clean checkout did,
# and the pack script stopped there). Where .git is not a folder (a worktree), this repository's copy, which skips it.
if [ -d .git ]; then mkdir -p .git/info; else pack=.ci/pack_gpu_wheels.sh; fi
echo "== 1. wheels: bash $pack"
[ -d .gpu-wheels ] && ls .gpu-wheels/bitsandbytes-*.whl .gpu-wheels/diffusers-*.whl > /dev/null 2>&1 || bash "$pack" "$repo"
echo "== 2. a virtual environment like the GPU machine's (bench/gpu_machine.txt)"
python -m venv "$tmp/venv"
grep -v '^#' bench/gpu_machine.txt | "$tmp/venv/bin/python" -m pip install -q -r /dev/stdin 2>&1 | { grep -v "^WARNING: Location" || true; }
"$tmp/venv/bin/python" -c "import importlib.util as u; missing = [m for m in ('diffusers', 'bitsandbytes', 'ipywidgets') if u.find_spec(m)]; assert not missing, missing"
echo "== 3. the tree the device tool sends, and the first look in it"
mkdir "$tmp/tree"
git ls-files -z --cached --others --exclude-standard | xargs -0 cp --parents -t "$tmp/tree"   # tracked + untracked-not-ignored, as sent
cp -r .gpu-wheels "$tmp/tree/"
( cd "$tmp/tree" && PYTHON="$tmp/venv/bin/python" bash bench/gpu_first_look.sh "$tmp/out" --smoke )
echo "== 4. check"
"$tmp/venv/bin/python" bench/gpu_first_look.py --check "$tmp/out"
mkdir -p .gpu-rehearsal && cp "$tmp/out"/* .gpu-rehearsal/ && echo "results kept in .gpu-rehearsal/ (ignored by git)"
