"""Seed lists: the mailboxes a placement test sends a copy to and then reads back.

A seed list is a TOML file (``seedlists/*.toml``)::

    name = "lab"                     # optional, default: the file's stem
    description = "..."              # optional
    [defaults]                       # optional: any seed key except address
    tls = "none"

    [[seed]]
    address = "seed.gmail@gmail.com" # required
    provider = "gmail"               # required: gmail, yahoo, outlook or any lowercase name
    imap_host = "imap.gmail.com"     # required
    imap_port = 993                  # default: 993 for tls = "implicit", else 143
    imap_user = "..."                # default: the address
    secret_env = "SEED_GMAIL_PASSWORD"  # required: the NAME of the environment variable
    auth = "password"                # password | xoauth2 (the variable holds an OAuth token)
    tls = "implicit"                 # implicit | starttls | none (loopback hosts only)
    maildir = "{lab_dir}/mail/gmail.com/seed.gmail/Maildir"  # optional

Secrets never live in the file: a key named like a secret (password, token, secret) is
refused anywhere in it, and :meth:`Seed.secret` reads the variable only when asked,
without ever putting its value into a message. Every error names the file, the line and
the key (``seedlists/x.toml:14: seed[2].tls: must be one of implicit, starttls, none``);
``tomllib`` gives no positions for values, so the line is found by scanning the text for
the key within its ``[[seed]]`` block (the block's header line when the key is not there).
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from email_validator import EmailNotValidError, validate_email

from deliver.errors import ConfigError, InputError

__all__ = [
    "AUTH_MODES",
    "DEFAULT_PORTS",
    "SEED_KEYS",
    "TLS_MODES",
    "Seed",
    "SeedList",
    "load_seedlist",
    "seeds_to_toml",
]

TLS_MODES = ("implicit", "starttls", "none")
AUTH_MODES = ("password", "xoauth2")
#: RFC 8314 §3.3: IMAP over implicit TLS on 993; RFC 9051 §2.1: plain (and STARTTLS) on 143
DEFAULT_PORTS = {"implicit": 993, "starttls": 143, "none": 143}
SEED_KEYS = (
    "address", "provider", "imap_host", "imap_port", "imap_user",
    "secret_env", "auth", "tls", "maildir",
)  # fmt: skip
TOP_KEYS = ("name", "description", "defaults", "seed")
_SECRET_WORDS = ("password", "passwd", "token", "secret")
_SECRET_HINT = "put the secret in an environment variable and name it in secret_env"
_PROVIDER_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")
_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?"
_HOST_RE = re.compile(rf"^{_LABEL}(\.{_LABEL})*\.?$")
_PLACEHOLDER_RE = re.compile(r"\{([^{}]*)\}")
_TOML_AT_RE = re.compile(r"\s*\(at line (\d+), column \d+\)\s*$")
_HEADER_RE = re.compile(r"^\s*(\[\[?)\s*([^\]#]+?)\s*\]\]?\s*(#.*)?$")
_KEY_RE = re.compile(r"""^\s*(?:"([^"]+)"|'([^']+)'|([A-Za-z0-9_-]+))\s*=""")


@dataclass(frozen=True, slots=True)
class Seed:
    """One seed mailbox. ``secret_env`` is the *name* of the variable holding the password
    (``auth="password"``) or the OAuth 2.0 access token (``auth="xoauth2"``)."""

    address: str
    provider: str
    imap_host: str
    imap_port: int
    imap_user: str
    secret_env: str
    auth: str = "password"
    tls: str = "implicit"
    #: read this Maildir directly when the IMAP server cannot be reached (the lab's)
    maildir: Path | None = None

    @property
    def domain(self) -> str:
        return self.address.rpartition("@")[2].lower()

    def secret(self, env: Mapping[str, str] | None = None) -> str:
        """The password or token, from ``env`` (default: the process environment).

        Raises :class:`ConfigError` naming the variable (never its value) when unset."""
        value = (os.environ if env is None else env).get(self.secret_env)
        if value is None:
            raise ConfigError(
                f"seed {self.address}: environment variable {self.secret_env} is not set"
            )
        if not value:
            raise ConfigError(
                f"seed {self.address}: environment variable {self.secret_env} is empty"
            )
        return value


