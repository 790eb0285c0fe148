"""``sokures probe --json`` output against the ground truth ``gen_zones.py`` writes.

``shared/bench/zones/truth.tsv`` says, per domain, what was deliberately built for MX,
SPF, DMARC and DKIM (at ``s1._domainkey``) and what a correct audit concludes. Each
expectation is mapped to the vocabulary of the check modules' ``verdict`` functions
(``probes.spf.verdict``, ``probes.dmarc.verdict``, ``probes.dkim.verdict``,
``probes.mx.verdict``), which are run on the :class:`~probes.checks.CheckResult` objects
rebuilt from our JSON lines, so the benchmark judges what the CLI printed, not a re-run.

Areas compared (every domain, every area):

* ``mx``, ``spf``, ``dmarc``, ``dkim``: the verdicts;
* ``spf_lookups``, ``spf_voids``: the DNS-lookup and void-lookup counts in the evidence
  of ``spf.lookups`` and ``spf.void_lookups`` against the truth's worst-case counts, where
  they are defined (a valid record: equal; over the limit: over it too);
* ``dmarc_external_auth``: an external ``rua`` that does not authorise the domain shows
  as ``dmarc.external_auth`` warn, and an authorised one does not.

The 73 ``invalid(7489)/valid(9989)`` DMARC records (a missing ``p``, ``adkim=x``,
``pct=150``) are invalid under RFC 7489 and count as ``invalid``; how many of them each
tool reports is counted apart (checkdmarc follows RFC 9989 there and reports none).

``python -m benchmarks.probe_truth OURS.jsonl [--truth TSV] [--out TSV]`` compares a
saved run by hand.
"""

from __future__ import annotations

import argparse
import collections
import csv
import importlib
import json
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmarks.common import SHARED_BENCH

if TYPE_CHECKING:
    from probes.checks import CheckResult

__all__ = [
    "AREAS",
    "CHECKDMARC_TSV",
    "TRUTH_TSV",
    "Agreement",
    "Disagreement",
    "Expected",
    "checkdmarc_vs_truth",
    "compare",
    "expected_dkim",
    "expected_dmarc",
    "expected_mx",
    "expected_spf",
    "load_truth",
    "probe_verdicts",
    "read_jsonl",
    "write_disagreements",
]

TRUTH_TSV = SHARED_BENCH / "zones" / "truth.tsv"
CHECKDMARC_TSV = SHARED_BENCH / "out" / "checkdmarc_vs_truth.tsv"
AREAS = ("mx", "spf", "spf_lookups", "spf_voids", "dmarc", "dmarc_external_auth", "dkim")
#: the truth's prefix for DMARC records invalid under RFC 7489 but accepted by RFC 9989
RFC7489_ONLY = "invalid(7489)/valid(9989)"
#: RFC 7208 §4.6.4: more than 10 DNS-querying terms is a permerror
SPF_LOOKUP_LIMIT = 10
#: RFC 7208 §4.6.4: more than 2 void lookups is a permerror
SPF_VOID_LIMIT = 2

#: one domain's verdicts, by area (``mx``, ``spf``, ``dmarc``, ``dkim``)
Verdicts = dict[str, str]
VerdictFn = Callable[[Sequence["CheckResult"], str], Verdicts]

# ----------------------------------------------------------------- the truth ----

_MX = (  # truth.tsv mx_expect prefix -> probes.mx.verdict
    ("ok", "ok"),
    ("warn: MX host has no A/AAAA", "no_address"),
    ("warn: MX address has no PTR", "no_ptr"),
    ("warn: PTR does not resolve back", "ptr_mismatch"),
    ("warn: MX target is a CNAME", "cname"),
    ("null MX", "null"),
)
_DKIM = (  # dkim_expect prefix -> probes.dkim.verdict ("valid (t=y" before "valid")
    ("valid (t=y", "valid_testing"),
    ("valid", "valid"),
    ("weak", "weak"),
    ("missing", "missing"),
    ("revoked", "revoked"),
    ("invalid", "invalid"),
)
_DMARC = (  # dmarc_expect prefix -> probes.dmarc.verdict (RFC7489_ONLY before "invalid")
    (RFC7489_ONLY, "invalid"),
    ("valid", "valid"),
    ("missing", "missing"),
    ("invalid", "invalid"),
)
_SPF = frozenset({"none", "permerror", "temperror", "valid"})


def _by_prefix(table: Iterable[tuple[str, str]], value: str, column: str) -> str:
    for prefix, verdict in table:
        if value.startswith(prefix):
            return verdict
    # a generator change must be noticed, not silently counted as a disagreement
    raise ValueError(f"truth.tsv: unknown {column} {value!r}: extend benchmarks/probe_truth.py")


def expected_mx(value: str) -> str:
    return _by_prefix(_MX, value, "mx_expect")


