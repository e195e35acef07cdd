"""Scale-out: the run's work split over many devices and machines, into one run store.

``units`` turns an evaluation plan into plain-data work units (no Ray, no torch: testable anywhere);
``ray_engine`` maps them over Ray actor pools (the optional ``ray`` extra, imported only there).
Per-worker devices under pytest-xdist live in ``membench_eval.runtime.device_for_worker``.
No imports here: both shells (CLI, pytest plugin) read the option help below at start-up.
"""

RAY_ADDRESS_HELP = "Ray cluster to join (auto, ray://head:10001); default: start a local one"
RAY_ACTORS_HELP = "Ray actors per stage (default: one per GPU of the cluster, else one per CPU)"
