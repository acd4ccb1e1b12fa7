"""clock: the current date and time, in UTC or an IANA time zone.

Rule: read-only; the answer is a small dict the model can quote (ISO time, date, weekday, zone).
"""

from __future__ import annotations

from datetime import datetime, timezone as _tz

from llmasos.tools.registry import tool


def now(tz: str = "UTC") -> datetime:
    """The current time in tz (ValueError for an unknown zone)."""
    if tz.upper() in ("UTC", "Z", "GMT"):
        return datetime.now(_tz.utc)
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        zone = ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {tz!r}; use an IANA name such as 'Europe/Paris' or 'UTC'") from None
    return datetime.now(zone)


@tool(timeout=5.0)
def clock(timezone: str = "UTC") -> dict[str, str | int]:
    """Get the current date and time.

    Args:
        timezone: an IANA time zone such as "UTC" or "Europe/Paris"
    """
    t = now(timezone)
    return {
        "time": t.strftime("%H:%M:%S"), "date": t.date().isoformat(), "weekday": t.strftime("%A"),
        "timezone": timezone, "iso": t.isoformat(timespec="seconds"), "unix": int(t.timestamp()),
    }
