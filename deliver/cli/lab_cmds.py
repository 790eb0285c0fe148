"""``sokures lab up|down|status|env``: the local lab on loopback (see :mod:`lab.control`)."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from deliver.cli.app import JsonOpt, app, handles_errors
from deliver.cli.output import console, print_json

__all__ = ["lab_app"]

lab_app = typer.Typer(
    help="The local lab: DNS, Gmail/Yahoo/Outlook stand-ins, IMAP mailboxes and an SMS "
    "gateway, all on loopback.",
    no_args_is_help=True,
)
app.add_typer(lab_app, name="lab")

DirOpt = Annotated[
    Path | None,
    typer.Option("--dir", help="The lab's files (default: $SOKURES_LAB_DIR or ./sokures-lab).",
                 show_default=False),
]  # fmt: skip


@lab_app.command("up")
@handles_errors
def lab_up_cmd(
    ctx: typer.Context,
    directory: DirOpt = None,
    rulebook: Annotated[
        list[str] | None,
        typer.Option(
            "--rulebook",
            "-r",
            help="Another rulebook version for a provider, e.g. gmail@2024-02 (repeatable).",
            show_default=False,
        ),
    ] = None,
    port: Annotated[
        list[str] | None,
        typer.Option(
            "--port",
            help="NAME=PORT for dns, smtp, imap or sms (0: a free port).",
            show_default=False,
        ),
    ] = None,
    imap: Annotated[
        bool, typer.Option("--imap/--no-imap", help="Serve the mailboxes over IMAP (Dovecot).")
    ] = True,
    seeds: Annotated[
        Path | None,
        typer.Option(
            help="Seed list whose mailboxes the lab creates (default: seedlists/lab.toml).",
            show_default=False,
        ),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Start the lab in the background (it keeps running until `sokures lab down`)."""
    from lab.control import DEFAULT_SEEDS, LabUp, lab_dir, lab_up, parse_ports
    from lab.providers import parse_rulebook_choice

    for choice in rulebook or ():
        parse_rulebook_choice(choice)
    root = ctx.find_root().obj or {}
    config = Path(root.get("config") or "sokures.toml")
    up = LabUp(lab_dir(directory), config=config, rulebooks=tuple(rulebook or ()),
               ports=tuple(parse_ports(port or ()).items()), imap=imap,
               seeds=seeds or DEFAULT_SEEDS)  # fmt: skip
    state, started = lab_up(up)
    if json_out:
        print_json({**state, "started_now": started})
        return
    console.print(("the lab is up" if started else "the lab was already running")
                  + f" (pid {state['pid']}, files in {state['directory']})")  # fmt: skip
    _print_state(state)
    console.print("point sokures at it: [b]eval \"$(sokures lab env)\"[/b]; stop it: "
                  "[b]sokures lab down[/b]")  # fmt: skip


@lab_app.command("down")
@handles_errors
def lab_down_cmd(directory: DirOpt = None) -> None:
    """Stop the lab (its mailboxes and journal stay in its directory)."""
    from lab.control import lab_dir, lab_down

    where = lab_dir(directory)
    console.print("the lab is stopped" if lab_down(where) else f"no lab runs in {where}")


@lab_app.command("status")
@handles_errors
def lab_status_cmd(directory: DirOpt = None, json_out: JsonOpt = False) -> None:
    """Whether the lab runs, where, and what its providers did with the mail so far.

    Exit code 1 when no lab runs."""
    from lab.control import lab_dir, lab_status

    status = lab_status(lab_dir(directory))
    if json_out:
        print_json(status)
    else:
        if status["running"]:
            console.print(f"the lab runs (pid {status['pid']}), files in {status['directory']}")
            _print_state(status)
        else:
            console.print(f"no lab runs in {status['directory']}")
        _print_seen(status["providers_seen"], status.get("sms"))
    if not status["running"]:
        raise typer.Exit(1)


@lab_app.command("env")
@handles_errors
def lab_env_cmd(directory: DirOpt = None) -> None:
    """Shell lines that point sokures at the running lab: eval "$(sokures lab env)"."""
    from deliver.errors import ConfigError
    from lab.control import lab_dir, running_state
    from lab.world import lab_environment

    state = running_state(lab_dir(directory))
    if state is None:
        raise ConfigError("no lab runs: start it with `sokures lab up`")
    for name, value in lab_environment(state).items():
        print(f"export {name}={shlex.quote(value)}")


def _print_state(state: dict[str, Any]) -> None:
    table = Table(title="lab providers", title_justify="left")
    for column in ("provider", "address", "MX host", "rulebook", "domains"):
        table.add_column(column)
    for p in state["providers"]:
        table.add_row(p["name"], p["address"], p["mx_host"], p["rulebook"] or "·",
                      ", ".join(p["domains"]))  # fmt: skip
    console.print(table)
    imap = f"IMAP port {state['imap_port']}" if state.get("imap_port") else "no IMAP (Maildir only)"
    console.print(f"DNS {state['nameserver']}; SMTP port {state['smtp_port']}; {imap}; "
                  f"SMS {state.get('sms_url') or 'off'}; sender domain "
                  f"{state.get('sender_domain') or '(none yet: run sokures init)'}")  # fmt: skip


def _print_seen(seen: dict[str, dict[str, int]], sms: dict[str, int] | None) -> None:
    if not seen and not sms:
        return
    columns = {"inbox": "inbox", "promotions": "promo", "spam": "spam", "dropped": "dropped",
               "bounced_later": "DSN later", "rejected": "5xx", "tempfailed": "4xx",
               "throttled": "throttled", "unknown": "no user", "full": "full"}  # fmt: skip
    table = Table(title="what the lab providers did (copies per recipient; 5xx and 4xx: "
                  "refused by the rulebook)", title_justify="left")  # fmt: skip
    table.add_column("provider", no_wrap=True)
    for label in columns.values():
        table.add_column(label, justify="right")
    for name, counts in seen.items():
        table.add_row(name, *(f"{counts.get(c, 0):,}" if counts.get(c) else "·" for c in columns))
    console.print(table)
    if sms:
        console.print("SMS: " + ", ".join(f"{status} {n}" for status, n in sms.items()))
