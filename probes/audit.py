"""Audit domains: run every check module on each, evaluate the rulebooks, keep the order.

One :class:`~probes.checks.ProbeContext` (one resolver, one cache) serves the whole run, so
the records many domains share (an ESP's SPF include, the organisational domain's DMARC
record) are looked up once. Domains are audited concurrently within a sliding window and
come out in the order they went in.
"""

from __future__ import annotations

import asyncio
import importlib
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from deliver.dns import normalize_domain
from probes.catalog import CHECKS, GROUPS, group_of
from probes.checks import CheckResult, ProbeContext, Status, error, worst

__all__ = [
    "CHECK_MODULES",
    "DomainReport",
    "audit_domain",
    "audit_domains",
    "normalize_domain",
    "prepare",
]

#: check group -> module with ``async def audit(ctx, domain) -> list[CheckResult]``,
#: in the order their results are shown
CHECK_MODULES: Mapping[str, str] = {
    "mx": "probes.mx",
    "spf": "probes.spf",
    "dkim": "probes.dkim",
    "dmarc": "probes.dmarc",
    "ptr": "probes.ptr",
    "mta_sts": "probes.mta_sts",
    "tlsrpt": "probes.tlsrpt",
    "bimi": "probes.bimi",
    "dnsbl": "probes.dnsbl",
}

Audit = Callable[[ProbeContext, str], Awaitable[list[CheckResult]]]


#: (rulebooks, one audit's results) -> the compliance section, by rulebook id
Evaluator = Callable[[Sequence[Any], Sequence[CheckResult]], Mapping[str, Mapping[str, Any]]]


@dataclass(frozen=True, slots=True)
class DomainReport:
    domain: str
    checks: tuple[CheckResult, ...]
    compliance: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    checked_at: float = 0.0
    #: a domain name that could not be audited at all (bad syntax): the reason
    invalid: str | None = None

    @property
    def status(self) -> Status:
        return worst(self.checks)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "domain": self.domain,
            "status": self.status.value,
            "checks": [c.to_dict() for c in self.checks],
            "compliance": {k: dict(v) for k, v in self.compliance.items()},
        }
        return out


def _module_audit(group: str) -> Audit:
    module = importlib.import_module(CHECK_MODULES[group])
    return cast(Audit, module.audit)


def _crashed(group: str, exc: BaseException) -> CheckResult:
    """A check module raised: a bug, but one domain's bug must not end the run."""
    first = next(i for i in CHECKS if group_of(i) == group)
    return error(
        first,
        f"the {group} checks failed unexpectedly ({type(exc).__name__}: {exc}); "
        "please report this",
        group=group,
    )


async def audit_domain(
    ctx: ProbeContext,
    domain: str,
    rulebooks: Sequence[Any] = (),
    evaluate: Evaluator | None = None,
    *,
    audits: Mapping[str, Audit] | None = None,
) -> DomainReport:
    """Every check group not skipped, run concurrently; then each rulebook evaluated."""
    chosen = audits if audits is not None else load_audits(ctx.options.skip)
    outcomes = await asyncio.gather(
        *(run(ctx, domain) for run in chosen.values()), return_exceptions=True
    )
    checks: list[CheckResult] = []
    for group, outcome in zip(chosen, outcomes, strict=True):
        if isinstance(outcome, BaseException):
            if not isinstance(outcome, Exception):
                raise outcome
            checks.append(_crashed(group, outcome))
        else:
            checks.extend(outcome)
    compliance = evaluate(rulebooks, checks) if evaluate is not None and rulebooks else {}
    return DomainReport(domain, tuple(checks), compliance, time.time())


def load_audits(skip: Iterable[str] = ()) -> dict[str, Audit]:
    """The check groups to run (all but ``skip``), imported once per run."""
    skipped = set(skip)
    unknown = skipped - set(GROUPS)
    if unknown:
        raise ValueError(f"unknown check group(s): {', '.join(sorted(unknown))}")
    return {g: _module_audit(g) for g in CHECK_MODULES if g not in skipped}


def prepare(skip: Iterable[str] = ()) -> None:
    """Import the check modules and build their constant tables (the Public Suffix List)
    now: before forking workers, so that each does not do it again."""
    load_audits(skip)
    from probes.dmarc import organizational_domain

    organizational_domain("example.com")


async def audit_domains(
    ctx: ProbeContext,
    domains: Iterable[str],
    rulebooks: Sequence[Any] = (),
    evaluate: Evaluator | None = None,
    *,
    concurrency: int = 200,
) -> AsyncIterator[DomainReport]:
    """Audit ``domains`` with at most ``concurrency`` in progress; yield in input order."""
    audits = load_audits(ctx.options.skip)
    pending: deque[asyncio.Task[DomainReport]] = deque()
    source = iter(domains)
    exhausted = False
    while True:
        while not exhausted and len(pending) < concurrency:
            try:
                domain = next(source)
            except StopIteration:
                exhausted = True
                break
            pending.append(
                asyncio.ensure_future(
                    audit_domain(ctx, domain, rulebooks, evaluate, audits=audits)
                )
            )
        if not pending:
            return
        try:
            report = await pending[0]
        except BaseException:
            for task in pending:
                task.cancel()
            raise
        pending.popleft()
        yield report
