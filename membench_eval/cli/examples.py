"""One example command per ``membench`` subcommand, appended to the end of its ``--help``.

Why a table beside the commands: a help page that ends with a command to copy answers "how do I call
this?" faster than the option list; ``tests/cli/test_cli_help.py`` checks that every subcommand has one
and that each example parses.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator

EXAMPLES: dict[str, str] = {
    "data": "membench data summary --data-dir ../shared/data",
    "data summary": "membench data summary --data-dir ../shared/data",
    "data files": "membench data files --no-download",
    "data validate": "membench data validate trigger-csv SD1_final.csv --allow-duplicates",
    "data fetch-references": "membench data fetch-references --suite sd1",
    "generate": "membench generate --suite mini --store runs --method mitigations/my_method.py",
    "sscd": "membench sscd A.png B.png --backend disc_mixup_onnx",
    "run": "membench run mitigations/my_method.py --suite mini --param p=0.1,0.3",
    "report": "membench report --suite mini --out leaderboard",
    "detect": "membench detect --suite mini --detector wen_single",
    "search": "membench search --suite mini --out search_out",
    "store": "membench store verify runs",
    "store verify": "membench store verify --repair runs",
    "store prune": "membench store prune --dry-run runs",
    "reference": "membench reference --suite mini --source gallery",
    "suite": "membench suite check mini",
    "suite check": "membench suite check my_suite.toml --json",
    "attribute": "membench attribute --suite mini --prompt-id mini-t000",
    "attack": "membench attack rna --param strongest --suite mini --budget 400",
    "extract": "membench extract --suite mini-uncond --method side --pool 128 --seeds 3",
    "init": "membench init my-method-repo",
    "export": "membench export --out leaderboard --to export/mini",
    "board": "membench board export/run-a export/run-b --out site",
    "families": "membench families --json",
}


def subcommands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """("run", its parser), ("data summary", ...), ... for every subcommand, depth first."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield " ".join((*path, name)), sub
                yield from subcommands(sub, (*path, name))


class _KeepExample(argparse.HelpFormatter):
    """Wraps text as its base formatter does, except the example paragraph: a command to copy stays one line."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        fill = super()._fill_text  # (a generator expression has no zero-argument super)
        return "\n\n".join(indent + p if p.startswith(PREFIX) else fill(p, width, indent) for p in text.split("\n\n"))


PREFIX = "example: "


def add_examples(parser: argparse.ArgumentParser) -> None:
    """End every subcommand's help with its example (kept after any epilog it already has)."""
    for name, sub in subcommands(parser):
        example = EXAMPLES.get(name)
        if example:
            sub.epilog = f"{sub.epilog}\n\n{PREFIX}{example}" if sub.epilog else f"{PREFIX}{example}"
            sub.formatter_class = type("WithExample", (_KeepExample, sub.formatter_class), {})
