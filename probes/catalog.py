"""Every check id a probe may report, with what it checks.

The ids are a contract (DESIGN.md): scripts, stored history and rulebooks name them, so an
id is never renamed or reused for something else. Rulebooks are validated against this
table when loaded; a test makes sure every id a check module emits is listed here.
"""

from __future__ import annotations

from types import MappingProxyType

__all__ = ["CHECKS", "GROUPS", "group_of"]

_CHECKS: dict[str, str] = {
    # SPF (RFC 7208)
    "spf.present": "an SPF record (v=spf1) is published at the domain",
    "spf.multiple": "exactly one SPF record (several is a permerror, RFC 7208 §4.5)",
    "spf.syntax": "the record and every record it includes parse (RFC 7208 §12)",
    "spf.lookups": "at most 10 DNS-querying terms across includes and redirects (§4.6.4)",
    "spf.void_lookups": "at most 2 lookups that return no record (§4.6.4)",
    "spf.loop": "no include or redirect loop",
    "spf.includes": "every include and redirect target publishes an SPF record",
    "spf.all": "the record ends in -all or ~all, not +all or ?all",
    "spf.ptr": "no ptr mechanism (RFC 7208 §5.5: do not use)",
    "spf.length": "record and character-string lengths fit (255 per string, 450 per answer)",
    "spf.result": "SPF evaluates to pass for each sending IP",
    # DKIM (RFC 6376, RFC 8301, RFC 8463)
    "dkim.key_present": "a key record at <selector>._domainkey.<domain>",
    "dkim.key_syntax": "the key record's tags are valid (v=DKIM1, p= base64 of a key)",
    "dkim.key_type": "k= names the algorithm of the key in p=",
    "dkim.key_bits": "RSA keys of 2048 bits or more (under 1024 must not be used)",
    "dkim.revoked": "the key is not revoked (an empty p=)",
    "dkim.testing": "the key is not in testing mode (t=y)",
    "dkim.key_match": "the published key is the public half of the key in sokures.toml",
    "dkim.signature": "a message's DKIM signatures verify",
    # DMARC (RFC 7489, DMARCbis RFC 9989)
    "dmarc.present": "a DMARC record at _dmarc.<domain> or its organisational domain",
    "dmarc.multiple": "exactly one DMARC record (several: none applies, RFC 7489 §6.6.3)",
    "dmarc.syntax": "the record's tags and values are valid",
    "dmarc.policy": "the policy is quarantine or reject (p=none only monitors)",
    "dmarc.subdomain_policy": "sp= and np= are not weaker than needed",
    "dmarc.alignment": "alignment modes (adkim, aspf) are valid",
    "dmarc.rua": "aggregate reports go to a valid mailto: URI",
    "dmarc.ruf": "failure report URIs are valid",
    "dmarc.external_auth": "external report destinations authorise the domain (RFC 7489 §7.1)",
    "dmarc.dmarcbis": "tags DMARCbis (RFC 9989) removed or changed (information)",
    "dmarc.result": "a message passes DMARC with alignment",
    # MX (RFC 5321, RFC 7505)
    "mx.present": "MX records are published (bounces and replies can be received)",
    "mx.null": "the domain does not publish a null MX (it would accept no mail)",
    "mx.address": "every MX host has an A or AAAA record",
    "mx.cname": "no MX target is a CNAME (RFC 2181 §10.3)",
    "mx.ptr": "every MX address has a PTR record",
    "mx.fcrdns": "every MX address's PTR name resolves back to it",
    # sending IPs
    "ptr.present": "each sending IP has a PTR record",
    "ptr.fcrdns": "each sending IP's PTR name resolves back to it (forward-confirmed)",
    # MTA-STS (RFC 8461), TLS-RPT (RFC 8460), BIMI
    "mta_sts.record": "an _mta-sts TXT record (v=STSv1; id=...)",
    "mta_sts.policy": "the policy at https://mta-sts.<domain>/.well-known/mta-sts.txt is valid",
    "mta_sts.mx": "the policy's mx patterns cover every MX host",
    "tlsrpt.record": "an _smtp._tls TXT record (v=TLSRPTv1; rua=...)",
    "bimi.record": "a BIMI record at default._bimi.<domain> with an https SVG location",
    "bimi.dmarc": "DMARC is at enforcement, as BIMI requires",
    # DNSBL
    "dnsbl.listed": "the sending IPs and the domain are not listed on the DNSBL zones",
    # a received message (check-message)
    "message.from": "exactly one From header with one address (RFC 5322 §3.6.2)",
    "message.message_id": "a Message-ID header",
    "message.date": "a valid Date header",
    "message.rfc5322": "the header section is well formed (RFC 5322)",
    "message.list_unsubscribe": "List-Unsubscribe with one-click (RFC 8058) for bulk mail",
    "message.arc": "the ARC chain validates (RFC 8617)",
    "message.spf": "SPF passes for the connecting IP and MAIL FROM",
    "message.auth_results": "Authentication-Results added by the receiver",
}

CHECKS = MappingProxyType(_CHECKS)

#: check groups, as ``--skip`` and the table show them
GROUPS = tuple(dict.fromkeys(check_id.split(".", 1)[0] for check_id in _CHECKS))


def group_of(check_id: str) -> str:
    return check_id.split(".", 1)[0]
