"""Rich views of probe reports, message verdicts and rulebooks."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

__all__ = [
    "check_table",
    "compliance_table",
    "domains_summary",
    "message_view",
    "rulebook_list",
    "rulebook_table",
]

STYLE = {"pass": "green", "warn": "yellow", "fail": "bold red", "error": "magenta"}
MARK = {"pass": "✓ pass", "warn": "! warn", "fail": "✗ fail", "error": "? error"}


def _status(value: str) -> Text:
    return Text(MARK.get(value, value), style=STYLE.get(value, ""))


def _check_rows(table: Table, checks: Sequence[Any]) -> None:
    for check in checks:
        status = check.status.value
        text = Text(check.message)
        if check.fix:
            text.append("\nfix: ", style="dim").append(check.fix, style="cyan")
        table.add_row(_status(status), Text(check.id, style="bold"), text)


def check_table(report: Any) -> Table:
    """One domain's checks, in the order of the check groups (MX, SPF, DKIM, DMARC, …)."""
    counts = Counter(c.status.value for c in report.checks)
    summary = ", ".join(f"{counts[s]} {s}" for s in ("fail", "error", "warn", "pass") if counts[s])
    table = Table(
        title=f"{report.domain}: {summary or 'no checks'}",
        title_justify="left",
        show_lines=False,
        expand=False,
    )
    table.add_column("status", no_wrap=True)
    table.add_column("check", no_wrap=True)
    table.add_column("finding")
    _check_rows(table, report.checks)
    return table


def compliance_table(compliance: Mapping[str, Mapping[str, Any]]) -> Table:
    table = Table(title="provider rulebooks", title_justify="left")
    table.add_column("rulebook", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("requirements not met (the provider's answer)")
    for book, result in compliance.items():
        lines = Text()
        for detail in result.get("details", []):
            if detail.get("outcome") not in ("unmet", "error"):
                continue
            if lines:
                lines.append("\n")
            lines.append(str(detail.get("id")), style="bold")
            reply = detail.get("reply") or {}
            answer = " ".join(str(reply.get(k)) for k in ("code", "enhanced") if reply.get(k))
            if detail.get("outcome") == "error":
                lines.append("  could not be decided (a check could not be made)", style="dim")
            elif answer or reply.get("disposition"):
                lines.append(f"  {answer} {reply.get('disposition', '')}".rstrip(), style="dim")
        if not lines and result.get("failed"):
            lines.append(", ".join(result["failed"]))
        not_evaluated = result.get("not_evaluated") or []
        if not_evaluated:
            if lines:
                lines.append("\n")
            lines.append(f"not checked from DNS: {', '.join(not_evaluated)}", style="dim")
        table.add_row(book, _status(str(result.get("status"))), lines)
    return table


def domains_summary(reports: Sequence[Any]) -> Table:
    """Many domains: one row each with the failing and erroring checks."""
    table = Table(title=f"{len(reports)} domains", title_justify="left")
    table.add_column("domain", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("failed / could not check")
    table.add_column("rulebooks not met")
    for report in reports:
        bad = [c.id for c in report.checks if c.status.value in ("fail", "error")]
        books = [k for k, v in report.compliance.items() if v.get("status") in ("fail", "error")]
        table.add_row(
            report.domain,
            _status(report.status.value),
            ", ".join(dict.fromkeys(bad)),
            ", ".join(books),
        )
    return table


def message_view(console: Console, result: Any, compliance: Mapping[str, Any]) -> None:
    table = Table(title=f"message {result.subject or ''}".rstrip(), title_justify="left")
    table.add_column("status", no_wrap=True)
    table.add_column("check", no_wrap=True)
    table.add_column("finding")
    _check_rows(table, result.checks)
    console.print(table)
    if compliance:
        console.print(compliance_table(compliance))


def rulebook_list(books: Sequence[Any]) -> Table:
    table = Table(title="rulebooks", title_justify="left")
    for column in ("id", "provider", "effective", "requirements", "title"):
        table.add_column(column)
    for book in books:
        s = book.summary()
        table.add_row(
            s["id"],
            s["provider"],
            str(s.get("effective", "")),
            str(s.get("requirements", "")),
            s.get("title", ""),
        )
    return table


def rulebook_table(book: Any) -> Group:
    data = book.to_dict()
    table = Table(title_justify="left", show_lines=True)
    for column in ("requirement", "applies to", "checks", "when not met"):
        table.add_column(column)
    for req in data.get("requirements", []):
        checks = ", ".join(req.get("checks") or [])
        if req.get("any_of"):
            alts = " or ".join("(" + " and ".join(g) + ")" for g in req["any_of"])
            checks = f"{checks} and {alts}" if checks else alts
        if req.get("manual"):
            checks = (checks + " " if checks else "") + "[manual]"
        reply = req.get("reply") or {}
        answer = " ".join(str(reply[k]) for k in ("code", "enhanced") if reply.get(k))
        when = f"{answer} {reply.get('disposition', '')}\n{reply.get('text', '')}".strip()
        table.add_row(
            Text(f"{req['id']}\n", style="bold").append(req.get("title", ""), style=""),
            req.get("applies_to", ""),
            checks,
            when,
        )
    head = Text(
        f"{data.get('id')}: {data.get('title', '')} (effective {data.get('effective', '?')})",
        style="bold",
    )
    return Group(head, table)
