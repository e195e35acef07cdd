"""pytest plugin: ``pytest --membench mitigations/my_method.py`` (registered via the pytest11 entry point).

A thin shell over ``membench_eval.evaluation``: it parses options, turns the evaluation plan into
test items (one per method config x scenario x prompt), collects the per-prompt results (from
pytest-xdist workers through ``workeroutput``), and, in the controller only, writes the leaderboard
and runs one gate item per method. Without ``--membench`` it does nothing but add options and
fixtures; heavy imports (torch, diffusers, scorers) happen only when an item or fixture needs them.
``--membench-detect detectors/foo.py`` adds the detection benchmark (``detection.pytest_detect``);
``--membench-attack`` the adaptive attack (``attack.pytest_attack``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from membench_eval.scaleout import RAY_ACTORS_HELP, RAY_ADDRESS_HELP

if TYPE_CHECKING:
    from membench_eval.evaluation import Evaluation, MethodSpec, Plan
    from membench_eval.gates import GateResult
    from membench_eval.report.leaderboard import Leaderboard
    from membench_eval.report.records import PromptResult
    from membench_eval.suites.types import Prompt

_PLUGIN_NAME = "membench-session"
_WORKER_KEY = "membench_results"
_ONLY_KEY = "membench_benchmark_only"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("membench", "memorization-mitigation benchmark (membench-eval)")
    group.addoption("--membench", action="append", default=[], metavar="FILE",
                    help="mitigation file(s) to benchmark, e.g. mitigations/rna.py (base always runs too)")
    group.addoption("--membench-detect", action="extend", nargs="+", default=[], metavar="FILE",
                    help="detector file(s) to benchmark, e.g. detectors/*.py: writes the detection "
                    "leaderboard <out>/<suite>.detect.md/.json/.roc.png (membench_eval.detection.pytest_detect)")
    group.addoption("--membench-attack", action="store_true", default=False,
                    help="also run the adaptive attack on the --membench files (membench_eval.attack.pytest_attack)")
    group.addoption("--membench-attack-budget", type=int, default=2000, metavar="N",
                    help="adaptive attack: scored candidate prompts per memorized image (default 2000)")
    group.addoption("--membench-suite", default=None, metavar="NAME_OR_TOML",
                    help="suite: mini | sd1 | coco | sd1+coco | path/to/suite.toml (default: mini)")
    group.addoption("--membench-model", default=None, metavar="ID_OR_DIR",
                    help="diffusers model (hub id or local directory); default: the suite's model")
    group.addoption("--membench-param", action="append", default=[], metavar="K=V",
                    help="method hyperparameter; comma-separated values sweep (n=1,2,3); repeatable")
    group.addoption("--membench-limit", type=int, default=None, metavar="N",
                    help="use only the first N prompts of each prompt set")
    group.addoption("--membench-subset", choices=["stratified"], default=None,
                    help="stratified: one trigger prompt per memorized image (cheap PR gate)")
    group.addoption("--membench-out", default=None, metavar="DIR",
                    help="leaderboard directory (default: ./leaderboard of the working directory)")
    group.addoption("--membench-store", default=None, metavar="DIR",
                    help="run store of generated images and scores (default: the user cache)")
    group.addoption("--membench-gate", action="append", default=[], metavar="EXPR",
                    help="gate, e.g. 'top1_sscd <= 0.3' or 'clip >= base - 0.01' "
                         "(default: [tool.membench] gate in pyproject.toml)")
    group.addoption("--membench-device", default=None, metavar="DEV", help="cpu | cuda | cuda:1 (default: auto)")
    group.addoption("--membench-sscd-backend", default=None, metavar="NAME",
                    help="disc_large | disc_mixup_onnx (default: the suite's)")
    group.addoption("--membench-clip-model", default=None, metavar="NAME",
                    help="open_clip model for the CLIP score (default ViT-g-14, the paper's)")
    group.addoption("--membench-clip-pretrained", default=None, metavar="TAG_OR_PATH",
                    help="open_clip pretrained tag or local checkpoint for the CLIP score")
    group.addoption("--membench-aesthetic-pretrained", default=None, metavar="TAG_OR_PATH",
                    help="open_clip ViT-L-14 pretrained tag or local checkpoint for the aesthetic score")
    group.addoption("--membench-seed", type=int, default=None, metavar="N", help="run seed (default 0)")
    group.addoption("--membench-data-dir", default=None, metavar="DIR",
                    help="local copy of the upstream data (default: $MEMBENCH_DATA_DIR)")
    group.addoption("--membench-no-stored-baselines", action="store_true", default=False,
                    help="do not add the baselines found in the run store to the leaderboard")
    group.addoption("--membench-compile", action="store_true", default=False,
                    help="torch.compile the UNet (CUDA; slow first batches; part of the image key)")
    group.addoption("--membench-engine", choices=["local", "ray"], default="local",
                    help="local: the items compute (default; -n N spreads them over devices); ray: actor pools "
                         "on a Ray cluster fill the store first, then the items read it (pip install -e '.[ray]')")
    group.addoption("--membench-ray-address", default=None, metavar="ADDR", help=RAY_ADDRESS_HELP)
    group.addoption("--membench-ray-actors", type=int, default=None, metavar="N", help=RAY_ACTORS_HELP)


def _options(config: pytest.Config):
    """EvalOptions from the command line (cheap: no heavy imports)."""
    from membench_eval.evaluation import EvalOptions
    from membench_eval.runtime import device_for_worker

    get = config.getoption
    out = get("membench_out")
    # An xdist worker gwN takes cuda:(N mod visible devices) unless a device index was given.
    worker = config.workerinput.get("workerid") if hasattr(config, "workerinput") else None  # type: ignore[attr-defined]
    return EvalOptions(
        suite=get("membench_suite") or "mini",
        data_dir=get("membench_data_dir"),
        model=get("membench_model"),
        store_dir=get("membench_store"),
        out_dir=out if out is not None else str(Path.cwd() / "leaderboard"),
        limit=get("membench_limit"),
        subset=get("membench_subset"),
        device=device_for_worker(get("membench_device"), worker),
        sscd_backend=get("membench_sscd_backend"),
        clip_model=get("membench_clip_model"),
        clip_pretrained=get("membench_clip_pretrained"),
        aesthetic_pretrained=get("membench_aesthetic_pretrained"),
        seed=get("membench_seed") if get("membench_seed") is not None else 0,
        stored_baselines=not get("membench_no_stored_baselines"),
        compile=bool(get("membench_compile")),
        engine=get("membench_engine") or "local",
        ray_address=get("membench_ray_address"),
        ray_actors=get("membench_ray_actors"),
    )


def _gate_lines(config: pytest.Config) -> list[str]:
    from membench_eval.gates import gates_from_pyproject

    lines = list(config.getoption("membench_gate"))
    if lines:
        return lines
    return gates_from_pyproject(Path(config.rootpath) / "pyproject.toml")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "membench_item: a benchmark item of pytest --membench (added by the plugin)")
    if config.getoption("membench_detect"):
        from membench_eval.detection.pytest_detect import PLUGIN_NAME as DETECT_PLUGIN
        from membench_eval.detection.pytest_detect import DetectSession

        detect = DetectSession(config)
        config.pluginmanager.register(detect, DETECT_PLUGIN)
        if not detect.is_worker:
            detect.detectors()  # a bad detector file or parameter: usage error before anything runs
    if config.getoption("membench") and config.getoption("membench_attack"):
        from membench_eval.attack.pytest_attack import PLUGIN_NAME as ATTACK_PLUGIN, AttackSession

        config.pluginmanager.register(AttackSession(config, _options), ATTACK_PLUGIN)
    if config.getoption("membench"):
        session = MembenchSession(config)
        config.pluginmanager.register(session, _PLUGIN_NAME)
        if not session.is_worker:
            # Fail fast, before any generation, and in the controller: under xdist a bad method
            # file, parameter, gate or suite is reported exactly as in a serial run (exit 4).
            session.gates = _parse_gates_or_usage_error(config)
            if config.getoption("membench_engine") == "ray" and getattr(config.option, "dist", "no") != "no":
                raise pytest.UsageError("membench: --membench-engine ray spreads the work over the Ray cluster "
                                        "itself; run it without -n / --dist")
            session.plan()
            _preflight_or_exit(session)
            if getattr(config.option, "dist", "no") == "load":
                # -n N: whole batches go to one worker (xdist_group per chunk of prompts), so
                # workers run full pipeline calls, as the serial path does.
                config.option.dist = "loadgroup"


def _preflight_or_exit(session: "MembenchSession") -> None:
    """Store and leaderboard folders writable before any item runs; else exit status 3."""
    from membench_eval.errors import StoreError

    try:
        session.evaluation.preflight()
    except StoreError as exc:
        pytest.exit(f"membench: {exc}", returncode=3)


def _parse_gates_or_usage_error(config: pytest.Config) -> list:
    from membench_eval.errors import MembenchError
    from membench_eval.gates import parse_gates

    try:
        return parse_gates(_gate_lines(config))
    except MembenchError as exc:
        raise pytest.UsageError(f"membench: {exc}") from None


def _session(config: pytest.Config) -> "MembenchSession":
    plugin = config.pluginmanager.get_plugin(_PLUGIN_NAME)
    if plugin is None:  # fixtures requested without --membench: a session on the defaults
        plugin = MembenchSession(config)
        config.pluginmanager.register(plugin, _PLUGIN_NAME)
    return plugin


class MembenchItem(pytest.Item):
    """One (method config, scenario, prompt): generate (or reuse) its images, score them.

    ``chunk`` names the prompts generated together in one call (whole batches); under xdist every
    item of a chunk goes to one worker (``xdist_group``)."""

    def __init__(self, *, method: "MethodSpec", role: str, prompt: "Prompt", chunk: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.method, self.role, self.prompt, self.chunk = method, role, prompt, chunk
        self.add_marker(pytest.mark.xdist_group(chunk))
        self.add_marker(pytest.mark.membench_item)

    def runtest(self) -> None:
        session = _session(self.config)
        result = session.result_for(self)
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
    """Holds the benchmark's items: (method config x scenario x prompt) from the evaluation plan."""

    def collect(self) -> list[pytest.Item]:
        session = _session(self.config)
        plan = session.plan()
        rootdir = Path(self.config.rootpath)
        items: list[pytest.Item] = []
        for method, role, prompt, chunk in chunked_items(plan, session.evaluation.settings):
            path = Path(method.path) if method.path else rootdir
            where = _relative(path, rootdir) if method.path else "membench"
            name = f"{method.label}[{role}-{prompt.prompt_id}]"
            items.append(MembenchItem.from_parent(self, name=name, path=path, nodeid=f"{where}::{name}",
                                                  method=method, role=role, prompt=prompt, chunk=chunk))
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
        self.worker_problems: list[str] = []
        self.failed_items = 0
        self._prefetched: dict[tuple[str, str, str], "PromptResult"] = {}
        self._ray_error: Exception | None = None  # --membench-engine ray: the cluster run's failure
        self.is_worker = hasattr(config, "workerinput")
        # `pytest --membench FILE` with no test paths runs the benchmark only, not the project's
        # tests. Decided by the controller (xdist workers always get explicit args) and sent along.
        if self.is_worker:
            self.benchmark_only = bool(config.workerinput.get(_ONLY_KEY, False))  # type: ignore[attr-defined]
        else:
            self.benchmark_only = config.args_source != pytest.Config.ArgsSource.ARGS

    @property
    def evaluation(self) -> "Evaluation":
        if self._evaluation is None:
            from membench_eval.evaluation import Evaluation

            self._evaluation = Evaluation(_options(self.config))
        return self._evaluation

    def result_for(self, item: MembenchItem) -> "PromptResult":
        """This item's result. The first item of a group generates the images of its whole group in
        full batches (one image per pipeline call would be several times slower): in a serial run
        the group is every selected prompt of the (method, scenario); under xdist it is the item's
        chunk, which the scheduler keeps on this worker. Pixels do not depend on the grouping (the
        engine pads every call to one shape)."""
        key = (item.method.label, item.role, item.prompt.prompt_id)
        if self._ray_error is not None:
            raise self._ray_error
        if key not in self._prefetched:
            siblings = [item]
            siblings += [i for i in item.session.items if isinstance(i, MembenchItem) and i is not item
                         and i.method.label == item.method.label and i.role == item.role
                         and (not self.is_worker or i.chunk == item.chunk)
                         and (i.method.label, i.role, i.prompt.prompt_id) not in self._prefetched]
            try:
                results = self.evaluation.evaluate_prompts(item.method, item.role, [i.prompt for i in siblings])
            except Exception:
                if len(siblings) == 1:
                    raise
                # One prompt's failure must fail only its own item: retry this one alone.
                results = self.evaluation.evaluate_prompts(item.method, item.role, [item.prompt])
                siblings = [item]
            for sib, res in zip(siblings, results):
                self._prefetched[(sib.method.label, sib.role, sib.prompt.prompt_id)] = res
        return self._prefetched.pop(key)

    def plan(self) -> "Plan":
        if self._plan is None:
            from membench_eval.errors import MembenchError, StoreError

            try:
                self._plan = self.evaluation.plan(
                    [str(p) for p in self.config.getoption("membench")], self.config.getoption("membench_param"))
            except StoreError as exc:
                pytest.exit(f"membench: {exc}", returncode=3)
            except MembenchError as exc:
                raise pytest.UsageError(f"membench: {exc}") from None
        return self._plan

    def problems(self) -> list[str]:
        """Damaged store entries this process found (quarantined and regenerated)."""
        ev = self._evaluation
        return list(ev.store.problems) if ev is not None and "store" in ev.__dict__ else []

    # --- collection ---------------------------------------------------------------------------

    def pytest_ignore_collect(self, collection_path: Path, config: pytest.Config) -> bool | None:
        return True if self.benchmark_only else None

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node: Any) -> None:
        node.workerinput[_ONLY_KEY] = self.benchmark_only

    def pytest_collection_modifyitems(self, session: pytest.Session, config: pytest.Config,
                                      items: list[pytest.Item]) -> None:
        self.plan()  # a bad method file or parameter is a usage error (one line), not a collection error
        # Through genitems so the items are reported as collected ("collected N items", -k, xdist).
        collector = MembenchCollector.from_parent(session, name="membench", path=Path(config.rootpath))
        items.extend(session.genitems(collector))

    # --- results from xdist workers -----------------------------------------------------------

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.is_worker:
            ev = self._evaluation
            used = ev is not None and "_quality" in ev.__dict__
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
        from membench_eval.gates import check_gates
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
        for line in self.worker_problems + self.problems():
            tr.write_line(f"membench: {line}", yellow=True)
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


