"""deliver.shaping and the shipped deliver/shaping.toml: providers, automation rules against
the replies they are written for, operator overrides, validation, GCRA and effective limits."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from deliver.errors import ConfigError, PolicyError
from deliver.shaping import (
    SHIPPED,
    AutomationRule,
    EffectiveLimits,
    ProviderPolicy,
    ShapingPolicy,
    effective_limits,
    gcra,
)
from deliver.units import Rate

# Replies as the providers send them (code, enhanced code and text on one line, the way the
# engine searches them).
GMAIL_4_7_28 = (
    "421-4.7.28 [203.0.113.5] Our system has detected an unusual rate of unsolicited mail "
    "originating from your IP address. To protect our users from spam, mail sent from your IP "
    "address has been temporarily rate limited. Please visit "
    "https://support.google.com/mail/?p=UnsolicitedRateLimitError to review our Bulk Email "
    "Senders Guidelines. d2e1a72fcca58-6f8b1a2c3d4e5si123456b3a.421 - gsmtp"
)
GMAIL_TRY_AGAIN = "421 4.7.0 Try again later, closing connection. (EHLO) - gsmtp"
YAHOO_TSS04 = (
    "421 4.7.0 [TSS04] Messages from 203.0.113.5 temporarily deferred due to unexpected volume "
    "or user complaints - 4.16.55.1; see https://postmaster.yahooinc.com/error-codes"
)
YAHOO_TSS05 = (
    "421 4.7.0 [TSS05] Messages from 203.0.113.5 temporarily deferred due to unexpected volume "
    "or user complaints - 4.16.56.1; see https://postmaster.yahooinc.com/error-codes"
)
YAHOO_TS02 = (
    "421 4.7.0 [TS02] Messages from 203.0.113.5 temporarily deferred due to unexpected volume "
    "or user complaints - 4.16.55.1; see https://postmaster.yahooinc.com/error-codes"
)
YAHOO_TS03 = (
    "421 4.7.0 [TS03] All messages from 203.0.113.5 will be permanently deferred; Retrying will "
    "NOT succeed. See https://postmaster.yahooinc.com/error-codes"
)
OUTLOOK_RP001 = (
    "421 4.7.0 [203.0.113.5] RP-001 (SN1NAM02FT012) Unfortunately, some messages from "
    "203.0.113.5 weren't sent. Please try again. The mail server IP connecting to Outlook.com "
    "server has exceeded the connection limit allowed."
)
OUTLOOK_4_7_650 = (
    "451 4.7.650 The mail server [203.0.113.5] has been temporarily rate limited due to IP "
    "reputation. For e-mail delivery information, see https://postmaster.live.com (S775) "
    "[Name=Protocol Filter Agent][AGT=PFA][MxId=11BA83F5E5C04B0A]"
)
ACCEPTED = "250 2.0.0 OK 1700000000 d2e1a72fcca58-6f8b1a2c3d4e5si1 - gsmtp"


@pytest.fixture(scope="module")
def shipped() -> ShapingPolicy:
    return ShapingPolicy.load()


def load_override(tmp_path: Path, text: str) -> ShapingPolicy:
    path = tmp_path / "my-shaping.toml"
    path.write_text(text, encoding="utf-8")
    return ShapingPolicy.load(path)


def ids(rules: Any) -> list[str]:
    return [r.id for r in rules]


# ------------------------------------------------------------ shipped file --
def test_shipped_policy_loads(shipped: ShapingPolicy) -> None:
    assert shipped.sources == (str(SHIPPED),)
    assert {"google", "yahoo", "microsoft", "apple"} <= set(shipped.providers)
    d = shipped.default
    assert d.name == "default"
    assert d.max_message_rate == Rate(100, 1)
    assert d.connection_limit == 10 and d.burst == 10 and d.tls == "opportunistic"
    assert ids(d.rules) == ["reputation-deferral"]


@pytest.mark.parametrize(
    ("provider", "suffixes", "domains"),
    [
        ("google", {".google.com", ".googlemail.com"}, {"gmail.com", "googlemail.com"}),
        ("yahoo", {".yahoodns.net"}, {"yahoo.com", "aol.com", "att.net", "ymail.com"}),
        (
            "microsoft",
            {".olc.protection.outlook.com", ".mail.protection.outlook.com", ".mx.microsoft"},
            {"outlook.com", "hotmail.com", "live.com", "msn.com"},
        ),
        ("apple", {".icloud.com", ".mail.me.com"}, {"icloud.com", "me.com", "mac.com"}),
    ],
)
def test_shipped_providers(
    shipped: ShapingPolicy, provider: str, suffixes: set[str], domains: set[str]
) -> None:
    p = shipped.providers[provider]
    assert p.name == provider
    assert set(p.mx_suffixes) == suffixes
    assert domains <= set(p.domains)
    for domain in domains:
        assert shipped.provider_for_domain(domain) == provider
        assert shipped.domain_map()[domain] == provider


def test_shipped_provider_limits(shipped: ShapingPolicy) -> None:
    google = shipped.providers["google"]
    assert (google.connection_limit, google.messages_per_connection) == (5, 50)
    assert google.max_message_rate == Rate(50, 1)
    apple = shipped.providers["apple"]
    assert apple.messages_per_connection == 5
    # what a provider does not say comes from [default]
    assert apple.burst == shipped.default.burst
    assert apple.tls == "opportunistic"


@pytest.mark.parametrize(
    ("mx_hosts", "provider"),
    [
        (["gmail-smtp-in.l.google.com"], "google"),
        (["ASPMX.L.GOOGLE.COM."], "google"),
        (["alt1.gmail-smtp-in.l.googlemail.com"], "google"),
        (["mta5.am0.yahoodns.net", "mta6.am0.yahoodns.net"], "yahoo"),
        (["hotmail-com.olc.protection.outlook.com"], "microsoft"),
        (["example-com.mail.protection.outlook.com"], "microsoft"),
        (["example-com.j-v1.mx.microsoft"], "microsoft"),
        (["mx01.mail.icloud.com"], "apple"),
        (["mx.example.com"], "default"),
        (["notgoogle.com"], "default"),
        (["google.com.evil.example"], "default"),
        ([], "default"),
        # only the best (first) MX host decides
        (["mx.example.com", "aspmx.l.google.com"], "default"),
    ],
)
def test_provider_for_mx(shipped: ShapingPolicy, mx_hosts: list[str], provider: str) -> None:
    assert shipped.provider_for_mx(mx_hosts) == provider


@pytest.mark.parametrize(
    ("domain", "provider"),
    [
        ("gmail.com", "google"),
        ("GMail.com.", "google"),
        ("sbcglobal.net", "yahoo"),
        ("hotmail.co.uk", "microsoft"),
        ("me.com", "apple"),
        ("example.com", None),
        ("mail.gmail.com", None),
    ],
)
def test_provider_for_domain(shipped: ShapingPolicy, domain: str, provider: str | None) -> None:
    assert shipped.provider_for_domain(domain) == provider


def test_provider_lookup_falls_back_to_default(shipped: ShapingPolicy) -> None:
    assert shipped.provider(None) is shipped.default
    assert shipped.provider("nobody") is shipped.default
    assert shipped.provider("google") is shipped.providers["google"]


# ------------------------------------------------------ rules vs. replies --
@pytest.mark.parametrize(
    ("provider", "reply", "expected"),
    [
        ("google", GMAIL_4_7_28, ["gmail-4.7.28-rate-limited"]),
        ("google", GMAIL_TRY_AGAIN, ["gmail-try-again-later"]),
        ("yahoo", YAHOO_TSS04, ["yahoo-tss04"]),
        ("yahoo", YAHOO_TSS05, ["yahoo-tss05"]),
        ("yahoo", YAHOO_TS02, ["yahoo-ts02"]),
        ("yahoo", YAHOO_TS03, ["yahoo-permanently-deferred"]),
        ("microsoft", OUTLOOK_RP001, ["outlook-connection-limit"]),
        ("microsoft", OUTLOOK_4_7_650, ["outlook-4.7.650-reputation"]),
        # providers without a rule of their own for the reply get the default rules
        ("apple", OUTLOOK_4_7_650, ["reputation-deferral"]),
        ("google", YAHOO_TSS04, ["reputation-deferral"]),
        (None, OUTLOOK_4_7_650, ["reputation-deferral"]),
        ("nobody", YAHOO_TSS04, ["reputation-deferral"]),
        ("google", ACCEPTED, []),
        ("yahoo", ACCEPTED, []),
        ("microsoft", "550 5.1.1 RESOLVER.ADR.RecipNotFound; not found", []),
        (None, GMAIL_TRY_AGAIN, []),
    ],
)
def test_shipped_rules_match_real_replies(
    shipped: ShapingPolicy, provider: str | None, reply: str, expected: list[str]
) -> None:
    assert ids(shipped.matching_rules(provider, reply)) == expected


@pytest.mark.parametrize(
    ("provider", "reply"),
    [("yahoo", YAHOO_TSS04), ("microsoft", OUTLOOK_4_7_650)],
)
def test_own_rule_wins_over_the_default_rule(
    shipped: ShapingPolicy, provider: str, reply: str
) -> None:
    (default_rule,) = shipped.default.rules
    assert default_rule.matches(reply)  # the default rule would also match...
    matched = shipped.matching_rules(provider, reply)
    assert matched and default_rule.id not in ids(matched)  # ...but the provider's wins


def test_rule_details(shipped: ShapingPolicy) -> None:
    by_id = {r.id: r for r in shipped.rules_for("yahoo")}
    tss04 = by_id["yahoo-tss04"]
    assert tss04.actions == ("suspend",)
    assert tss04.duration == 2 * 3600
    assert (tss04.threshold, tss04.window) == (1, 0.0)
    assert set(by_id["yahoo-permanently-deferred"].actions) == {"bounce", "suspend"}
    google = {r.id: r for r in shipped.rules_for("google")}
    gmail = google["gmail-4.7.28-rate-limited"]
    assert gmail.rate == Rate(1, 1) and gmail.connections == 1 and gmail.duration == 3600
    assert (google["gmail-try-again-later"].threshold, google["gmail-try-again-later"].window) == (
        10,
        3600.0,
    )


def test_rules_for_lists_own_rules_first_then_defaults(shipped: ShapingPolicy) -> None:
    assert ids(shipped.rules_for("google")) == [
        "gmail-4.7.28-rate-limited",
        "gmail-try-again-later",
        "reputation-deferral",
    ]
    assert ids(shipped.rules_for(None)) == ["reputation-deferral"]
    assert ids(shipped.rules_for("apple")) == ["reputation-deferral"]


# ---------------------------------------------------------------- override --
def test_override_changes_a_key_and_keeps_the_rest(tmp_path: Path) -> None:
    policy = load_override(tmp_path, "[providers.google]\nconnection_limit = 2\n")
    google = policy.providers["google"]
    assert google.connection_limit == 2
    assert google.max_message_rate == Rate(50, 1)
    assert ".google.com" in google.mx_suffixes
    assert ids(google.rules) == ["gmail-4.7.28-rate-limited", "gmail-try-again-later"]
    assert policy.sources == (str(SHIPPED), str(tmp_path / "my-shaping.toml"))


def test_override_rule_with_same_id_replaces_and_new_rule_is_added(tmp_path: Path) -> None:
    policy = load_override(
        tmp_path,
        """
