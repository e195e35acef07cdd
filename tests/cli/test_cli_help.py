"""``membench --version``, and every subcommand's help ends with an example command that parses."""

from __future__ import annotations

import shlex

import pytest

from membench_eval.cli import build_parser, main
from membench_eval.cli.examples import subcommands


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    from membench_eval import __version__

    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"membench-eval {__version__}"


def test_every_subcommand_help_ends_with_an_example_that_parses() -> None:
    parser = build_parser()
    found = list(subcommands(parser))
    assert {"run", "data summary", "store prune", "suite check"} <= {name for name, _ in found}
    for name, sub in found:
        last = sub.format_help().rstrip().splitlines()[-1]
        assert last.startswith(f"example: membench {name.split()[0]}"), f"membench {name} --help ends with {last!r}"
        args = parser.parse_args(shlex.split(last.removeprefix("example: "))[1:])
        assert args.command == name.split()[0]
