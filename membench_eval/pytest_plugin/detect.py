"""``pytest --membench-detect detectors/foo.py``: the detection leaderboard as a pytest run.

Registered by ``membench_eval.pytest_plugin`` when ``--membench-detect`` is given; it shares that
plugin's option group (``--membench-suite``, ``--membench-param``, ``--membench-store``,
``--membench-out``, ``--membench-limit``, ``--membench-model``, ``--membench-device``,
``--membench-seed``). One item per detector configuration scores the suite's memorized and
non-memorized prompts (``detection.run.score_prompts``, resumable through the run store); results
travel from pytest-xdist workers through ``workeroutput``; the controller builds the leaderboard
(``detection.leaderboard``) and writes ``<out>/<suite>.detect.md``, ``.detect.json`` and ``.roc.png``.
A bad detector file or parameter is a usage error before anything runs.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from membench_eval.detection.leaderboard import DetectionLeaderboard
    from membench_eval.detection.prompt_sets import DetectionSet
    from membench_eval.detector import Detector
    from membench_eval.generation.settings import GenerationSettings
    from membench_eval.suites.types import Suite

PLUGIN_NAME = "membench-detect-session"
_WORKER_KEY = "membench_detect_results"
_ONLY_KEY = "membench_detect_only"


class DetectItem(pytest.Item):
    """One detector configuration on the whole prompt set."""

    def __init__(self, *, detector: "Detector", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.detector = detector
        self.add_marker(pytest.mark.membench_item)

    def runtest(self) -> None:
        session: DetectSession = self.config.pluginmanager.get_plugin(PLUGIN_NAME)
        session.results.append(session.score(self.detector))

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style=None):  # type: ignore[override]
        from membench_eval.errors import MembenchError

        if isinstance(excinfo.value, MembenchError) and self.config.getoption("tbstyle", "auto") != "long":
            return f"{type(excinfo.value).__name__}: {excinfo.value}"
        return super().repr_failure(excinfo)

    def reportinfo(self):
        return self.path, None, f"membench-detect: {self.detector.label()}"


class DetectCollector(pytest.Collector):
    def collect(self) -> list[pytest.Item]:
        session: DetectSession = self.config.pluginmanager.get_plugin(PLUGIN_NAME)
        root = Path(self.config.rootpath)
        items: list[pytest.Item] = []
        for det, path in session.detectors():
            where = _relative(path, root)
            name = det.label()
            items.append(DetectItem.from_parent(self, name=name, path=path, nodeid=f"{where}::{name}", detector=det))
        return items


class DetectSession:
    """Per-process state: loaded detectors, this process's results, and (controller) the board."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.results: list[dict[str, Any]] = []
        self.board: "DetectionLeaderboard | None" = None
        self.written: dict[str, Path] = {}
        self._detectors: list[tuple["Detector", Path]] | None = None
        self._pipe: Any = None
        self.is_worker = hasattr(config, "workerinput")
        if self.is_worker:
            self.benchmark_only = bool(config.workerinput.get(_ONLY_KEY, False))  # type: ignore[attr-defined]
        else:
            self.benchmark_only = config.args_source != pytest.Config.ArgsSource.ARGS

    # --- what to run ----------------------------------------------------------------------------

    def detectors(self) -> list[tuple["Detector", Path]]:
        """Every (detector config, its file); a bad file or parameter is a pytest usage error."""
        if self._detectors is None:
            from membench_eval.plugins.detectors import load_detectors
            from membench_eval.errors import MembenchError

            get = self.config.getoption
            out: list[tuple[Detector, Path]] = []
            try:
                for file in get("membench_detect"):
                    path = Path(file).expanduser().resolve()
                    out += [(d, path) for d in load_detectors(path, get("membench_param"))]
            except MembenchError as exc:
                raise pytest.UsageError(f"membench: {exc}") from None
            labels = [d.label() for d, _ in out]
            dup = next((lab for lab in labels if labels.count(lab) > 1), None)
            if dup is not None:
                raise pytest.UsageError(f"membench: detector configuration {dup!r} given twice")
            self._detectors = out
        return self._detectors

    @functools.cached_property
    def suite(self) -> "Suite":
        """The suite, loaded once per process (sd1's CSV is not re-read per item)."""
        from membench_eval.suites import get_suite

        return get_suite(self.config.getoption("membench_suite") or "mini", self.config.getoption("membench_data_dir"))

    @functools.cached_property
    def detection_set(self) -> "DetectionSet":
        from membench_eval.detection.prompt_sets import suite_detection_set

        return suite_detection_set(self.suite, self.config.getoption("membench_limit"))

    @functools.cached_property
    def settings(self) -> "GenerationSettings":
        from membench_eval.generation.settings import GenerationSettings

        seed = self.config.getoption("membench_seed")
        return GenerationSettings.for_suite(self.suite, seed=0 if seed is None else seed)

    def store_root(self) -> Path:
        from membench_eval.paths import cache_dir

        store = self.config.getoption("membench_store")
        return Path(store) if store else cache_dir() / "runs"

    # --- one item ---------------------------------------------------------------------------------

    def score(self, detector: "Detector") -> dict[str, Any]:
        """Score the prompt set with ``detector`` (the pipeline loaded once per process, only when
        a detector needs it); the result as plain data for ``workeroutput``."""
        from membench_eval.detection.run import score_prompts
        from membench_eval.store.detections import DetectionStore

        if detector.needs_model and self._pipe is None:
            from membench_eval.models.loading import load_pipeline

            model = self.config.getoption("membench_model")
            self._pipe = load_pipeline(model or self.suite.model, revision=None if model else self.suite.revision,
                                       device=self.config.getoption("membench_device"))
        with DetectionStore(self.store_root()) as store:
            result = score_prompts(detector, self.detection_set.prompts, self.settings, store,
                                   pipe=self._pipe if detector.needs_model else None)
        return dataclasses.asdict(result)

    # --- collection -------------------------------------------------------------------------------

    def pytest_ignore_collect(self, collection_path: Path, config: pytest.Config) -> bool | None:
        return True if self.benchmark_only else None

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node: Any) -> None:
        node.workerinput[_ONLY_KEY] = self.benchmark_only

    def pytest_collection_modifyitems(self, session: pytest.Session, config: pytest.Config,
                                      items: list[pytest.Item]) -> None:
        self.detectors()
        collector = DetectCollector.from_parent(session, name="membench-detect", path=Path(config.rootpath))
        items.extend(session.genitems(collector))

    # --- results ----------------------------------------------------------------------------------

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.is_worker:
            self.config.workeroutput[_WORKER_KEY] = json.dumps(self.results)  # type: ignore[attr-defined]

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        payload = getattr(node, "workeroutput", {}).get(_WORKER_KEY)
        if payload:
            self.results.extend(json.loads(payload))

    @pytest.hookimpl(wrapper=True)
    def pytest_runtestloop(self, session: pytest.Session):
        outcome = yield
        if self.is_worker or self.config.option.collectonly or not self.results:
            return outcome
        from membench_eval.detection.leaderboard import build_detection_leaderboard
        from membench_eval.detection.render import write_detection_leaderboard
        from membench_eval.detection.run import DetectionResult
        from membench_eval.pytest_plugin.options import leaderboard_dir

        order = {d.label(): k for k, (d, _) in enumerate(self.detectors())}
        results = sorted((DetectionResult(**r) for r in self.results), key=lambda r: order.get(r.label, len(order)))
        settings = self.settings
        self.board = build_detection_leaderboard(self.detection_set, results, metadata={
            "model": self.config.getoption("membench_model") or "suite default", "seed": settings.seed,
            "num_inference_steps": settings.num_inference_steps, "guidance_scale": settings.guidance_scale,
            "height": settings.height, "width": settings.width, "limit": self.config.getoption("membench_limit"),
            "store": str(self.store_root())})
        self.written = write_detection_leaderboard(self.board, Path(leaderboard_dir(self.config)))
        return outcome

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.is_worker or self.board is None:
            return
        from membench_eval.detection.render import to_markdown

        tr = terminalreporter
        tr.section(f"membench detection leaderboard ({self.board.name})")
        for line in to_markdown(self.board).splitlines():
            tr.write_line(line)
        tr.write_line("membench: wrote " + ", ".join(str(p) for p in self.written.values()))


def _relative(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return path.name
