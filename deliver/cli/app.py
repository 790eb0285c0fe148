"""The ``sokures`` command line.

Exit codes: 0 ok, 1 a finding or failure the user must act on, 2 bad usage or bad
input (a one-line reason on stderr, never a traceback).
"""

from __future__ import annotations

import functools
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.text import Text

from deliver.cli.output import SendProgress, console, err_console, print_json, status_table
from deliver.errors import SokuresError
from deliver.settings import Settings, load_settings

__all__ = ["app", "main"]

F = TypeVar("F", bound=Callable[..., Any])

app = typer.Typer(
    name="sokures",
    help="Email deliverability: send DKIM-signed campaigns paced per mailbox provider, "
    "and see what reached whom.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
)
contacts_app = typer.Typer(help="Import and inspect contacts.", no_args_is_help=True)
campaign_app = typer.Typer(help="Create campaigns from templates.", no_args_is_help=True)
app.add_typer(contacts_app, name="contacts")
app.add_typer(campaign_app, name="campaign")

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def fail(message: str, code: int = 2) -> None:
    # a Text, not markup: user data in messages ("[b]", ":smile:") is shown as it is
    err_console.print(Text.assemble(("sokures: error: ", "red"), message), highlight=False)
    raise typer.Exit(code)


def handles_errors(fn: F) -> F:
    """Turn the project's errors into one line on stderr and the right exit code."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except SokuresError as exc:
            fail(str(exc), exc.exit_code)
        except KeyboardInterrupt:
            err_console.print("interrupted")
            raise typer.Exit(130) from None
        except (typer.Exit, typer.Abort):
            raise
        except Exception as exc:
            if os.environ.get("SOKURES_DEBUG"):
                raise
            # no traceback (it could carry row data); SOKURES_DEBUG=1 shows it
            first = str(exc).splitlines()[0][:300] if str(exc) else ""
            fail(
                f"internal error: {type(exc).__name__}: {first} "
                "(run with SOKURES_DEBUG=1 for the traceback)",
                1,
            )
        return None

    return wrapper  # type: ignore[return-value]


@app.callback()
def root(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            envvar="SOKURES_CONFIG",
            help="Settings file (default: ./sokures.toml).",
            show_default=False,
        ),
    ] = None,
    database_url: Annotated[
        str | None,
        typer.Option(
            "--database-url",
            envvar="SOKURES_DATABASE_URL",
            help="SQLAlchemy URL of the store (default: sqlite:///sokures.db).",
            show_default=False,
        ),
    ] = None,
) -> None:
    ctx.obj = {"config": config, "database_url": database_url}


def settings_from(ctx: typer.Context, **overrides: Any) -> Settings:
    obj = ctx.find_root().obj or {}
    return load_settings(
        obj.get("config"), overrides={"database.url": obj.get("database_url"), **overrides}
    )


def open_store(settings: Settings) -> Any:
    from deliver.store import Store

    return Store.open(settings.database_url)


# ------------------------------------------------------------------- init --
@app.command()
@handles_errors
def init(
    ctx: typer.Context,
    domain: Annotated[str, typer.Option("--domain", help="The domain you send from.")],
    selector: Annotated[
        str | None,
        typer.Option(
            "--selector",
            help="Selector prefix: keys get <prefix>r (RSA) and <prefix>e (Ed25519) "
            "(default: sk<YYYYMM>).",
            show_default=False,
        ),
    ] = None,
    rsa_selector: Annotated[str | None, typer.Option(help="Selector of the RSA-2048 key.")] = None,
    ed25519_selector: Annotated[
        str | None, typer.Option(help="Selector of the Ed25519 key.")
    ] = None,
    ip: Annotated[
        list[str] | None, typer.Option("--ip", help="A sending IP, for SPF (repeatable).")
    ] = None,
    force: Annotated[bool, typer.Option(help="Replace an existing sokures.toml and keys.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Write sokures.toml and DKIM keys (RSA-2048, Ed25519); print the DNS records to publish."""
    from deliver.domain_setup import dkim_selector_defaults, init_domain

    obj = ctx.find_root().obj or {}
    prefix = selector or dkim_selector_defaults()
    result = init_domain(
        domain,
        config_path=Path(obj.get("config") or "sokures.toml"),
        rsa_selector=rsa_selector or f"{prefix}r",
        ed25519_selector=ed25519_selector or f"{prefix}e",
        ips=tuple(ip or ()),
        force=force,
        database_url=obj.get("database_url"),
    )
    if json_out:
        print_json(
            {
                "config": str(result.config_path),
                "domain": result.domain,
                "keys": [
                    {"selector": s, "algorithm": a, "file": str(p)} for s, a, p in result.key_files
                ],
                "records": [r.as_dict() for r in result.records],
            }
        )
        return
    console.print(f"wrote [b]{result.config_path}[/b]")
    for s, a, p in result.key_files:
        console.print(f"wrote {a} key for selector [b]{s}[/b] to {p} (mode 0600)")
    console.print("\nPublish these DNS records:\n")
    for r in result.records:
        console.print(f"[dim]; {r.purpose}[/dim]", highlight=False)
        console.print(r.zone_line(), highlight=False, soft_wrap=True)