def expected_spf(value: str) -> str:
    if value not in _SPF:
        raise ValueError(f"truth.tsv: unknown spf_expect {value!r}")
    return value


def expected_dmarc(value: str) -> str:
    return _by_prefix(_DMARC, value, "dmarc_expect")


def expected_dkim(value: str) -> str:
    return _by_prefix(_DKIM, value, "dkim_expect")


@dataclass(frozen=True)
class Expected:
    """One truth.tsv row, in our vocabulary."""

    domain: str
    cases: Mapping[str, str]  # area -> the generator's case name (mx_case, spf_case, ...)
    verdicts: Mapping[str, str]  # mx, spf, dmarc, dkim
    spf_lookups: int
    spf_voids: int
    spf_reason: str
    #: the DMARC record is invalid only under RFC 7489 (missing p, adkim=x, pct=150)
    dmarc_rfc7489_only: bool
    #: an external rua: True = authorised (no warn), False = not (warn), None = none
    dmarc_external_authorised: bool | None

    @classmethod
    def from_row(cls, row: Mapping[str, str]) -> Expected:
        dmarc = row["dmarc_expect"]
        external: bool | None = None
        if row["dmarc_case"].startswith("external_rua"):
            external = "not authorised" not in dmarc
        return cls(
            domain=row["domain"],
            cases={a: row[f"{a}_case"] for a in ("mx", "spf", "dmarc", "dkim")},
            verdicts={
                "mx": expected_mx(row["mx_expect"]),
                "spf": expected_spf(row["spf_expect"]),
                "dmarc": expected_dmarc(dmarc),
                "dkim": expected_dkim(row["dkim_expect"]),
            },
            spf_lookups=int(row["spf_dns_lookups"] or 0),
            spf_voids=int(row["spf_void_lookups"] or 0),
            spf_reason=row["spf_reason"],
            dmarc_rfc7489_only=dmarc.startswith(RFC7489_ONLY),
            dmarc_external_authorised=external,
        )

    def spf_over(self, what: str) -> bool:
        """The record is a permerror for too many ``what`` ("DNS lookups", "void lookups")."""
        return self.verdicts["spf"] == "permerror" and f"{what} >" in self.spf_reason


def load_truth(path: Path = TRUTH_TSV) -> dict[str, Expected]:
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    return {r["domain"]: Expected.from_row(r) for r in rows}


# ------------------------------------------------------------------ our side ----


def read_jsonl(path: Path) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Our output by domain, and problems with it (unparsable lines, duplicates)."""
    records: dict[str, dict[str, Any]] = {}
    problems: list[str] = []
    with path.open(errors="replace") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                domain = str(record["domain"]).rstrip(".").lower()
            except (ValueError, KeyError, TypeError) as exc:
                problems.append(f"line {n}: not a probe JSON object ({exc}): {line[:120]!r}")
                continue
            if domain in records:
                problems.append(f"line {n}: {domain} printed twice")
            records[domain] = record
    return records, problems


def check_results(record: Mapping[str, Any]) -> list[CheckResult]:
    """The CheckResult objects a JSON line was printed from."""
    from probes.checks import CheckResult

    return [CheckResult.from_dict(c) for c in record.get("checks", [])]


def _verdict_functions() -> dict[str, Callable[..., str]]:
    """``probes.<area>.verdict`` for each area, imported once (lazily: the benchmark
    harness must load without the probes package being complete)."""
    found: dict[str, Callable[..., str]] = {}
    missing = []
    for area in ("mx", "spf", "dmarc", "dkim"):
        try:
            found[area] = importlib.import_module(f"probes.{area}").verdict
        except (ImportError, AttributeError) as exc:
            missing.append(f"probes.{area}.verdict ({type(exc).__name__}: {exc})")
    if missing:
        raise RuntimeError("verdict functions not there yet: " + "; ".join(missing))
    return found


def _call(fn: Callable[..., str], *args: Any) -> str:
    """A verdict, or why there is none (e.g. no DKIM result for the selector), so one
    domain's odd output shows as its disagreement rather than ending the comparison."""
    try:
        return str(fn(*args))
    except Exception as exc:  # reported as this domain's verdict
        return f"raised {type(exc).__name__}: {exc}"[:200]


def probe_verdicts() -> VerdictFn:
    """Results of one domain -> its verdicts, through the check modules' functions.
    Each function gets the results of its own group only (``spf.*`` for SPF, ...)."""
    fns = _verdict_functions()

    def verdicts(results: Sequence[CheckResult], selector: str) -> Verdicts:
        groups: dict[str, list[CheckResult]] = collections.defaultdict(list)
        for r in results:
            groups[r.id.split(".", 1)[0]].append(r)
        out = {a: _call(fns[a], groups[a]) for a in ("mx", "spf", "dmarc")}
        out["dkim"] = _call(fns["dkim"], groups["dkim"], selector)
        return out

    return verdicts


