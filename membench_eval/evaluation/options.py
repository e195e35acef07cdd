"""The one option table of the evaluation: it generates both ``membench run``'s argparse options and
the pytest plugin's ``--membench-*`` options, so the two shells cannot drift apart (names, defaults,
help, choices, types). Modelled on pytest-benchmark, which defines its options once for its CLI and
its plugin.

Spelling: an option named ``suite`` is ``--suite`` on the command line and ``--membench-suite``
under pytest (dest ``suite`` / ``membench_suite``). ``--out`` is always the leaderboard (output)
folder and ``--store`` always the run store; old spellings stay as deprecated aliases
(``DeprecatedAlias``) that still work and say which spelling replaces them.

No heavy imports (both shells read this at start-up) and no import of pytest.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from typing import Any, Callable, Iterable

CLI, PYTEST = "cli", "pytest"
PYTEST_PREFIX = "membench"
DEFAULT_OUT = "leaderboard"


def batch_size(value: str) -> int | str:
    """``--batch-size``: a positive integer, or ``auto`` (the largest batch that fits in free GPU memory)."""
    if value == "auto":
        return value
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer or 'auto', got {value!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer or 'auto', got {value!r}")
    return n


@dataclass(frozen=True)
class Option:
    """One option of the evaluation, in both shells.

    ``cli`` / ``pytest`` override the generated spelling (``"files"`` makes a positional); ``shells``
    says where it exists (an option in one shell only says why in ``note``)."""

    name: str
    help: str
    default: Any = None
    type: Callable[[str], Any] | None = None
    choices: tuple[str, ...] | None = None
    metavar: str | None = None
    action: str | None = None  # store_true | append | extend (argparse's names)
    nargs: str | None = None
    cli: str | None = None
    pytest: str | None = None
    shells: tuple[str, ...] = (CLI, PYTEST)
    note: str = ""

    @property
    def cli_flag(self) -> str:
        return self.cli or f"--{self.name}"

    @property
    def pytest_flag(self) -> str:
        return self.pytest or f"--{PYTEST_PREFIX}-{self.name}"

    @property
    def cli_dest(self) -> str:
        return self.cli_flag.lstrip("-").replace("-", "_")

    @property
    def pytest_dest(self) -> str:
        return self.pytest_flag.lstrip("-").replace("-", "_")

    def kwargs(self, **overrides: Any) -> dict[str, Any]:
        """Keyword arguments of ``add_argument`` / pytest's ``addoption`` (only those that are set)."""
        out: dict[str, Any] = {"help": self.help, "default": self.default}
        for key in ("type", "choices", "metavar", "action", "nargs"):
            value = getattr(self, key)
            if value is not None:
                out[key] = list(value) if key == "choices" else value
        if out.get("action") in ("append", "extend") and out["default"] is None:
            out["default"] = []
        out.update(overrides)
        return out


@dataclass(frozen=True)
class Alias:
    """A deprecated spelling of one command's option: ``membench <command> <flag>`` -> ``replacement``."""

    command: str
    flag: str
    replacement: str
    dest: str


_ENGINE_HELP = ("local: this process computes (default; under pytest, -n N spreads the items over devices); ray: "
                "actor pools on a Ray cluster, one pipeline per device, fill the same store first (pip install -e "
                "'.[ray]'; README: Scale out)")

