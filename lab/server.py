"""The lab as one background process (what ``sokures lab up`` starts)::

    python -m lab.server --dir DIR [--config sokures.toml] [--rulebook gmail@2024-02]
                         [--dns-port N] [--smtp-port N] [--imap-port N] [--sms-port N]
                         [--no-imap] [--no-sms] [--seeds FILE] [--bounce-delay SECONDS]

It starts the :class:`lab.world.LabWorld`, writes ``DIR/state.json`` (addresses, ports,
its pid) once everything listens, publishes the sender's records whenever the config file
appears or changes, and on SIGTERM or SIGINT stops everything, removes the state file and
exits 0. A start that fails writes one line to stderr and exits 1 (2 for bad arguments).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from deliver.errors import SokuresError
from lab.providers import PROVIDERS, parse_rulebook_choice, with_rulebooks
from lab.world import LabOptions, LabWorld

__all__ = ["lab_mailboxes", "main"]

SYNC_SECONDS = 0.5


def lab_mailboxes(seeds: Path | None, directory: Path) -> tuple[tuple[str, str], ...]:
    """The seed mailboxes of ``seeds`` (a seed list) that live in the lab: their address and
    provider, so the lab creates them (and their IMAP logins) up front."""
    if seeds is None:
        return ()
    from probes.seedlist import load_seedlist

    names = {p.name for p in PROVIDERS}
    found = load_seedlist(seeds, lab_dir=directory)
    return tuple((s.address, s.provider if s.provider in names else "others") for s in found.seeds)


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m lab.server", description=__doc__)
    parser.add_argument("--dir", type=Path, required=True)
    parser.add_argument("--config", type=Path)
    parser.add_argument("--rulebook", action="append", default=[])
    for name in ("dns", "smtp", "imap", "sms"):
        parser.add_argument(f"--{name}-port", type=int, default=0)
    parser.add_argument("--no-imap", action="store_true")
    parser.add_argument("--no-sms", action="store_true")
    parser.add_argument("--seeds", type=Path)
    parser.add_argument("--bounce-delay", type=float, default=5.0)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    try:
        choices = dict(parse_rulebook_choice(r) for r in args.rulebook)
        options = LabOptions(
            directory=args.dir, providers=with_rulebooks(choices), dns_port=args.dns_port,
            smtp_port=args.smtp_port, imap_port=args.imap_port, sms_port=args.sms_port,
            imap=not args.no_imap, sms=not args.no_sms,
            config=args.config.resolve() if args.config else None,
            mailboxes=lab_mailboxes(args.seeds, args.dir.resolve()),
            bounce_delay=args.bounce_delay,
        )  # fmt: skip
        world = LabWorld(options).start()
    except (SokuresError, OSError, RuntimeError) as exc:
        print(f"lab: cannot start: {exc}", file=sys.stderr)
        return 1
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    state_path = world.directory / "state.json"
    try:
        _write_state(world, state_path)
        print(f"ready {world.nameserver} smtp {world.smtp_port}", flush=True)
        while not stop.wait(SYNC_SECONDS):
            if world.sync_sender():
                _write_state(world, state_path)
                print(f"published the records of {world.sender_domain}", flush=True)
    finally:
        state_path.unlink(missing_ok=True)
        world.stop()
    return 0


def _write_state(world: LabWorld, path: Path) -> None:
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(world.state(), indent=2) + "\n", encoding="utf-8")
    os.replace(temporary, path)


if __name__ == "__main__":
    sys.exit(main())
