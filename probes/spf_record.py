"""SPF records (RFC 7208), pure: record selection, the term parser, and the lookup count.

Nothing here does I/O. :func:`parse_record` turns a record into its terms, keeping every
term in order; a term that does not parse becomes a :class:`TermError` in its place, with
a message naming it ("unknown mechanism 'ipv4:192.0.2.1'"). :func:`count_lookups` walks a
tree of records that :mod:`probes.spf` fetched (:class:`SpfNode`) the way a verifier
would in the worst case, every term evaluated (§4.6.4), and says where evaluation stops.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from deliver.dns import DnsAnswer, DnsStatus, MxRecord

__all__ = [
    "LOOKUP_MECHANISMS", "MAX_LOOKUPS", "MAX_VOID_LOOKUPS", "Flattened", "Mechanism", "Modifier",
    "SpfNode", "SpfRecord", "Stop", "TermError", "Walk", "addresses_needed", "count_lookups",
    "flatten_tree", "has_macro", "is_spf", "looks_like_spf", "parse_record", "select_records",
    "valid_domain_spec",
]  # fmt: skip

#: RFC 7208 §4.6.4
MAX_LOOKUPS = 10
MAX_VOID_LOOKUPS = 2
MAX_MX_NAMES = 10
MECHANISMS = frozenset({"all", "include", "a", "mx", "ptr", "ip4", "ip6", "exists"})
#: the mechanisms (and the redirect modifier) that cost a DNS lookup (§4.6.4)
LOOKUP_MECHANISMS = frozenset({"include", "a", "mx", "ptr", "exists"})

# RFC 7208 §7.1: macro-expand, macro-literal, toplabel. c, r and t only in the explanation
# text an exp= record holds, never in a domain-spec or a modifier (§7.2)
_EXPAND = r"%\{[slodiphv]\d*r?[.\-+,/_=]*\}|%%|%_|%-"
_LITERAL = r"[\x21-\x24\x26-\x7e]"
_TOPLABEL = r"(?:[0-9a-z]*[a-z][0-9a-z]*|[0-9a-z]+-[0-9a-z-]*[0-9a-z])"
_DOMAIN_SPEC = re.compile(
    rf"(?:{_EXPAND}|{_LITERAL})*(?:\.{_TOPLABEL}\.?|{_EXPAND})", re.IGNORECASE
)
_LITERALS = re.compile(rf"{_LITERAL}+")
_TOPLABEL_RE = re.compile(_TOPLABEL, re.IGNORECASE)
# RFC 7208 §5.6 ip4-network: dotted quad, no leading zeros
_QNUM = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]\d|\d)"
_IP4 = re.compile(rf"{_QNUM}(?:\.{_QNUM}){{3}}")
_MACRO_STRING = re.compile(rf"(?:{_EXPAND}|{_LITERAL})*", re.IGNORECASE)
_MODIFIER = re.compile(r"([a-z][a-z0-9_.\-]*)=(.*)", re.IGNORECASE | re.DOTALL)
_MECHANISM = re.compile(r"([+\-~?]?)([a-z][a-z0-9_.\-]*)(.*)", re.IGNORECASE | re.DOTALL)
# a/mx: "[:domain-spec][/ip4-cidr][//ip6-cidr]"; the CIDR suffix is taken from the end
_DUAL_CIDR = re.compile(r"(.*?)(?:/(\d+))?(?://(\d+))?", re.DOTALL)
_CIDR_NUMBER = re.compile(r"0|[1-9]\d{0,2}")


def is_spf(text: str) -> bool:
    """An SPF record: "v=spf1" alone or followed by a space, any case (RFC 7208 §4.5)."""
    return text[:6].lower() == "v=spf1" and (len(text) == 6 or text[6] == " ")


def looks_like_spf(text: str) -> bool:
    """Meant as SPF but not one ("v=spf1include:...", "v=spf1-all", a tab after the
    version): worth telling. "v=spf10" or "v=spf1.1" are other versions, not typos."""
    if text[:6].lower() != "v=spf1" or len(text) == 6 or text[6] == " ":
        return False
    return text[6].isalpha() or text[6] in "+-~?" or text[6].isspace()


def select_records(texts: Sequence[str]) -> tuple[list[str], list[str]]:
    """(the SPF records, the malformed near-misses) among a name's TXT records."""
    return [t for t in texts if is_spf(t)], [t for t in texts if looks_like_spf(t)]


