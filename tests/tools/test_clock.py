"""clock: the current time."""

from __future__ import annotations

import time

import pytest

from llmasos.tools.builtin.clock import clock


def test_utc_now() -> None:
    out = clock()
    assert abs(out["unix"] - time.time()) < 5
    assert out["timezone"] == "UTC" and len(out["date"]) == 10


def test_named_zone_and_unknown_zone() -> None:
    assert clock("Europe/Paris")["iso"].endswith(("+01:00", "+02:00"))
    with pytest.raises(ValueError, match="unknown time zone"):
        clock("Mars/Olympus")