[[providers.google.rules]]
id = "gmail-4.7.28-rate-limited"
match = '4\\.7\\.28'
action = "suspend"
duration = "30m"

[[providers.google.rules]]
id = "gmail-quota"
match = 'quota exceeded'
trigger = "3/h"
action = "set_rate"
rate = "5/min"
duration = "2h"
""",
    )
    rules = {r.id: r for r in policy.providers["google"].rules}
    assert list(rules) == ["gmail-4.7.28-rate-limited", "gmail-try-again-later", "gmail-quota"]
    replaced = rules["gmail-4.7.28-rate-limited"]
    assert replaced.actions == ("suspend",) and replaced.duration == 1800
    assert not replaced.matches("unusual rate of unsolicited mail")
    added = rules["gmail-quota"]
    assert (added.threshold, added.window, added.rate) == (3, 3600.0, Rate(5, 60))
    assert ids(policy.matching_rules("google", "452 4.2.2 quota exceeded")) == ["gmail-quota"]


def test_override_replace_drops_the_shipped_provider(tmp_path: Path) -> None:
    policy = load_override(
        tmp_path, '[providers.yahoo]\nreplace = true\nmx_suffixes = [".yahoodns.net"]\n'
    )
    yahoo = policy.providers["yahoo"]
    assert yahoo.rules == ()
    assert yahoo.domains == ()
    assert policy.provider_for_domain("yahoo.com") is None
    assert policy.provider_for_mx(["mta5.am0.yahoodns.net"]) == "yahoo"
    # everything else comes from [default] now, not from the shipped yahoo table
    assert yahoo.connection_limit == policy.default.connection_limit
    assert yahoo.max_message_rate == policy.default.max_message_rate
    # a TSS04 now gets only the default reaction
    assert ids(policy.matching_rules("yahoo", YAHOO_TSS04)) == ["reputation-deferral"]


def test_override_default_and_new_provider(tmp_path: Path) -> None:
    policy = load_override(
        tmp_path,
        """
