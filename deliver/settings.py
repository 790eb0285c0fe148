"""One frozen settings object, built once at the edge (CLI, dashboard) and passed down.

Sources, later ones winning: built-in defaults, ``sokures.toml`` (``--config`` /
``SOKURES_CONFIG``), then environment variables ``SOKURES_<SECTION>_<KEY>`` for any
scalar key (``SOKURES_SMTP_PORT=2525``, ``SOKURES_DNS_NAMESERVERS=127.0.0.1:5353``),
then explicit overrides from command-line flags. ``SOKURES_DATABASE_URL`` is
``[database] url``. Relative paths in the file are relative to the file's directory.

Example ``sokures.toml`` (``sokures init`` writes one)::

    [sender]
    domain = "example.com"
    unsubscribe_url = "https://example.com/unsubscribe"

    [[dkim.keys]]
    selector = "sk2026r"
    algorithm = "rsa-sha256"
    key_file = "keys/sk2026r.rsa.pem"

    [smtp]
    relay = "127.0.0.1:2525"
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from deliver.errors import ConfigError
from deliver.units import parse_duration

__all__ = [
    "DEFAULT_CONFIG",
    "DEFAULT_DATABASE_URL",
    "ContactsSettings",
    "DkimKey",
    "DnsSettings",
    "EngineSettings",
    "ProbeSettings",
    "RetrySettings",
    "SenderSettings",
    "Settings",
    "SmtpSettings",
    "load_settings",
]

DEFAULT_CONFIG = "sokures.toml"
DEFAULT_DATABASE_URL = "sqlite:///sokures.db"
DKIM_ALGORITHMS = ("rsa-sha256", "ed25519-sha256")


@dataclass(frozen=True, slots=True)
class DkimKey:
    """A DKIM signing key: ``selector._domainkey.<domain>`` publishes its public half."""

    selector: str
    algorithm: str
    key_file: Path

    def __repr__(self) -> str:  # never the key, only where it lives
        return f"DkimKey({self.selector!r}, {self.algorithm!r}, {str(self.key_file)!r})"


@dataclass(frozen=True, slots=True)
class SenderSettings:
    domain: str | None = None
    #: name sent in EHLO; defaults to ``mail.<domain>``
    helo: str | None = None
    #: domain of the VERP envelope sender (``bounce-<id>-<mac>@bounce_domain``)
    bounce_domain: str | None = None
    bounce_prefix: str = "bounce"
    #: base https URL for one-click unsubscribe; the per-recipient token is appended
    unsubscribe_url: str | None = None
    #: mailto address for List-Unsubscribe; ``+token`` is added to its local part
    unsubscribe_mailto: str | None = None
    #: sender id in ``Feedback-ID: campaign:list:kind:sender`` (Gmail FBL)
    feedback_id: str = "sokures"
    #: file holding the key for VERP and unsubscribe tokens (mode 0600)
    token_key_file: Path | None = None

    @property
    def helo_name(self) -> str:
        return self.helo or (f"mail.{self.domain}" if self.domain else "localhost")


@dataclass(frozen=True, slots=True)
class ContactsSettings:
    #: country (ISO 3166) for phone numbers written without +country code
    region: str | None = None
    #: accept addresses in the .test TLD (RFC 6761): for labs and benchmarks only
    allow_test_domains: bool = False


@dataclass(frozen=True, slots=True)
class SmtpSettings:
    #: destination port when delivering direct to MX (25; labs use another)
    port: int = 25
    #: ``host:port`` of a relay (smarthost); empty = direct to MX
    relay: str | None = None
    connect_timeout: float = 30.0
    command_timeout: float = 120.0


@dataclass(frozen=True, slots=True)
class DnsSettings:
    #: ``host[:port]`` of the resolvers to ask; empty = the system's resolv.conf
    nameservers: tuple[str, ...] = ()
    timeout: float = 5.0
    concurrency: int = 64


@dataclass(frozen=True, slots=True)
class ProbeSettings:
    #: the IP addresses mail is sent from (PTR/FCrDNS, SPF evaluation, DNSBL)
    sending_ips: tuple[str, ...] = ()
    #: DNSBL zones queried for the sending IPs, and for the domain
    dnsbl_ip_zones: tuple[str, ...] = ("zen.spamhaus.org", "bl.spamcop.net")
    dnsbl_domain_zones: tuple[str, ...] = ("dbl.spamhaus.org",)
    #: rulebooks evaluated when ``probe`` is not given ``--rulebook``
    rulebooks: tuple[str, ...] = ("gmail@latest", "yahoo@latest", "outlook@latest")
    #: domains audited at once (each runs its checks' lookups concurrently)
    concurrency: int = 64
    #: the DNS timeout for probes (a lookup that takes longer is an ``error`` result)
    dns_timeout: float = 3.0


@dataclass(frozen=True, slots=True)
class RetrySettings:
    """Retry schedule for deferred (4xx) messages, in seconds."""

    initial: float = 300.0
    factor: float = 2.0
    max_interval: float = 4 * 3600.0
    max_age: float = 5 * 86400.0
    #: +/- fraction of randomness on each interval so retries do not come in waves
    jitter: float = 0.2


@dataclass(frozen=True, slots=True)
class EngineSettings:
    #: a claimed message is another worker's to take after this long without renewal
    lease_seconds: float = 120.0
    #: messages claimed per query
    claim_batch: int = 400
    #: threads signing DKIM (the RSA step releases the GIL); 0 = one per CPU
    sign_threads: int = 0
    #: ``send`` keeps running while a deferred message becomes due within this time
    linger: float = 30.0
    #: outcomes written per transaction, and the longest they wait to be written
    record_batch: int = 256
    record_interval: float = 0.05


@dataclass(frozen=True, slots=True)
class Settings:
    config_path: Path = Path(DEFAULT_CONFIG)
    database_url: str = DEFAULT_DATABASE_URL
    sender: SenderSettings = field(default_factory=SenderSettings)
    contacts: ContactsSettings = field(default_factory=ContactsSettings)
    dkim_keys: tuple[DkimKey, ...] = ()
    #: selectors to sign with; several = dual signing (e.g. RSA and Ed25519)
    dkim_sign_with: tuple[str, ...] = ()
    smtp: SmtpSettings = field(default_factory=SmtpSettings)
    dns: DnsSettings = field(default_factory=DnsSettings)
    retry: RetrySettings = field(default_factory=RetrySettings)
    engine: EngineSettings = field(default_factory=EngineSettings)
    probes: ProbeSettings = field(default_factory=ProbeSettings)
    #: operator's shaping file, merged over the shipped ``deliver/shaping.toml``
    shaping_file: Path | None = None

    @property
    def signing_keys(self) -> tuple[DkimKey, ...]:
        """The keys to sign with, in signing order."""
        if not self.dkim_sign_with:
            return self.dkim_keys[:1]
        by_selector = {k.selector: k for k in self.dkim_keys}
        return tuple(by_selector[s] for s in self.dkim_sign_with)

    def require_domain(self) -> str:
        if not self.sender.domain:
            raise ConfigError(
                f"no sender domain configured in {self.config_path}: "
                "run `sokures init --domain DOMAIN`"
            )
        return self.sender.domain


# sections of sokures.toml that map one-to-one onto a dataclass
_SECTIONS: dict[str, type[Any]] = {
    "sender": SenderSettings,
    "contacts": ContactsSettings,
    "smtp": SmtpSettings,
    "dns": DnsSettings,
    "retry": RetrySettings,
    "engine": EngineSettings,
    "probes": ProbeSettings,
}
_DURATION_FIELDS = {
    ("retry", "initial"),
    ("retry", "max_interval"),
    ("retry", "max_age"),
    ("engine", "lease_seconds"),
    ("engine", "linger"),
    ("engine", "record_interval"),
    ("smtp", "connect_timeout"),
    ("smtp", "command_timeout"),
    ("dns", "timeout"),
    ("probes", "dns_timeout"),
}


def load_settings(
    config: str | Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Build the settings from defaults, the config file, the environment and overrides.

    ``overrides`` use dotted keys (``{"smtp.relay": "127.0.0.1:2525", "database.url": ...}``);
    ``None`` values are ignored so CLI options can be passed through unconditionally.
    A missing config file is fine unless it was named explicitly.
    """
    env = os.environ if env is None else env
    explicit = config is not None or "SOKURES_CONFIG" in env
    path = Path(config if config is not None else env.get("SOKURES_CONFIG", DEFAULT_CONFIG))
    raw: dict[str, Any] = {}
    if path.exists():
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: {exc}") from None
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    elif explicit:
        raise ConfigError(f"{path}: no such config file")
    base = path.resolve().parent
    flat = _flatten(raw, str(path))
    from_env = _from_env(env)
    flat.update(from_env)
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    flat.update(given)
    return _build(flat, path, base, set(from_env) - set(given))