# --------------------------------------------------------------- contacts --
@contacts_app.command("import")
@handles_errors
def contacts_import(
    ctx: typer.Context,
    file: Annotated[
        Path, typer.Argument(help="CSV with a header: email, name, phone, locale, ...")
    ],
    list_name: Annotated[
        str, typer.Option("--list", help="List to add the contacts to.")
    ] = "default",
    region: Annotated[
        str | None,
        typer.Option(help="Country for phone numbers without +country code (ISO 3166, e.g. FR)."),
    ] = None,
    allow_test_domains: Annotated[
        bool | None,
        typer.Option(
            "--allow-test-domains",
            help="Accept addresses in the .test TLD (labs, benchmarks).",
            show_default=False,
        ),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Import contacts; bad rows are reported with their line number, the rest imported."""
    from rich.progress import DownloadColumn, Progress

    from deliver.contacts import BadRow, ContactImporter

    settings = settings_from(
        ctx, **{"contacts.region": region, "contacts.allow_test_domains": allow_test_domains}
    )
    store = open_store(settings)
    size = file.stat().st_size if file.exists() else 0
    shown = 0

    def on_bad(bad: BadRow) -> None:
        nonlocal shown
        shown += 1
        if shown <= 50 and not json_out:
            err_console.print(Text(f"{file}:{bad.line}: {bad.reason}"), highlight=False)

    progress = Progress(
        *Progress.get_default_columns(),
        DownloadColumn(),
        console=err_console,
        disable=json_out or not err_console.is_terminal,
        transient=True,
    )
    with progress:
        task = progress.add_task(f"importing {file.name}", total=size or None)
        report = ContactImporter(
            store.contacts,
            region=settings.contacts.region,
            test_domains=settings.contacts.allow_test_domains,
        ).run(
            file,
            list_name,
            progress=lambda done: progress.update(task, completed=done),
            on_bad=on_bad,
        )
    if json_out:
        print_json(report.as_dict())
    else:
        if report.bad_count > 50:
            err_console.print(f"... and {report.bad_count - 50:,} more bad rows")
        c = report.counts
        console.print(
            f"{report.rows:,} rows from {file}: {c.inserted:,} new, {c.updated:,} updated, "
            f"{c.duplicates:,} duplicates, {report.bad_count:,} bad; list "
            f"[b]{list_name}[/b] ({report.seconds:.1f} s)"
        )
    if report.bad_count:
        raise typer.Exit(2)


# --------------------------------------------------------------- campaign --
@campaign_app.command("create")
@handles_errors
def campaign_create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Campaign name (unique).")],
    template: Annotated[
        Path, typer.Option("--template", help="Jinja2 template: HTML or plain text.")
    ],
    sender: Annotated[str, typer.Option("--from", help='From address: "Name <addr>" or addr.')],
    subject: Annotated[str, typer.Option("--subject", help="Subject (may use {{ name }} etc.).")],
    list_name: Annotated[str, typer.Option("--list", help="Contact list to send to.")] = "default",
    json_out: JsonOpt = False,
) -> None:
    """Create a campaign and queue one message per contact of the list."""
    from deliver.campaigns import create_campaign

    settings = settings_from(ctx)
    store = open_store(settings)
    created = create_campaign(
        settings,
        store,
        name=name,
        template=template,
        sender=sender,
        subject=subject,
        list_name=list_name,
    )
    if json_out:
        print_json(created.as_dict())
        return
    for w in created.warnings:
        err_console.print(Text.assemble(("warning: ", "yellow"), w))
    d = created.as_dict()
    console.print(
        f"campaign [b]{name}[/b]: {d['queued']:,} messages queued, "
        f"{d['suppressed']:,} suppressed ({created.seconds:.1f} s)"
    )


# ------------------------------------------------------------------- send --
@app.command()
@handles_errors
def send(
    ctx: typer.Context,
    campaign: Annotated[str, typer.Argument(help="Campaign to send.")],
    relay: Annotated[
        str | None, typer.Option(help="Send through HOST:PORT instead of direct to MX.")
    ] = None,
    workers: Annotated[int, typer.Option(min=1, max=64, help="Worker processes.")] = 1,
    linger: Annotated[
        float | None,
        typer.Option(help="Keep running while a deferred message is due within this many seconds."),
    ] = None,
    port: Annotated[
        int | None, typer.Option(help="Destination port for direct delivery (labs).")
    ] = None,
    nameserver: Annotated[
        list[str] | None, typer.Option(help="DNS server HOST[:PORT] for MX lookups (repeatable).")
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Send a campaign: DKIM-signed, paced per provider, every attempt recorded."""
    from deliver.campaigns import campaign_status
    from deliver.send import SendRequest, run_send

    settings = settings_from(
        ctx, **{"smtp.port": port, "dns.nameservers": tuple(nameserver) if nameserver else None}
    )
    store = open_store(settings)
    before = campaign_status(store, campaign)
    pending = before["states"]["queued"] + before["states"]["deferred"]
    with SendProgress(campaign, pending, enabled=not json_out) as view:
        request = SendRequest(campaign, relay=relay, linger=linger, workers=workers)
        summary = run_send(settings, request, progress=view.update)
    after = campaign_status(store, campaign)
    for e in summary.worker_errors:
        err_console.print(Text(e, style="red"))
    if json_out:
        print_json(
            {
                **after,
                "seconds": round(summary.seconds, 3),
                "stopped": summary.stopped,
                "next_due": summary.next_due,
                "errors": summary.worker_errors,
            }
        )
    else:
        console.print(status_table(after))
        waiting = after["states"]["queued"] + after["states"]["deferred"]
        if waiting:
            when = (
                time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(summary.next_due))
                if summary.next_due
                else "later"
            )
            console.print(
                f"{waiting:,} messages wait for a retry (next due {when}): "
                f"run `sokures send {campaign}` again then."
            )
    if summary.worker_errors:
        raise typer.Exit(1)


@app.command()
@handles_errors
def status(
    ctx: typer.Context,
    campaign: Annotated[str, typer.Argument(help="Campaign name.")],
    json_out: JsonOpt = False,
) -> None:
    """Where a campaign's messages stand, per state and per provider."""
    from deliver.campaigns import campaign_status

    result = campaign_status(open_store(settings_from(ctx)), campaign)
    if json_out:
        print_json(result)
    else:
        console.print(status_table(result))


# ------------------------------------------------------------------- demo --
@app.command()
@handles_errors
def demo(
    contacts: Annotated[
        int, typer.Option(min=10, max=1_000_000, help="Contacts in the synthetic list.")
    ] = 5000,
    dashboard: Annotated[
        bool, typer.Option("--dashboard/--no-dashboard", help="Open the dashboard at the end.")
    ] = True,
    workdir: Annotated[Path, typer.Option(help="Where the demo keeps its files.")] = Path(
        "demo-run"
    ),
) -> None:
    """Run the whole pipeline on this machine against the local lab (loopback only)."""
    from lab.demo import DemoOptions, run_demo

    code = run_demo(DemoOptions(contacts=contacts, workdir=workdir, dashboard=dashboard), console)
    raise typer.Exit(code)


# the probe and lab commands live in their own modules; importing them registers them
from deliver.cli import lab_cmds as _lab_cmds  # noqa: E402,F401
from deliver.cli import placement_cmds as _placement_cmds  # noqa: E402,F401
from deliver.cli import probe_cmds as _probe_cmds  # noqa: E402,F401


def main() -> None:
    # a broken pipe (sokures status --json | head) is not an error worth a traceback
    try:
        app()
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(1)
