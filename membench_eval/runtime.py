"""Device and dtype choice, made in one place for generation and every scorer."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import torch

Purpose = Literal["generation", "scoring"]


def select_device(device: str | None = None) -> "torch.device":
    """``None`` or ``"auto"`` picks cuda when available, else cpu."""
    import torch

    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {device!r} requested but CUDA is not available on this machine")
    return dev


def select_dtype(device: "torch.device", purpose: Purpose = "generation") -> "torch.dtype":
    """fp32 on CPU; on CUDA bf16 for generation, fp16 for CLIP-style scorers (both numerically
    safe there: scores are cosines of L2-normalised embeddings, computed in fp32 at the end)."""
    import torch

    if device.type != "cuda":
        return torch.float32
    return torch.bfloat16 if purpose == "generation" else torch.float16


# Requests that leave the CUDA device to the harness: under pytest-xdist they are spread over the
# visible devices; an explicit index ("cuda:1") or "cpu" is kept as given.
_SPREADABLE = (None, "auto", "cuda")


def xdist_worker_index(worker_id: str | None) -> int | None:
    """``"gw3"`` -> 3 (pytest-xdist's worker ids); None outside a worker or for another id."""
    if not worker_id or not worker_id.startswith("gw") or not worker_id[2:].isdigit():
        return None
    return int(worker_id[2:])


def visible_cuda_count() -> int:
    """CUDA devices this process may use: torch's count, which honours ``CUDA_VISIBLE_DEVICES``
    (``cuda:k`` is the k-th visible device). A ``CUDA_VISIBLE_DEVICES`` that hides every device
    ("", "-1") answers 0 without importing torch."""
    import os

    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None and (not env.strip() or env.split(",")[0].strip().startswith("-")):
        return 0
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def spread_device(requested: str | None, worker: int | None, cuda_count: int) -> str | None:
    """The device of xdist worker ``worker`` (the rule, pure): ``cuda:(worker mod cuda_count)`` when
    the request leaves the device open (None, "auto", "cuda") and CUDA devices are visible, else
    ``requested`` unchanged (serial runs, CPU machines, "cpu", an explicit "cuda:1")."""
    if worker is None or cuda_count < 1 or requested not in _SPREADABLE:
        return requested
    return f"cuda:{worker % cuda_count}"


def device_for_worker(requested: str | None, worker_id: str | None) -> str | None:
    """``spread_device`` for the xdist worker ``worker_id`` (None: not a worker, nothing changes).
    Why: without it every worker of ``pytest -n 8`` loads its pipeline onto cuda:0."""
    worker = xdist_worker_index(worker_id)
    if worker is None or requested not in _SPREADABLE:
        return requested  # nothing to spread: no torch import
    return spread_device(requested, worker, visible_cuda_count())


CPU_THREADS_ENV = "MEMBENCH_CPU_THREADS"


def generation_cpu_threads() -> int:
    """torch threads for CPU generation: 1, or ``$MEMBENCH_CPU_THREADS``.

    Why one fixed value: CPU pixels depend on the thread count, and torch's default differs between
    a serial run (the cores) and an xdist worker or Ray actor, so the same benchmark gave different
    images (and last digits) depending on how it was scheduled. Parallelism comes from workers.
    A count other than 1 is in every image key it makes (``compute: {cpu_threads: N}``)."""
    import os

    from membench_eval.errors import MembenchError

    raw = os.environ.get(CPU_THREADS_ENV, "").strip()
    if not raw:
        return 1
    if not raw.isdigit() or int(raw) < 1:
        raise MembenchError(f"${CPU_THREADS_ENV}={raw!r}: expected a positive whole number of threads")
    return int(raw)


def use_generation_cpu_threads() -> int:
    """Set torch's intra-op thread count to :func:`generation_cpu_threads`; returns it."""
    import torch

    threads = generation_cpu_threads()
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return threads
