#!/usr/bin/env bash
# Profile the four seed models on one GPU: native size (512 SD 1.x, 1024 SDXL), fp16, arch source
# (exact architectures, random weights: nothing to download), with and without torch.compile of
# the UNet. Prints one markdown table and the student/teacher ratios; saves both (.md, .json)
# under benchmarks/results/. About 5-8 minutes of GPU time; a budget skips late compiled passes.
#
#   benchmarks/gpu_profile.sh                      # on the GPU box
#   benchmarks/gpu_profile.sh --compile-mode max-autotune-no-cudagraphs --budget-s 1200
#   benchmarks/gpu_profile.sh --device cpu --dtype fp32 --size 64 --source tiny   # CPU smoke test
#
# Extra arguments go to benchmarks/gpu_profile.py (see --help). The dsdcompare package must be
# installed in the Python used (`pip install -e .` in the repository root).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${VIRTUAL_ENV:-}" ] && [ -f .venv/bin/activate ]; then
  . .venv/bin/activate
fi
if ! python -P -c "import dsdcompare" 2>/dev/null; then  # -P: not from the working directory
  echo "error: dsdcompare is not installed in $(command -v python): run pip install -e ." >&2
  exit 2
fi
mkdir -p benchmarks/results
stamp="$(date -u +%Y%m%dT%H%M%SZ)"
out="benchmarks/results/gpu_profile-${stamp}"
python benchmarks/gpu_profile.py --json "${out}.json" "$@" | tee "${out}.md"
echo "saved ${out}.md and ${out}.json" >&2