def _find(results: Sequence[CheckResult], check_id: str) -> CheckResult | None:
    return next((r for r in results if r.id == check_id), None)


def spf_count(results: Sequence[CheckResult], check_id: str, key: str) -> int | None:
    """An integer from a check's evidence (``spf.lookups``' ``lookups``, ...)."""
    found = _find(results, check_id)
    value = found.evidence.get(key) if found is not None else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


# ----------------------------------------------------------------- comparing ----


@dataclass(frozen=True)
class Disagreement:
    domain: str
    area: str
    case: str
    expected: str
    got: str
    detail: str = ""

    def cells(self) -> list[str]:
        return [self.domain, self.area, self.case, self.expected, self.got, self.detail]


@dataclass
class Agreement:
    """Per-area agreement of one run with the truth."""

    domains: int = 0
    #: domains of the truth that our output has a line for
    seen: int = 0
    agree: collections.Counter[str] = field(default_factory=collections.Counter)
    total: collections.Counter[str] = field(default_factory=collections.Counter)
    disagreements: list[Disagreement] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    #: the RFC 7489-only DMARC faults in the truth, and how many we reported invalid
    rfc7489_faults: int = 0
    rfc7489_reported: int = 0

    @property
    def ok(self) -> bool:
        return not self.disagreements and not self.problems and self.seen == self.domains

    def counts(self) -> dict[str, str]:
        return {a: f"{self.agree[a]}/{self.total[a]}" for a in AREAS if self.total[a]}

    def as_dict(self) -> dict[str, Any]:
        by_case = collections.Counter(
            f"{d.area}: {d.case}: truth={d.expected} ours={d.got}" for d in self.disagreements
        )
        return {
            "domains": self.domains,
            "seen": self.seen,
            "agree": {a: [self.agree[a], self.total[a]] for a in AREAS if self.total[a]},
            "disagreements": len(self.disagreements),
            "disagreements_by_case": dict(by_case.most_common(20)),
            "problems": self.problems[:20],
            "rfc7489_faults": self.rfc7489_faults,
            "rfc7489_reported": self.rfc7489_reported,
        }

    def summary(self) -> str:
        areas = ", ".join(f"{a} {c}" for a, c in self.counts().items())
        return (
            f"{self.seen}/{self.domains} domains; {areas}; RFC 7489-only DMARC faults reported "
            f"{self.rfc7489_reported}/{self.rfc7489_faults}; "
            f"{len(self.disagreements)} disagreement(s)"
        )

    def _tally(self, domain: str, area: str, case: str, want: str, got: str, detail: str) -> None:
        self.total[area] += 1
        if got == want:
            self.agree[area] += 1
        else:
            self.disagreements.append(Disagreement(domain, area, case, want, got, detail))


def _detail(results: Sequence[CheckResult], group: str) -> str:
    """What our checks of ``group`` said, short: the non-pass ones with the first message."""
    bad = [r for r in results if r.id.split(".", 1)[0] == group and r.status.value != "pass"]
    if not bad:
        return f"all {group} checks pass"
    text = " ".join(f"{r.id}={r.status.value}" for r in bad)
    return f"{text}: {bad[0].message}"[:300]


def _compare_domain(
    agreement: Agreement,
    want: Expected,
    results: Sequence[CheckResult],
    got: Verdicts,
) -> None:
    d = want.domain
    for area in ("mx", "spf", "dmarc", "dkim"):
        agreement._tally(d, area, want.cases[area], want.verdicts[area], got[area],
                         _detail(results, area))  # fmt: skip
    if want.dmarc_rfc7489_only:
        agreement.rfc7489_faults += 1
        agreement.rfc7489_reported += got["dmarc"] == "invalid"
    counts = (  # area, truth's reason, check id, evidence key, truth's count, limit
        ("spf_lookups", "DNS lookups", "spf.lookups", "lookups", want.spf_lookups,
         SPF_LOOKUP_LIMIT),
        ("spf_voids", "void lookups", "spf.void_lookups", "void_lookups", want.spf_voids,
         SPF_VOID_LIMIT),
    )  # fmt: skip
    for area, reason, check_id, key, truth_count, limit in counts:
        valid, over = want.verdicts["spf"] == "valid", want.spf_over(reason)
        if not (valid or over):
            continue
        count = spf_count(results, check_id, key)
        if valid:
            expect, shown = str(truth_count), str(count)
        else:  # over the limit: the truth is a worst case; any count over it agrees
            expect = f"> {limit}"
            shown = expect if count is not None and count > limit else str(count)
        agreement._tally(d, area, want.cases["spf"], expect, shown,
                         f"truth {truth_count}: {_detail(results, 'spf')}")  # fmt: skip
    if want.dmarc_external_authorised is not None:
        check = _find(results, "dmarc.external_auth")
        shown = check.status.value if check is not None else "absent"
        expect = "not warn" if want.dmarc_external_authorised else "warn"
        if want.dmarc_external_authorised and shown in ("pass", "absent"):
            shown = expect
        agreement._tally(d, "dmarc_external_auth", want.cases["dmarc"], expect, shown,
                         _detail(results, "dmarc"))  # fmt: skip


