"""A throwaway sokures installation in a temp dir, driven through the ``sokures`` CLI
exactly as an operator would: init, shaping override, contacts, template, campaign."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

from benchmarks.common import VENV_BIN
from benchmarks.procs import Processes
from deliver.dkim import dns_record, load_private_key
from deliver.settings import load_settings

__all__ = ["DOMAIN", "SHAPING_OVERRIDE", "TEMPLATE", "Workspace", "write_contacts"]

DOMAIN = "example.com"
SENDER = "News <news@example.com>"
SUBJECT = "The weekly news for {{ name }}"
#: Postfix has no per-destination limits by default; the shipped shaping has 100/s and
#: 10 connections per destination, so the benchmarks lift them (and say so)
SHAPING_OVERRIDE = '[default]\nmax_message_rate = "100000/s"\nconnection_limit = 20\n'
_STORY = (
    "<h2>Story {{{{ {i} }}}}: what happened this week</h2>\n"
    "<p>Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor "
    "incididunt ut labore et dolore magna aliqua. Ut enim ad minim veniam, quis nostrud "
    "exercitation ullamco laboris nisi ut aliquip ex ea commodo consequat. "
    '<a href="https://example.com/news/{i}?c={{{{ campaign.id }}}}">Read more</a></p>\n'
)
#: an HTML newsletter; with its derived text part and the headers, about 4 KB a message
TEMPLATE = (
    "<html><body>\n<h1>Hello {{ name }}</h1>\n"
    "<p>This is the weekly letter of Example Corp: what happened in our corner of the "
    "world, with links to read more.</p>\n"
    + "".join(_STORY.format(i=i) for i in range(1, 5))
    + '<p>You receive this at {{ email }}. <a href="{{ unsubscribe_url }}">Unsubscribe</a>'
    "</p>\n</body></html>\n"
)


def write_contacts(path: Path, n: int) -> int:
    """``rcptN@destK.test`` for K in 1..4 (the peer's four destinations), streamed."""
    with path.open("w", encoding="ascii", buffering=1 << 20) as fh:
        fh.write("email,name\n")
        for i in range(n):
            fh.write(f"rcpt{i}@dest{i % 4 + 1}.test,Person {i}\n")
    return path.stat().st_size


class CliError(RuntimeError):
    """A sokures command failed: the message has the command and its stderr tail."""


class Workspace:
    def __init__(self, directory: Path, procs: Processes) -> None:
        self.dir = directory
        self.procs = procs
        self.logs = directory / "logs"
        self.logs.mkdir(exist_ok=True)
        self._n = 0

    @property
    def db_path(self) -> Path:
        return self.dir / "sokures.db"

    def argv(self, *args: str) -> list[str]:
        return [str(VENV_BIN / "sokures"), *args]

    def start(self, *args: str) -> tuple[subprocess.Popen[bytes], Path]:
        """Start ``sokures ARGS`` in the workspace; returns it and its log file stem."""
        self._n += 1
        stem = self.logs / f"{self._n:02d}-{args[0]}"
        env = {**os.environ, "PATH": f"{VENV_BIN}:{os.environ.get('PATH', '')}"}
        with stem.with_suffix(".out").open("wb") as out, stem.with_suffix(".err").open("wb") as err:
            proc = self.procs.start(self.argv(*args), stdout=out, stderr=err, cwd=self.dir, env=env)
        return proc, stem

    def check(self, proc: subprocess.Popen[bytes], stem: Path, args: tuple[str, ...]) -> str:
        out = stem.with_suffix(".out").read_text(errors="replace")
        if proc.returncode != 0:
            err = stem.with_suffix(".err").read_text(errors="replace").strip()[-800:]
            raise CliError(f"`sokures {' '.join(args)}` exited {proc.returncode}: {err}")
        return out

    def run(self, *args: str, timeout: float) -> str:
        proc, stem = self.start(*args)
        self.procs.wait(proc, timeout, f"sokures {args[0]}")
        return self.check(proc, stem, args)

    def setup(self, contacts: Path | None = None) -> None:
        """init, the shaping override, the template (and import ``contacts`` if given)."""
        self.run("init", "--domain", DOMAIN, "--selector", "bench", timeout=60)
        (self.dir / "shaping-bench.toml").write_text(SHAPING_OVERRIDE)
        with (self.dir / "sokures.toml").open("a") as fh:
            fh.write('\n[shaping]\nfile = "shaping-bench.toml"\n')
        (self.dir / "news.html").write_text(TEMPLATE)
        if contacts is not None:
            self.run("contacts", "import", str(contacts), "--allow-test-domains", timeout=600)

    def create_args(self, name: str) -> tuple[str, ...]:
        return (
            "campaign", "create", name, "--template", "news.html",
            "--from", SENDER, "--subject", SUBJECT, "--json",
        )  # fmt: skip

    def status(self, name: str) -> dict[str, Any]:
        return dict(json.loads(self.run("status", name, "--json", timeout=120)))

    def dkim_record(self) -> str:
        """The TXT value for the signing key, from the key file sokures init wrote."""
        settings = load_settings(self.dir / "sokures.toml")
        key = settings.signing_keys[0]
        return dns_record(load_private_key(key.key_file, key.algorithm))
