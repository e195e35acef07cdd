"""The ``membench`` command: a thin shell that parses options and calls the library.

Each sub-command lives in its own module under ``membench_eval.cli`` and exposes
``register(subparsers)``; heavy imports happen inside the command functions, so ``membench --help``
stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# One module per command group; each defines register(subparsers) -> None.
_COMMAND_MODULES = ["data", "generate", "sscd", "run", "detect", "search"]


class CliError(Exception):
    """An error to show the user as one line, with exit code 2 (no traceback)."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="membench", description="Evaluate memorization mitigations (MemBench).")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in _COMMAND_MODULES:
        importlib.import_module(f"membench_eval.cli.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from membench_eval.errors import MembenchError

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (MembenchError, CliError) as exc:
        print(f"membench: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("membench: interrupted; everything finished so far is stored", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
