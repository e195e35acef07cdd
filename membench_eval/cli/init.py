"""``membench init [DIR]``: scaffold a researcher's repository for benchmarking a mitigation.

Writes ``mitigations/my_method.py`` (the README's worked example), ``pyproject.toml`` with the
``[tool.membench]`` gates and run store, and ``.github/workflows/membench.yml`` (a CPU job on every pull
request, a GPU job on a maintainer's request; ``cli.init_files``). Existing files are never overwritten
unless ``--force`` is given: an init in a repository that has them says which and changes nothing.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from membench_eval.cli import CliError


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "init", help="scaffold a repository: a method file, [tool.membench] settings, a CI workflow",
        description="Write mitigations/my_method.py, pyproject.toml ([tool.membench] gates and store) and "
        ".github/workflows/membench.yml (mini on CPU for every pull request; the real suite on a self-hosted "
        "GPU runner when a maintainer labels the pull request gpu-benchmark or runs the workflow by hand).",
    )
    p.add_argument("dir", nargs="?", default=".", metavar="DIR", help="the repository folder (default: .)")
    p.add_argument("--force", action="store_true", help="overwrite files that exist")
    p.set_defaults(func=run)


def scaffold(folder: Path, *, force: bool = False) -> list[Path]:
    """Write the four files under ``folder`` (method, settings, workflow, actionlint's runner labels);
    return them. Refuses (CliError) to overwrite without ``force``."""
    from membench_eval.cli import installed_version
    from membench_eval.cli.init_files import ACTIONLINT_CONFIG, METHOD, PYPROJECT, WORKFLOW

    version = installed_version()
    name = re.sub(r"[^a-z0-9]+", "-", folder.resolve().name.lower()).strip("-") or "my-method"
    files = {
        folder / "mitigations" / "my_method.py": METHOD,
        folder / "pyproject.toml": PYPROJECT.format(name=name, version=version),
        folder / ".github" / "workflows" / "membench.yml": WORKFLOW.format(version=version),
        folder / ".github" / "actionlint.yaml": ACTIONLINT_CONFIG,
    }
    existing = [str(p) for p in files if p.exists()]
    if existing and not force:
        raise CliError(f"{', '.join(existing)}: already there; nothing was written (--force overwrites)")
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return list(files)


def run(args: argparse.Namespace) -> int:
    folder = Path(args.dir)
    for path in scaffold(folder, force=args.force):
        print(f"membench: wrote {path}")
    print(f"membench: next: cd {folder} && membench run mitigations/my_method.py --suite mini")
    return 0
