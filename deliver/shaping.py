"""Traffic shaping: the policy (data, from ``shaping.toml``) and the pure decisions.

* :class:`ShapingPolicy` is loaded and validated from the shipped ``deliver/shaping.toml``
  with the operator's file merged over it; every error names the file and the key.
* :func:`gcra` is the rate limiter (Generic Cell Rate Algorithm): pure, given a clock.
* :func:`effective_limits` turns a provider's policy plus the automation rules that are
  active right now into the limits a worker applies.

Nothing here does I/O or reads the time: callers pass ``now``.
"""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from deliver.errors import PolicyError
from deliver.units import Rate, parse_duration, parse_rate

__all__ = [
    "ACTIONS",
    "AutomationRule",
    "EffectiveLimits",
    "ProviderPolicy",
    "ShapingPolicy",
    "effective_limits",
    "gcra",
]

SHIPPED = Path(__file__).with_name("shaping.toml")
ACTIONS = ("suspend", "set_rate", "set_connections", "bounce")
TLS_MODES = ("opportunistic", "required", "disabled")
_PROVIDER_KEYS = {
    "mx_suffixes",
    "domains",
    "connection_limit",
    "messages_per_connection",
    "max_message_rate",
    "burst",
    "tls",
    "rules",
    "replace",
}
_RULE_KEYS = {"id", "match", "trigger", "action", "rate", "connections", "duration"}


@dataclass(frozen=True, slots=True)
class AutomationRule:
    id: str
    patterns: tuple[re.Pattern[str], ...]
    #: matching replies needed within ``window`` seconds (1 and 0 for "immediate")
    threshold: int
    window: float
    actions: tuple[str, ...]
    duration: float
    rate: Rate | None = None
    connections: int | None = None

    def matches(self, reply: str) -> bool:
        return any(p.search(reply) for p in self.patterns)


@dataclass(frozen=True, slots=True)
class ProviderPolicy:
    name: str
    mx_suffixes: tuple[str, ...] = ()
    domains: tuple[str, ...] = ()
    connection_limit: int = 10
    messages_per_connection: int = 100
    max_message_rate: Rate | None = None
    burst: int = 1
    tls: str = "opportunistic"
    rules: tuple[AutomationRule, ...] = ()


@dataclass(frozen=True, slots=True)
class EffectiveLimits:
    """What a worker applies to a provider right now."""

    rate: Rate | None
    connections: int
    messages_per_connection: int
    burst: int
    suspended_until: float | None = None
    #: ids of the rules in force, for display
    rules: tuple[str, ...] = ()


