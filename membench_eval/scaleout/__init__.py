"""Scale-out: the run's work split over many devices and machines, into one run store.

``units`` turns an evaluation plan into plain-data work units (no Ray, no torch: testable anywhere);
``ray_engine`` maps them over Ray actor pools (the optional ``ray`` extra, imported only there).
Per-worker devices under pytest-xdist live in ``membench_eval.runtime.device_for_worker``.
The ``--ray-address`` / ``--ray-actors`` options live in the option table (``membench_eval.evaluation.options``).
"""