def has_macro(spec: str) -> bool:
    return "%" in spec


def valid_domain_spec(spec: str) -> bool:
    """RFC 7208 §7.1 domain-spec; without macros, also real labels (none empty, <= 63)."""
    if "%" in spec:
        return _DOMAIN_SPEC.fullmatch(spec) is not None
    # no macro: "." toplabel ends it, so at least two labels (RFC 7208 §7.1)
    if not _LITERALS.fullmatch(spec):
        return False
    labels = spec[:-1].split(".") if spec.endswith(".") else spec.split(".")
    return (
        len(labels) > 1
        and all(0 < len(label) <= 63 for label in labels)
        and _TOPLABEL_RE.fullmatch(labels[-1]) is not None
    )


@dataclass(frozen=True, slots=True)
class Mechanism:
    """A directive: qualifier, mechanism and its argument (RFC 7208 §4.6.1, §5)."""

    text: str
    qualifier: str
    kind: str
    #: the domain-spec as written, None when the mechanism has none (a, mx, ptr, all)
    domain: str | None = None
    #: the address of an ip4/ip6 term
    address: str | None = None
    cidr4: int | None = None
    cidr6: int | None = None

    def network(self) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
        """The ip4/ip6 network (host bits allowed, as RFC 7208 §5.6 allows)."""
        if self.address is None:
            return None
        prefix = self.cidr4 if self.kind == "ip4" else self.cidr6
        text = self.address if prefix is None else f"{self.address}/{prefix}"
        return ipaddress.ip_network(text, strict=False)

    @property
    def costs_lookup(self) -> bool:
        return self.kind in LOOKUP_MECHANISMS

    def target(self, current: str) -> str:
        """The name this mechanism queries: its domain-spec, or the current domain."""
        return _normal(self.domain) if self.domain else current


@dataclass(frozen=True, slots=True)
class Modifier:
    text: str
    #: lower case
    name: str
    value: str


@dataclass(frozen=True, slots=True)
class TermError:
    """A term that does not parse; ``message`` names it."""

    text: str
    message: str


Term = Mechanism | Modifier | TermError


@dataclass(frozen=True, slots=True)
class SpfRecord:
    text: str
    terms: tuple[Term, ...]

    @property
    def error(self) -> TermError | None:
        """The first term that does not parse (the record is a permerror, §4.6)."""
        return next((t for t in self.terms if isinstance(t, TermError)), None)

    @property
    def mechanisms(self) -> tuple[Mechanism, ...]:
        return tuple(t for t in self.terms if isinstance(t, Mechanism))

    @property
    def all(self) -> Mechanism | None:
        return next((m for m in self.mechanisms if m.kind == "all"), None)

    def modifier(self, name: str) -> Modifier | None:
        return next((t for t in self.terms if isinstance(t, Modifier) and t.name == name), None)

    @property
    def redirect(self) -> str | None:
        """The redirect target, unless an ``all`` makes it ignored (RFC 7208 §6.1)."""
        modifier = self.modifier("redirect")
        return None if modifier is None or self.all is not None else modifier.value


def _normal(name: str) -> str:
    return name.rstrip(".").lower()


@functools.lru_cache(maxsize=4096)
def parse_record(text: str) -> SpfRecord:
    """The terms of an SPF record (``text`` passed :func:`is_spf`), in order.

    Terms are split on whitespace, as verifiers do (pyspf, libspf2); the version is not a
    term. A second ``redirect`` or ``exp`` is a :class:`TermError` at its place (§6).
    Memoised (the result is immutable): an ESP's record is included by many domains.
    """
    terms: list[Term] = []
    seen: set[str] = set()
    for word in text.split()[1:]:
        term = _parse_term(word)
        if isinstance(term, Modifier) and term.name in ("redirect", "exp"):
            if term.name in seen:
                terms.append(TermError(word, f"duplicate {term.name} modifier"))
                continue
            seen.add(term.name)
        terms.append(term)
    return SpfRecord(text, tuple(terms))