@dataclass(frozen=True)
class ShapingPolicy:
    providers: Mapping[str, ProviderPolicy]
    default: ProviderPolicy
    sources: tuple[str, ...] = field(default=())

    # ------------------------------------------------------------ loading --
    @classmethod
    def load(cls, override: Path | None = None) -> ShapingPolicy:
        """The shipped policy, with the operator's file merged over it."""
        raw = _read(SHIPPED)
        sources = [str(SHIPPED)]
        origin = _origins(raw, str(SHIPPED))
        if override is not None:
            extra = _read(override)
            raw = _merge(raw, extra, origin, str(override))
            sources.append(str(override))
        return cls.from_dict(raw, origin, tuple(sources))

    @classmethod
    def from_dict(
        cls,
        raw: Mapping[str, Any],
        origin: Mapping[str, str] | None = None,
        sources: tuple[str, ...] = (),
    ) -> ShapingPolicy:
        origin = origin or {}
        unknown = set(raw) - {"default", "providers"}
        if unknown:
            key = sorted(unknown)[0]
            raise PolicyError(origin.get(key, "shaping"), key, "unknown section")
        for section in ("default", "providers"):
            if not isinstance(raw.get(section, {}), dict):
                raise PolicyError(origin.get(section, "shaping"), section, "must be a table")
        default_raw = dict(raw.get("default", {}))
        default = _provider("default", default_raw, None, origin.get("default", "shaping"))
        providers: dict[str, ProviderPolicy] = {}
        for name, table in dict(raw.get("providers", {})).items():
            where = origin.get(f"providers.{name}", "shaping")
            if not isinstance(table, dict):
                raise PolicyError(where, f"providers.{name}", "must be a table")
            providers[name] = _provider(name, table, default, where)
        return cls(providers=providers, default=default, sources=sources)

    # ------------------------------------------------------------ routing --
    def provider(self, name: str | None) -> ProviderPolicy:
        if name is None:
            return self.default
        return self.providers.get(name, self.default)

    def provider_for_mx(self, mx_hosts: Sequence[str]) -> str:
        """The provider whose MX suffix ends the best MX host; "default" if none."""
        for host in mx_hosts[:1]:
            h = "." + host.lower().rstrip(".")
            for p in self.providers.values():
                if any(h.endswith(s) for s in p.mx_suffixes):
                    return p.name
        return "default"

    def provider_for_domain(self, domain: str) -> str | None:
        d = domain.lower().rstrip(".")
        for p in self.providers.values():
            if d in p.domains:
                return p.name
        return None

    def domain_map(self) -> dict[str, str]:
        return {d: p.name for p in self.providers.values() for d in p.domains}

    def rules_for(self, provider: str | None) -> tuple[AutomationRule, ...]:
        p = self.provider(provider)
        own = {r.id for r in p.rules}
        inherited = (
            () if p is self.default else tuple(r for r in self.default.rules if r.id not in own)
        )
        return p.rules + inherited

    def matching_rules(self, provider: str | None, reply: str) -> list[AutomationRule]:
        """Rules the reply triggers: the provider's own when any matches, else the defaults."""
        p = self.provider(provider)
        own = [r for r in p.rules if r.matches(reply)]
        if own or p is self.default:
            return own
        return [r for r in self.rules_for(provider) if r.matches(reply)]


def gcra(tat: float, now: float, interval: float, burst: int) -> tuple[float, float]:
    """One GCRA decision: ``(wait, new_tat)``.

    ``tat`` is the theoretical arrival time of the next event; with ``wait == 0`` the
    event may go now and ``new_tat`` must be stored; otherwise wait that long and ask
    again (``new_tat`` is ``tat`` unchanged). ``burst`` events may go back to back.
    """
    tat = max(tat, now)
    allow_at = tat - interval * (max(burst, 1) - 1)
    if now < allow_at:
        wait = allow_at - now
        # now + wait can round to just below allow_at, and asking again then must succeed;
        # a step or two at most (the subtraction is exact when now and allow_at are close)
        while now + wait < allow_at:
            wait = math.nextafter(wait, math.inf)
        return wait, tat
    return 0.0, tat + interval


