"""Limits for fetching web images, checked when they are made.

A bad value (``retries=-1``, a zero timeout) fails here with one line naming the setting, before
any request, instead of marking reachable URLs dead mid-fetch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

from membench_eval.errors import MembenchError
from membench_eval.fetch.image_files import MAX_IMAGE_PIXELS


class FetchSettingsError(MembenchError, ValueError):
    """An invalid fetch setting (e.g. ``retries=-1``); one line naming the setting and the value."""

    def __init__(self, setting: str, value: object, requirement: str) -> None:
        self.setting, self.value, self.requirement = setting, value, requirement
        super().__init__(f"invalid {setting} {value!r}: must be {requirement}")


# setting -> (requirement, check). Timeouts must be finite and > 0: 0 or a negative value makes
# urllib3 raise ValueError mid-fetch, and inf would disable the very limit it sets.
_SETTING_RULES: dict[str, tuple[str, Callable[[object], bool]]] = {
    "connect_timeout_s": ("a finite number of seconds > 0", lambda v: _is_number(v) and 0 < v < math.inf),
    "read_timeout_s": ("a finite number of seconds > 0", lambda v: _is_number(v) and 0 < v < math.inf),
    "total_timeout_s": ("a finite number of seconds > 0", lambda v: _is_number(v) and 0 < v < math.inf),
    "backoff_s": ("a finite number of seconds >= 0", lambda v: _is_number(v) and 0 <= v < math.inf),
    "retries": ("an integer >= 0", lambda v: _is_int(v) and v >= 0),
    "workers": ("an integer >= 1", lambda v: _is_int(v) and v >= 1),
    "max_bytes": ("an integer >= 1", lambda v: _is_int(v) and v >= 1),
    "max_pixels": ("an integer >= 1", lambda v: _is_int(v) and v >= 1),
}


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def validate_fetch_settings(settings: "FetchSettings") -> None:
    """Raise :class:`FetchSettingsError` for the first invalid setting, so a bad value fails before
    any request instead of marking reachable URLs dead (``retries=-1`` made no attempt at all)."""
    for setting, (requirement, ok) in _SETTING_RULES.items():
        value = getattr(settings, setting)
        if not ok(value):
            raise FetchSettingsError(setting, value, requirement)


@dataclass(frozen=True)
class FetchSettings:
    """Limits for fetching web images; defaults suit the real MemBench URLs, tests shrink them.

    Checked on construction (:func:`validate_fetch_settings`), so an invalid value never reaches
    the network code.
    """

    connect_timeout_s: float = 10.0
    read_timeout_s: float = 30.0
    total_timeout_s: float = 120.0  # per URL, all attempts: a trickling server cannot hold a worker longer
    retries: int = 3  # extra attempts after the first, for timeouts / resets / 5xx / 429
    backoff_s: float = 1.0  # sleep backoff_s * 2**attempt between attempts
    max_bytes: int = 32 * 1024 * 1024
    max_pixels: int = MAX_IMAGE_PIXELS  # below PIL's decompression-bomb limit; local files share it
    workers: int = 8
    user_agent: str = "Mozilla/5.0 (compatible; membench-eval/0.1; reference image fetcher)"

    def __post_init__(self) -> None:
        validate_fetch_settings(self)