def _parse_term(word: str) -> Term:
    modifier = _MODIFIER.fullmatch(word)
    if modifier:
        return _parse_modifier(word, modifier.group(1).lower(), modifier.group(2))
    match = _MECHANISM.fullmatch(word)
    if match is None or match.group(2).lower() not in MECHANISMS:
        return TermError(word, f"unknown mechanism {word!r}")
    qualifier, kind, rest = match.group(1) or "+", match.group(2).lower(), match.group(3)
    if kind == "all":
        return Mechanism(word, qualifier, kind) if not rest else _bad_term(word)
    if kind in ("ip4", "ip6"):
        return _parse_ip(word, qualifier, kind, rest)
    return _parse_domain_mechanism(word, qualifier, kind, rest)


def _bad_term(word: str) -> TermError:
    return TermError(word, f"bad term {word!r}")


def _parse_modifier(word: str, name: str, value: str) -> Term:
    if name in ("redirect", "exp"):
        if not valid_domain_spec(value):
            return TermError(word, f"bad domain-spec in {word!r}")
        return Modifier(word, name, value)
    # RFC 7208 §6: unknown modifiers are ignored, but their value must be a macro-string
    if not _MACRO_STRING.fullmatch(value):
        return TermError(word, f"bad macro-string in modifier {word!r}")
    return Modifier(word, name, value)


def _parse_ip(word: str, qualifier: str, kind: str, rest: str) -> Term:
    if not rest.startswith(":") or len(rest) < 2:
        return TermError(word, f"{kind} without an address in {word!r}")
    address, slash, length = rest[1:].partition("/")
    limit = 32 if kind == "ip4" else 128
    if slash and not _valid_cidr(length, limit):
        return TermError(word, f"invalid {kind} {rest[1:]!r}")
    if kind == "ip4":
        valid = _IP4.fullmatch(address) is not None
    else:
        try:  # an IPv6 scope id ("%eth0") is not an address here
            valid = "%" not in address and bool(ipaddress.IPv6Address(address))
        except ValueError:
            valid = False
    if not valid:
        return TermError(word, f"invalid {kind} {rest[1:]!r}")
    return Mechanism(word, qualifier, kind, address=address,
                     cidr4=int(length) if slash and kind == "ip4" else None,
                     cidr6=int(length) if slash and kind == "ip6" else None)  # fmt: skip


def _valid_cidr(text: str, limit: int) -> bool:
    # RFC 7208 §5.6: a decimal number without leading zeros, at most 32 / 128
    return _CIDR_NUMBER.fullmatch(text) is not None and int(text) <= limit


def _parse_domain_mechanism(word: str, qualifier: str, kind: str, rest: str) -> Term:
    cidr4 = cidr6 = None
    if kind in ("a", "mx"):
        match = _DUAL_CIDR.fullmatch(rest)
        assert match is not None  # the pattern matches any text
        rest, four, six = match.groups()
        if four is not None and not _valid_cidr(four, 32):
            return TermError(word, f"invalid ip4-cidr-length in {word!r}")
        if six is not None and not _valid_cidr(six, 128):
            return TermError(word, f"invalid ip6-cidr-length in {word!r}")
        cidr4, cidr6 = (int(four) if four else None), (int(six) if six else None)
    if not rest:
        if kind in ("include", "exists"):
            return TermError(word, f"{kind} needs a domain ({kind}:<domain>) in {word!r}")
        return Mechanism(word, qualifier, kind, cidr4=cidr4, cidr6=cidr6)
    if not rest.startswith(":"):
        return _bad_term(word)
    domain = rest[1:]
    if not valid_domain_spec(domain):
        return TermError(word, f"bad domain-spec in {word!r}")
    return Mechanism(word, qualifier, kind, domain, cidr4=cidr4, cidr6=cidr6)


# --- the lookup count -------------------------------------------------------------------


@dataclass(slots=True)
class SpfNode:
    """One name's SPF record as fetched, with what its terms' lookups answered.

    ``answers`` holds, by term index, the include/redirect target (a child node) or the
    A / MX answer of an ``a``, ``exists`` or ``mx`` term. A child is not fetched further
    when it closes a loop or the walk's budget ran out (``expanded`` False).
    """

    name: str
    answer: DnsAnswer
    records: list[str] = field(default_factory=list)
    malformed: list[str] = field(default_factory=list)
    record: SpfRecord | None = None
    children: dict[int, SpfNode] = field(default_factory=dict)
    answers: dict[int, DnsAnswer] = field(default_factory=dict)
    expanded: bool = False