def effective_limits(
    policy: ProviderPolicy,
    rules: Iterable[AutomationRule],
    active: Mapping[str, float],
    now: float,
    workers: int = 1,
) -> EffectiveLimits:
    """Limits for one worker out of ``workers``: the provider's, tightened by active rules.

    ``active`` maps rule ids to the time they hold until. Rates and connection limits
    are shared out between the workers so that together they keep to them.
    """
    workers = max(1, workers)
    rate = policy.max_message_rate
    connections = policy.connection_limit
    suspended: float | None = None
    in_force = []
    for rule in rules:
        until = active.get(rule.id)
        if until is None or until <= now:
            continue
        in_force.append(rule.id)
        if "suspend" in rule.actions:
            suspended = max(suspended or 0.0, until)
        if "set_rate" in rule.actions and rule.rate is not None:
            rate = rule.rate if rate is None or rule.rate.per_second < rate.per_second else rate
        if "set_connections" in rule.actions and rule.connections is not None:
            connections = min(connections, rule.connections)
    burst = policy.burst
    if rate is not None:
        rate = rate.scaled(1 / workers)
        if len(in_force):
            burst = 1  # a provider that complained gets exact pacing
    return EffectiveLimits(
        rate=rate,
        connections=max(1, connections // workers),
        messages_per_connection=policy.messages_per_connection,
        burst=burst,
        suspended_until=suspended,
        rules=tuple(in_force),
    )


# ----------------------------------------------------------------- parsing --
def _read(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise PolicyError(str(path), "-", f"cannot read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(str(path), "-", str(exc)) from None


def _origins(raw: Mapping[str, Any], source: str) -> dict[str, str]:
    origin = {"default": source}
    origin.update({f"providers.{p}": source for p in raw.get("providers", {})})
    return origin


def _merge(
    base: dict[str, Any], extra: dict[str, Any], origin: dict[str, str], source: str
) -> dict[str, Any]:
    """Merge the operator's file over the shipped one (see the header of shaping.toml)."""
    out = {"default": dict(base.get("default", {})), "providers": dict(base.get("providers", {}))}
    for key in extra:
        if key not in ("default", "providers"):
            raise PolicyError(source, key, "unknown section")
    if "default" in extra:
        _check_table(extra["default"], source, "default")
        out["default"] = _merge_table(out["default"], extra["default"])
        origin["default"] = source
    if not isinstance(extra.get("providers", {}), dict):
        raise PolicyError(source, "providers", "must be a table")
    for name, table in dict(extra.get("providers", {})).items():
        _check_table(table, source, f"providers.{name}")
        old = {} if table.get("replace") else out["providers"].get(name, {})
        out["providers"][name] = _merge_table(dict(old), table)
        origin[f"providers.{name}"] = source
    return out


def _check_table(table: Any, source: str, key: str) -> None:
    """Check an operator's table before merging: merging keys rules by id, so a duplicate
    id would vanish, and a rule's index in the merged list is not its index in the file."""
    if not isinstance(table, dict):
        raise PolicyError(source, key, "must be a table")
    rules = table.get("rules", [])
    if not isinstance(rules, list):
        raise PolicyError(source, f"{key}.rules", "must be an array of tables ([[...rules]])")
    ids = [_rule(r, source, f"{key}.rules[{i}]").id for i, r in enumerate(rules)]
    if len(set(ids)) != len(ids):
        raise PolicyError(source, f"{key}.rules", "two rules share an id")


def _merge_table(old: dict[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    merged = {**old, **{k: v for k, v in new.items() if k != "rules"}}
    rules = {r.get("id"): r for r in old.get("rules", []) if isinstance(r, dict)}
    for rule in new.get("rules", []):
        rules[rule.get("id") if isinstance(rule, dict) else None] = rule
    if rules:
        merged["rules"] = list(rules.values())
    return merged


def _provider(
    name: str, raw: Mapping[str, Any], default: ProviderPolicy | None, where: str
) -> ProviderPolicy:
    prefix = "default" if default is None else f"providers.{name}"
    unknown = set(raw) - _PROVIDER_KEYS
    if unknown:
        raise PolicyError(where, f"{prefix}.{sorted(unknown)[0]}", "unknown key")
    base = default or ProviderPolicy(name="default")
    values: dict[str, Any] = {"name": name, "rules": ()}
    for key, kind in (("mx_suffixes", "suffixes"), ("domains", "strings")):
        if key in raw:
            found = _strings(raw[key], where, f"{prefix}.{key}", suffix=kind == "suffixes")
            # DNS names are case-insensitive: "Gmail.com" must match gmail.com
            values[key] = tuple(name.lower().rstrip(".") for name in found)
    for key in ("connection_limit", "messages_per_connection", "burst"):
        if key in raw:
            values[key] = _positive_int(raw[key], where, f"{prefix}.{key}")
    if "max_message_rate" in raw:
        values["max_message_rate"] = _rate(
            raw["max_message_rate"], where, f"{prefix}.max_message_rate"
        )
    if "tls" in raw:
        if raw["tls"] not in TLS_MODES:
            raise PolicyError(where, f"{prefix}.tls", f"must be one of {', '.join(TLS_MODES)}")
        values["tls"] = raw["tls"]
    rules = raw.get("rules", [])
    if not isinstance(rules, list):
        raise PolicyError(where, f"{prefix}.rules", "must be an array of tables ([[...rules]])")
    parsed = tuple(_rule(r, where, f"{prefix}.rules[{i}]") for i, r in enumerate(rules))
    ids = [r.id for r in parsed]
    if len(set(ids)) != len(ids):
        raise PolicyError(where, f"{prefix}.rules", "two rules share an id")
    values["rules"] = parsed
    if default is None:
        return replace(base, **values)
    inherited = {
        k: getattr(base, k)
        for k in ("connection_limit", "messages_per_connection", "max_message_rate", "burst", "tls")
    }
    return ProviderPolicy(**{**inherited, **values})


def _rule(raw: Any, where: str, key: str) -> AutomationRule:
    if not isinstance(raw, dict):
        raise PolicyError(where, key, "must be a table")
    unknown = set(raw) - _RULE_KEYS
    if unknown:
        raise PolicyError(where, f"{key}.{sorted(unknown)[0]}", "unknown key")
    for required in ("id", "match", "action", "duration"):
        if required not in raw:
            raise PolicyError(where, f"{key}.{required}", "missing")
    patterns = []
    for text in _strings(raw["match"], where, f"{key}.match"):
        try:
            patterns.append(re.compile(text))
        except re.error as exc:
            raise PolicyError(
                where, f"{key}.match", f"invalid regular expression {text!r}: {exc}"
            ) from None
    actions = tuple(_strings(raw["action"], where, f"{key}.action"))
    for a in actions:
        if a not in ACTIONS:
            raise PolicyError(where, f"{key}.action", f"{a!r} is not one of {', '.join(ACTIONS)}")
    threshold, window = _trigger(raw.get("trigger", "immediate"), where, f"{key}.trigger")
    rate = _rate(raw["rate"], where, f"{key}.rate") if "rate" in raw else None
    connections = (
        _positive_int(raw["connections"], where, f"{key}.connections")
        if "connections" in raw
        else None
    )
    if "set_rate" in actions and rate is None:
        raise PolicyError(where, f"{key}.rate", 'set_rate needs rate = "N/unit"')
    if "set_connections" in actions and connections is None:
        raise PolicyError(where, f"{key}.connections", "set_connections needs connections = N")
    try:
        duration = parse_duration(raw["duration"])
    except ValueError as exc:
        raise PolicyError(where, f"{key}.duration", str(exc)) from None
    return AutomationRule(
        id=str(raw["id"]),
        patterns=tuple(patterns),
        threshold=threshold,
        window=window,
        actions=actions,
        duration=duration,
        rate=rate,
        connections=connections,
    )


def _trigger(value: Any, where: str, key: str) -> tuple[int, float]:
    if value == "immediate":
        return 1, 0.0
    try:
        rate = parse_rate(str(value))
    except ValueError:
        raise PolicyError(
            where, key, f'{value!r}: use "immediate" or "N/h" (N matches per hour)'
        ) from None
    if rate.count != int(rate.count):
        raise PolicyError(where, key, "the count must be a whole number")
    return int(rate.count), rate.per_seconds


def _strings(value: Any, where: str, key: str, *, suffix: bool = False) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(i, str) and i for i in items):
        raise PolicyError(where, key, "must be a string or a list of strings")
    if suffix:
        return tuple(i.lower() if i.startswith(".") else "." + i.lower() for i in items)
    return tuple(items)


def _positive_int(value: Any, where: str, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise PolicyError(where, key, "must be a whole number of at least 1")
    return value


def _rate(value: Any, where: str, key: str) -> Rate:
    try:
        return parse_rate(str(value))
    except ValueError as exc:
        raise PolicyError(where, key, str(exc)) from None