[default]
max_message_rate = "10/s"

[providers.fastmail]
mx_suffixes = ["messagingengine.com"]
domains = ["fastmail.com"]
tls = "required"
""",
    )
    assert policy.default.max_message_rate == Rate(10, 1)
    assert ids(policy.default.rules) == ["reputation-deferral"]
    assert policy.providers["apple"].max_message_rate == Rate(20, 1)  # its own, kept
    fastmail = policy.providers["fastmail"]
    assert fastmail.max_message_rate == Rate(10, 1)  # inherited from the new default
    assert fastmail.tls == "required"
    assert policy.provider_for_mx(["in1-smtp.messagingengine.com"]) == "fastmail"
    assert policy.provider_for_domain("fastmail.com") == "fastmail"


def test_missing_or_unparsable_override_file(tmp_path: Path) -> None:
    with pytest.raises(PolicyError) as info:
        ShapingPolicy.load(tmp_path / "absent.toml")
    assert info.value.file == str(tmp_path / "absent.toml")
    assert "cannot read" in str(info.value)
    bad = tmp_path / "bad.toml"
    bad.write_text("[providers.google\n", encoding="utf-8")
    with pytest.raises(PolicyError) as info:
        ShapingPolicy.load(bad)
    assert info.value.file == str(bad)
    assert isinstance(info.value, ConfigError)


# -------------------------------------------------------------- malformed --
RULE = 'id = "x"\nmatch = "x"\naction = "suspend"\nduration = "1h"\n'


@pytest.mark.parametrize(
    ("text", "key"),
    [
        (
            '[[providers.google.rules]]\nid = "x"\nmatch = "("\naction = "suspend"\n'
            'duration = "1h"\n',
            "providers.google.rules[0].match",
        ),
        (
            '[[providers.google.rules]]\nid = "x"\nmatch = ["ok", "[a-"]\naction = "suspend"\n'
            'duration = "1h"\n',
            "providers.google.rules[0].match",
        ),
        (
            '[[providers.google.rules]]\nid = "x"\nmatch = "x"\naction = "explode"\n'
            'duration = "1h"\n',
            "providers.google.rules[0].action",
        ),
        (
            '[[providers.google.rules]]\nid = "x"\nmatch = "x"\naction = "set_rate"\n'
            'duration = "1h"\n',
            "providers.google.rules[0].rate",
        ),
        (
            '[[providers.google.rules]]\nid = "x"\nmatch = "x"\naction = "set_connections"\n'
            'duration = "1h"\n',
            "providers.google.rules[0].connections",
        ),
        (
            "[[providers.google.rules]]\n" + RULE + 'trigger = "often"\n',
            "providers.google.rules[0].trigger",
        ),
        (
            "[[providers.google.rules]]\n" + RULE + 'trigger = "2.5/h"\n',
            "providers.google.rules[0].trigger",
        ),
        (
            "[[providers.google.rules]]\n" + RULE + 'colour = "red"\n',
            "providers.google.rules[0].colour",
        ),
        (
            '[[providers.google.rules]]\nid = "x"\nmatch = "x"\naction = "suspend"\n'
            'duration = "forever"\n',
            "providers.google.rules[0].duration",
        ),
        (
            '[[providers.google.rules]]\nmatch = "x"\naction = "suspend"\nduration = "1h"\n',
            "providers.google.rules[0].id",
        ),
        (
            '[[providers.google.rules]]\nid = "x"\nmatch = "x"\naction = "set_rate"\n'
            'rate = "lots"\nduration = "1h"\n',
            "providers.google.rules[0].rate",
        ),
        (
            "[[providers.google.rules]]\n" + RULE + "connections = 0\n",
            "providers.google.rules[0].connections",
        ),
        (
            "[[providers.google.rules]]\n" + RULE + "[[providers.google.rules]]\n" + RULE,
            "providers.google.rules",
        ),
        (
            "[[providers.newco.rules]]\n" + RULE + "[[providers.newco.rules]]\n" + RULE,
            "providers.newco.rules",
        ),
        ('[providers.google]\ntls = "sometimes"\n', "providers.google.tls"),
        ('[default]\ntls = "always"\n', "default.tls"),
        ("[providers.google]\nspeed = 11\n", "providers.google.speed"),
        ("[default]\nspeed = 11\n", "default.speed"),
        ("[providers.google]\nconnection_limit = 0\n", "providers.google.connection_limit"),
        ("[providers.google]\nburst = true\n", "providers.google.burst"),
        (
            "[providers.google]\nmessages_per_connection = 2.5\n",
            "providers.google.messages_per_connection",
        ),
        ('[providers.google]\nmax_message_rate = "fast"\n', "providers.google.max_message_rate"),
        ("[providers.google]\nmx_suffixes = 5\n", "providers.google.mx_suffixes"),
        ('[providers.google]\ndomains = ["gmail.com", ""]\n', "providers.google.domains"),
        ("[providers]\ngoogle = 5\n", "providers.google"),
        ("providers = 5\n", "providers"),
        ("default = 5\n", "default"),
        ("[providers.google]\nrules = 5\n", "providers.google.rules"),
        ("[providers.google]\nrules = [1]\n", "providers.google.rules[0]"),
        ('[default]\nrules = "x"\n', "default.rules"),
        (
            "[[default.rules]]\n" + RULE.replace('"x"\naction', '"("\naction'),
            "default.rules[0].match",
        ),
        ("[extra]\nx = 1\n", "extra"),
    ],
)
def test_malformed_override_names_file_and_key(tmp_path: Path, text: str, key: str) -> None:
    path = tmp_path / "my-shaping.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(PolicyError) as info:
        ShapingPolicy.load(path)
    assert info.value.file == str(path)
    assert info.value.key == key
    assert str(info.value).startswith(f"{path}: {key}: ")


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        (
            {
                "providers": {
                    "a": {
                        "rules": [
                            {"id": "x", "match": "x", "action": "suspend", "duration": "1h"},
                            {"id": "x", "match": "y", "action": "suspend", "duration": "1h"},
                        ]
                    }
                }
            },
            "providers.a.rules",
        ),
        ({"default": "fast"}, "default"),
        ({"providers": ["a"]}, "providers"),
        ({"provider": {}}, "provider"),
        (
            {
                "default": {
                    "rules": [{"id": "x", "match": "(", "action": "suspend", "duration": "1h"}]
                }
            },
            "default.rules[0].match",
        ),
    ],
)
def test_malformed_policy_from_dict(raw: dict[str, Any], key: str) -> None:
    with pytest.raises(PolicyError) as info:
        ShapingPolicy.from_dict(raw)
    assert info.value.key == key


# ------------------------------------------------------------------- gcra --
def test_gcra_burst_then_pacing() -> None:
    tat = 0.0
    for _ in range(3):  # burst 3 at 1/s: three back to back
        wait, tat = gcra(tat, 100.0, 1.0, 3)
        assert wait == 0.0
    wait, same = gcra(tat, 100.0, 1.0, 3)
    assert wait == pytest.approx(1.0) and same == tat
    assert gcra(tat, 100.5, 1.0, 3)[0] == pytest.approx(0.5)
    assert gcra(tat, 101.0, 1.0, 3)[0] == 0.0


def test_gcra_burst_one_is_exact_pacing() -> None:
    wait, tat = gcra(0.0, 10.0, 2.0, 1)
    assert (wait, tat) == (0.0, 12.0)
    assert gcra(tat, 11.0, 2.0, 1) == (1.0, 12.0)
    assert gcra(tat, 12.0, 2.0, 1) == (0.0, 14.0)


times = st.floats(min_value=0.0, max_value=1e9, allow_nan=False, allow_infinity=False)
intervals = st.floats(min_value=1e-3, max_value=1e3, allow_nan=False, allow_infinity=False)
bursts = st.integers(min_value=1, max_value=50)


@given(
    start=times,
    interval=intervals,
    burst=bursts,
    steps=st.lists(
        st.tuples(st.floats(min_value=0.0, max_value=50.0), st.booleans()),
        min_size=1,
        max_size=80,
    ),
)
def test_gcra_never_grants_more_than_burst_plus_rate(
    start: float, interval: float, burst: int, steps: list[tuple[float, bool]]
) -> None:
    tat = 0.0
    now = start
    granted: list[float] = []
    for gap, ask_when_told in steps:
        wait, new_tat = gcra(tat, now, interval, burst)
        if wait == 0.0:
            granted.append(now)
            tat = new_tat
            now += gap * interval
        else:
            assert new_tat == max(tat, now)
            # either come back exactly when told, or at some other later time
            now = now + wait if ask_when_told else now + gap * interval + 1e-9
    for i, first in enumerate(granted):
        for j in range(i, len(granted)):
            elapsed = granted[j] - first
            assert j - i + 1 <= burst + elapsed / interval + 1e-6


@given(tat=times, now=times, interval=intervals, burst=bursts)
def test_gcra_denied_request_is_granted_after_the_wait(
    tat: float, now: float, interval: float, burst: int
) -> None:
    wait, kept = gcra(tat, now, interval, burst)
    if wait == 0.0:
        assert kept == max(tat, now) + interval
        return
    assert wait > 0.0
    assert kept == max(tat, now)
    again, _ = gcra(kept, now + wait, interval, burst)
    assert again == 0.0
    if wait > 1e-3:  # and not much earlier
        assert gcra(kept, now + wait / 2, interval, burst)[0] > 0.0


# -------------------------------------------------------- effective limits --
POLICY = ProviderPolicy(
    name="google",
    connection_limit=5,
    messages_per_connection=50,
    max_message_rate=Rate(50, 1),
    burst=10,
)


def rule(
    rule_id: str, *actions: str, rate: Rate | None = None, connections: int | None = None
) -> AutomationRule:
    return AutomationRule(
        id=rule_id,
        patterns=(),
        threshold=1,
        window=0.0,
        actions=actions,
        duration=3600.0,
        rate=rate,
        connections=connections,
    )


SLOW = rule("slow", "set_rate", rate=Rate(1, 1))
FAST = rule("fast", "set_rate", rate=Rate(100, 1))
SLOWER = rule("slower", "set_rate", rate=Rate(1, 60))
ONE_CONN = rule("one", "set_connections", connections=1)
MANY_CONN = rule("many", "set_connections", connections=20)
STOP = rule("stop", "suspend")
STOP_LONGER = rule("stop-longer", "suspend")
ALL = (SLOW, FAST, SLOWER, ONE_CONN, MANY_CONN, STOP, STOP_LONGER)


def test_no_active_rule_gives_the_provider_limits() -> None:
    limits = effective_limits(POLICY, ALL, {}, now=1000.0)
    assert limits == EffectiveLimits(
        rate=Rate(50, 1), connections=5, messages_per_connection=50, burst=10
    )


def test_set_rate_takes_the_lower_rate() -> None:
    limits = effective_limits(POLICY, ALL, {"slow": 2000.0}, now=1000.0)
    assert limits.rate == Rate(1, 1)
    assert limits.burst == 1  # a provider that complained gets exact pacing
    assert limits.rules == ("slow",)
    assert effective_limits(POLICY, ALL, {"fast": 2000.0}, 1000.0).rate == Rate(50, 1)
    both = effective_limits(POLICY, ALL, {"slow": 2000.0, "slower": 2000.0}, 1000.0)
    assert both.rate == Rate(1, 60)
    unlimited = ProviderPolicy(name="x", max_message_rate=None)
    assert effective_limits(unlimited, ALL, {"fast": 2000.0}, 1000.0).rate == Rate(100, 1)


def test_set_connections_takes_the_lower_limit() -> None:
    assert effective_limits(POLICY, ALL, {"one": 2000.0}, 1000.0).connections == 1
    assert effective_limits(POLICY, ALL, {"many": 2000.0}, 1000.0).connections == 5


def test_suspend_gives_suspended_until() -> None:
    limits = effective_limits(POLICY, ALL, {"stop": 1500.0, "stop-longer": 4000.0}, 1000.0)
    assert limits.suspended_until == 4000.0
    assert set(limits.rules) == {"stop", "stop-longer"}


def test_expired_and_unknown_rules_are_ignored() -> None:
    active = {"slow": 999.0, "one": 1000.0, "stop": 10.0, "not-a-rule": 5000.0}
    limits = effective_limits(POLICY, ALL, active, now=1000.0)
    assert limits == effective_limits(POLICY, ALL, {}, now=1000.0)
    assert limits.suspended_until is None and limits.rules == ()


def test_limits_are_shared_out_between_workers() -> None:
    limits = effective_limits(POLICY, ALL, {}, 1000.0, workers=4)
    assert limits.rate is not None
    assert limits.rate.per_second == pytest.approx(12.5)
    assert limits.connections == 1  # 5 // 4
    assert effective_limits(POLICY, ALL, {}, 1000.0, workers=2).connections == 2
    slowed = effective_limits(POLICY, ALL, {"slow": 2000.0}, 1000.0, workers=2)
    assert slowed.rate is not None and slowed.rate.per_second == pytest.approx(0.5)
    # nonsense worker counts count as one
    assert effective_limits(POLICY, ALL, {}, 1000.0, workers=0) == effective_limits(
        POLICY, ALL, {}, 1000.0
    )


@given(
    workers=st.integers(min_value=1, max_value=64),
    limit=st.integers(min_value=1, max_value=200),
    per_second=st.floats(min_value=0.01, max_value=1e4),
)
def test_workers_together_keep_to_the_rate(workers: int, limit: int, per_second: float) -> None:
    policy = ProviderPolicy(name="p", connection_limit=limit, max_message_rate=Rate(per_second, 1))
    limits = effective_limits(policy, (), {}, 0.0, workers=workers)
    assert limits.rate is not None
    assert limits.rate.per_second * workers == pytest.approx(per_second)
    assert limits.connections >= 1
    if workers <= limit:
        assert limits.connections * workers <= limit