@dataclass(frozen=True, slots=True)
class Stop:
    """Where evaluation stops: a permerror, or a lookup that could not be made."""

    #: syntax | missing | multiple | loop | mx_limit | dns | truncated
    kind: str
    message: str
    #: the record holding the term, and the term as written
    name: str
    term: str
    answer: DnsAnswer | None = None


@dataclass(slots=True)
class Walk:
    lookups: int = 0
    voids: int = 0
    depth: int = 0
    stop: Stop | None = None
    #: the names walked, in evaluation order: "name" at its depth, as "  " * depth + name
    tree: list[str] = field(default_factory=list)
    void_terms: list[str] = field(default_factory=list)
    ptr_terms: list[str] = field(default_factory=list)


class _Stopped(Exception):
    def __init__(self, stop: Stop) -> None:
        self.stop = stop


def count_lookups(root: SpfNode) -> Walk:
    """DNS lookups and void lookups of the record at ``root``, every term evaluated.

    Terms are taken in order, includes walked depth-first where they stand, ``redirect``
    last and only without ``all`` (RFC 7208 §6.1); a term with a macro counts its lookup
    but whether it is void depends on the message, so it is not counted void. The walk
    stops at the first term that makes evaluation end (a syntax error, a target without a
    record, a loop, a lookup that failed): the counts are those up to that term.
    """
    walk = Walk()
    try:
        _walk(root, [root.name], walk)
    except _Stopped as stopped:
        walk.stop = stopped.stop
    return walk


def _walk(node: SpfNode, path: list[str], walk: Walk) -> None:
    record = node.record
    assert record is not None
    walk.depth = max(walk.depth, len(path) - 1)
    walk.tree.append("  " * (len(path) - 1) + node.name)
    for index, term in enumerate(record.terms):
        if isinstance(term, TermError):
            where = "" if len(path) == 1 else f" (in {node.name}, included from {path[-2]})"
            raise _Stopped(Stop("syntax", term.message + where, node.name, term.text))
        if isinstance(term, Mechanism) and term.costs_lookup:
            walk.lookups += 1
            if term.kind == "ptr":
                walk.ptr_terms.append(f"{node.name}: {term.text}")
            elif not (term.domain and has_macro(term.domain)):
                _term_lookup(node, index, term.text, path, walk)
    redirect = record.modifier("redirect")
    if record.redirect is not None and redirect is not None:
        walk.lookups += 1
        if not has_macro(record.redirect):
            _term_lookup(node, record.terms.index(redirect), redirect.text, path, walk)


def _term_lookup(node: SpfNode, index: int, text: str, path: list[str], walk: Walk) -> None:
    child = node.children.get(index)
    if child is not None:
        _include(node, child, text, path, walk)
        return
    answer = node.answers.get(index)
    if answer is None:
        raise _Stopped(Stop("truncated", "not fetched", node.name, text))
    if not answer.status.definitive:
        message = f"{answer.rdtype} {answer.name}: {answer.status.value}"
        raise _Stopped(Stop("dns", message, node.name, text, answer))
    if not answer.ok:
        walk.voids += 1
        walk.void_terms.append(f"{node.name}: {text} ({answer.status.value})")
        return
    hosts = sum(1 for r in answer.records if isinstance(r, MxRecord))
    if hosts > MAX_MX_NAMES:  # §4.6.4: more than 10 MX names is a permerror
        message = f"{text}: {hosts} MX names, over the limit of {MAX_MX_NAMES}"
        raise _Stopped(Stop("mx_limit", message, node.name, text))


def _include(parent: SpfNode, child: SpfNode, text: str, path: list[str], walk: Walk) -> None:
    answer, target = child.answer, child.name
    what = "redirect" if text.lower().startswith("redirect") else "include"
    if not answer.status.definitive:
        message = f"TXT {target}: {answer.status.value}"
        raise _Stopped(Stop("dns", message, parent.name, text, answer))
    if not child.records:
        if answer.status in (DnsStatus.NXDOMAIN, DnsStatus.NODATA):
            walk.voids += 1
            walk.void_terms.append(f"{parent.name}: {text} ({answer.status.value})")
        message = f"{what}{':' if what == 'include' else '='}{target} has no SPF record"
        raise _Stopped(Stop("missing", message, parent.name, text))
    if target in path:
        raise _Stopped(Stop("loop", f"{what} loop via {target}", parent.name, text))
    if len(child.records) > 1:
        message = f"{what}:{target} has {len(child.records)} SPF records"
        raise _Stopped(Stop("multiple", message, parent.name, text))
    if not child.expanded:
        raise _Stopped(Stop("truncated", f"not walked beyond {target}", parent.name, text))
    _walk(child, [*path, target], walk)