#: The evaluation's options, in ``membench run --help`` order.
EVALUATION_OPTIONS: tuple[Option, ...] = (
    Option("files", "mitigation file(s) to benchmark, e.g. mitigations/my_method.py, or a bundled method's name "
           "(rna, wen, ...; base always runs too)",
           metavar="FILE", cli="files", pytest=f"--{PYTEST_PREFIX}", action="append"),
    Option("detect", "detector file(s) to benchmark, e.g. detectors/*.py: writes the detection leaderboard "
           "<out>/<suite>.detect.md/.json/.roc.png (membench_eval.pytest_plugin.detect)",
           action="extend", nargs="+", metavar="FILE", shells=(PYTEST,),
           note="the CLI's detection benchmark is its own command: membench detect --detector FILE"),
    Option("attack", "also run the adaptive attack on the --membench files (membench_eval.pytest_plugin.attack)",
           default=False, action="store_true", shells=(PYTEST,),
           note="the CLI's adaptive attack is its own command: membench attack FILE"),
    Option("attack-budget", "adaptive attack: scored candidate prompts per memorized image, equal for all "
           "methods (default 2000)", default=2000, type=int, metavar="N", shells=(PYTEST,),
           note="the CLI spells it membench attack --budget"),
    Option("suite", "suite: mini | sd1 | coco | sd1+coco | path/to/suite.toml (default: mini)", default="mini",
           metavar="NAME_OR_TOML"),
    Option("model", "diffusers model (hub id or local directory); default: the suite's model", metavar="ID_OR_DIR"),
    Option("param", "method hyperparameter K=V; K=V1,V2 sweeps; 'strongest' / 'sweep' use the paper's settings "
           "(repeatable)", action="append", metavar="K=V"),
    Option("limit", "use only the first N prompts of each prompt set", type=int, metavar="N"),
    Option("subset", "stratified: one trigger prompt per memorized image (cheap PR gate)", choices=("stratified",)),
    Option("out", "leaderboard directory (default: leaderboard, in the working directory)", default=DEFAULT_OUT,
           metavar="DIR"),
    Option("store", "run store of generated images and scores (default: [tool.membench] store of the nearest "
           "pyproject.toml, else the user cache)", metavar="DIR"),
    Option("gate", "gate, e.g. 'top1_sscd <= 0.3' or 'clip >= base - 0.01' (default: [tool.membench] gate of the "
           "nearest pyproject.toml with that table, from the working directory up)", action="append", metavar="EXPR"),
    Option("gate-file", "read the gates from this TOML file's [tool.membench] gate instead of searching upward",
           metavar="FILE"),
    Option("device", "cpu | cuda | cuda:1 (default: auto)", metavar="DEV"),
    Option("sscd-backend", "disc_large | disc_mixup_onnx (default: the suite's)", metavar="NAME"),
    Option("clip-model", "open_clip model for the CLIP score (default ViT-g-14, the paper's)", metavar="NAME"),
    Option("clip-pretrained", "open_clip pretrained tag or local checkpoint for the CLIP score",
           metavar="TAG_OR_PATH"),
    Option("aesthetic-pretrained", "open_clip ViT-L-14 pretrained tag or local checkpoint for the aesthetic score",
           metavar="TAG_OR_PATH"),
    Option("seed", "run seed (default 0)", default=0, type=int, metavar="N"),
    Option("batch-size", "images per pipeline call, or 'auto': the largest that fits in free GPU memory (CUDA "
           "only; part of the image key, so pin a number to share a store across GPU models)", type=batch_size,
           metavar="B"),
    Option("compile", "torch.compile the UNet (CUDA; slow first batches; part of the image key)", default=False,
           action="store_true"),
    Option("data-dir", "local copy of the upstream data (default: $MEMBENCH_DATA_DIR)", metavar="DIR"),
    Option("no-stored-baselines", "do not add the baselines found in the run store to the leaderboard",
           default=False, action="store_true"),
    Option("no-progress", "no progress bars", default=False, action="store_true", shells=(CLI,),
           note="under pytest the items report progress; the evaluation shows no bars there"),
    Option("engine", _ENGINE_HELP, default="local", choices=("local", "ray")),
    Option("ray-address", "Ray cluster to join (auto, ray://head:10001); default: start a local one",
           metavar="ADDR"),
    Option("ray-actors", "Ray actors per stage (default: one per GPU of the cluster, else one per CPU)", type=int,
           metavar="N"),
)

OPTIONS: dict[str, Option] = {o.name: o for o in EVALUATION_OPTIONS}

#: Old spellings that still work and warn. ``membench generate --out DIR`` was the run store.
DEPRECATED_ALIASES: tuple[Alias, ...] = (
    Alias("generate", "--out", "--store", "store"),
)


def options_for(shell: str) -> list[Option]:
    """The table's options that ``shell`` (CLI or PYTEST) has, in table order."""
    return [o for o in EVALUATION_OPTIONS if shell in o.shells]


def add_cli_options(parser: argparse.ArgumentParser, names: Iterable[str] | None = None,
                    **overrides: dict[str, Any]) -> None:
    """Add the table's CLI options (all of ``membench run``'s, or ``names`` in that order) to ``parser``;
    ``overrides`` maps an option name (``-`` as ``_``) to changed ``add_argument`` keywords for one
    command (e.g. ``nargs``, ``help``; ``flag`` respells it)."""
    chosen = options_for(CLI) if names is None else [OPTIONS[n] for n in names]
    for option in chosen:
        changed = dict(overrides.get(option.name.replace("-", "_"), {}))
        flag = changed.pop("flag", option.cli_flag)  # a command's own spelling (attack: --budget)
        kwargs = option.kwargs(**changed)
        if not flag.startswith("-"):  # a positional: nargs instead of append
            kwargs.pop("action", None)
            kwargs.setdefault("nargs", "*")
            parser.add_argument(flag, **kwargs)
        else:
            parser.add_argument(flag, dest=flag.lstrip("-").replace("-", "_"), **kwargs)


def add_pytest_options(group: Any) -> None:
    """Add the table's pytest options to a pytest ``OptionGroup`` (no pytest import here)."""
    for option in options_for(PYTEST):
        group.addoption(option.pytest_flag, dest=option.pytest_dest, **option.kwargs())


def add_deprecated_aliases(parser: argparse.ArgumentParser, command: str) -> None:
    """Add ``command``'s deprecated spellings: each still sets the new dest and warns on stderr."""
    for alias in DEPRECATED_ALIASES:
        if alias.command == command:
            parser.add_argument(alias.flag, dest=alias.dest, action=DeprecatedAlias, alias=alias,
                                metavar="DIR", help=f"deprecated spelling of {alias.replacement}")


def deprecation_message(alias: Alias) -> str:
    return (f"membench: warning: 'membench {alias.command} {alias.flag}' is deprecated; use "
            f"{alias.replacement} (the same value)")


class DeprecatedAlias(argparse.Action):
    """An old spelling: stores its value under the new dest and prints one warning line."""

    def __init__(self, option_strings: list[str], dest: str, alias: Alias, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, **kwargs)
        self.alias = alias

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        print(deprecation_message(self.alias), file=sys.stderr)
        setattr(namespace, self.dest, values)
