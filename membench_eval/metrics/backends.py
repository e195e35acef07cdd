"""The SSCD backend names, apart from the scorer so that validating a suite file does not load numpy.

``disc_large`` is MemBench's TorchScript SSCD model; ``disc_mixup_onnx`` the ONNX export. The
scorer (:mod:`membench_eval.metrics.sscd`) and the suite-file reader both check names against this.
"""

from __future__ import annotations

SSCD_BACKENDS: tuple[str, ...] = ("disc_large", "disc_mixup_onnx")
