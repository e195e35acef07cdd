"""The benchmark's per-process state (``MembenchSession``): evaluation, results, xdist result transport,
and, in the controller, the leaderboard, gates and terminal summary."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from membench_eval.pytest_plugin.items import (
    EXIT_CODE_PROPERTY, MembenchCollector, MembenchGateItem, MembenchItem, _relative,
)
from membench_eval.pytest_plugin.options import _options

if TYPE_CHECKING:
    from membench_eval.evaluation import Evaluation, Plan
    from membench_eval.evaluation.gates import GateResult
    from membench_eval.report.leaderboard import Leaderboard
    from membench_eval.report.records import PromptResult

_PLUGIN_NAME = "membench-session"
_WORKER_KEY = "membench_results"
_ONLY_KEY = "membench_benchmark_only"
_GROUP_KEY = "membench_loadgroup"


def _session(config: pytest.Config) -> "MembenchSession":
    plugin = config.pluginmanager.get_plugin(_PLUGIN_NAME)
    if plugin is None:  # fixtures requested without --membench: a session on the defaults
        plugin = MembenchSession(config)
        config.pluginmanager.register(plugin, _PLUGIN_NAME)
    return plugin


class MembenchSession:
    """Per-process state: the evaluation, this process's results, and (controller) the leaderboard."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.results: list[dict[str, Any]] = []
        self.counts: dict[str, int] = {}
        self.quality: dict[str, Any] | None = None  # CLIP/aesthetic status reported by the scorers' process
        self._evaluation: "Evaluation | None" = None
        self._plan: "Plan | None" = None
        self.board: "Leaderboard | None" = None
        self.written: tuple[Path, Path] | None = None
        self.gate_results: dict[str, list["GateResult"]] = {}
        self.gates: list = []
        self.gate_config: Any = None  # evaluation.project_config.GateConfig, set by pytest_configure
        self.item_exit_codes: set[int] = set()  # exit codes of failed benchmark items' errors
        self.worker_problems: list[str] = []
        self.failed_items = 0
        self._prefetched: dict[tuple[str, str, str], "PromptResult"] = {}
        self._failed: dict[tuple[str, str, str], BaseException] = {}  # a failed chunk's other items
        self._ray_error: Exception | None = None  # --membench-engine ray: the cluster run's failure
        self.ray_summary: str | None = None  # --membench-engine ray: actors and stage times, as the CLI prints
        self.terminated = False  # SIGTERM stopped the run (exit 143)
        self.is_worker = hasattr(config, "workerinput")
        # `pytest --membench FILE` with no test paths runs the benchmark only, not the project's
        # tests. Decided by the controller (xdist workers always get explicit args) and sent along.
        if self.is_worker:
            self.benchmark_only = bool(config.workerinput.get(_ONLY_KEY, False))  # type: ignore[attr-defined]
            if config.workerinput.get(_GROUP_KEY):  # type: ignore[attr-defined]
                config.option.loadgroup = True  # read by xdist's worker when it names the items
        else:
            self.benchmark_only = config.args_source != pytest.Config.ArgsSource.ARGS

    @property
    def evaluation(self) -> "Evaluation":
        if self._evaluation is None:
            from membench_eval.evaluation import Evaluation

            self._evaluation = Evaluation(_options(self.config))
        return self._evaluation

    def result_for(self, item: MembenchItem) -> "PromptResult":
        """This item's result. The first item of a chunk (the prompts that fill one pipeline call,
        ``chunked_items``) generates the images of the whole chunk in one batch; serial runs and
        xdist workers group alike (under xdist ``--dist loadgroup`` keeps a chunk on one worker), so
        a failure fails the same items under every scheduler. A chunk that raises fails every item
        of it with that error: no retry, so a flaky hook (one batch out of memory) never passes."""
        key = (item.method.label, item.role, item.prompt.prompt_id)
        if self._ray_error is not None:
            raise self._ray_error
        if key in self._failed:
            raise self._failed.pop(key)
        if key not in self._prefetched:
            siblings = [item]
            siblings += [i for i in item.session.items if isinstance(i, MembenchItem) and i is not item
                         and i.method.label == item.method.label and i.role == item.role and i.chunk == item.chunk
                         and (i.method.label, i.role, i.prompt.prompt_id) not in self._prefetched]
            try:
                results = self.evaluation.evaluate_prompts(item.method, item.role, [i.prompt for i in siblings])
            except Exception as exc:
                for sib in siblings[1:]:
                    self._failed[(sib.method.label, sib.role, sib.prompt.prompt_id)] = exc
                raise
            for sib, res in zip(siblings, results):
                self._prefetched[(sib.method.label, sib.role, sib.prompt.prompt_id)] = res
        return self._prefetched.pop(key)

    def plan(self) -> "Plan":
        if self._plan is None:
            from membench_eval.errors import EXIT_ENVIRONMENT, MembenchError

            try:
                self._plan = self.evaluation.plan(
                    [str(p) for p in self.config.getoption("membench")], self.config.getoption("membench_param"))
            except MembenchError as exc:
                if exc.exit_code == EXIT_ENVIRONMENT:  # a store fault, a missing model: 3, as in `membench run`
                    pytest.exit(f"membench: {exc}", returncode=EXIT_ENVIRONMENT)
                raise pytest.UsageError(f"membench: {exc}") from None
        return self._plan

    def problems(self) -> list[str]:
        """Damaged store entries this process found (quarantined and regenerated)."""
        ev = self._evaluation
        return ev.store_problems() if ev is not None else []

    # --- collection ---------------------------------------------------------------------------

    def pytest_ignore_collect(self, collection_path: Path, config: pytest.Config) -> bool | None:
        return True if self.benchmark_only else None

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node: Any) -> None:
        node.workerinput[_ONLY_KEY] = self.benchmark_only
        # A worker re-parses the command line, so it never sees the controller's switch of
        # ``--dist load`` to ``loadgroup`` (hooks.py): tell it, or xdist adds no ``@chunk`` suffix.
        node.workerinput[_GROUP_KEY] = getattr(self.config.option, "dist", "no") == "loadgroup"

    def pytest_collection_modifyitems(self, session: pytest.Session, config: pytest.Config,
                                      items: list[pytest.Item]) -> None:
        self.plan()  # a bad method file or parameter is a usage error (one line), not a collection error
        # Through genitems so the items are reported as collected ("collected N items", -k, xdist).
        collector = MembenchCollector.from_parent(session, name="membench", path=Path(config.rootpath), membench=self)
        items.extend(session.genitems(collector))

    # --- results from xdist workers -----------------------------------------------------------

    def pytest_keyboard_interrupt(self, excinfo: pytest.ExceptionInfo[BaseException]) -> None:
        from membench_eval.generation.termination import was_terminated

        self.terminated = self.terminated or was_terminated(excinfo.value)

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.terminated:
            from membench_eval.generation.termination import EXIT_TERMINATED

            session.exitstatus = EXIT_TERMINATED
        if not self.is_worker:
            from membench_eval.errors import EXIT_ENVIRONMENT, EXIT_METHOD_RAISED

            # Failed items exit 1 under pytest; a store fault or the method's own exception gets the code
            # `membench run` gives it (the environment first: it is what a rerun must fix).
            for code in (EXIT_ENVIRONMENT, EXIT_METHOD_RAISED):
                if (not self.terminated and code in self.item_exit_codes
                        and session.exitstatus == pytest.ExitCode.TESTS_FAILED):
                    session.exitstatus = code
                    break
            return
        ev = self._evaluation
        used = ev is not None and ev.quality_used
        self.config.workeroutput[_WORKER_KEY] = json.dumps(  # type: ignore[attr-defined]
            {"results": self.results, "counts": ev.counts if ev is not None else {},
             "quality": ev.quality_status() if used else None, "problems": self.problems()})

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        payload = getattr(node, "workeroutput", {}).get(_WORKER_KEY)
        if payload:
            data = json.loads(payload)
            self.results.extend(data["results"])
            if data.get("quality") is not None:
                self.quality = data["quality"]
            self.worker_problems.extend(data.get("problems") or [])
            for k, v in data["counts"].items():
                self.counts[k] = self.counts.get(k, 0) + v

    # --- controller: leaderboard and gates after every item ran -------------------------------

    @pytest.hookimpl(wrapper=True)
    def pytest_runtestloop(self, session: pytest.Session):
        if not self.is_worker and not self.config.option.collectonly and self.evaluation.options.engine == "ray":
            self._run_on_ray(session)
        outcome = yield
        if self.is_worker or self.config.option.collectonly:
            return outcome
        if self._evaluation is not None:
            for k, v in self._evaluation.counts.items():
                self.counts[k] = self.counts.get(k, 0) + v
        if not self.results:
            return outcome
        from membench_eval.errors import MembenchError
        from membench_eval.evaluation.gates import check_gates
        from membench_eval.report import PromptResult
        from membench_eval.report.artefacts import write_report

        gates = self.gates
        try:
            results = [PromptResult.from_dict(d) for d in self.results]
            self.board = self.evaluation.leaderboard(self.plan(), results, self.quality)
            # A run with failing items never overwrites a good leaderboard: <stem>.failed.md.
            ev = self.evaluation
            self.written = write_report(self.board, ev.options.out_dir, store=ev.store, references=ev.references[0],
                                        failed=self.failed_items > 0)
        except MembenchError as exc:
            raise pytest.UsageError(f"membench: {exc}") from None
        if gates:
            user = [m.label for m in self.plan().methods if m.kind == "method"]
            self.gate_results = check_gates(gates, self.board, user)
            self._run_gate_items(session)
        return outcome

    def _run_on_ray(self, session: pytest.Session) -> None:
        """``--membench-engine ray``: the cluster computes every item's result before the items run;
        each item then takes its own (``result_for``). A failure of the cluster run (a method's
        error, a store fault) fails every benchmark item with its message."""
        from membench_eval.errors import MembenchError
        from membench_eval.scaleout.ray_engine import run_on_ray

        if not any(isinstance(i, MembenchItem) for i in session.items):
            return
        try:
            outcome = run_on_ray(self.evaluation, self.plan(), [str(p) for p in self.config.getoption("membench")],
                                 list(self.config.getoption("membench_param")))
        except MembenchError as exc:
            self._ray_error = exc
            return
        self.ray_summary = outcome.summary()
        for r in outcome.results:
            self._prefetched[(r.label, r.role, r.prompt_id)] = r
        self.quality = outcome.quality
        self.worker_problems.extend(outcome.problems)
        for k, v in outcome.counts.items():
            self.counts[k] = self.counts.get(k, 0) + v

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Count failing benchmark items (also those reported by xdist workers)."""
        if not self.is_worker and report.failed and "membench_item" in report.keywords:
            self.failed_items += 1
            self.item_exit_codes.update(int(v) for k, v in report.user_properties if k == EXIT_CODE_PROPERTY)

    def _run_gate_items(self, session: pytest.Session) -> None:
        from _pytest.runner import runtestprotocol

        rootdir = Path(session.config.rootpath)
        by_label = {m.label: m for m in self.plan().methods}
        session.testscollected += len(self.gate_results)  # keep the progress percentage honest
        for label, results in self.gate_results.items():
            method = by_label[label]
            path = Path(method.path) if method.path else rootdir
            name = f"membench-gate[{label}]"
            item = MembenchGateItem.from_parent(session, name=name, path=path,
                                                nodeid=f"{_relative(path, rootdir)}::{name}", results=results)
            runtestprotocol(item, log=True, nextitem=None)

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.is_worker:
            return
        from membench_eval.report import to_markdown

        tr = terminalreporter
        if self.terminated:
            tr.write_line("membench: terminated (SIGTERM); the current batch was finished and stored, claims "
                          "released; rerun to continue (exit status 143)", red=True)
        if self.gate_config is not None:
            tr.write_line(f"membench: {self.gate_config.describe()}")
        for line in self.worker_problems + self.problems():
            tr.write_line(f"membench: {line}", yellow=True)
        if self.ray_summary is not None:
            tr.write_line(f"membench: {self.ray_summary}")
        if self.counts:
            tr.write_line(f"membench: {self.counts.get('generated', 0)} images generated, "
                          f"{self.counts.get('reused', 0)} reused from the store; "
                          f"{self.counts.get('scored', 0)} scored, {self.counts.get('scores_reused', 0)} "
                          "score sets reused")
        if self.board is None:
            return
        tr.section(f"membench leaderboard ({self.board.suite})")
        for line in to_markdown(self.board).splitlines():
            tr.write_line(line)
        if self.written:
            for line in self.written.summary_lines():
                tr.write_line(line, yellow=line.startswith("membench: warning"))
            if self.failed_items:
                tr.write_line(f"membench: {self.failed_items} benchmark item(s) failed, so this run's leaderboard is "
                              "the .failed one; the last complete leaderboard was left as it was", red=True)
