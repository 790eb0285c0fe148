"""``sokures probe``, ``sokures check-message`` and ``sokures rules``.

The commands build one :class:`~probes.checks.ProbeContext` from the settings and flags,
run the probes, print a Rich view (or JSON lines with ``--json``), store the reports for the
dashboard, and exit 0 when everything passed or only warned, 1 when a check failed, could
not be made (``error``), or a rulebook is not met, 2 on bad usage or bad input.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer

from deliver.cli.app import JsonOpt, app, handles_errors, open_store, settings_from
from deliver.cli.output import console, err_console, print_json
from deliver.cli.probe_output import (
    check_table,
    compliance_table,
    domains_summary,
    message_view,
    rulebook_list,
    rulebook_table,
)
from deliver.cli.probe_run import (
    ProbeSetup,
    make_resolver,
    run_domains,
    stream_domains,
    workers_for,
)
from deliver.errors import ConfigError, InputError
from deliver.settings import Settings

__all__ = ["rules_app"]

rules_app = typer.Typer(
    help="Provider rulebooks: list, show and compare versions.", no_args_is_help=True
)
app.add_typer(rules_app, name="rules")

SelectorOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--selector", "-s", help="DKIM selector to check (repeatable).", show_default=False
    ),
]
IpOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--ip", help="A sending IP: PTR/FCrDNS, SPF result, DNSBL (repeatable).", show_default=False
    ),
]
NameserverOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--nameserver",
        "-n",
        help="Ask this DNS server (HOST[:PORT], repeatable) instead of the system's.",
        show_default=False,
    ),
]
RulebookOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--rulebook",
        "-r",
        help="Rulebook to check compliance with, e.g. "
        "gmail@latest or yahoo@2024-02 (repeatable; default: each provider's latest).",
        show_default=False,
    ),
]
SkipOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--skip",
        help="Leave out a check group: mx, spf, dkim, dmarc, ptr, mta_sts, "
        "tlsrpt, bimi, dnsbl (repeatable).",
        show_default=False,
    ),
]
BulkOpt = Annotated[
    bool,
    typer.Option(
        "--bulk/--not-bulk",
        help="Apply the bulk-sender requirements (over 5,000 messages a day to a provider).",
    ),
]


@dataclass
class DomainList:
    domains: list[str] = field(default_factory=list)
    #: (line number, reason) for lines that are not domain names
    bad: list[tuple[int, str]] = field(default_factory=list)


def read_domains(path: Path) -> DomainList:
    """Domains from a file (``-`` = stdin): one per line, ``#`` comments, blank lines skipped;
    a line that is not a domain is reported with its number, the others still audited."""
    from probes.audit import normalize_domain

    out = DomainList()
    seen: set[str] = set()
    try:
        if str(path) == "-":
            lines = sys.stdin.read().splitlines()
        else:
            lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text ({exc.reason})") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror}") from None
    for number, line in enumerate(lines, 1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        try:
            domain = normalize_domain(text)
        except ValueError as exc:
            out.bad.append((number, str(exc)))
            continue
        if domain not in seen:
            seen.add(domain)
            out.domains.append(domain)
    return out


def _selectors(
    settings: Settings, domain: str | None, given: Sequence[str], sample: Path | None
) -> tuple[str, ...]:
    selectors = list(given)
    if sample is not None:
        selectors += _sample_selectors(sample, domain)
    if not selectors and domain and domain == settings.sender.domain:
        selectors = [k.selector for k in settings.dkim_keys]
    return tuple(dict.fromkeys(selectors))


def _sample_selectors(sample: Path, domain: str | None) -> list[str]:
    """Selectors of the DKIM signatures in a sample message (for ``domain`` when given)."""
    from probes.dkim import parse_tag_list
    from probes.message import read_headers

    try:
        headers = read_headers(sample.read_bytes())
    except OSError as exc:
        raise InputError(f"{sample}: cannot read: {exc.strerror}") from None
    found = []
    for value in headers.all("DKIM-Signature"):
        try:
            tags = parse_tag_list(value)  # RFC 6376 §3.2; values keep no folding whitespace
        except ValueError:
            continue  # a broken signature names no usable selector
        d = "".join(tags.get("d", "").split()).lower().rstrip(".")
        s = "".join(tags.get("s", "").split())
        if s and (domain is None or d == domain):
            found.append(s)
    if not found:
        raise InputError(f"{sample}: no DKIM-Signature" + (f" for d={domain}" if domain else ""))
    return found


def _local_keys(settings: Settings, domain: str | None) -> dict[str, bytes]:
    if not domain or domain != settings.sender.domain:
        return {}
    from probes.dkim import public_key_bytes

    keys = {}
    for key in settings.dkim_keys:
        try:
            keys[key.selector] = public_key_bytes(key.key_file)[1]
        except (OSError, ValueError) as exc:
            # the key file's path only, never its contents
            raise ConfigError(
                f"DKIM key for selector {key.selector} ({key.key_file}): cannot load: {exc}"
            ) from None
    return keys


def probe_setup(
    settings: Settings,
    *,
    domain: str | None,
    selector: Sequence[str],
    ip: Sequence[str],
    nameserver: Sequence[str],
    rulebook: Sequence[str],
    skip: Sequence[str],
    sample: Path | None,
    bulk: bool,
) -> ProbeSetup:
    import ipaddress

    from probes.catalog import GROUPS
    from probes.checks import ProbeOptions
    from probes.rulebook import load_rulebook

    ips = []
    for value in [*ip] or list(settings.probes.sending_ips):
        try:
            ips.append(str(ipaddress.ip_address(value.strip())))
        except ValueError:
            raise InputError(f"--ip {value!r} is not an IP address") from None
    unknown = sorted(set(skip) - set(GROUPS))
    if unknown:
        raise InputError(
            f"--skip: unknown check group {unknown[0]!r} (groups: {', '.join(GROUPS)})"
        )
    options = ProbeOptions(
        selectors=_selectors(settings, domain, selector, sample),
        ips=tuple(ips),
        local_keys=_local_keys(settings, domain),
        dnsbl_ip_zones=settings.probes.dnsbl_ip_zones,
        dnsbl_domain_zones=settings.probes.dnsbl_domain_zones,
        skip=frozenset(skip),
    )
    # the rulebooks to judge each domain by (none: the checks only)
    books = [load_rulebook(r) for r in rulebook]
    nameservers = tuple(nameserver) or settings.dns.nameservers
    return ProbeSetup(settings, nameservers, options, books, bulk)


@app.command()
@handles_errors
def probe(
    ctx: typer.Context,
    domain: Annotated[
        str | None, typer.Argument(help="The domain to audit.", show_default=False)
    ] = None,
    from_file: Annotated[
        Path | None,
        typer.Option(
            "--from-file",
            "-f",
            help="Audit every domain in FILE (one per line; - for stdin).",
            show_default=False,
        ),
    ] = None,
    selector: SelectorOpt = None,
    ip: IpOpt = None,
    rulebook: RulebookOpt = None,
    nameserver: NameserverOpt = None,
    skip: SkipOpt = None,
    sample: Annotated[
        Path | None,
        typer.Option(
            "--sample",
            help="Take DKIM selectors from the signatures of this .eml file.",
            show_default=False,
        ),
    ] = None,
    bulk: BulkOpt = True,
    store: Annotated[
        bool, typer.Option("--store/--no-store", help="Keep the results in the store's history.")
    ] = True,
    workers: Annotated[
        int,
        typer.Option(
            "--workers",
            min=0,
            max=64,
            help="Processes auditing a --from-file list (0 = one per CPU for long lists).",
        ),
    ] = 0,
    json_out: JsonOpt = False,
) -> None:
    """Audit domains against what Gmail, Yahoo and Outlook require.

    Checks SPF, DKIM keys, DMARC, MX, PTR/FCrDNS, MTA-STS, TLS-RPT, BIMI and DNSBL
    listings, and each provider's rulebook."""
    if (domain is None) == (from_file is None):
        raise InputError("give a DOMAIN or --from-file FILE (one of the two)")
    if from_file is not None:
        listed = read_domains(from_file)
    else:
        from probes.audit import normalize_domain

        try:
            listed = DomainList([normalize_domain(domain or "")])
        except ValueError as exc:
            raise InputError(str(exc)) from None
    single = listed.domains[0] if domain is not None else None
    settings = settings_from(ctx)
    setup = probe_setup(
        settings,
        domain=single,
        selector=selector or (),
        ip=ip or (),
        nameserver=nameserver or (),
        rulebook=rulebook or settings.probes.rulebooks,
        skip=skip or (),
        sample=sample,
        bulk=bulk,
    )
    for number, reason in listed.bad:
        err_console.print(f"sokures: {from_file}:{number}: skipped: {reason}", highlight=False)
    count = workers_for(workers, len(listed.domains)) if single is None else 1

    def write(text: str) -> None:
        sys.stdout.write(text)

    summary = run_domains(
        setup,
        listed.domains,
        json_out=json_out,
        store=open_store(settings) if store else None,
        workers=count,
        keep_reports=not json_out,
        write=write,
    )
    sys.stdout.flush()
    reports, findings, elapsed = summary.reports, summary.findings, summary.elapsed
    if not json_out:
        if single is not None:
            report = reports[0]
            console.print(check_table(report))
            if report.compliance:
                console.print(compliance_table(report.compliance))
        else:
            console.print(domains_summary(reports))
    if single is None:
        rate = len(listed.domains) / elapsed if elapsed > 0 else 0.0
        err_console.print(
            f"audited {len(listed.domains):,} domains in {elapsed:.2f} s "
            f"({rate:,.1f}/s); {findings:,} need action",
            highlight=False,
        )
    if listed.bad:
        raise typer.Exit(2)
    raise typer.Exit(1 if findings else 0)


