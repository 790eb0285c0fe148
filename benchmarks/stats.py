"""Figures as series of per-round values: medians, spreads, paired ratios."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["BenchResult", "Row", "Series", "ratios"]


@dataclass(frozen=True)
class Series:
    """One figure's value in every round (``unit`` is appended when shown)."""

    values: tuple[float, ...]
    unit: str = ""
    digits: int = 0

    @classmethod
    def of(cls, values: Sequence[float], unit: str = "", digits: int = 0) -> Series:
        return cls(tuple(float(v) for v in values), unit, digits)

    @property
    def median(self) -> float:
        return statistics.median(self.values) if self.values else float("nan")

    def _num(self, v: float) -> str:
        return f"{v:,.{self.digits}f}"

    def show(self) -> str:
        """``810 msg/s``: the median (over rounds) with its unit."""
        if not self.values:
            return "-"
        return f"{self._num(self.median)}{self.unit}"

    def spread(self) -> str:
        """``790–830`` (min–max over rounds), empty for a single round."""
        if len(self.values) < 2:
            return ""
        return f"{self._num(min(self.values))}–{self._num(max(self.values))}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "values": list(self.values),
            "median": self.median if self.values else None,
            "min": min(self.values) if self.values else None,
            "max": max(self.values) if self.values else None,
            "unit": self.unit.strip(),
        }


def ratios(ours: Sequence[float], peer: Sequence[float], digits: int = 2) -> Series:
    """Round-by-round ratios (both ran in the same round, under the same noise)."""
    return Series.of([a / b for a, b in zip(ours, peer, strict=True) if b], "", digits)


@dataclass(frozen=True)
class Row:
    """One line of the summary table."""

    benchmark: str
    figure: str
    ours: Series
    peer: Series | None = None
    ratio: Series | None = None
    target: str = ""
    #: None when the figure has no pass/fail (a reference value)
    passed: bool | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "benchmark": self.benchmark,
            "figure": self.figure,
            "ours": self.ours.as_dict(),
            "peer": self.peer.as_dict() if self.peer else None,
            "ratio": self.ratio.as_dict() if self.ratio else None,
            "target": self.target,
            "passed": self.passed,
        }


@dataclass
class BenchResult:
    """What a benchmark hands back: summary rows, every round's raw numbers, notes."""

    rows: list[Row] = field(default_factory=list)
    rounds: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    setup: dict[str, Any] = field(default_factory=dict)
