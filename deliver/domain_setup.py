"""``sokures init``: keys, ``sokures.toml``, and the DNS records to publish.

Private keys are written with mode 0600 and never printed; only the public halves
appear, in the DKIM records.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path

from deliver.dkim import dns_record, generate_key, load_private_key, write_private_key
from deliver.dns import normalize_domain
from deliver.errors import ConfigError, InputError
from deliver.settings import Settings
from deliver.tokens import generate_token_key

__all__ = [
    "DnsRecord",
    "InitResult",
    "dkim_selector_defaults",
    "init_domain",
    "records_for",
    "txt_chunks",
]

_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


@dataclass(frozen=True, slots=True)
class DnsRecord:
    name: str
    type: str
    value: str
    purpose: str

    def zone_line(self) -> str:
        """The record as a zone-file line (TXT values split into 255-byte strings)."""
        data = (
            " ".join(f'"{c}"' for c in txt_chunks(self.value)) if self.type == "TXT" else self.value
        )
        return f"{self.name}. 3600 IN {self.type} {data}"

    def as_dict(self) -> dict[str, str]:
        return {"name": self.name, "type": self.type, "value": self.value, "purpose": self.purpose}


@dataclass(frozen=True, slots=True)
class InitResult:
    config_path: Path
    domain: str
    key_files: tuple[tuple[str, str, Path], ...]
    records: tuple[DnsRecord, ...]


def txt_chunks(value: str, size: int = 255) -> list[str]:
    """A TXT value as character-strings of at most 255 bytes (RFC 1035 §3.3.14)."""
    return [value[i : i + size] for i in range(0, len(value), size)] or [""]


def dkim_selector_defaults(now: float | None = None) -> str:
    return time.strftime("sk%Y%m", time.gmtime(now or time.time()))


def _check_domain(domain: str) -> str:
    try:
        return normalize_domain(domain)
    except ValueError as exc:
        raise InputError(f"--domain: {exc}") from None


def _check_selector(selector: str) -> str:
    if not _LABEL.match(selector):
        raise InputError(f"DKIM selector {selector!r} must be a DNS label (letters, digits, -)")
    return selector


def init_domain(
    domain: str,
    *,
    config_path: Path,
    rsa_selector: str,
    ed25519_selector: str,
    ips: tuple[str, ...] = (),
    force: bool = False,
    database_url: str | None = None,
) -> InitResult:
    """Write keys and ``sokures.toml`` next to it; return the records to publish."""
    domain = _check_domain(domain)
    rsa_selector, ed_selector = _check_selector(rsa_selector), _check_selector(ed25519_selector)
    if rsa_selector == ed_selector:
        raise InputError("the RSA and Ed25519 selectors must differ")
    if config_path.exists() and not force:
        raise ConfigError(f"{config_path} exists already (use --force to replace it)")
    base = config_path.resolve().parent
    keys_dir = base / "keys"
    files = []
    dkim_records = []
    for selector, algorithm, suffix in (
        (rsa_selector, "rsa-sha256", "rsa"),
        (ed_selector, "ed25519-sha256", "ed25519"),
    ):
        path = keys_dir / f"{selector}.{suffix}.pem"
        if path.exists():
            if not force:
                raise ConfigError(f"{path} exists already (use --force, or another --selector)")
            path.unlink()
        key = generate_key(algorithm)
        write_private_key(key, path)
        files.append((selector, algorithm, path))
        dkim_records.append(_dkim(domain, selector, algorithm, dns_record(key)))
    token_key = keys_dir / "token.key"
    generate_token_key(token_key)
    config_path.write_text(_config_text(domain, files, base, database_url, ips), encoding="utf-8")
    records = (_spf(domain, ips), *dkim_records, _dmarc(domain))
    return InitResult(config_path, domain, tuple(files), records)


def records_for(settings: Settings) -> tuple[DnsRecord, ...]:
    """The records ``init`` asked to publish, rebuilt from ``sokures.toml`` and the keys it
    names (the lab publishes them in its DNS for the configured sender domain)."""
    domain = settings.require_domain()
    dkim_records = tuple(
        _dkim(
            domain, k.selector, k.algorithm, dns_record(load_private_key(k.key_file, k.algorithm))
        )
        for k in settings.dkim_keys
    )
    return (_spf(domain, settings.probes.sending_ips), *dkim_records, _dmarc(domain))


def _dkim(domain: str, selector: str, algorithm: str, value: str) -> DnsRecord:
    kind = algorithm.split("-")[0]
    return DnsRecord(f"{selector}._domainkey.{domain}", "TXT", value, f"DKIM public key ({kind})")


def _spf(domain: str, ips: tuple[str, ...]) -> DnsRecord:
    mechanisms = [f"ip6:{ip}" if ":" in ip else f"ip4:{ip}" for ip in ips]
    # without the sending IPs, soft fail until they are listed
    value = "v=spf1 " + " ".join(mechanisms) + " -all" if mechanisms else "v=spf1 mx ~all"
    return DnsRecord(domain, "TXT", value, "SPF: the hosts allowed to send for the domain")


def _dmarc(domain: str) -> DnsRecord:
    value = f"v=DMARC1; p=none; rua=mailto:dmarc-reports@{domain}; adkim=r; aspf=r; fo=1"
    return DnsRecord(
        f"_dmarc.{domain}",
        "TXT",
        value,
        "DMARC: start with p=none and reports; move to quarantine/reject once aligned",
    )


def _config_text(
    domain: str,
    files: list[tuple[str, str, Path]],
    base: Path,
    database_url: str | None,
    ips: tuple[str, ...] = (),
) -> str:
    def rel(p: Path) -> str:
        return str(p.relative_to(base)) if p.is_relative_to(base) else str(p)

    keys = "\n".join(
        f'[[dkim.keys]]\nselector = "{s}"\nalgorithm = "{a}"\nkey_file = "{rel(p)}"\n'
        for s, a, p in files
    )
    database = f'\n[database]\nurl = "{database_url}"\n' if database_url else ""
    listed = ", ".join(f'"{ip}"' for ip in ips)
    sending_ips = f"sending_ips = [{listed}]" if ips else '# sending_ips = ["192.0.2.10"]'

    return f"""# sokures configuration, written by `sokures init --domain {domain}`.
# Environment variables SOKURES_<SECTION>_<KEY> override any value (e.g. SOKURES_SMTP_PORT).

[sender]
domain = "{domain}"
helo = "mail.{domain}"
bounce_domain = "{domain}"
unsubscribe_url = "https://{domain}/unsubscribe"
unsubscribe_mailto = "unsubscribe@{domain}"
feedback_id = "sokures"
token_key_file = "keys/token.key"
{database}
[dkim]
# Sign with the RSA key; list both selectors to dual-sign (RSA and Ed25519, RFC 8463).
sign_with = ["{files[0][0]}"]

{keys}
[smtp]
# relay = "127.0.0.1:2525"   # send through a relay instead of direct to MX
port = 25

[dns]
# nameservers = ["127.0.0.1:5353"]   # default: the system resolver
timeout = 5.0

[probes]
# the addresses mail leaves from: `sokures probe` checks their PTR, SPF result and DNSBLs
{sending_ips}

[retry]
initial = "5m"
max_interval = "4h"
max_age = "5d"
"""