# ----------------------------------------------------------- check-message --
@app.command("check-message")
@handles_errors
def check_message(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="The received message (.eml, as delivered).")],
    ip: Annotated[
        str | None,
        typer.Option("--ip", help="The connecting client's IP (for SPF).", show_default=False),
    ] = None,
    helo: Annotated[
        str | None, typer.Option("--helo", help="The client's HELO/EHLO name.", show_default=False)
    ] = None,
    mail_from: Annotated[
        str | None,
        typer.Option(
            "--mail-from", help="The SMTP MAIL FROM (envelope sender).", show_default=False
        ),
    ] = None,
    nameserver: NameserverOpt = None,
    rulebook: RulebookOpt = None,
    bulk: Annotated[
        bool | None,
        typer.Option(
            "--bulk/--not-bulk",
            help="Treat as bulk mail (default: from its headers).",
            show_default=False,
        ),
    ] = None,
    store: Annotated[
        bool, typer.Option("--store/--no-store", help="Keep the verdict in the store's history.")
    ] = True,
    json_out: JsonOpt = False,
) -> None:
    """Authentication verdict for a received message (DKIM, SPF, DMARC, ARC).

    Also checks what the providers enforce on the message itself: one From, Message-ID,
    Date, RFC 5322 shape, one-click unsubscribe for bulk mail."""
    from probes.message import check_message as verify
    from probes.rulebook import evaluate, load_rulebook

    settings = settings_from(ctx)
    try:
        raw = sys.stdin.buffer.read() if str(file) == "-" else file.read_bytes()
    except OSError as exc:
        raise InputError(f"{file}: cannot read: {exc.strerror}") from None
    if not raw.strip():
        raise InputError(f"{file}: empty file")
    books = [load_rulebook(r) for r in (rulebook or settings.probes.rulebooks)]
    resolver = make_resolver(settings, tuple(nameserver or ()) or settings.dns.nameservers)
    result = asyncio.run(
        verify(resolver, raw, ip=ip, helo=helo, mail_from=mail_from, bulk=bulk)
    )
    is_bulk = result.bulk if bulk is None else bulk
    compliance = {b.id: dict(evaluate(b, result.checks, bulk=is_bulk).to_dict()) for b in books}
    data = {"file": str(file), **result.to_dict(), "compliance": compliance}
    if store:
        from deliver.store import StoredReport
        from probes.checks import worst

        s = open_store(settings)
        run = s.probes.start_run(
            "message", {"ip": ip, "helo": helo, "rulebooks": [b.id for b in books]}, time.time()
        )
        s.probes.add_reports(
            run,
            [
                StoredReport(
                    result.subject or str(file),
                    time.time(),
                    worst(result.checks).value,
                    compliance,
                    [c.to_dict() for c in result.checks],
                )
            ],
        )
        s.probes.finish_run(run, time.time())
    if json_out:
        print_json(data)
    else:
        message_view(console, result, compliance)
    bad = any(c.status.value in ("fail", "error") for c in result.checks)
    raise typer.Exit(1 if bad else 0)