def compare(
    truth: Mapping[str, Expected],
    records: Mapping[str, Mapping[str, Any]],
    selector: str = "s1",
    verdicts: VerdictFn | None = None,
) -> Agreement:
    """Every truth domain against our records (by domain). ``verdicts`` defaults to
    :func:`probe_verdicts` (the check modules' own functions)."""
    judge = verdicts if verdicts is not None else probe_verdicts()
    agreement = Agreement(domains=len(truth))
    for domain, want in truth.items():
        record = records.get(domain)
        if record is None:
            agreement.disagreements.append(
                Disagreement(domain, "output", "", "a JSON line", "none", "domain not printed")
            )
            continue
        agreement.seen += 1
        results = check_results(record)
        _compare_domain(agreement, want, results, judge(results, selector))
    extra = sorted(set(records) - set(truth))
    if extra:
        agreement.problems.append(f"{len(extra)} domain(s) not in the truth, e.g. {extra[0]}")
    return agreement


def write_disagreements(path: Path, agreement: Agreement) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        out = csv.writer(fh, delimiter="\t", lineterminator="\n")
        out.writerow(["domain", "area", "case", "truth", "ours", "detail"])
        for d in agreement.disagreements:
            out.writerow([c.replace("\t", " ").replace("\n", " ") for c in d.cells()])


# ------------------------------------------------------------- checkdmarc's ----


@dataclass(frozen=True)
class CheckdmarcAgreement:
    """checkdmarc against the same truth, from ``compare_checkdmarc.py``'s TSV, strictly:
    the RFC 7489-only DMARC faults count as ``invalid`` (its own summary accepts either)."""

    agree: Mapping[str, tuple[int, int]]
    rfc7489_faults: int
    rfc7489_reported: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "agree": {a: list(v) for a, v in self.agree.items()},
            "rfc7489_faults": self.rfc7489_faults,
            "rfc7489_reported": self.rfc7489_reported,
        }


def checkdmarc_vs_truth(path: Path = CHECKDMARC_TSV) -> CheckdmarcAgreement:
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    agree: collections.Counter[str] = collections.Counter()
    total = collections.Counter({"spf": len(rows), "dmarc": len(rows), "mx": len(rows)})
    faults = reported = 0
    for r in rows:
        dmarc_want = r["truth_dmarc"].split("|")[0]  # "invalid|valid": RFC 7489 says invalid
        agree["spf"] += r["truth_spf"] == r["checkdmarc_spf"]
        agree["dmarc"] += dmarc_want == r["checkdmarc_dmarc"]
        agree["mx"] += r["truth_mx"] == r["checkdmarc_mx"]  # ok/warn only: it has no finer
        if r["truth_spf"] == "valid" and r["checkdmarc_lookups"] != "None":
            total["spf_lookups"] += 1  # as compare_checkdmarc.py: where both completed
            agree["spf_lookups"] += r["truth_lookups"] == r["checkdmarc_lookups"]
            total["spf_voids"] += 1
            agree["spf_voids"] += r["truth_voids"] == r["checkdmarc_voids"]
        if "|" in r["truth_dmarc"]:
            faults += 1
            reported += r["checkdmarc_dmarc"] == "invalid"
    return CheckdmarcAgreement({a: (agree[a], total[a]) for a in total}, faults, reported)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.probe_truth", description=__doc__)
    p.add_argument("ours", type=Path, help="sokures probe --json output (JSON lines)")
    p.add_argument("--truth", type=Path, default=TRUTH_TSV)
    p.add_argument("--selector", default="s1")
    p.add_argument("--out", type=Path, default=Path("probe_vs_truth.tsv"))
    args = p.parse_args(argv)
    records, problems = read_jsonl(args.ours)
    agreement = compare(load_truth(args.truth), records, args.selector)
    agreement.problems[:0] = problems
    write_disagreements(args.out, agreement)
    print(agreement.summary())
    for problem in agreement.problems:
        print(f"  problem: {problem}")
    for line, n in agreement.as_dict()["disagreements_by_case"].items():
        print(f"  {n:4d} x {line}")
    print(f"disagreements in {args.out}")
    return 0 if agreement.ok else 1


if __name__ == "__main__":
    sys.exit(main())
