"""What a run evaluates, as plain data: its options, its method configs (leaderboard rows) and its
prompt selection. No torch, no model: cheap to build in the pytest controller and in the CLI."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from membench_eval.errors import MembenchError
from membench_eval.report.leaderboard import RowKind
from membench_eval.stats import DEFAULT_RESAMPLES, DEFAULT_SEED

if TYPE_CHECKING:
    from membench_eval.mitigation import Mitigation
    from membench_eval.suites.references import Coverage
    from membench_eval.suites.types import Prompt, Suite

SUBSETS = ("stratified",)
# How the images and scores of a run are computed: in this process (and its pytest-xdist workers),
# or on a Ray cluster (``membench_eval.scaleout.ray_engine``, the optional ``ray`` extra).
ENGINES = ("local", "ray")


@dataclass
class EvalOptions:
    """Everything a run is configured with (the CLI flags and the plugin's --membench-* options)."""

    suite: str = "mini"
    data_dir: str | None = None
    model: str | None = None
    store_dir: str | None = None  # default: <user cache>/runs
    out_dir: str = "leaderboard"  # of the working directory, for the CLI and the plugin alike
    limit: int | None = None
    subset: str | None = None
    device: str | None = None
    sscd_backend: str | None = None  # default: the suite's
    clip_model: str | None = None
    clip_pretrained: str | None = None  # open_clip tag or local checkpoint path
    aesthetic_pretrained: str | None = None
    aesthetic_head: str | None = None
    seed: int = 0
    batch_size: int | str | None = None  # an int, or "auto" (fit to free GPU memory)
    stored_baselines: bool = True
    # A computed reference row (mini: the local-gallery image-search reference) when the suite has one.
    reference: bool = True
    # Folder of the web image-search reference (`membench reference --source api`); None: the cache's.
    reference_dir: str | None = None
    bootstrap_resamples: int = DEFAULT_RESAMPLES
    bootstrap_seed: int = DEFAULT_SEED
    cluster_method: str = "components"
    progress: bool = False
    engine: str = "local"  # one of ENGINES
    ray_address: str | None = None  # an existing Ray cluster ("auto", "ray://head:10001"); None: start one here
    ray_actors: int | None = None  # actors per stage; None: one per GPU of the cluster, else one per CPU
    # Score each batch while the next one denoises (``evaluation.scoring.OverlappedScorer``); False:
    # score after generation (the same numbers; for measuring the overlap).
    overlap_scoring: bool = True
    # torch.compile the UNet's forward (``generation.acceleration``); part of the image key.
    compile: bool = False

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise MembenchError(f"unknown engine {self.engine!r}; choose one of {', '.join(ENGINES)}")
        if self.ray_actors is not None and self.ray_actors < 1:
            raise MembenchError(f"ray actors must be >= 1, got {self.ray_actors}")
        if self.limit is not None and self.limit < 1:
            raise MembenchError(f"limit must be >= 1, got {self.limit}")
        if self.subset is not None and self.subset not in SUBSETS:
            raise MembenchError(f"unknown subset {self.subset!r}; choose one of {', '.join(SUBSETS)}")


@dataclass(frozen=True)
class MethodSpec:
    """One row of the leaderboard: a method (file + class) with one parameter setting."""

    label: str
    kind: RowKind
    name: str
    params: dict[str, Any]
    path: str | None = None  # the method file (None for base)
    mitigation: "Mitigation | None" = field(default=None, compare=False, repr=False)
    # Scenarios this row is measured on (None: all); a web-search reference has trigger prompts only.
    roles: tuple[str, ...] | None = None

    def measures(self, role: str) -> bool:
        return self.roles is None or role in self.roles


@dataclass
class Plan:
    """What a run evaluates: method configs x prompt sets."""

    suite: "Suite"
    methods: list[MethodSpec]
    prompts: dict[str, list["Prompt"]]  # role -> selected prompts
    coverage: "Coverage | None" = None
    excluded_prompts: int = 0  # trigger prompts with no available reference image

    def items(self) -> list[tuple[MethodSpec, str, "Prompt"]]:
        return [(m, role, p) for m in self.methods for role, ps in self.prompts.items() for p in ps if m.measures(role)]


def select_prompts(prompts: Sequence["Prompt"], *, role: str, limit: int | None, subset: str | None) -> list["Prompt"]:
    """``stratified``: the first trigger prompt (file order) of every memorized image, so each image
    is tested once; then ``limit``: the first N. General prompts ignore ``subset``."""
    chosen = list(prompts)
    if subset == "stratified" and role == "trigger":
        seen: set[str] = set()
        picked: list["Prompt"] = []
        for p in chosen:
            new = [m for m in p.memorized_ids if m not in seen]
            if new:
                picked.append(p)
                seen.update(p.memorized_ids)
        chosen = picked
    if limit is not None:
        chosen = chosen[:limit]
    return chosen
