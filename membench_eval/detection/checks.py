"""What a detector returns, checked before anything is stored; errors name the detector and prompts.

A wrong score in the store would be reused silently by every later run and leaderboard, so the
runner accepts exactly one finite number per prompt (Python or numpy numbers, a 1-d array or
tensor) and JSON-serialisable per-prompt records, and turns any exception raised by the user's
code into a ``DetectorError`` carrying the traceback of the frames in the detector's own files.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from membench_eval.detector import DetectionRequest, Detector
from membench_eval.errors import DetectorError

SHOWN_IDS = 5


def prompt_ids_text(reqs: Sequence[DetectionRequest], indices: Sequence[int] | None = None) -> str:
    """``prompts 'a', 'b' and 3 more``: the ids an error is about (all of the batch by default)."""
    chosen = [reqs[i].prompt_id for i in (range(len(reqs)) if indices is None else indices)]
    shown = ", ".join(repr(p) for p in chosen[:SHOWN_IDS])
    more = f" and {len(chosen) - SHOWN_IDS} more" if len(chosen) > SHOWN_IDS else ""
    return f"prompt{'s' if len(chosen) != 1 else ''} {shown}{more}"


def detector_error(det: Detector, what: str, reqs: Sequence[DetectionRequest] = (),
                   indices: Sequence[int] | None = None) -> DetectorError:
    where = f" ({prompt_ids_text(reqs, indices)})" if reqs else ""
    return DetectorError(f"detector {det.label()!r}: {what}{where}")


def call_detector(det: Detector, hook: str, reqs: Sequence[DetectionRequest], fn: Callable[[], Any]) -> Any:
    """Run a detector's ``hook``; an exception becomes a DetectorError naming the detector, the hook
    and the batch's prompt ids, with the traceback of the user's own frames in ``details``."""
    from membench_eval.plugins.source import call_user_code

    return call_user_code(det, fn, lambda what: detector_error(det, f"{hook} {what}", reqs))


def _number(value: Any) -> float | None:
    """``value`` as a float when it is one number (Python, numpy, a one-element tensor)."""
    if value is None or isinstance(value, (bool, str, bytes)):
        return None
    if not isinstance(value, (int, float)) and hasattr(value, "item"):
        try:
            value = value.item()  # numpy scalar, 0-d array, one-element tensor; larger ones raise
        except (TypeError, ValueError, RuntimeError):
            return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def check_scores(det: Detector, reqs: Sequence[DetectionRequest], out: Any) -> list[float]:
    """Exactly one finite float per request, in request order."""
    if hasattr(out, "detach"):  # a torch tensor
        out = out.detach().cpu()
    if hasattr(out, "tolist") and not isinstance(out, (list, tuple)):
        shape = tuple(getattr(out, "shape", ()))
        if len(shape) != 1:
            raise detector_error(det, f"score returned an array of shape {shape}, expected one score per prompt "
                                 f"({len(reqs)})", reqs)
        out = out.tolist()
    if isinstance(out, (str, bytes, dict)) or not hasattr(out, "__len__") or not hasattr(out, "__iter__"):
        raise detector_error(det, f"score returned {type(out).__name__}, expected a list of {len(reqs)} floats", reqs)
    items = list(out)
    if len(items) != len(reqs):
        raise detector_error(det, f"score returned {len(items)} score(s) for {len(reqs)} prompt(s)", reqs)
    values = [_number(v) for v in items]
    bad_type = [i for i, v in enumerate(values) if v is None]
    if bad_type:
        kinds = sorted({type(items[i]).__name__ for i in bad_type})
        raise detector_error(det, f"score returned non-numbers ({', '.join(kinds)}), expected floats", reqs, bad_type)
    bad = [i for i, v in enumerate(values) if not math.isfinite(v)]  # type: ignore[arg-type]
    if bad:
        raise detector_error(det, "score returned NaN or infinite scores", reqs, bad)
    return values  # type: ignore[return-value]


def check_records(det: Detector, reqs: Sequence[DetectionRequest], records: Any) -> list[dict[str, Any]]:
    """``ctx.records``: one JSON-serialisable dict per request (what the store keeps with a score)."""
    from membench_eval.store.jsonl import dumps_line

    if not isinstance(records, list) or len(records) != len(reqs) or not all(isinstance(r, dict) for r in records):
        raise detector_error(det, f"ctx.records must stay a list of {len(reqs)} dicts (one per prompt)", reqs)
    for i, record in enumerate(records):
        try:
            dumps_line(record)
        except (TypeError, ValueError) as exc:
            raise detector_error(det, f"ctx.records entry is not JSON-serialisable ({exc})", reqs, [i]) from None
    return records
