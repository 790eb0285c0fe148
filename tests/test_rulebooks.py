"""Provider rulebooks: loading and validation, compliance evaluation, diffs between versions.

Evaluation is pure, so these tests feed it CheckResult lists built by hand, shaped like the
check modules' output (one result per check made, pass included).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from deliver.errors import ConfigError
from probes import rulebook as rb
from probes.catalog import CHECKS
from probes.checks import CheckResult, Status, error, fail, passed, warn
from probes.rulebook import (
    RulebookError,
    affected,
    available,
    describe,
    diff,
    escalated,
    evaluate,
    load_rulebook,
)

SPF_IDS = ("spf.present", "spf.multiple", "spf.syntax", "spf.lookups", "spf.void_lookups",
           "spf.loop", "spf.includes", "spf.all", "spf.ptr", "spf.length")  # fmt: skip
DKIM_IDS = ("dkim.key_present", "dkim.key_syntax", "dkim.key_type", "dkim.revoked",
            "dkim.key_bits", "dkim.testing")  # fmt: skip
DMARC_IDS = ("dmarc.present", "dmarc.multiple", "dmarc.syntax", "dmarc.rua")
MESSAGE_IDS = (*sorted(c for c in CHECKS if c.startswith("message.")), "dkim.signature",
               "dmarc.result")  # fmt: skip


def ok(*ids: str) -> list[CheckResult]:
    return [passed(i, "fine") for i in ids]


SPF = ok(*SPF_IDS)
DKIM = ok(*DKIM_IDS)
NO_DKIM = [fail("dkim.key_present", "no DKIM key record at s1._domainkey.example.com")]
DMARC = [*ok(*DMARC_IDS), warn("dmarc.policy", "p=none only monitors")]
PTR = ok("ptr.present", "ptr.fcrdns")
DOMAIN = [*SPF, *DKIM, *DMARC, *PTR, *ok("mx.present")]
MESSAGE = ok(*MESSAGE_IDS)

VALID = """\
provider = "acme"
version = "2026-01"
effective = 2026-01-15
title = "Acme sender rules"
source = "https://acme.example/senders"

[[requirement]]
id = "auth.spf"
title = "SPF"
applies_to = "all"
checks = ["spf.present", "spf.syntax"]

[requirement.reply]
code = 421
enhanced = "4.7.1"
text = "deferred: {domain} from {ip} has no SPF"
disposition = "tempfail"

