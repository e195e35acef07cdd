"""The ``membench`` command: a thin shell that parses options and calls the library.

Each sub-command lives in its own module under ``membench_eval.cli`` and exposes
``register(subparsers)``; heavy imports happen inside the command functions, so ``membench --help``
stays fast.

Exit status, the same for every command and for ``pytest --membench`` (``membench_eval.errors``; the
README's table):

- 0: done (every gate passed);
- 1: a gate failed (the numbers are right; the method misses its target);
- 2: usage or bad input (a bad flag, method file, parameter, data file; pytest says 4);
- 3: a store or environment fault (damaged or unwritable store or output folder, missing weights);
- 6: the method under test raised (its own traceback is shown);
- 70: an internal error (a bug: please report it with ``--debug``'s traceback);
- 130: interrupted (Ctrl-C; everything finished so far is stored);
- 143: terminated (SIGTERM, handled like Ctrl-C: the current batch is finished, claims released).

Errors print one line naming the file; ``--debug`` (anywhere on the command line) adds the
traceback, and a failing method hook always shows the frames of the user's own file.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# One module per command group; each defines register(subparsers) -> None.
_COMMAND_MODULES = ["data", "generate", "sscd", "run", "report", "detect", "search", "store", "reference", "suite",
                    "attribute", "attack", "extract", "init", "export", "board", "families"]

from membench_eval.errors import (  # noqa: E402,F401 - the codes are re-exported for the commands
    EXIT_ENVIRONMENT, EXIT_GATE_FAILED, EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_METHOD_RAISED, EXIT_OK, EXIT_USAGE,
)


class CliError(Exception):
    """An error to show the user as one line, with exit code 2 (no traceback)."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="membench", description="Evaluate memorization mitigations (MemBench).",
                                     epilog="exit status: 0 ok, 1 a gate failed, 2 usage or bad input, 3 store or "
                                     "environment fault, 6 the method raised, 70 internal error, 130 interrupted\n"
                                     "example: membench run mitigations/my_method.py --suite mini",
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--debug", action="store_true", help="show tracebacks (also accepted after the command)")
    parser.add_argument("--version", action="version", version=f"membench-eval {installed_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in _COMMAND_MODULES:
        importlib.import_module(f"membench_eval.cli.{name}").register(sub)
    from membench_eval.cli.examples import add_examples

    add_examples(parser)
    return parser


def installed_version() -> str:
    """The installed distribution's version (the package's own when run from a bare checkout)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("membench-eval")
    except PackageNotFoundError:
        from membench_eval import __version__

        return __version__


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns its exit status. SIGTERM is handled like Ctrl-C meanwhile."""
    from membench_eval.generation.termination import sigterm_as_interrupt

    with sigterm_as_interrupt():
        return _main(argv)


def _main(argv: list[str] | None) -> int:
    import traceback

    from membench_eval.errors import MembenchError

    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (MembenchError, CliError) as exc:
        if debug:
            traceback.print_exc()
        print(f"membench: error: {exc}", file=sys.stderr)
        details = getattr(exc, "details", "")
        if details and not debug:
            print(details, file=sys.stderr)
        return getattr(exc, "exit_code", EXIT_USAGE)
    except KeyboardInterrupt as exc:
        from membench_eval.generation.termination import EXIT_TERMINATED, was_terminated

        if was_terminated(exc):
            print("membench: terminated (SIGTERM); the current batch was finished and stored, claims released; "
                  "rerun to continue", file=sys.stderr)
            return EXIT_TERMINATED
        print("membench: interrupted; everything finished so far is stored", file=sys.stderr)
        return EXIT_INTERRUPTED
    except OSError as exc:  # a file system fault the preflight could not foresee (disk full, ...)
        if debug:
            traceback.print_exc()
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"membench: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return EXIT_ENVIRONMENT
    except Exception as exc:  # noqa: BLE001 - a bug: distinct status, one line unless --debug
        if debug:
            traceback.print_exc()
        print(f"membench: internal error: {type(exc).__name__}: {exc} (rerun with --debug for the traceback "
              "and please report it)", file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
