"""Waiting for a condition with a deadline, failing the test with what was last seen."""

from __future__ import annotations

import time
from typing import Any, Callable

import pytest


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.02):
    """Polls `predicate` until it returns something truthy (which is returned), or fails the
    test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except Exception as e:  # noqa: BLE001 - polled predicates may fail until ready
            last_error = e
        if time.monotonic() >= deadline:
            detail = f" (last error: {last_error!r})" if last_error else ""
            pytest.fail(f"timed out after {timeout:.1f}s waiting for {what}{detail}")
        time.sleep(interval)
