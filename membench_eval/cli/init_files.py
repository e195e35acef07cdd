"""The files ``membench init`` writes into a researcher's repository: a method, its project settings and a
CI workflow. Kept as text here (not package data) so the wheel needs nothing beyond its modules.

The workflow runs the miniature benchmark on every pull request (CPU, GitHub-hosted) and the real suite
on a self-hosted GPU runner only when a maintainer asks: a label on a pull request, or a manual run.
Actions are pinned to commits (zizmor's ``unpinned-uses``), checkouts keep no credentials
(``artipacked``), permissions are read-only, and inputs reach scripts only through ``env``
(``template-injection``). ``tests/cli/test_init.py`` runs actionlint and zizmor on it and runs the CPU
job's benchmark step.
"""

from __future__ import annotations

# actionlint's settings: the GPU job's runner label is the project's own (actionlint knows only GitHub's).
ACTIONLINT_CONFIG = """\
# actionlint (https://github.com/rhysd/actionlint) reads this: the self-hosted runner labels of membench.yml.
self-hosted-runner:
  labels:
    - gpu
"""

# The README's worked example ("Writing a mitigation"), byte for byte (checked by tests/cli/test_init.py).
METHOD = '''\
"""Drop words: delete each word of the prompt with probability p (a README example)."""

from membench_eval.mitigation import Mitigation


class DropWords(Mitigation):
    """Removes random words, so the exact trigger caption is rarely seen."""

    name = "drop_words"
    paper = "README example"
    sweep = {"p": [0.1, 0.2, 0.3]}
    strongest = {"p": 0.3}

    p: float = 0.1

    def rewrite_prompt(self, prompt, rng):
        words = prompt.split()
        kept = [word for word in words if rng.random() >= self.p]
        return " ".join(kept or words[:1])
'''

PYPROJECT = '''\
[project]
name = "{name}"
version = "0.1.0"
description = "A memorization mitigation for text-to-image diffusion, benchmarked with membench-eval"
requires-python = ">=3.12"
dependencies = ["membench-eval=={version}"]

[tool.membench]
# Checked by every `membench run` and `pytest --membench` started in this repository (or below it):
# "<column> <op> <number | base | base +/- number>", e.g. a method must not copy more than base and
# must keep prompt fidelity within 0.05 of base's CLIP score.
gate = ["top1_sscd <= base + 0.05", "clip >= base - 0.05"]
# The run store (generated images and scores), relative to this file; --store overrides it. The GPU job
# of .github/workflows/membench.yml keeps its own on the runner's disk instead (MEMBENCH_STORE).
store = ".membench/runs"
'''