# --- flattening --------------------------------------------------------------------------

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
#: a qualifier with a network, or with a term kept as written (it cannot be resolved now)
_Item = tuple[str, Network | str]


@dataclass(frozen=True, slots=True)
class Flattened:
    """A record with includes, ``a`` and ``mx`` replaced by the addresses they resolve to.

    ``records`` holds (name, text) pairs, the domain's own first; more than one when the
    flat record would exceed the size limit and was split across include records.
    """

    records: tuple[tuple[str, str], ...]
    #: DNS lookups the new record costs (the split's includes, and terms kept as written)
    lookups: int

    def render(self) -> str:
        """The record, or the records to publish as zone-file lines (strings of <= 255)."""
        if len(self.records) == 1:
            return self.records[0][1]
        return "\n".join(f"{name}. TXT {_quoted(text)}" for name, text in self.records)


def _quoted(text: str) -> str:
    octets = text.encode()
    return " ".join(f'"{octets[i : i + 255].decode()}"' for i in range(0, len(octets), 255))


class _CannotFlatten(Exception):
    pass


def addresses_needed(root: SpfNode) -> set[str]:
    """The names whose A and AAAA records :func:`flatten_tree` needs (a and mx hosts)."""
    names: set[str] = set()
    pending, seen = [root], set()
    while pending:
        node = pending.pop()
        if node.record is None or id(node) in seen:
            continue
        seen.add(id(node))
        for index, term in enumerate(node.record.terms):
            if not isinstance(term, Mechanism) or (term.domain and has_macro(term.domain)):
                continue
            if term.kind == "a":
                names.add(term.target(node.name))
            elif term.kind == "mx" and index in node.answers:
                names.update(_mx_hosts(node.answers[index]))
        pending.extend(node.children.values())
    return names


def _mx_hosts(answer: DnsAnswer) -> list[str]:
    hosts = sorted((r for r in answer.records if isinstance(r, MxRecord)),
                   key=lambda r: r.preference)  # fmt: skip
    return [_normal(r.exchange) for r in hosts[:MAX_MX_NAMES] if r.exchange]


def flatten_tree(
    root: SpfNode, addresses: dict[str, list[str]], limit: int = 450
) -> Flattened | str:
    """The flattened record for ``root`` (``addresses``: A and AAAA by name), or why not.

    Inside an included record only what gives ``pass`` makes the include match, so its
    pass networks are kept, minus any earlier non-pass ones. Terms that cannot be resolved
    ahead of time (``exists``, ``ptr``, macros; an include holding one) are kept as written,
    ahead of the networks. The top-level ``all`` (or the redirect target's) ends the record.
    """
    assert root.record is not None
    try:
        items, final = _items(root, addresses, 0)
    except _CannotFlatten as reason:
        return str(reason)
    raw = [f"{'' if q == '+' else q}{item}" for q, item in items if isinstance(item, str)]
    nets = _disjoint([(q, item) for q, item in items if not isinstance(item, str)])
    exp = root.record.modifier("exp")
    tail = [t.text for t in (final, exp) if t is not None]
    passing = [_net_text(n) for q, n in nets if q == "+"]
    others = [f"{q}{_net_text(n)}" for q, n in nets if q != "+"]
    one = " ".join(["v=spf1", *raw, *passing, *others, *tail])
    if len(one.encode()) <= limit:
        return Flattened(((root.name, one),), len(raw))
    parts = _pack(passing, limit)
    names = [f"_spf{k}.{root.name}" for k in range(1, len(parts) + 1)]
    top = " ".join(["v=spf1", *raw, *(f"include:{n}" for n in names), *others, *tail])
    records = ((root.name, top), *zip(names, parts, strict=True))
    return Flattened(records, len(raw) + len(parts))