@dataclass(frozen=True, slots=True)
class SeedList:
    name: str
    description: str
    seeds: tuple[Seed, ...]
    #: the file it was loaded from (None when built in memory)
    path: Path | None = None

    def providers(self) -> tuple[str, ...]:
        """The providers, each once, in the order the file first names them."""
        return tuple(dict.fromkeys(seed.provider for seed in self.seeds))

    def for_provider(self, provider: str) -> tuple[Seed, ...]:
        return tuple(seed for seed in self.seeds if seed.provider == provider)


def load_seedlist(path: Path | str, *, lab_dir: Path | None = None) -> SeedList:
    """Read and validate a seed list; :class:`InputError` ("file:line: key: reason") if bad.

    ``{lab_dir}`` in a ``maildir`` is replaced by ``lab_dir`` (an error when it is not
    given); a relative ``maildir`` is taken from the seed list's directory.
    """
    path = Path(path)
    src = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror or exc}", source=src) from None
    except UnicodeDecodeError:
        raise InputError("not UTF-8 text", source=src) from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        at = _TOML_AT_RE.search(message)
        reason = f"invalid TOML: {_TOML_AT_RE.sub('', message)}"
        raise InputError(reason, line=int(at[1]) if at else None, source=src) from None
    parser = _Parser(src, _Locator(text), lab_dir, path.parent)
    return parser.seedlist(raw, default_name=path.stem, path=path)


def seeds_to_toml(seeds: Iterable[Seed], name: str, *, description: str | None = None) -> str:
    """A seed list file naming ``seeds``, which :func:`load_seedlist` reads back as they are
    (``maildir`` paths are written absolute as given)."""
    out = [f"name = {_toml_str(name)}"]
    if description:
        out.append(f"description = {_toml_str(description)}")
    for seed in seeds:
        out += [
            "",
            "[[seed]]",
            f"address = {_toml_str(seed.address)}",
            f"provider = {_toml_str(seed.provider)}",
            f"imap_host = {_toml_str(seed.imap_host)}",
            f"imap_port = {int(seed.imap_port)}",
            f"imap_user = {_toml_str(seed.imap_user)}",
            f"secret_env = {_toml_str(seed.secret_env)}",
            f"auth = {_toml_str(seed.auth)}",
            f"tls = {_toml_str(seed.tls)}",
        ]
        if seed.maildir is not None:
            out.append(f"maildir = {_toml_str(str(seed.maildir))}")
    return "\n".join(out) + "\n"


def _toml_str(value: str) -> str:
    """A TOML basic string (TOML 1.0 §String): backslash, quote and controls escaped."""
    parts = []
    for ch in value:
        if ch in ('"', "\\"):
            parts.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            parts.append(f"\\u{ord(ch):04X}")
        else:
            parts.append(ch)
    return '"' + "".join(parts) + '"'


# ------------------------------------------------------------- locating lines --
#: a section of the file: "" (top level), "defaults", or "seed[i]"
Section = str


class _Locator:
    """Line numbers of the ``[defaults]`` and ``[[seed]]`` headers and of the keys under
    them, found by scanning the text (``tomllib`` keeps no positions)."""

    def __init__(self, text: str) -> None:
        self.headers: dict[Section, int] = {}
        self.keys: dict[Section, dict[str, int]] = {"": {}}
        section: Section | None = ""
        seeds = 0
        for number, line in enumerate(text.splitlines(), start=1):
            header = _HEADER_RE.match(line)
            if header:
                section = self._section(header[1], header[2].strip("\"' "), seeds)
                if section is not None:
                    seeds += section.startswith("seed[")
                    self.headers[section] = number
                    self.keys[section] = {}
                continue
            key = _KEY_RE.match(line)
            if key and section is not None:
                self.keys[section].setdefault(key[1] or key[2] or key[3], number)

    @staticmethod
    def _section(brackets: str, name: str, seeds: int) -> Section | None:
        if brackets == "[[" and name == "seed":
            return f"seed[{seeds}]"
        if brackets == "[" and name == "defaults":
            return "defaults"
        return None

    def line(self, section: Section, key: str | None = None) -> int | None:
        if key is not None and key in self.keys.get(section, {}):
            return self.keys[section][key]
        # a key nested deeper (seed[0].x.password): the line of its [[seed]] block
        return self.headers.get(section) or self.headers.get(section.partition(".")[0])


