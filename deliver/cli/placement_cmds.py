"""``sokures placement run|history``: seed-inbox placement (see :mod:`probes.placement`)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from deliver.cli.app import JsonOpt, app, handles_errors, open_store, settings_from
from deliver.cli.output import console, print_json

__all__ = ["placement_app"]

placement_app = typer.Typer(
    help="Seed-inbox placement: where a campaign lands (inbox, Promotions, spam, missing).",
    no_args_is_help=True,
)
app.add_typer(placement_app, name="placement")

_STYLE = {"inbox": "green", "promotions": "cyan", "spam": "red", "missing": "yellow",
          "error": "magenta"}  # fmt: skip


@placement_app.command("run")
@handles_errors
def placement_run(
    ctx: typer.Context,
    campaign: Annotated[str, typer.Argument(help="The campaign whose message is tested.")],
    seeds: Annotated[Path, typer.Option("--seeds", help="Seed list (TOML), e.g. "
                                        "seedlists/lab.toml.", show_default=False)],
    timeout: Annotated[float, typer.Option(min=1, help="Seconds to wait for the copies.")] = 300,
    interval: Annotated[float, typer.Option(min=0.1, help="Seconds between mailbox reads.")] = 2,
    store_results: Annotated[
        bool, typer.Option("--store/--no-store", help="Keep the run in the history.")
    ] = True,
    json_out: JsonOpt = False,
) -> None:
    """Send each seed a tokenised copy of the campaign's message, then find where each
    landed. Exit code 1 when a copy went to spam, is missing or could not be read."""
    from probes.placement import PlacementOptions, run_placement, summarize
    from probes.seedlist import load_seedlist

    settings = settings_from(ctx)
    lab = os.environ.get("SOKURES_LAB_DIR")
    seedlist = load_seedlist(seeds, lab_dir=Path(lab or "sokures-lab").resolve())
    secrets = [seed.secret() for seed in seedlist.seeds]  # all set before anything is sent
    store = open_store(settings)
    record = store.campaigns.get(campaign)
    placement_store = store.placement if store_results else None
    run_id = (
        placement_store.start_run(record.id, record.name, seedlist.name, timeout)
        if placement_store is not None else 0
    )  # fmt: skip
    options = PlacementOptions(timeout=timeout, interval=interval)
    progress = Progress(TextColumn("copies found"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), console=console, disable=json_out,
                        transient=True)  # fmt: skip
    with progress:
        task = progress.add_task("found", total=len(seedlist.seeds))
        try:
            results = asyncio.run(run_placement(
                settings, record, seedlist, secrets, options, run_id,
                on_found=lambda _r: progress.advance(task)))  # fmt: skip
        except BaseException:
            if placement_store is not None:
                placement_store.finish_run(run_id, {}, status="error")
            raise
    summary = summarize(results)
    if placement_store is not None:
        placement_store.add_results(run_id, [r.to_dict() for r in results])
        placement_store.finish_run(run_id, summary)
    out = {"campaign": record.name, "run_id": run_id or None, "seedlist": seedlist.name,
           "seeds": [r.to_dict() for r in results], "providers": summary}  # fmt: skip
    if json_out:
        print_json(out)
    else:
        _print_run(out)
    if any(r.placement in ("spam", "missing", "error") for r in results):
        raise typer.Exit(1)


@placement_app.command("history")
@handles_errors
def placement_history(
    ctx: typer.Context,
    campaign: Annotated[str | None, typer.Argument(help="Only this campaign's runs.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="Runs shown, newest first.")] = 20,
    json_out: JsonOpt = False,
) -> None:
    """Earlier placement runs, with their placement per provider."""
    runs = open_store(settings_from(ctx)).placement.history(campaign, limit)
    if json_out:
        print_json(runs)
        return
    table = Table(title="placement runs", title_justify="left")
    for column in ("run", "campaign", "seed list", "status", "provider", "inbox", "promotions",
                   "spam", "missing"):  # fmt: skip
        table.add_column(column)
    for run in runs:
        for provider, row in (run.get("summary") or {}).items():
            counts = (f"{row.get(p, 0)}/{row.get('seeds', 0)}"
                      for p in ("inbox", "promotions", "spam", "missing"))  # fmt: skip
            table.add_row(str(run["id"]), run["campaign_name"], run["seedlist"], run["status"],
                          provider, *counts)  # fmt: skip
    console.print(table)


def _print_run(out: dict[str, Any]) -> None:
    table = Table(title=f"seed placement of {out['campaign']} ({out['seedlist']})",
                  title_justify="left")  # fmt: skip
    table.add_column("seed", no_wrap=True)
    for column in ("provider", "placement", "folder", "arrived in", "detail"):
        table.add_column(column)
    for seed in out["seeds"]:
        style = _STYLE.get(seed["placement"], "")
        seconds = f"{seed['seconds']:.1f} s" if seed["seconds"] is not None else "·"
        table.add_row(seed["address"], seed["provider"], f"[{style}]{seed['placement']}[/]",
                      seed["folder"] or "·", seconds, seed["detail"] or "")  # fmt: skip
    console.print(table)
    rates = Table(title="placement per provider", title_justify="left")
    rates.add_column("provider")
    for column in ("seeds", "inbox", "promotions", "spam", "missing", "error"):
        rates.add_column(column, justify="right")
    for provider, row in out["providers"].items():
        rates.add_row(provider, str(row["seeds"]), *(
            f"{row['rates'][p]:.0%}" if row[p] else "·"
            for p in ("inbox", "promotions", "spam", "missing", "error")))  # fmt: skip
    console.print(rates)