def _items(
    node: SpfNode, addresses: dict[str, list[str]], hops: int
) -> tuple[list[_Item], Mechanism | None]:
    record = node.record
    if record is None or hops > MAX_LOOKUPS:
        raise _CannotFlatten(f"{node.name} has no usable SPF record")
    items: list[_Item] = []
    for index, term in enumerate(record.terms):
        if isinstance(term, TermError):
            raise _CannotFlatten(f"{node.name} does not parse: {term.message}")
        if not isinstance(term, Mechanism):
            continue
        if term.kind == "all":
            return items, term  # terms after all are never reached
        items += _term_items(node, index, term, addresses, hops)
    redirect = record.modifier("redirect")
    if record.redirect is not None and redirect is not None:
        child = node.children.get(record.terms.index(redirect))
        if child is None:
            raise _CannotFlatten(f"redirect={record.redirect} cannot be resolved ahead")
        more, final = _items(child, addresses, hops + 1)
        return items + more, final
    return items, None


def _term_items(
    node: SpfNode, index: int, term: Mechanism, addresses: dict[str, list[str]], hops: int
) -> list[_Item]:
    q = term.qualifier
    network = term.network()
    if network is not None:
        return [(q, network)]
    raw: list[_Item] = [(q, term.text.lstrip("+-~?"))]
    if term.kind in ("ptr", "exists") or (term.domain and has_macro(term.domain)):
        return raw
    if term.kind == "include":
        child = node.children.get(index)
        passing = _pass_set(child, addresses, hops) if child is not None else None
        return raw if passing is None else [(q, n) for n in passing]
    if term.kind == "a":
        hosts = [term.target(node.name)]
    else:
        answer = node.answers.get(index)
        if answer is None or not answer.status.definitive:
            raise _CannotFlatten(f"the MX lookup for {term.text!r} failed")
        hosts = _mx_hosts(answer)
    items: list[_Item] = []
    for host in hosts:
        if host not in addresses:
            raise _CannotFlatten(f"the address lookup of {host} failed")
        for address in addresses[host]:
            ip = ipaddress.ip_address(address)
            prefix = (term.cidr4 if ip.version == 4 else term.cidr6) or ip.max_prefixlen
            items.append((q, ipaddress.ip_network(f"{ip}/{prefix}", strict=False)))
    return items


def _pass_set(node: SpfNode, addresses: dict[str, list[str]], hops: int) -> list[Network] | None:
    """The networks for which an included record gives pass; None if it cannot be told."""
    items, final = _items(node, addresses, hops + 1)
    if final is not None and final.qualifier == "+":
        return None  # every address passes: keep the include
    passing: list[Network] = []
    blocked: list[Network] = []
    for q, item in items:
        if isinstance(item, str):
            return None
        if q == "+":
            passing += _subtract(item, blocked)
        else:
            blocked.append(item)
    return _collapse(passing)


def _subtract(net: Network, claimed: Sequence[Network]) -> list[Network]:
    pieces = [net]
    for other in claimed:
        left: list[Network] = []
        for piece in pieces:
            if piece.version != other.version or not piece.overlaps(other):
                left.append(piece)
            elif other.supernet_of(piece):  # type: ignore[arg-type]
                continue
            else:
                left.extend(piece.address_exclude(other))  # type: ignore[arg-type]
        pieces = left
    return pieces


def _disjoint(items: Sequence[tuple[str, Network]]) -> list[tuple[str, Network]]:
    """Each network minus the earlier ones (so order no longer matters), merged by qualifier."""
    claimed: list[Network] = []
    pieces: dict[str, list[Network]] = {}
    for q, net in items:
        pieces.setdefault(q, []).extend(_subtract(net, claimed))
        claimed.append(net)
    return [(q, n) for q in "+-~?" for n in _collapse(pieces.get(q, []))]


def _collapse(nets: Sequence[Network]) -> list[Network]:
    four = [n for n in nets if isinstance(n, ipaddress.IPv4Network)]
    six = [n for n in nets if isinstance(n, ipaddress.IPv6Network)]
    return [*ipaddress.collapse_addresses(four), *ipaddress.collapse_addresses(six)]


def _net_text(net: Network) -> str:
    if net.prefixlen == net.max_prefixlen:
        return f"ip{net.version}:{net.network_address}"
    return f"ip{net.version}:{net}"


def _pack(terms: Sequence[str], limit: int) -> list[str]:
    """Terms packed into as few "v=spf1 ..." records of at most ``limit`` octets."""
    parts: list[str] = []
    current = "v=spf1"
    for term in terms:
        if len(current) + 1 + len(term) > limit and current != "v=spf1":
            parts.append(current)
            current = "v=spf1"
        current += " " + term
    return [*parts, current]
