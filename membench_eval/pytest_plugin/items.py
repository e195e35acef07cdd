"""The benchmark's pytest items: one per (method config, scenario, prompt), grouped in chunks that
fill one pipeline call, and one gate item per method checked on the finished leaderboard."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from membench_eval.evaluation import MethodSpec, Plan
    from membench_eval.evaluation.gates import GateResult
    from membench_eval.suites.types import Prompt

EXIT_CODE_PROPERTY = "membench_exit_code"


class MembenchItem(pytest.Item):
    """One (method config, scenario, prompt): generate (or reuse) its images, score them.

    ``chunk`` names the prompts generated together in one call (whole batches); under xdist every
    item of a chunk goes to one worker (its node id ends in ``@<chunk>``, see ``MembenchCollector``)."""

    def __init__(self, *, method: "MethodSpec", role: str, prompt: "Prompt", chunk: str, membench: Any,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.method, self.role, self.prompt, self.chunk = method, role, prompt, chunk
        self.membench = membench  # the MembenchSession that made it (handed down: no import back up)
        self.add_marker(pytest.mark.membench_item)

    def runtest(self) -> None:
        from membench_eval.errors import MembenchError

        session = self.membench
        try:
            result = session.result_for(self)
        except MembenchError as exc:
            # The run's exit status follows the failure's kind (the method raised: 6; the store: 3), as
            # in `membench run`; user_properties reach the controller from xdist workers too.
            self.user_properties.append((EXIT_CODE_PROPERTY, exc.exit_code))
            raise
        session.results.append(result.to_dict())

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style=None):  # type: ignore[override]
        """A harness error as its one-line message, plus the user's own frames for a failing hook;
        ``--tb=long`` adds the full traceback (harness and library frames)."""
        from membench_eval.errors import MembenchError

        if isinstance(excinfo.value, MembenchError):
            text = f"{type(excinfo.value).__name__}: {excinfo.value}"
            details = getattr(excinfo.value, "details", "")
            if details:
                text += "\n\n" + details
            if self.config.getoption("tbstyle", "auto") == "long":
                text += "\n\n" + str(super().repr_failure(excinfo, style="long"))
            return text
        return super().repr_failure(excinfo)

    def reportinfo(self):
        return self.path, None, f"membench: {self.method.label} / {self.role} / {self.prompt.prompt_id}"


class MembenchCollector(pytest.Collector):
    """Holds the benchmark's items: (method config x scenario x prompt) from the evaluation plan
    of ``membench`` (the MembenchSession that collects them)."""

    def __init__(self, *, membench: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.membench = membench

    def collect(self) -> list[pytest.Item]:
        session = self.membench
        plan = session.plan()
        rootdir = Path(self.config.rootpath)
        # xdist's loadgroup groups by a ``@<group>`` suffix of the node id, which its worker derives
        # from ``xdist_group`` marks and writes to ``item._nodeid``: a field pytest 9.2 no longer reads
        # (pytest-xdist#1386). So the suffix is part of the id here, and the items carry no mark (a
        # pytest that still reads ``_nodeid`` would get the suffix twice).
        grouped = hasattr(self.config, "workerinput") and bool(self.config.getvalue("loadgroup"))
        items: list[pytest.Item] = []
        for method, role, prompt, chunk in chunked_items(plan, session.evaluation.settings):
            path = Path(method.path) if method.path else rootdir
            where = _relative(path, rootdir) if method.path else "membench"
            name = f"{method.label}[{role}-{prompt.prompt_id}]"
            nodeid = f"{where}::{name}" + (f"@{chunk}" if grouped else "")
            items.append(MembenchItem.from_parent(self, name=name, path=path, nodeid=nodeid,
                                                  method=method, role=role, prompt=prompt, chunk=chunk,
                                                  membench=session))
        return items


def chunked_items(plan: "Plan", settings: Any) -> list[tuple["MethodSpec", str, "Prompt", str]]:
    """Plan items with the name of their chunk: consecutive prompts of one (method, scenario) whose
    images fill one pipeline call (``batch_size // images per prompt`` prompts, at least one)."""
    out = []
    for method in plan.methods:
        for role, prompts in plan.prompts.items():
            if not method.measures(role):
                continue
            per_chunk = max(1, settings.batch_size // max(1, settings.images_per_prompt(role)))
            for k, prompt in enumerate(prompts):
                out.append((method, role, prompt, f"{method.label}|{role}|{k // per_chunk}"))
    return out


class MembenchGateFailure(Exception):
    """A gate failed; the message lists every gate of the method with numbers and intervals."""


class MembenchGateItem(pytest.Item):
    """The gates of one method, checked on the finished leaderboard (run by the controller)."""

    def __init__(self, *, results: list["GateResult"], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.gate_results = results

    def runtest(self) -> None:
        if not all(r.passed for r in self.gate_results):
            raise MembenchGateFailure("\n".join(r.message for r in self.gate_results))

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style=None):  # type: ignore[override]
        if isinstance(excinfo.value, MembenchGateFailure):
            return "membench gate failed:\n" + str(excinfo.value)
        return super().repr_failure(excinfo)

    def reportinfo(self):
        return self.path, None, self.name


def _relative(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return path.as_posix()