[[requirement]]
id = "auth.dkim"
title = "DKIM"
applies_to = "bulk"
checks = ["dkim.key_present"]
"""


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


# ------------------------------------------------------------------ loading --
def test_shipped_rulebooks_include_the_required_versions() -> None:
    ids = {ref.id for ref in available()}
    assert {"gmail@2024-02", "gmail@2025-11", "yahoo@2024-02", "outlook@2025-05"} <= ids


@pytest.mark.parametrize("ref", available(), ids=lambda r: r.id)
def test_every_shipped_rulebook_loads(ref: rb.RulebookRef) -> None:
    book = load_rulebook(ref.id)
    assert (book.id, book.path) == (ref.id, ref.path)
    assert book.sources and book.requirements and book.bulk_threshold == 5000
    data = json.loads(json.dumps(book.to_dict()))  # rules show --json
    assert data["id"] == ref.id and len(data["requirements"]) == book.summary()["requirements"]
    for req in book.requirements:
        if req.reply and req.reply.text:
            req.reply.render(ip="192.0.2.1", domain="example.com")  # placeholders are valid
        assert req.manual or req.checks or req.any_of


def test_ids_resolve_to_versions_and_paths() -> None:
    assert load_rulebook("gmail@latest").version == "2025-11"
    assert load_rulebook("gmail").version == "2025-11"
    old = load_rulebook("gmail@2024-02")
    assert old.effective.isoformat() == "2024-02-01"
    assert old.path is not None and old.path.parent == rb.RULEBOOK_DIR
    assert load_rulebook(old.path).id == "gmail@2024-02"  # a path, as Path or str
    assert load_rulebook(str(old.path)).id == "gmail@2024-02"


def test_unknown_rulebook_names_what_is_available() -> None:
    with pytest.raises(RulebookError) as caught:
        load_rulebook("gmail@2023-01")
    assert str(caught.value).startswith("gmail@2023-01: no such rulebook (available: ")
    assert "gmail@2024-02" in str(caught.value)


def test_a_new_rulebook_in_a_directory_loads_without_code(tmp_path: Path) -> None:
    write(tmp_path, "acme@2026-01.toml", VALID)
    write(tmp_path, "notes.toml", "not = 'a rulebook name'")  # ignored: not provider@version
    assert [r.id for r in available(tmp_path)] == ["acme@2026-01"]
    book = load_rulebook("acme@latest", directory=tmp_path)
    assert [r.id for r in book.requirements] == ["auth.spf", "auth.dkim"]
    assert book.requirements[0].reply is not None
    assert book.requirements[0].reply.render(ip="192.0.2.1", domain="example.com") == (
        "deferred: example.com from 192.0.2.1 has no SPF"
    )
    verdict = evaluate(book, [*SPF, *NO_DKIM], bulk=False)
    assert verdict.status is Status.PASS


MALFORMED = [
    ("unknown top-level key", ('title = "', 'colour = "red"\ntitle = "'), "colour",
     "unknown key"),
    ("unknown requirement key", ('checks = ["dkim', 'selector = "s1"\nchecks = ["dkim'),
     "requirement[1].selector", "unknown key"),
    ("unknown reply key", ("code = 421", "code = 421\nreason = 'x'"),
     "requirement[0].reply.reason", "unknown key"),
    ("unknown check id", ('"spf.syntax"]', '"spf.precense"]'), "requirement[0].checks[1]",
     "unknown check id 'spf.precense' (did you mean 'spf.present'?)"),
    ("bad applies_to", ('applies_to = "bulk"', 'applies_to = "everyone"'),
     "requirement[1].applies_to", "'everyone' is not all or bulk"),
    ("bad disposition", ('disposition = "tempfail"', 'disposition = "bounce"'),
     "requirement[0].reply.disposition", "'bounce' is not one of reject, tempfail, spam"),
    ("missing id", ('id = "auth.dkim"\n', ""), "requirement[1].id", "missing"),
    ("duplicate id", ('id = "auth.dkim"', 'id = "auth.spf"'), "requirement[1].id",
     "duplicate id 'auth.spf' (also requirement[0])"),
    ("bad TOML", ('title = "Acme sender rules"', "title = Acme sender rules"),
     "line 4, column 9", "invalid TOML"),
    ("code against disposition", ("code = 421", "code = 550"), "requirement[0].reply.code",
     "a tempfail reply needs a 4xx code"),
    ("enhanced against code", ('enhanced = "4.7.1"', 'enhanced = "5.7.1"'),
     "requirement[0].reply.enhanced", "does not fit code 421"),
    ("unknown placeholder", ("{ip}", "{recipient}"), "requirement[0].reply.text",
     "unknown placeholder {recipient}"),
    ("manual with checks", ('applies_to = "bulk"', 'applies_to = "bulk"\nmanual = true'),
     "requirement[1].checks", "a manual requirement names no checks"),
    ("no checks", ('checks = ["dkim.key_present"]\n', ""), "requirement[1]",
     "needs checks or any_of"),
    ("version against file name", ('version = "2026-01"', 'version = "2026-02"'), "version",
     "does not match the file name"),
    ("effective not a date", ("effective = 2026-01-15", 'effective = "soon"'), "effective",
     "is not a date"),
    ("accept fail", ('checks = ["dkim.key_present"]', 'checks = ["dkim.key_present"]\n'
                     'accept = ["fail"]'), "requirement[1].accept", "list pass and/or warn"),
]  # fmt: skip


@pytest.mark.parametrize(("change", "key", "reason"), [m[1:] for m in MALFORMED],
                         ids=[m[0] for m in MALFORMED])  # fmt: skip
def test_malformed_rulebook_names_file_and_key(
    tmp_path: Path, change: tuple[str, str], key: str, reason: str
) -> None:
    assert change[0] in VALID
    write(tmp_path, "acme@2026-01.toml", VALID.replace(change[0], change[1], 1))
    with pytest.raises(RulebookError) as caught:
        load_rulebook("acme@2026-01", directory=tmp_path)
    assert str(caught.value).startswith(f"acme@2026-01.toml: {key}: ")
    assert reason in str(caught.value)
    assert isinstance(caught.value, ConfigError) and caught.value.exit_code == 2


def test_missing_directory_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(RulebookError, match="not a directory of rulebooks"):
        available(tmp_path / "nowhere")


# --------------------------------------------------------------- evaluation --
def test_all_checks_passing_complies() -> None:
    verdict = evaluate(load_rulebook("gmail@2025-11"), [*DOMAIN, *MESSAGE], bulk=True)
    assert verdict.status is Status.PASS
    assert verdict.failed == verdict.errors == verdict.not_evaluated == []
    assert "transport.tls" in verdict.manual and verdict.reply is None


def test_spf_only_complies_for_all_senders_not_for_bulk() -> None:
    results = [*SPF, *NO_DKIM, *DMARC, *PTR]
    new, old = load_rulebook("gmail@2025-11"), load_rulebook("gmail@2024-02")
    assert evaluate(new, results, bulk=False).status is Status.PASS
    verdict = evaluate(new, results, bulk=True)
    assert verdict.status is Status.FAIL and verdict.failed == ["auth.dkim"]
    assert verdict.reply is not None and verdict.reply.summary == "550 5.7.30 reject"
    assert evaluate(old, results).reply == old.requirement("auth.dkim").reply  # 421 4.7.30
    detail = {d["id"]: d for d in verdict.to_dict()["details"]}["auth.dkim"]
    assert detail["checks"]["dkim.key_present"] == "fail"
    assert detail["reason"] == "not met: dkim.key_present fail"


def test_an_error_check_makes_the_requirement_undecided() -> None:
    spf = [*SPF[1:], error("spf.present", "could not look up TXT example.com: timeout")]
    verdict = evaluate(load_rulebook("gmail@2025-11"), [*spf, *DKIM, *DMARC, *PTR])
    assert verdict.status is Status.ERROR and verdict.errors == ["auth.spf"]
    assert verdict.failed == []  # DKIM alone meets "SPF or DKIM"
    # an unmet check outweighs an undecided one: the verdict is fail, not error
    verdict = evaluate(load_rulebook("gmail@2025-11"), [*spf, *NO_DKIM, *DMARC, *PTR])
    assert verdict.status is Status.FAIL and verdict.failed == ["auth.dkim"]
    assert verdict.errors == ["auth.spf_or_dkim", "auth.spf"]


def test_a_check_missing_from_a_group_that_ran_is_an_error() -> None:
    results = [r for r in DOMAIN if r.id != "spf.loop"]
    verdict = evaluate(load_rulebook("gmail@2025-11"), results, bulk=True)
    assert verdict.status is Status.ERROR and verdict.errors == ["auth.spf"]
    detail = {d["id"]: d for d in verdict.to_dict()["details"]}["auth.spf"]
    assert detail["checks"]["spf.loop"] == "missing"


def test_message_checks_are_not_evaluated_on_a_domain_audit() -> None:
    verdict = evaluate(load_rulebook("gmail@2025-11"), DOMAIN, bulk=True)
    assert verdict.status is Status.PASS
    assert verdict.not_evaluated == ["format.rfc5322", "auth.dmarc_alignment",
                                     "unsubscribe.one_click"]  # fmt: skip
    reasons = {r.id: r.reason for r in verdict.results}
    assert "needs a received message" in reasons["format.rfc5322"]


def test_domain_checks_are_not_evaluated_on_a_message_audit() -> None:
    results = [r if r.id != "dkim.signature" else fail(r.id, "body hash did not verify")
               for r in MESSAGE]  # fmt: skip
    verdict = evaluate(load_rulebook("gmail@2025-11"), results, bulk=True)
    assert verdict.failed == ["auth.dkim"]  # judged on the message's signature alone
    assert verdict.not_evaluated == ["dns.ptr", "auth.dmarc_record"]
    assert "needs a domain audit" in {r.id: r.reason for r in verdict.results}["dns.ptr"]


def test_groups_not_run_are_unknown_not_failed() -> None:
    # no selector given: no dkim.* results; SPF broken: "SPF or DKIM" cannot be decided
    results = [fail("spf.present", "no SPF record"), *DMARC]
    verdict = evaluate(load_rulebook("gmail@2025-11"), results, bulk=False)
    assert verdict.status is Status.PASS and verdict.failed == []
    assert verdict.not_evaluated == ["auth.spf_or_dkim", "dns.ptr", "format.rfc5322"]
    reason = {r.id: r.reason for r in verdict.results}["auth.spf_or_dkim"]
    assert reason == "not evaluated: no dkim results (no DKIM selector given)"


def test_optional_checks_count_only_when_reported() -> None:
    book = load_rulebook("gmail@2025-11")
    assert evaluate(book, DOMAIN).status is Status.PASS  # spf.result? absent: left out
    per_ip = [passed("spf.result", "pass for 192.0.2.1"), fail("spf.result", "fail for 2.")]
    verdict = evaluate(book, [*DOMAIN, *per_ip])  # one result per IP: the worst counts
    assert verdict.failed == ["auth.spf"]


def test_a_warn_or_an_unmet_recommendation_gives_warn() -> None:
    short_key = [r if r.id != "dkim.key_bits" else warn(r.id, "1024 bits") for r in DOMAIN]
    verdict = evaluate(load_rulebook("gmail@2025-11"), short_key)
    assert verdict.status is Status.WARN and verdict.failed == []
    no_mx = [*[r for r in DOMAIN if r.id != "mx.present"], fail("mx.present", "no MX")]
    verdict = evaluate(load_rulebook("outlook@2025-05"), no_mx)
    assert verdict.status is Status.WARN and verdict.warnings == ["sender.valid_address"]
    assert verdict.failed == [] and verdict.reply is None


def test_compliance_json_shape() -> None:
    no_dmarc = fail("dmarc.present", "no DMARC record at _dmarc.example.com")
    verdict = evaluate(load_rulebook("yahoo@2024-02"), [*SPF, *NO_DKIM, *PTR, no_dmarc])
    data = json.loads(json.dumps(verdict.to_dict()))
    assert {"status", "failed", "not_evaluated", "details"} <= set(data)
    assert data["status"] == "fail" and data["failed"] == ["auth.dkim", "auth.dmarc_record"]
    assert data["rulebook"] == "yahoo@2024-02" and data["bulk"] is True


# ------------------------------------------------------------------- diffs --
def test_diff_gmail_2024_to_2025_shows_tempfail_to_reject() -> None:
    change = diff(load_rulebook("gmail@2024-02"), load_rulebook("gmail@2025-11"))
    lines = describe(change)
    assert any(line.startswith("auth.dmarc_alignment: reply 421 4.7.32 tempfail -> "
                               "550 5.7.32 reject") for line in lines)  # fmt: skip
    assert any(line.startswith("auth.dkim: reply 421 4.7.30 tempfail -> 550 5.7.30 reject")
               for line in lines)  # fmt: skip
    assert "auth.dmarc_record: reply none -> 550 5.7.40 reject" in lines
    assert [r.id for r in change.removed] == ["forwarding.arc"] and change.added == ()
    escalated_ids = {c.id for c in change.changed if "reply" in c.fields}
    assert {"auth.spf_or_dkim", "auth.spf", "auth.dkim", "dns.ptr", "transport.tls"} <= (
        escalated_ids
    )
    for item in change.changed:
        if item.old.reply and item.old.reply.disposition == "tempfail" and item.new.reply:
            assert item.new.reply.disposition in ("reject", "spam")
    assert json.loads(json.dumps(change.to_dict()))["lines"] == lines


def test_diff_of_a_rulebook_with_itself_is_empty() -> None:
    book = load_rulebook("yahoo@2024-02")
    assert diff(book, book).empty and describe(diff(book, book)) == []


def test_diff_reports_added_requirements_and_changed_checks(tmp_path: Path) -> None:
    newer = VALID.replace('version = "2026-01"', 'version = "2026-06"').replace(
        '["spf.present", "spf.syntax"]', '["spf.present", "spf.syntax", "spf.lookups"]'
    ) + '\n[[requirement]]\nid = "dns.ptr"\ntitle = "PTR"\napplies_to = "all"\n' \
        'checks = ["ptr.fcrdns"]\n'  # fmt: skip
    write(tmp_path, "acme@2026-01.toml", VALID)
    write(tmp_path, "acme@2026-06.toml", newer)
    old, new = (load_rulebook(f"acme@{v}", directory=tmp_path) for v in ("2026-01", "2026-06"))
    lines = describe(diff(old, new))
    assert "added dns.ptr (all senders): PTR; reply none" in lines
    assert "auth.spf: checks + spf.lookups" in lines


def test_affected_finds_the_domains_a_stricter_version_breaks(tmp_path: Path) -> None:
    # a made-up next Gmail version that wants 2048-bit DKIM keys (warn is no longer met)
    text = (rb.RULEBOOK_DIR / "gmail@2025-11.toml").read_text(encoding="utf-8")
    dkim_checks = next(line for line in text.splitlines()
                       if line.startswith('checks = ["dkim.key_present"'))  # fmt: skip
    stricter = text.replace('version = "2025-11"', 'version = "2026-06"').replace(
        dkim_checks, dkim_checks + '\naccept = ["pass"]'
    )
    write(tmp_path, "gmail@2026-06.toml", stricter)
    current, next_ = load_rulebook("gmail@2025-11"), load_rulebook("gmail@2026-06",
                                                                    directory=tmp_path)  # fmt: skip
    short_key = [r if r.id != "dkim.key_bits" else warn(r.id, "1024 bits") for r in DOMAIN]
    domains = {
        "good.example": DOMAIN,
        "short-key.example": short_key,
        "no-dkim.example": [*SPF, *NO_DKIM, *DMARC, *PTR],  # failing already: not "broken"
    }
    assert affected(current, next_, domains) == {"short-key.example": ["auth.dkim"]}
    assert affected(current, next_, domains, bulk=False) == {}  # auth.dkim is bulk-only
    assert describe(diff(current, next_)) == ["auth.dkim: accept pass, warn -> pass"]


def test_escalated_finds_failing_domains_now_rejected() -> None:
    old, new = load_rulebook("gmail@2024-02"), load_rulebook("gmail@2025-11")
    domains = {"good.example": DOMAIN, "no-dkim.example": [*SPF, *NO_DKIM, *DMARC, *PTR]}
    assert affected(old, new, domains) == {}  # same requirements: nothing newly failing
    assert escalated(old, new, domains) == {"no-dkim.example": ["auth.dkim"]}


def test_public_api_is_pinned() -> None:
    assert sorted(rb.__all__) == sorted([
        "DISPOSITIONS", "MESSAGE_CHECKS", "RULEBOOK_DIR", "CheckTerm", "Compliance",
        "ComplianceMemo", "Limits",
        "Outcome", "Reply", "Requirement", "RequirementChange", "RequirementResult",
        "Rulebook", "RulebookDiff", "RulebookError", "RulebookRef", "affected", "available",
        "describe", "diff", "escalated", "evaluate", "load_rulebook",
    ])  # fmt: skip


def test_the_memo_gives_what_evaluate_gives_for_each_pattern() -> None:
    from probes.checks import CheckResult, Status

    book = rb.load_rulebook("gmail@2025-11")
    memo = rb.ComplianceMemo(bulk=True)
    ids = ["spf.present", "spf.lookups", "dkim.key_present", "dmarc.present", "dmarc.policy"]
    for pattern in range(3**len(ids)):
        results = []
        for i, check_id in enumerate(ids):
            status = (Status.PASS, Status.FAIL, Status.ERROR)[(pattern // 3**i) % 3]
            results.append(CheckResult(check_id, status, f"domain {pattern}"))
        # a second, milder result for the same id must not change the worst status
        results.append(CheckResult("spf.present", Status.PASS, "again"))
        assert memo(book, results) == rb.evaluate(book, results, bulk=True).to_dict()
    assert len(memo._memo) <= 3 ** len(ids)  # patterns of the ids the rulebook names
