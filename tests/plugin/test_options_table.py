"""The CLI (``membench run``) and the pytest plugin (``--membench-*``) offer the same evaluation options,
generated from one table (``membench_eval.evaluation.options``): same names, defaults, choices, types
and help; an option in one shell only is listed here on purpose. Old spellings warn and still work."""

from __future__ import annotations

import argparse

from pathlib import Path

import pytest
from _pytest.config.argparsing import Parser

from membench_eval.evaluation import options as options_table
from membench_eval.cli import build_parser, main

# In one shell only, on purpose: the CLI's detection benchmark and attack are their own commands
# (membench detect / membench attack); pytest reports progress itself.
CLI_ONLY = {"no-progress"}
PYTEST_ONLY = {"detect", "attack", "attack-budget"}


def _subparser(name: str) -> argparse.ArgumentParser:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[name]


def _cli_options() -> dict[str, argparse.Action]:
    """``membench run``'s options by table name (``--suite`` -> suite; the FILE positional -> files)."""
    out = {}
    for action in _subparser("run")._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        name = action.option_strings[0][2:] if action.option_strings else action.dest
        out[name] = action
    return out


def _pytest_parser() -> Parser:
    from membench_eval.pytest_plugin import pytest_addoption

    parser = Parser(_ispytest=True)  # pytest's own option parser, as the plugin gets it
    pytest_addoption(parser)
    return parser


def _pytest_options() -> dict[str, argparse.Action]:
    """The plugin's options by table name (``--membench-suite`` -> suite; ``--membench`` -> files), as the
    argparse actions pytest builds from them."""
    out = {}
    for option in _pytest_parser().getgroup("membench").options:
        (flag,) = option.names()
        name = "files" if flag == "--membench" else flag.removeprefix("--membench-")
        out[name] = option._action
    return out


def test_cli_and_pytest_have_the_same_options_name_by_name():
    cli, plugin = _cli_options(), _pytest_options()
    assert set(cli) - set(plugin) == CLI_ONLY
    assert set(plugin) - set(cli) == PYTEST_ONLY
    assert len(set(cli) & set(plugin)) == 23  # 23: --gate-file (issue 39)
    # The table says the same (so a new option in one shell only is a decision written down there).
    assert {o.name for o in options_table.options_for(options_table.CLI)} == set(cli)
    assert {o.name for o in options_table.options_for(options_table.PYTEST)} == set(plugin)


@pytest.mark.parametrize("name", sorted(set(_cli_options()) & set(_pytest_options())))
def test_cli_and_pytest_agree_on_each_option(name: str):
    cli, plugin = _cli_options()[name], _pytest_options()[name]
    for attr in ("default", "choices", "type", "help", "metavar"):
        assert getattr(cli, attr) == getattr(plugin, attr), (name, attr)
    if cli.option_strings:  # the FILE positional is --membench FILE (append) under pytest
        assert type(cli) is type(plugin) and cli.nargs == plugin.nargs, name
    else:
        assert (cli.nargs, type(plugin)) == ("*", argparse._AppendAction)


def test_defaults_parse_to_the_same_values():
    """What each shell gets with no options given, value by value."""
    cli = vars(build_parser().parse_args(["run"]))
    plugin = vars(_pytest_parser().parse([]))
    for option in options_table.EVALUATION_OPTIONS:
        if set(option.shells) == {options_table.CLI, options_table.PYTEST}:
            assert cli[option.cli_dest] == plugin[option.pytest_dest], option.name
    assert cli["out"] == "leaderboard" and cli["store"] is None and cli["seed"] == 0 and cli["engine"] == "local"


def test_pytest_batch_size_option_reaches_the_evaluation():
    from membench_eval.pytest_plugin import _options

    parser = _pytest_parser()

    class Config:  # the part of pytest.Config the plugin's options read
        def __init__(self, argv: list[str]):
            self.ns = parser.parse(argv)
            # Where [tool.membench] is searched from (its store); a folder without one: the user cache.
            self.invocation_params = type("InvocationParams", (), {"dir": Path(__file__).anchor})()

        def getoption(self, name: str):
            return getattr(self.ns, name)

    assert _options(Config([])).batch_size is None
    assert _options(Config(["--membench-batch-size", "3"])).batch_size == 3
    assert _options(Config(["--membench-batch-size", "auto"])).batch_size == "auto"
    with pytest.raises(pytest.UsageError, match="positive integer or 'auto'"):
        parser.parse(["--membench-batch-size", "0"])


def test_deprecated_generate_out_warns_and_sets_store(capsys: pytest.CaptureFixture[str]):
    args = build_parser().parse_args(["generate", "--suite", "mini", "--out", "old-store"])
    assert args.store == "old-store" and not hasattr(args, "out")
    err = capsys.readouterr().err
    assert "deprecated" in err and "membench generate --out" in err and "--store" in err

    args = build_parser().parse_args(["generate", "--suite", "mini", "--store", "new-store"])
    assert args.store == "new-store"
    assert "deprecated" not in capsys.readouterr().err


def test_every_deprecated_alias_maps_to_an_option_of_its_command():
    for alias in options_table.DEPRECATED_ALIASES:
        parser = _subparser(alias.command)
        flags = {s: a.dest for a in parser._actions for s in a.option_strings}
        assert flags[alias.flag] == flags[alias.replacement] == alias.dest


def test_generate_needs_a_store(capsys: pytest.CaptureFixture[str]):
    assert main(["generate", "--suite", "mini", "--device", "cpu"]) == 2
    assert "--store" in capsys.readouterr().err


def test_run_out_is_the_leaderboard_and_store_the_store():
    args = build_parser().parse_args(["run", "--out", "board", "--store", "runs"])
    assert (args.out, args.store) == ("board", "runs")


# generate's own on purpose: a required suite, the suite's seed unless given, no 'auto' batch (no GPU fit there).
COMMAND_OWN = {"generate": {"--suite", "--seed", "--batch-size"}, "attack": set()}


@pytest.mark.parametrize("command", sorted(COMMAND_OWN))
def test_other_commands_take_shared_options_from_the_table(command: str):
    """An option of another command spelled like one of run's means the same (default, type, choices)."""
    run = {a.option_strings[0]: a for a in _subparser("run")._actions if a.option_strings}
    shared = 0
    for action in _subparser(command)._actions:
        flag = action.option_strings[0] if action.option_strings else None
        if flag in run and not isinstance(action, options_table.DeprecatedAlias) and flag not in COMMAND_OWN[command]:
            shared += 1
            for attr in ("default", "type", "choices", "metavar"):
                assert getattr(action, attr) == getattr(run[flag], attr), (command, flag, attr)
    assert shared >= 6


def test_attack_budget_is_the_same_option_in_both_shells():
    budget = next(a for a in _subparser("attack")._actions if "--budget" in a.option_strings)
    plugin = _pytest_options()["attack-budget"]
    assert (budget.default, budget.type, budget.help) == (plugin.default, plugin.type, plugin.help) == (
        2000, int, plugin.help)
