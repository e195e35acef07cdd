"""``pytest --membench FILE --membench-attack``: the adaptive attack inside a pytest benchmark run.

Registered by ``membench_eval.pytest_plugin`` when ``--membench-attack`` is given. It attacks base
and every configuration of the ``--membench`` files (``--membench-param``) on the plugin's suite,
store, seed and device (``attack.table.run_attack``, budget ``--membench-attack-budget``) in the
controller, before the benchmark items run, and writes ``<out>/<suite>.attack.md`` / ``.json`` and
the store's copy, so the leaderboard the plugin writes afterwards carries the "Adaptive attack"
section (``report.attack_section``). Under xdist it runs once, in the controller.
"""

from __future__ import annotations

from typing import Any

import pytest

PLUGIN_NAME = "membench-attack-session"


class AttackSession:
    def __init__(self, config: pytest.Config, options_factory: Any):
        self.config = config
        self._options = options_factory  # () -> EvalOptions, the plugin's own
        self.is_worker = hasattr(config, "workerinput")
        self.table: Any = None
        self.files: tuple[Any, ...] = ()

    @pytest.hookimpl(wrapper=True)
    def pytest_runtestloop(self, session: pytest.Session):  # noqa: ANN201
        if not self.is_worker and not self.config.option.collectonly:
            self.run()
        return (yield)

    def run(self) -> None:
        from membench_eval.attack.run import AttackOptions
        from membench_eval.attack.table import attack_methods, run_attack, write_table
        from membench_eval.errors import MembenchError
        from membench_eval.evaluation import Evaluation

        get = self.config.getoption
        try:
            ev = Evaluation(self._options(self.config))
            specs = attack_methods(ev, [str(p) for p in get("membench")], list(get("membench_param")))
            self.table = run_attack(ev, specs, AttackOptions(budget=get("membench_attack_budget")))
            self.files = write_table(self.table, ev.options.out_dir, ev.suite.result_key, ev.store.root)
        except MembenchError as exc:
            raise pytest.UsageError(f"membench attack: {exc}") from None

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.is_worker or self.table is None:
            return
        from membench_eval.attack.table import to_markdown

        terminalreporter.section(f"membench adaptive attack ({self.table.suite})")
        for line in to_markdown(self.table).splitlines():
            terminalreporter.write_line(line)
        for path in self.files:
            terminalreporter.write_line(f"wrote {path}")
