"""The ValiMail ARC validation suite (../shared/corpora/arc) through our ARC validation path.

Every case of arc-draft-validation-tests.yml: its document's ``txt-records`` are served by
a real DNS server process, :func:`probes.arc.verify_arc` (what check-message runs)
validates the message, and the chain status must be the suite's ``cv``.

Two things about the suite, neither needing an exception:

- time: the seals carry ``t=12345`` (1970). dkimpy only refuses ``t=`` in the future
  (beyond a 10-hour allowance) and ``x=`` in the past; the suite has no ``x=``, so every
  case validates whatever today's date.
- ``cv:`` left empty (3 cases): the suite follows a draft in which a chain whose seal says
  ``cv=fail`` has ended and gets no status. RFC 8617 §5.2 step 2 made that status
  ``fail``; we report ``fail`` with ``terminated`` set, and an empty ``cv`` expects that.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from deliver.dns import Resolver
from lab.zones import Record, ZoneData
from probes.arc import ArcResult, verify_arc
from tests.servers.dns import DnsServerProcess

SUITE = Path(__file__).resolve().parents[2] / "shared" / "corpora" / "arc"
DOCUMENTS: list[dict[str, Any]] = list(
    yaml.safe_load_all((SUITE / "arc-draft-validation-tests.yml").read_text(encoding="utf-8"))
)
CASES = [(name, case) for doc in DOCUMENTS for name, case in doc["tests"].items()]
#: the suite's cv -> (our cv, terminated)
EXPECTED = {"Pass": ("pass", False), "Fail": ("fail", False), "None": ("none", False),
            "": ("fail", True)}  # fmt: skip


def _records() -> dict[str, list[Record]]:
    records: dict[str, list[Record]] = {}
    for doc in DOCUMENTS:
        for name, text in (doc.get("txt-records") or {}).items():
            entry = [Record("TXT", str(text))]
            assert records.setdefault(name.lower().rstrip("."), entry) == entry, name
    return records


@pytest.fixture(scope="module")
def nameserver() -> Iterator[str]:
    # authoritative for every name ("."), so names outside the suite's get NXDOMAIN as
    # from a recursive resolver, not REFUSED
    with DnsServerProcess(ZoneData(["."], _records())) as server:
        yield server.nameserver


def test_suite_is_complete() -> None:
    assert len(CASES) == 171
    assert {str(case["cv"]).strip() for _, case in CASES} == set(EXPECTED)


@pytest.mark.parametrize(("name", "case"), CASES, ids=[name for name, _ in CASES])
def test_validation_case(nameserver: str, name: str, case: dict[str, Any]) -> None:
    raw = (case.get("message") or "").encode("utf-8")

    async def go() -> ArcResult:
        return await verify_arc(Resolver([nameserver], timeout=2.0), raw)

    result = asyncio.run(go())
    assert result.error is None, result.error
    expected = EXPECTED[str(case["cv"]).strip()]
    assert (result.cv, result.terminated) == expected, (case.get("description"), result.reason)
