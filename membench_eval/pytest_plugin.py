"""pytest plugin: ``pytest --membench mitigations/my_method.py`` (registered via the pytest11 entry point).

Heavy imports (torch, diffusers, scorers) happen only when ``--membench`` is given.
"""

from __future__ import annotations


def pytest_addoption(parser) -> None:
    group = parser.getgroup("membench", "memorization-mitigation benchmark (membench-eval)")
    group.addoption("--membench", action="append", default=[], metavar="FILE",
                    help="mitigation file(s) to benchmark, e.g. mitigations/rna.py")