def _relative(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return path.as_posix()


# --- session fixtures users can request -------------------------------------------------------


@pytest.fixture(scope="session")
def membench_evaluation(pytestconfig: pytest.Config) -> "Evaluation":
    """The run's Evaluation (options from the command line; mini suite by default)."""
    return _session(pytestconfig).evaluation


@pytest.fixture(scope="session")
def membench_pipeline(membench_evaluation: "Evaluation"):
    """The diffusers pipeline of the suite's model (loaded once per session)."""
    return membench_evaluation.pipeline


@pytest.fixture(scope="session")
def membench_sscd(membench_evaluation: "Evaluation"):
    """The SSCD model of the run's backend (``.embed(images) -> (n, d)`` L2-normalised)."""
    return membench_evaluation.sscd


@pytest.fixture(scope="session")
def membench_clip(membench_evaluation: "Evaluation"):
    """The CLIP scorer, or None when its weights are not available (reason: ``.unavailable``)."""
    return membench_evaluation.clip


@pytest.fixture(scope="session")
def membench_aesthetic(membench_evaluation: "Evaluation"):
    """The aesthetic scorer, or None when its weights are not available."""
    return membench_evaluation.aesthetic


@pytest.fixture(scope="session")
def membench_reference_embeddings(membench_evaluation: "Evaluation"):
    """``{memorized image id: SSCD embedding}`` of the suite's available reference images."""
    return membench_evaluation.reference_embeddings


@pytest.fixture(scope="session")
def membench_targets(membench_evaluation: "Evaluation"):
    """The suite's reference targets (sd1: Top-1 SSCD 0.088, CLIP 0.310; mini: none)."""
    return membench_evaluation.suite.targets


@pytest.fixture(scope="session")
def membench_reference(pytestconfig: pytest.Config) -> dict[str, list["PromptResult"]]:
    """The computed reference rows of this run (the leaderboard shows the same): ``{label: per-prompt
    results}`` for mini's local-gallery reference and a saved web image-search reference."""
    session = _session(pytestconfig)
    plan, ev = session.plan(), session.evaluation
    out: dict[str, list["PromptResult"]] = {}
    for m in plan.methods:
        if m.kind == "computed_reference":
            out[m.label] = [r for role, ps in plan.prompts.items() if ps and m.measures(role)
                            for r in ev.evaluate_prompts(m, role, ps)]
    return out
