"""Console output shared by the commands: JSON, tables, errors, the send progress view."""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

__all__ = ["SendProgress", "console", "err_console", "print_json", "status_table"]

# soft_wrap: lines piped to a file or a log stay whole instead of folding at 80 columns
console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, ensure_ascii=False, sort_keys=False) + "\n")
    sys.stdout.flush()


def status_table(status: dict[str, Any]) -> Table:
    states = list(status["states"])
    table = Table(title=f"campaign {status['campaign']}: {status['total']} messages")
    table.add_column("provider")
    for s in states:
        table.add_column(s, justify="right")
    for provider, counts in status["providers"].items():
        table.add_row(provider, *(_n(counts.get(s, 0)) for s in states))
    table.add_row("[b]total[/b]", *(f"[b]{_n(status['states'][s])}[/b]" for s in states))
    return table


def _n(value: int) -> str:
    return f"{value:,}" if value else "·"


class SendProgress:
    """A live view of a send: a progress bar over the campaign, and per provider the
    delivered, deferred, bounced counts, the current rate and the rules in force."""

    COLUMNS = ("delivered", "deferred", "bounced", "expired", "suppressed")

    def __init__(self, campaign: str, total_pending: int, *, enabled: bool = True) -> None:
        self.enabled = enabled and err_console.is_terminal
        self.total = max(total_pending, 1)
        self.progress = Progress(
            TextColumn(f"sending [b]{campaign}[/b]"),
            BarColumn(),
            TaskProgressColumn(),
            TextColumn("{task.completed:,}/{task.total:,}"),
            TimeElapsedColumn(),
            console=err_console,
        )
        self.task = self.progress.add_task("send", total=self.total)
        self.live = Live(console=err_console, refresh_per_second=4, transient=False)
        self._history: list[tuple[float, int]] = []

    def __enter__(self) -> SendProgress:
        if self.enabled:
            self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            self.live.__exit__(None, None, None)

    def update(self, snap: dict[str, Any]) -> None:
        if not self.enabled:
            return
        counts: dict[str, dict[str, int]] = snap.get("counts", {})
        finished = sum(
            c.get(s, 0)
            for c in counts.values()
            for s in ("delivered", "bounced", "expired", "suppressed")
        )
        attempts = sum(sum(c.values()) for c in counts.values())
        self.progress.update(self.task, completed=min(finished, self.total))
        now = time.monotonic()
        self._history = [(t, n) for t, n in self._history if now - t <= 5.0] + [(now, attempts)]
        span = now - self._history[0][0]
        rate = (attempts - self._history[0][1]) / span if span > 0.5 else 0.0
        table = Table(box=None, padding=(0, 2))
        table.add_column("provider")
        for column in self.COLUMNS:
            table.add_column(column, justify="right")
        table.add_column("rules in force")
        rules = snap.get("rules", {})
        for provider, c in sorted(counts.items()):
            table.add_row(
                provider,
                *(f"{c.get(k, 0):,}" for k in self.COLUMNS),
                ", ".join(rules.get(provider, [])) or "·",
            )
        footer = f"[dim]{rate:,.0f} attempts/s over the last 5 s"
        if snap.get("postponed"):
            footer += f"; {snap['postponed']:,} held back by shaping"
        self.live.update(Group(self.progress.get_renderable(), table, footer + "[/dim]"))