WORKFLOW = '''\
# membench: benchmarks mitigations/my_method.py against base (written by `membench init`, membench-eval {version}).
#
# cpu: every pull request, on a GitHub-hosted CPU runner: the miniature benchmark (suite "mini"), minutes.
# gpu: the real suite on a self-hosted runner labelled [self-hosted, gpu], only when a maintainer asks:
#      - a pull request gets the label "gpu-benchmark" (only people with write access can label, so a
#        fork's code never reaches the GPU machine without that approval; after new commits, label it
#        again): the stratified subset (one trigger prompt per memorized image);
#      - "Run workflow" in the Actions tab (workflow_dispatch): the full suite given as input.
#      Its run store lives on the runner's disk (MEMBENCH_STORE), so base is generated once, not per
#      pull request; pytest-xdist runs one worker per GPU (worker N takes cuda:N).
# Both jobs put the leaderboard table in the job summary and upload its HTML and JSON as artifacts.
#
# Exit status of `membench run` and `pytest --membench` (a job fails on anything but 0):
#    0  every gate passed
#    1  a gate failed ([tool.membench] gate in pyproject.toml): the numbers are right, the method misses its target
#    2  usage or bad input: a flag, the method file, a parameter, a gate (pytest reports it as 4)
#    3  store or environment: store or leaderboard folder unwritable or damaged, model weights missing
#    6  the method raised: its own traceback is in the log
#   70  internal error in membench-eval (please report it)

name: membench

on:
  pull_request:
    types: [opened, synchronize, reopened, labeled]
  workflow_dispatch:
    inputs:
      suite:
        description: "suite for the GPU job (the full MemBench setting: sd1+coco)"
        required: true
        default: "sd1+coco"
        type: string

permissions: {{}}

concurrency:
  group: membench-${{{{ github.event.pull_request.number || github.ref }}}}-${{{{ github.event.action == 'labeled' }}}}
  cancel-in-progress: true

jobs:
  cpu:
    name: membench (mini, CPU)
    if: github.event_name == 'pull_request' && github.event.action != 'labeled'
    runs-on: ubuntu-latest
    timeout-minutes: 30
    permissions:
      contents: read
    env:
      MEMBENCH_SUITE: mini
    steps:
      - uses: actions/checkout@11bd71901bbe5b1630ceea73d27597364c9af683  # v4.2.2
        with:
          persist-credentials: false
      - uses: actions/setup-python@a26af69be951a213d495a4c3e4e4022e16d87065  # v5.6.0
        with:
          python-version: "3.12"
      - name: Install membench-eval (CPU torch first, so pip does not pull the CUDA build)
        run: |
          python -m pip install --quiet torch==2.13.0 torchvision==0.28.0 --index-url https://download.pytorch.org/whl/cpu
          python -m pip install --quiet "membench-eval=={version}"
      - name: Benchmark (mini)
        shell: bash
        run: |
          # MEMBENCH_ARGS: extra options for `membench run` (e.g. --limit 2); the store is [tool.membench] store.
          read -r -a extra <<< "${{MEMBENCH_ARGS:-}}"
          set +e
          membench run mitigations/my_method.py --suite "$MEMBENCH_SUITE" --no-progress "${{extra[@]}}"
          status=$?
          set -e
          for table in leaderboard/*.md; do
            [ -e "$table" ] && cat "$table" >> "${{GITHUB_STEP_SUMMARY:-/dev/null}}"
          done
          exit "$status"
      - uses: actions/upload-artifact@ea165f8d65b6e75b540449e92b4886f43607fa02  # v4.6.2
        if: always()
        with:
          name: membench-leaderboard-cpu
          path: |
            leaderboard/*.html
            leaderboard/*.json
            leaderboard/*_files/
          if-no-files-found: ignore

  gpu:
    name: membench (GPU, on request)
    if: >-
      github.event_name == 'workflow_dispatch' ||
      (github.event.action == 'labeled' && github.event.label.name == 'gpu-benchmark')
    runs-on: [self-hosted, gpu]
    timeout-minutes: 600
    permissions:
      contents: read
    env:
      MEMBENCH_STORE: /var/lib/membench/runs  # persistent on the runner: reused across pull requests
      MEMBENCH_DATA_DIR: /var/lib/membench/data  # upstream MemBench / COCO files, fetched once
      MEMBENCH_SUITE: ${{{{ inputs.suite || 'sd1+coco' }}}}
      MEMBENCH_SUBSET: ${{{{ github.event_name == 'workflow_dispatch' && 'full' || 'stratified' }}}}
    steps:
      - uses: actions/checkout@11bd71901bbe5b1630ceea73d27597364c9af683  # v4.2.2
        with:
          persist-credentials: false
      - name: Install membench-eval (the runner's CUDA torch comes with it)
        run: |
          python3.12 -m venv .venv
          .venv/bin/python -m pip install --quiet "membench-eval=={version}" "pytest>=9,<10" "pytest-xdist>=3.5,<4"
      - name: Benchmark (one pytest-xdist worker per GPU)
        shell: bash
        run: |
          gpus="$(nvidia-smi --list-gpus | wc -l)"
          subset=()
          if [ "$MEMBENCH_SUBSET" = stratified ]; then subset=(--membench-subset stratified); fi
          set +e
          .venv/bin/python -m pytest -p no:cacheprovider -n "$gpus" --membench mitigations/my_method.py \\
            --membench-suite "$MEMBENCH_SUITE" --membench-store "$MEMBENCH_STORE" "${{subset[@]}}"
          status=$?
          set -e
          for table in leaderboard/*.md; do
            [ -e "$table" ] && cat "$table" >> "$GITHUB_STEP_SUMMARY"
          done
          exit "$status"
      - uses: actions/upload-artifact@ea165f8d65b6e75b540449e92b4886f43607fa02  # v4.6.2
        if: always()
        with:
          name: membench-leaderboard-gpu
          path: |
            leaderboard/*.html
            leaderboard/*.json
            leaderboard/*_files/
          if-no-files-found: ignore
'''
