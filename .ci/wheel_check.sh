#!/usr/bin/env bash
# The installed-wheel job: build the wheel, check its file list, install it into a fresh venv and, from an
# empty folder holding only a user's method file, run what a new user runs. Each command must exit 0 with
# base and the method in the leaderboard.
#
# Cheap by design (CI's whole budget is tight): the fresh venv gets the CI venv's already installed
# third-party packages linked in (never membench-eval itself), so nothing is downloaded; the wheel goes in
# with --no-deps and `pip check` then proves its declared requirements are met by what is there. The
# runs use --limit 1 and share one store, so pytest reuses what `membench run` generated.
# Usage: .ci/wheel_check.sh [PYTHON]   (default: the python on PATH, i.e. the CI venv's)
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${1:-python}"
start=$SECONDS
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

rm -rf build  # setuptools' staging folder: a stale copy of a deleted module would slip into the wheel
"$PY" -m pip wheel -q --no-deps -w "$work/dist" . > "$work/build.log" 2>&1 || { cat "$work/build.log"; exit 1; }
wheel="$(ls "$work"/dist/membench_eval-*.whl)"
"$PY" .ci/wheel_files.py "$wheel"

"$PY" -m venv --without-pip "$work/venv"
venv_py="$work/venv/bin/python"
"$PY" - "$work/venv" <<'PYEOF'
"""Link the CI venv's third-party packages into the fresh venv (not membench-eval's own install)."""
import sys, sysconfig
from pathlib import Path
source = Path(sysconfig.get_path("purelib"))
target = next(Path(sys.argv[1]).glob("lib/python*/site-packages"))
for entry in source.iterdir():
    if entry.name.lower().replace("-", "_").startswith(("membench_eval", "__editable__", "__editable___membench")):
        continue
    (target / entry.name).symlink_to(entry)
PYEOF
"$PY" -m pip --python "$venv_py" install -q --no-deps "$wheel"
"$PY" -m pip --python "$venv_py" check

checkout="$PWD"
mkdir "$work/empty"
cd "$work/empty"
export MEMBENCH_CACHE_DIR="$work/cache" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONDONTWRITEBYTECODE=1
"$venv_py" - "$checkout" <<'PYEOF'
"""Imported from the wheel; bundled methods found by name there, with the checkout's fingerprints."""
import sys
from pathlib import Path
import membench_eval.paths as paths
from membench_eval.bundle import is_installed_copy
from membench_eval.plugins.loader import bundled_names, resolve_file, MITIGATION
from membench_eval.plugins.source import fingerprint_file
assert is_installed_copy(), f"membench_eval imported from {paths.PACKAGE_ROOT}, not the wheel"
checkout = Path(sys.argv[1]) / "mitigations"
for name in bundled_names(MITIGATION):
    installed = resolve_file(name, MITIGATION)
    assert installed.is_relative_to(paths.PACKAGE_ROOT), installed
    assert fingerprint_file(installed).sha256 == fingerprint_file(checkout / f"{name}.py").sha256, name
print(f"wheel_check: membench_eval from {paths.PACKAGE_ROOT}; {len(bundled_names(MITIGATION))} bundled "
      "methods by name, fingerprints as in the checkout")
PYEOF

leaderboard_has() {  # the leaderboard JSON lists base and every label given
  "$venv_py" - "$@" <<'PYEOF'
import json, sys
rows = {r["label"] for r in json.load(open("leaderboard/mini.limit-1.json"))["rows"]}
missing = [label for label in ["base", *sys.argv[1:]] if label not in rows]
assert not missing, f"leaderboard/mini.limit-1.json lacks {missing}; rows: {sorted(rows)}"
PYEOF
}

step() {  # step LOG COMMAND...: run it quietly; show its log when it fails
  local log="$1" t=$SECONDS; shift
  echo "wheel_check: \$ $*"
  if ! "$@" > "$log" 2>&1; then cat "$log"; echo "wheel_check: FAILED: $*" >&2; exit 1; fi
  grep -E "^membench: (gates|no gates|[0-9]+ images)|^(FAIL|PASS) |[0-9]+ passed" "$log" || true
  echo "wheel_check: ok in $((SECONDS - t)) s"
}
step version.log "$work/venv/bin/membench" --version
step init.log "$work/venv/bin/membench" init "$work/scaffold"
for f in mitigations/my_method.py pyproject.toml .github/workflows/membench.yml; do
  [ -f "$work/scaffold/$f" ] || { echo "wheel_check: membench init wrote no $f" >&2; exit 1; }
done
cp "$work/scaffold/mitigations/my_method.py" my_method.py  # the user's method: the README's example, as init writes it
step check.log "$work/venv/bin/membench" suite check mini
step check-sd3.log "$work/venv/bin/membench" suite check mini-sd3  # its suite file points into ../mini/
step run.log "$work/venv/bin/membench" run my_method.py --suite mini --limit 1 --no-progress
leaderboard_has "drop_words p=0.1"
rm -rf leaderboard
step pytest.log "$venv_py" -m pytest --membench my_method.py --membench-suite mini --membench-limit 1 -p no:cacheprovider
leaderboard_has "drop_words p=0.1"
echo "wheel_check: passed in $((SECONDS - start)) s"