# ------------------------------------------------------------------ rules --
@rules_app.command("list")
@handles_errors
def rules_list(json_out: JsonOpt = False) -> None:
    """The rulebooks shipped, per provider and version."""
    from probes.rulebook import available, load_rulebook

    books = [load_rulebook(ref.id) for ref in available()]
    if json_out:
        print_json([b.summary() for b in books])
    else:
        console.print(rulebook_list(books))


@rules_app.command("show")
@handles_errors
def rules_show(
    rulebook: Annotated[str, typer.Argument(help="Rulebook id, e.g. gmail@latest.")],
    json_out: JsonOpt = False,
) -> None:
    """A rulebook's requirements and the replies the provider gives when one is not met."""
    from probes.rulebook import load_rulebook

    book = load_rulebook(rulebook)
    if json_out:
        print_json(book.to_dict())
    else:
        console.print(rulebook_table(book))


@rules_app.command("diff")
@handles_errors
def rules_diff(
    ctx: typer.Context,
    old: Annotated[str, typer.Argument(help="The older rulebook, e.g. gmail@2024-02.")],
    new: Annotated[str, typer.Argument(help="The newer rulebook, e.g. gmail@2025-11.")],
    domains: Annotated[
        Path | None,
        typer.Option(
            "--domains",
            help="Probe the domains in FILE and list those the change breaks.",
            show_default=False,
        ),
    ] = None,
    selector: SelectorOpt = None,
    ip: IpOpt = None,
    nameserver: NameserverOpt = None,
    bulk: BulkOpt = True,
    json_out: JsonOpt = False,
) -> None:
    """What changed between two versions of a provider's rules, and with --domains, which
    of your domains now fail."""
    from probes.rulebook import affected, describe, diff, escalated, load_rulebook

    before, after = load_rulebook(old), load_rulebook(new)
    changes = diff(before, after)
    lines = describe(changes)
    broken: dict[str, list[str]] = {}
    harsher: dict[str, list[str]] = {}
    listed = DomainList()
    if domains is not None:
        listed = read_domains(domains)
        for number, reason in listed.bad:
            err_console.print(f"sokures: {domains}:{number}: skipped: {reason}", highlight=False)
        settings = settings_from(ctx)
        setup = probe_setup(
            settings,
            domain=None,
            selector=selector or (),
            ip=ip or (),
            nameserver=nameserver or (),
            rulebook=(),  # judged below, against both versions
            skip=(),
            sample=None,
            bulk=bulk,
        )
        results: dict[str, Any] = {}

        def keep(report: Any) -> None:
            results[report.domain] = report.checks

        asyncio.run(stream_domains(setup, listed.domains, keep))
        broken = affected(before, after, results, bulk=bulk)
        harsher = escalated(before, after, results, bulk=bulk)
    if json_out:
        print_json(
            {
                "old": before.id,
                "new": after.id,
                "changes": changes.to_dict(),
                **(
                    {"domains": len(listed.domains), "broken": broken, "escalated": harsher}
                    if domains is not None
                    else {}
                ),
            }
        )
    else:
        console.print(f"[b]{before.id}[/b] → [b]{after.id}[/b]")
        for line in lines or ["no change in requirements"]:
            console.print(f"  {line}", highlight=False)
        if domains is not None:
            console.print(
                f"\n{len(broken)} of {len(listed.domains)} domains met {before.id} "
                f"but not {after.id}"
            )
            for name, ids in broken.items():
                console.print(f"  {name}: {', '.join(ids)}", highlight=False)
            console.print(
                f"{len(harsher)} of {len(listed.domains)} domains failed both, and "
                f"{after.id} answers them more harshly (e.g. rejects, not defers)"
            )
            for name, ids in harsher.items():
                console.print(f"  {name}: {', '.join(ids)}", highlight=False)
    if listed.bad:
        raise typer.Exit(2)
    raise typer.Exit(1 if broken or harsher else 0)