def _flatten(raw: Mapping[str, Any], source: str) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    known = {"database", "dkim", "shaping", *_SECTIONS}
    for section, table in raw.items():
        if section not in known:
            raise ConfigError(f"{source}: unknown section [{section}]")
        if not isinstance(table, dict):
            raise ConfigError(f"{source}: [{section}] must be a table")
        for key, value in table.items():
            flat[f"{section}.{key}"] = value
    return flat


def _from_env(env: Mapping[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "SOKURES_DATABASE_URL" in env:
        out["database.url"] = env["SOKURES_DATABASE_URL"]
    if "SOKURES_SHAPING_FILE" in env:
        out["shaping.file"] = env["SOKURES_SHAPING_FILE"]
    if "SOKURES_DKIM_SIGN_WITH" in env:
        out["dkim.sign_with"] = env["SOKURES_DKIM_SIGN_WITH"]
    for section, cls in _SECTIONS.items():
        for f in fields(cls):
            name = f"SOKURES_{section}_{f.name}".upper()
            if name in env:
                out[f"{section}.{f.name}"] = env[name]
    return out


def _build(flat: dict[str, Any], path: Path, base: Path, from_env: set[str]) -> Settings:
    def where(key: str) -> str:
        # a value from the environment is not in the file: name the variable instead
        if key in from_env:
            return f"environment variable SOKURES_{key.replace('.', '_').upper()}: {key}"
        return f"{path}: {key}"

    sections: dict[str, Any] = {}
    for section, cls in _SECTIONS.items():
        values: dict[str, Any] = {}
        hints = typing.get_type_hints(cls)
        for f in fields(cls):
            key = f"{section}.{f.name}"
            if key in flat:
                values[f.name] = _coerce(
                    flat.pop(key),
                    hints[f.name],
                    key,
                    where,
                    base,
                    duration=(section, f.name) in _DURATION_FIELDS,
                )
        sections[section] = cls(**values)
    database_url = str(flat.pop("database.url", DEFAULT_DATABASE_URL))
    shaping = flat.pop("shaping.file", None)
    keys = _dkim_keys(flat.pop("dkim.keys", []), where, base)
    sign_with = flat.pop("dkim.sign_with", None)
    if isinstance(sign_with, str):
        sign_with = [s.strip() for s in sign_with.split(",") if s.strip()]
    if not isinstance(sign_with, list | tuple | None) or not all(
        isinstance(s, str) for s in sign_with or ()
    ):
        raise ConfigError(f"{where('dkim.sign_with')}: must be a selector or a list of selectors")
    sign_with = tuple(sign_with or ())
    unknown_selectors = set(sign_with) - {k.selector for k in keys}
    if unknown_selectors:
        raise ConfigError(
            f"{where('dkim.sign_with')}: no key with selector "
            f"{', '.join(sorted(unknown_selectors))}"
        )
    if flat:
        raise ConfigError(f"{where(sorted(flat)[0])}: unknown setting")
    sender: SenderSettings = sections["sender"]
    if sender.domain and not sender.bounce_domain:
        sender = dataclasses.replace(sender, bounce_domain=sender.domain)
    return Settings(
        config_path=path,
        database_url=database_url,
        sender=sender,
        contacts=sections["contacts"],
        dkim_keys=keys,
        dkim_sign_with=sign_with,
        smtp=sections["smtp"],
        dns=sections["dns"],
        retry=sections["retry"],
        engine=sections["engine"],
        probes=sections["probes"],
        shaping_file=_path(shaping, base) if shaping else None,
    )


def _dkim_keys(raw: Any, where: Any, base: Path) -> tuple[DkimKey, ...]:
    if not isinstance(raw, list):
        raise ConfigError(f"{where('dkim.keys')}: must be an array of tables ([[dkim.keys]])")
    keys = []
    for i, entry in enumerate(raw):
        key = f"dkim.keys[{i}]"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where(key)}: must be a table")
        extra = set(entry) - {"selector", "algorithm", "key_file"}
        if extra:
            raise ConfigError(f"{where(key)}.{sorted(extra)[0]}: unknown setting")
        try:
            selector, algorithm, key_file = entry["selector"], entry["algorithm"], entry["key_file"]
        except KeyError as exc:
            raise ConfigError(f"{where(key)}.{exc.args[0]}: missing") from None
        if algorithm not in DKIM_ALGORITHMS:
            raise ConfigError(
                f"{where(key)}.algorithm: {algorithm!r} is not one of {', '.join(DKIM_ALGORITHMS)}"
            )
        keys.append(DkimKey(str(selector), algorithm, _path(key_file, base)))
    return tuple(keys)


def _path(value: Any, base: Path) -> Path:
    p = Path(str(value)).expanduser()
    return p if p.is_absolute() else base / p


def _coerce(value: Any, hint: Any, key: str, where: Any, base: Path, *, duration: bool) -> Any:
    """Convert a TOML or environment value to the field's type, or say which key is wrong."""
    origin = typing.get_origin(hint)
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    optional = origin in (typing.Union, types.UnionType) and len(args) == 1
    target = args[0] if optional else hint
    try:
        if optional and value in ("", None):
            return None
        if duration:
            return parse_duration(value)
        if target is bool:
            if isinstance(value, bool):
                return value
            if str(value).lower() in ("1", "true", "yes", "on"):
                return True
            if str(value).lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(f"not a boolean: {value!r}")
        if target is int:
            # int() would truncate 1.5 to 1 (and fail outside ValueError on inf)
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError(f"not an integer: {value!r}")
            return int(value)
        if target is float:
            if isinstance(value, bool):
                raise ValueError(f"not a number: {value!r}")
            return float(value)
        if target is Path:
            return _path(value, base)
        if typing.get_origin(target) is tuple:
            items = value.split(",") if isinstance(value, str) else list(value)
            return tuple(str(i).strip() for i in items if str(i).strip())
        if target is str:
            if not isinstance(value, str | int | float):
                raise ValueError(f"not a string: {value!r}")
            return str(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where(key)}: {exc}") from None
    raise ConfigError(f"{where(key)}: unsupported value {value!r}")
