"""Values in settings and policies: durations ("90s", "5m", "4h", "5d"), rates
("100/s", "20/min", "3600/h", "1/day") and ``host:port`` addresses."""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["Rate", "parse_duration", "parse_host_port", "parse_rate"]

_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0}
_RATE_UNITS = {
    "s": 1.0,
    "sec": 1.0,
    "min": 60.0,
    "m": 60.0,
    "h": 3600.0,
    "hour": 3600.0,
    "d": 86400.0,
    "day": 86400.0,
}
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|min|m|h|d)?\s*$")
_RATE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*(\d+(?:\.\d+)?)?\s*([a-z]+)\s*$")


def parse_duration(value: str | int | float) -> float:
    """Seconds in ``value``: a number of seconds, or a number with a unit (ms s m min h d)."""
    if isinstance(value, bool):
        raise ValueError(f"not a duration: {value!r}")
    if isinstance(value, int | float):
        if value != value:  # NaN (TOML and float() accept "nan")
            raise ValueError(f"not a duration: {value!r}")
        if value < 0:
            raise ValueError(f"negative duration: {value!r}")
        return float(value)
    m = _DURATION_RE.match(value)
    if not m:
        raise ValueError(f"not a duration: {value!r} (use e.g. 30s, 5m, 4h, 5d)")
    return float(m.group(1)) * _DURATION_UNITS[m.group(2) or "s"]


@dataclass(frozen=True, slots=True)
class Rate:
    """``count`` events per ``per_seconds``; ``interval`` is the GCRA emission interval."""

    count: float
    per_seconds: float

    @property
    def per_second(self) -> float:
        return self.count / self.per_seconds

    @property
    def interval(self) -> float:
        """Seconds between two events at this rate."""
        return self.per_seconds / self.count

    def scaled(self, factor: float) -> Rate:
        return Rate(self.count * factor, self.per_seconds)

    def __str__(self) -> str:
        unit = {1.0: "s", 60.0: "min", 3600.0: "h", 86400.0: "day"}.get(self.per_seconds)
        count = f"{self.count:g}"
        return f"{count}/{unit}" if unit else f"{count}/{self.per_seconds:g}s"


def parse_rate(value: str) -> Rate:
    """Parse ``N/unit`` (unit: s, min, h, day; an optional multiplier as in ``10/5min``)."""
    m = _RATE_RE.match(value.lower()) if isinstance(value, str) else None
    if not m or m.group(3) not in _RATE_UNITS:
        raise ValueError(f"not a rate: {value!r} (use e.g. 100/s, 20/min, 3600/h, 1/day)")
    count = float(m.group(1))
    per = float(m.group(2) or 1) * _RATE_UNITS[m.group(3)]
    if count <= 0 or per <= 0:
        raise ValueError(f"rate must be positive: {value!r}")
    return Rate(count, per)


def parse_host_port(value: str, default_port: int) -> tuple[str, int]:
    """``host``, ``host:port``, ``[v6]:port`` or a bare IPv6 address."""
    value = value.strip()
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        port = rest.lstrip(":") or str(default_port)
    elif value.count(":") == 1:
        host, port = value.split(":")
    else:
        host, port = value, str(default_port)
    if not port.isdigit() or not host or not 0 < int(port) < 65536:
        raise ValueError(f"{value!r}: expected HOST or HOST:PORT")
    return host, int(port)