# ---------------------------------------------------------------- validation --
class _Parser:
    def __init__(self, src: str, where: _Locator, lab_dir: Path | None, base: Path) -> None:
        self.src = src
        self.where = where
        self.lab_dir = lab_dir
        self.base = base

    def fail(self, section: Section, key: str | None, reason: str) -> InputError:
        label = ".".join(part for part in (section, key) if part)
        text = f"{label}: {reason}" if label else reason
        return InputError(text, line=self.where.line(section, key), source=self.src)

    def seedlist(self, raw: dict[str, Any], *, default_name: str, path: Path) -> SeedList:
        self.refuse_secrets(raw, "")
        self.no_unknown(raw, "", TOP_KEYS)
        name = self.text(raw.get("name", default_name), "", "name")
        description = raw.get("description", "")
        if not isinstance(description, str):
            raise self.fail("", "description", "must be a string")
        defaults = raw.get("defaults", {})
        if not isinstance(defaults, dict):
            raise self.fail("", "defaults", "must be a table ([defaults])")
        if "address" in defaults:
            raise self.fail("defaults", "address", "every seed has its own address: no default")
        self.no_unknown(defaults, "defaults", SEED_KEYS)
        entries = raw.get("seed")
        if entries is None:
            raise self.fail("", None, "no seeds: add at least one [[seed]] table")
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            raise self.fail("", "seed", "must be an array of tables ([[seed]])")
        if not entries:
            raise self.fail("", "seed", "no seeds: add at least one [[seed]] table")
        seeds: list[Seed] = []
        first_at: dict[str, int] = {}
        for i, entry in enumerate(entries):
            section = f"seed[{i}]"
            self.no_unknown(entry, section, SEED_KEYS)
            seed = self.seed(section, entry, defaults)
            key = seed.address.lower()
            if key in first_at:
                raise self.fail(
                    section,
                    "address",
                    f"{seed.address} is listed twice (also seed[{first_at[key]}])",
                )
            first_at[key] = i
            seeds.append(seed)
        return SeedList(name, description, tuple(seeds), path)

    def refuse_secrets(self, raw: Any, section: Section) -> None:
        """Refuse any key named like a secret, at any depth: secrets live in the environment."""
        if isinstance(raw, list):
            for i, item in enumerate(raw):
                self.refuse_secrets(item, f"{section}[{i}]" if section == "seed" else section)
            return
        if not isinstance(raw, dict):
            return
        for key, value in raw.items():
            lowered = key.lower()
            if lowered in _SECRET_WORDS or lowered.endswith(tuple(f"_{w}" for w in _SECRET_WORDS)):
                raise self.fail(section, key, f"refused: {_SECRET_HINT}")
            self.refuse_secrets(value, ".".join(p for p in (section, key) if p))

    def no_unknown(self, raw: Mapping[str, Any], section: Section, allowed: Iterable[str]) -> None:
        known = tuple(allowed)
        for key in raw:
            if key not in known:
                close = difflib.get_close_matches(key, known, n=1)
                hint = f"did you mean {close[0]!r}?" if close else f"known: {', '.join(known)}"
                raise self.fail(section, key, f"unknown key ({hint})")

    def text(self, value: Any, section: Section, key: str) -> str:
        if not isinstance(value, str) or not value.strip():
            raise self.fail(section, key, "must be a non-empty string")
        if any(ord(ch) < 0x20 for ch in value):
            raise self.fail(section, key, "must not contain control characters")
        return value.strip()

    def seed(self, section: Section, entry: Mapping[str, Any], defaults: Mapping[str, Any]) -> Seed:
        merged = {**defaults, **entry}

        def origin(key: str) -> Section:
            return section if key in entry or key not in defaults else "defaults"

        def required(key: str) -> Any:
            if key not in merged:
                raise self.fail(section, None, f"missing {key} (required)")
            return merged[key]

        def choice(key: str, allowed: tuple[str, ...], default: str) -> str:
            value = merged.get(key, default)
            if value not in allowed:
                raise self.fail(origin(key), key, f"must be one of {', '.join(allowed)}")
            assert isinstance(value, str)
            return value

        address = self.address(required("address"), section)
        provider = self.text(required("provider"), origin("provider"), "provider")
        if not _PROVIDER_RE.match(provider):
            raise self.fail(
                origin("provider"),
                "provider",
                "must be a lowercase name (gmail, yahoo, outlook...)",
            )
        host = self.host(required("imap_host"), origin("imap_host"))
        tls = choice("tls", TLS_MODES, "implicit")
        if tls == "none" and not _is_loopback(host):
            raise self.fail(
                origin("tls"), "tls",
                f"none (no encryption) is only for loopback hosts, not {host}: use implicit",
            )  # fmt: skip
        port = merged.get("imap_port", DEFAULT_PORTS[tls])
        if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
            raise self.fail(origin("imap_port"), "imap_port", "must be a port number (1-65535)")
        user = self.text(merged.get("imap_user", address), origin("imap_user"), "imap_user")
        secret_env = required("secret_env")
        if not isinstance(secret_env, str) or not _ENV_NAME_RE.match(secret_env):
            raise self.fail(
                origin("secret_env"), "secret_env",
                "must be the name of an environment variable (e.g. SEED_GMAIL_PASSWORD)",
            )  # fmt: skip
        auth = choice("auth", AUTH_MODES, "password")
        maildir = None
        if "maildir" in merged:
            maildir = self.maildir(merged["maildir"], origin("maildir"))
        return Seed(address, provider, host, port, user, secret_env, auth, tls, maildir)

    def address(self, value: Any, section: Section) -> str:
        address = self.text(value, section, "address")
        try:
            # allow_smtputf8=False: the placement copy is sent without SMTPUTF8 (RFC 6531)
            validate_email(
                address, check_deliverability=False, test_environment=True, allow_smtputf8=False
            )
        except EmailNotValidError as exc:
            raise self.fail(
                section, "address", f"not an email address {address!r}: {exc}"
            ) from None
        return address

    def host(self, value: Any, section: Section) -> str:
        host = self.text(value, section, "imap_host")
        bare = host.strip("[]")
        try:
            ipaddress.ip_address(bare)
            return bare
        except ValueError:
            pass
        if not _HOST_RE.match(host):
            hint = "; put the port in imap_port" if ":" in host and "/" not in host else ""
            raise self.fail(section, "imap_host", f"not a host name or IP address: {host!r}{hint}")
        return host.lower()

    def maildir(self, value: Any, section: Section) -> Path:
        raw = self.text(value, section, "maildir")
        for placeholder in _PLACEHOLDER_RE.findall(raw):
            if placeholder != "lab_dir":
                raise self.fail(
                    section, "maildir", f"unknown placeholder {{{placeholder}}} (only {{lab_dir}})"
                )
            if self.lab_dir is None:
                raise self.fail(
                    section, "maildir",
                    "uses {lab_dir} but no lab directory was given (this list is for the lab)",
                )  # fmt: skip
        if self.lab_dir is not None:
            raw = raw.replace("{lab_dir}", str(self.lab_dir))
        path = Path(raw).expanduser()
        return path if path.is_absolute() else self.base / path


def _is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 or a localhost name (RFC 6761 §6.3)."""
    name = host.strip("[]").rstrip(".").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False
