"""Classify SMTP replies into Sisimai's bounce-reason vocabulary. Pure: no I/O, no state.

The sending engine calls :func:`classify_reply` once per delivery attempt with what the
receiving server said (reply code, optional RFC 3463 enhanced status, text); the DSN
parser reuses it for the ``Status:`` and ``Diagnostic-Code:`` of RFC 3464 reports. The
result is a :class:`ReplyClass`: the :class:`Reason` (the vocabulary DESIGN.md pins so
results compare with Sisimai), the enhanced status, and whether the failure is
permanent and a *hard* bounce.

Signals, strongest first (see :func:`_decide`):

1. a 2xx reply (or a 2.X.X status) is ``delivered``;
2. a *decisive* enhanced status: one whose registered meaning no text contradicts in
   practice (X.2.2 mailbox full, X.3.4 too big, X.4.7 expired, X.7.26 auth, ...);
3. the reply text, read by meaning through :data:`_TEXT_RULES`, an ordered table of
   (reason, regex) from most specific to least (``strong`` rules);
4. a *specific* enhanced status (RFC 3463 and the IANA registry, :data:`_STATUS_RULES`);
5. vague text (``weak`` rules: "try again later", a bare "blocked", "access denied");
6. a *generic* status (X.0.0, X.7.0, X.7.1, unregistered details: by subject);
7. the reply code alone (RFC 5321 §4.2.2-4.2.3), else ``onhold`` / ``undefined``.

Text beats most statuses because providers reuse codes loosely: Exchange Online says
``550 5.1.10`` (RFC 7505 null MX) for an unknown recipient, Gmail uses 4.7.23 for a
missing PTR, 4.7.27 for SPF, 4.7.29 for TLS and 4.7.30 for DKIM, and many servers
answer every refusal with 5.7.1.

Where this module departs from Sisimai's status table, the reason is a recipient-side
reason that would wrongly hard-bounce or blame a good address: X.7.27 (the *sender*
has a null MX, RFC 7505 §4.2) is ``rejected``, not ``notaccept``; X.7.13 (RFC 5248,
the *submitting account* is disabled) is ``securityerror``, not ``suspend``; X.2.1
(mailbox disabled) is ``suspend``, not ``filtered``.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import Final

from deliver._rule_table import RuleTable

__all__ = [
    "HARD_REASONS",
    "Reason",
    "ReplyClass",
    "classify_reply",
    "retry_hint",
    "split_enhanced",
]


class Reason(enum.StrEnum):
    """Sisimai's bounce reasons; the value is the name used in ``bounces classify --json``."""

    # recipient side
    USERUNKNOWN = "userunknown"
    HOSTUNKNOWN = "hostunknown"
    MAILBOXFULL = "mailboxfull"
    SUSPEND = "suspend"
    HASMOVED = "hasmoved"
    NOTACCEPT = "notaccept"
    EXCEEDLIMIT = "exceedlimit"
    MESGTOOBIG = "mesgtoobig"
    # sender, reputation and authentication
    REJECTED = "rejected"
    BLOCKED = "blocked"
    BADREPUTATION = "badreputation"
    REQUIREPTR = "requireptr"
    AUTHFAILURE = "authfailure"
    NORELAYING = "norelaying"
    SPEEDING = "speeding"
    TOOMANYCONN = "toomanyconn"
    # content and policy
    FILTERED = "filtered"
    SPAMDETECTED = "spamdetected"
    VIRUSDETECTED = "virusdetected"
    POLICYVIOLATION = "policyviolation"
    SECURITYERROR = "securityerror"
    CONTENTERROR = "contenterror"
    NOTCOMPLIANTRFC = "notcompliantrfc"
    # transport and system
    EXPIRED = "expired"
    NETWORKERROR = "networkerror"
    SYSTEMERROR = "systemerror"
    SYSTEMFULL = "systemfull"
    MAILERERROR = "mailererror"
    SYNTAXERROR = "syntaxerror"
    FAILEDSTARTTLS = "failedstarttls"
    SUPPRESSED = "suppressed"
    # not failures, or cannot decide
    DELIVERED = "delivered"
    FEEDBACK = "feedback"
    VACATION = "vacation"
    ONHOLD = "onhold"
    UNDEFINED = "undefined"


#: reasons that make a permanent failure a hard bounce: the address itself will never
#: work. ``notaccept`` only with a 5xx: a 4xx "not accepting" is a maintenance window.
HARD_REASONS: Final = frozenset(
    {Reason.USERUNKNOWN, Reason.HOSTUNKNOWN, Reason.HASMOVED, Reason.NOTACCEPT}
)


@dataclass(frozen=True, slots=True)
class ReplyClass:
    """What one SMTP reply (or transport failure) means for the recipient."""

    reason: Reason
    #: enhanced status "X.Y.Z": the reply's own, else inferred from reason and code
    status: str | None
    #: a permanent failure whose reason says the address will never work
    hard: bool
    #: 5xx, or (no reply code) an enhanced status of class 5: never retried
    permanent: bool


# --- enhanced status codes (RFC 3463 §2, RFC 5248, IANA "SMTP Enhanced Status Codes") ---

_STATUS_RE: Final = re.compile(r"([245])\.(\d{1,3})\.(\d{1,3})(?![\d.])")
_REPLY_CODE_RE: Final = re.compile(r"[2-5]\d\d(?:[ -]|$)")


class _Tier(enum.IntEnum):
    """How much a status code is trusted against the reply text."""

    DECISIVE = 0  # beats every text rule
    SPECIFIC = 1  # beaten by strong text, beats weak text
    GENERIC = 2  # only a fallback after all text


_D, _S, _G = _Tier.DECISIVE, _Tier.SPECIFIC, _Tier.GENERIC
_R = Reason

#: "subject.detail" → (reason, tier); a "class.subject.detail" key overrides per class.
_STATUS_RULES: Final[dict[str, tuple[Reason, _Tier]]] = {
    "0.0": (_R.UNDEFINED, _G),
    "1.0": (_R.USERUNKNOWN, _G),  # other address status; Sisimai reads it as the recipient
    "1.1": (_R.USERUNKNOWN, _S),  # bad destination mailbox address
    "1.2": (_R.HOSTUNKNOWN, _S),  # bad destination system address
    "1.3": (_R.USERUNKNOWN, _S),  # destination address syntax: it can never work either
    "1.4": (_R.FILTERED, _S),  # destination mailbox address ambiguous
    "1.6": (_R.HASMOVED, _D),  # mailbox has moved, no forwarding address
    "1.7": (_R.REJECTED, _S),  # bad sender's mailbox address syntax
    "1.8": (_R.REJECTED, _S),  # bad sender's system address
    "1.9": (_R.SYSTEMERROR, _S),  # relayed to a non-compliant mailer (RFC 3886)
    # recipient has a null MX (RFC 7505 §3); Exchange Online also sends it for an
    # unknown recipient ("RESOLVER.ADR.RecipientNotFound"), so text can override
    "1.10": (_R.NOTACCEPT, _S),
    "2.0": (_R.FILTERED, _G),
    "2.1": (_R.SUSPEND, _S),  # mailbox disabled; Gmail's 4.2.1 "too quickly" is text
    "2.2": (_R.MAILBOXFULL, _D),
    "2.3": (_R.EXCEEDLIMIT, _D),  # per-mailbox length limit: Sisimai's "exceedlimit"
    "2.4": (_R.SYSTEMERROR, _S),  # mailing list expansion problem
    "3.0": (_R.SYSTEMERROR, _G),
    "3.1": (_R.SYSTEMFULL, _S),
    "4.3.2": (_R.SYSTEMERROR, _S),  # 4xx "not accepting network messages": shutdown, load
    "5.3.2": (_R.NOTACCEPT, _S),  # 5xx: the host never accepts mail (cf. 521, RFC 7504)
    "3.3": (_R.SYSTEMERROR, _S),
    "3.4": (_R.MESGTOOBIG, _D),
    "3.5": (_R.SYSTEMERROR, _S),
    "4.0": (_R.NETWORKERROR, _G),
    "4.1": (_R.NETWORKERROR, _S),  # no answer from host (a DSN with Action: failed → expired)
    "4.2": (_R.NETWORKERROR, _S),  # bad connection
    "4.3": (_R.NETWORKERROR, _S),  # directory (DNS) server failure
    "4.4.4": (_R.NETWORKERROR, _S),  # unable to route, for now
    "5.4.4": (_R.HOSTUNKNOWN, _S),  # unable to route: no MX/A (Postfix "Host not found")
    "4.5": (_R.NETWORKERROR, _S),  # mail system congestion
    "4.6": (_R.NETWORKERROR, _S),  # routing loop
    "4.7": (_R.EXPIRED, _D),  # delivery time expired
    "5.0": (_R.SYNTAXERROR, _G),
    "5.1": (_R.SYNTAXERROR, _S),  # invalid command
    "5.2": (_R.SYNTAXERROR, _S),  # syntax error
    "5.3": (_R.TOOMANYCONN, _S),  # too many recipients: Sisimai files it as toomanyconn
    "5.4": (_R.SYNTAXERROR, _S),  # invalid command arguments
    "5.5": (_R.SYNTAXERROR, _S),  # wrong protocol version
    "5.6": (_R.SYNTAXERROR, _S),  # AUTH line too long (RFC 4954)
    "6.0": (_R.CONTENTERROR, _G),
    "7.0": (_R.SECURITYERROR, _G),
    "7.1": (_R.REJECTED, _G),  # "delivery not authorized": spam, DNSBL, relay... read text
    "7.2": (_R.POLICYVIOLATION, _S),  # mailing list expansion prohibited
    "7.13": (_R.SECURITYERROR, _S),  # *our* submission account disabled (RFC 5248)
    "7.16": (_R.MESGTOOBIG, _S),  # too big for the requested priority (RFC 6710)
    "7.17": (_R.HASMOVED, _D),  # mailbox owner has changed (RRVS, RFC 7293)
    "7.18": (_R.HASMOVED, _D),  # domain owner has changed (RFC 7293)
    "7.20": (_R.AUTHFAILURE, _S),  # no passing DKIM signature (RFC 7372)
    "7.21": (_R.AUTHFAILURE, _S),
    "7.22": (_R.AUTHFAILURE, _S),
    "7.23": (_R.AUTHFAILURE, _S),  # SPF fail (RFC 7372); Gmail sends 4.7.23 for PTR
    "7.24": (_R.AUTHFAILURE, _S),  # SPF error
    "7.25": (_R.REQUIREPTR, _D),  # reverse DNS validation failed
    "7.26": (_R.AUTHFAILURE, _D),  # multiple authentication checks failed (Gmail, Yahoo)
    "7.27": (_R.REJECTED, _S),  # *sender* has a null MX (RFC 7505 §4.2); Gmail: SPF
    "7.28": (_R.SPEEDING, _S),  # mail flood detected; Gmail's "unusual rate" limit
    "7.29": (_R.AUTHFAILURE, _S),  # ARC validation failure (RFC 8617); Gmail: TLS
    "7.30": (_R.FAILEDSTARTTLS, _S),  # REQUIRETLS support required (RFC 8689); Gmail: DKIM
}
#: the rest of X.6 (media, conversion) and the X.7 crypto / SMTP AUTH codes (RFC 4954)
_STATUS_RULES.update({f"6.{d}": (_R.CONTENTERROR, _S) for d in range(1, 12)})
_STATUS_RULES.update(
    {f"7.{d}": (_R.SECURITYERROR, _S) for d in (3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 14, 15, 19)}
)

#: an unregistered detail (Exchange's 5.7.606, 4.4.316...) falls back to its subject
_SUBJECT_FALLBACK: Final[dict[str, Reason]] = {
    "3": _R.SYSTEMERROR,
    "4": _R.NETWORKERROR,
    "5": _R.SYNTAXERROR,
    "6": _R.CONTENTERROR,
    "7": _R.SECURITYERROR,
}

# --- reply text, by meaning (lower-cased, whitespace collapsed) --------------------
# Each rule names what servers *mean*; alternatives are phrasings of that meaning by
# Gmail, Yahoo, Outlook/Exchange, iCloud, Postfix, Exim, Sendmail, qmail. Order matters:
# a rule must come before any later rule its texts would also match (Gmail appends
# "to protect our users from spam" to rate limits; Spamhaus contains "spam").

_STRONG_RULES: Final[tuple[tuple[Reason, str], ...]] = (
    # the envelope sender, not the recipient: before null MX, unknown host/user
    (
        _R.REJECTED,
        r"sender address (has null mx|rejected|denied|refused|is (invalid|not allowed))"
        r"|domain of sender address|sender (domain|verify) (must exist|not found|does not"
        r" exist|is empty|failed)|sender (is |was )?(rejected|denied|refused|not allowed)"
        r"|(invalid|bogus|unverified|unroutable|unresolvable) sender|empty envelope sender"
        r"|null (sender|reverse-path)|unresolvable rfc\.?5321|administrative prohibition"
        r"|not (allowed|authorized|permitted) to send (as|from|on behalf)"
        r"|you are not allowed to post",
    ),
    (_R.SUPPRESSED, r"suppress(ed\b|ion)|previously (bounced|unsubscribed)"),
    (
        _R.NOTACCEPT,  # RFC 7505 null MX, RFC 7504 "does not accept mail"
        r"\bnull ?mx\b|(host|domain|host/domain|site) does not accept (e-?)?mail(?! over)"
        r"|mail receiving disabled|no mx record|accepts no mail",
    ),
    (
        _R.HASMOVED,
        r"no longer on (this )?server|has been replaced by|(mailbox|address|user|account)"
        r" has moved|user not local; please try|owner has changed",
    ),
    # The provider wants us slower, and says so without blaming reputation. Gmail's
    # 4.7.28 "unusual rate of unsolicited mail" is here (Sisimai's Google module says
    # "blocked", its status table "spamdetected"): the lab and shaping treat it as the
    # rate signal it is, and it is temporary. Outlook's old RP-001 text ("limits for
    # how many messages can be sent per hour and per day") too.
    (
        _R.SPEEDING,
        r"unusual rate of (unsolicited )?mail|receiving mail (too quickly|too fast|at a rate)"
        r"|due to excessive (volume|rate)|try again slower|(daily|hourly)[^.;]{0,30}"
        r"(quota|limit)|sending (quota|limit)s? (exceeded|reached)|submission quota"
        r"|(messages?|emails?|mails?)( can be sent)? per (second|minute|hour|day)",
    ),
    (
        _R.BLOCKED,  # the connecting IP/host is on a list or banned
        r"blocked using|\b(black|block|deny|ban|bad)[ -]?list(ed|ing)?\b"
        r"|(?<!not )\blisted (in|on|at|by)\b|\b(dnsbl|rbl|uribl|surbl)\b|spamhaus|spamcop"
        r"|barracuda|\bsorbs\b|abuseat|part of their network|banned (sending ip|sender)"
        r"|not currently accepting mail from your ip|\b(ip|ips|host|network|server)\b[^.;]"
        r"{0,60}\b(is|are|has been|have been|was) (blocked|banned|listed)\b|connections?"
        r" (will not be|not) accepted from|will be permanently deferred|refused to talk to me"
        r"|not accepting connections|sender ip address rejected|dynamic(ally[- ]assigned)? ip"
        r"|helo command rejected|(bad|invalid) helo|too many spams from your ip",
    ),
    # Deferrals that name reputation or complaints as the cause. Yahoo's TSS04
    # ("temporarily deferred due to unexpected volume or user complaints"): Sisimai 5's
    # BadReputation list and its reason tests say badreputation, its YahooInc module
    # says "rejected", and Sisimai 5.5 folds it into "ratelimited" (speeding and
    # toomanyconn merged). Yahoo sends it for complaint rates and for weak or missing
    # authentication as much as for volume, so slowing down alone does not cure it:
    # badreputation. Likewise Outlook 4.7.650/4.7.651 "rate limited due to IP
    # reputation" and RP-001/RP-003 when they add "related to IP/domain reputation"
    # (RP-003 without that clause is a plain connection limit: toomanyconn).
    (
        _R.BADREPUTATION,
        r"reputation|unexpected volume or user complaints|deferred due to user complaints",
    ),
    (
        _R.REQUIREPTR,
        r"\bptr\b|reverse (dns|lookup|hostname|name|resolution)|\brdns\b|fcrdns"
        r"|cannot find your (reverse )?hostname|name lookup failed|forward dns entry"
        r"|cannot resolve your (address|hostname)|unresolvable relay host",
    ),
    (
        _R.AUTHFAILURE,
        r"\b(spf|dkim|dmarc|arc)\b|sender policy framework|domainkeys|unauthenticated"
        r" (e-?mail|mail|message)|sender is unauthenticated|authentication (checks?|"
        r"requirements?|level|results)|authenticate (with|their e-?mail)|aligned with either",
    ),
    (
        _R.SYSTEMFULL,
        r"insufficient system (storage|resources)|system (storage|resources?) (is )?(full|"
        r"exhausted|unavailable)|mail system (is )?full|(disk|spool|queue) (is )?full"
        r"|no space left on device",
    ),
    (
        _R.MAILBOXFULL,
        r"mailbox (is )?(full|over ?quota|size limit|exceeds)|(mailbox|inbox|mailfolder|"
        r"maildir|folder|account|user) (is )?(full|over (its |the )?quota)|full mailbox"
        r"|over ?quota|quota (exceeded|exceeds|violation|full)|exceed(ed|s)? (its |his |her |"
        r"their |the )?(storage|disk|mailbox|quota)|(insufficient|not enough|out of)"
        r" (disk |storage )?(space|storage)|user's space has been used up|too much mail data",
    ),
    (
        _R.SUSPEND,
        r"(account|mailbox|user|address|recipient)( that you tried to reach)?( has been| is"
        r"| was)? (currently |temporarily |permanently )?(disabled|suspended|deactivated|"
        r"inactive|frozen|locked|archived|terminated|discontinued|closed|not active)\b"
        r"|(inactive|disabled|suspended|deactivated|archived) (account|user|mailbox|recipient)"
        r"|is no longer (valid|active|in use)|no longer accept(s|ing) (e-?)?mail"
        r"|not accepting messages",
    ),
    (
        _R.NETWORKERROR,  # a temporary DNS failure is not an unknown host
        r"host not found, try again|temporary (dns|lookup|name resolution) failure|(dns|name"
        r" ?server)( lookup| query)? (timeout|timed out|failure|failed|error|servfail)"
        r"|servfail|malformed (or unexpected )?name server reply",
    ),
    (
        _R.HOSTUNKNOWN,
        r"host or domain name not found|\b(domain|host|hostname)( name)? (not found|does not"
        r" exist|doesn't exist|unknown|not known|is unknown|could not be found|is not"
        r" reachable)|(domain|host) \S{1,80} (does not exist|doesn't exist|not found)"
        r"|unknown (host|domain)|no such (domain|host)|name or service not known"
        r"|nodename nor servname|nxdomain|unrout(e)?able (address|domain)|domain must exist",
    ),
    (
        _R.NORELAYING,
        r"relay(ing)? (access )?(denied|not permitted|prohibited|not allowed|refused)|unable"
        r" to relay|not (allowed|permitted) to relay|\bno relaying\b|open relay|as a relay"
        r"|we do not relay|in my list of allowed rcpthosts|insecure mail relay|invalid"
        r" credentials for relay|we don't handle mail for|not authorized to send e?mail directly",
    ),
    (
        _R.USERUNKNOWN,
        r"\b(user|recipient|mailbox|address|account|addressee|local[- ]?part)( name)? (is )?"
        r"(unknown|not found|not known|invalid|not valid|unavailable|does not exist|doesn't"
        r" exist|not exist|not listed)\b|\b(user|recipient|mailbox|account|address) \S{1,80}"
        r" (does not exist|doesn't exist|not found|is unknown)|unknown (user|recipient|"
        r"mailbox|address|alias|local[- ]?part|e-?mail address)|unknown or illegal alias"
        r"|no such (user|recipient|mailbox|address|person|account|local user)|not a (valid|"
        r"known) (mailbox|recipient|user|address|e-?mail address)|invalid (recipient|mailbox|"
        r"address|user|e-?mail address)|(bad|illegal) (recipient|destination)|no (mailbox|"
        r"account) (here )?(by that name|found|available)|recipient address rejected: "
        r"(user unknown|unknown user|undeliverable|invalid|access denied|no such)|mailbox"
        r" unavailable|mailbox name not allowed|no one at this address|doesn'?t have an? \S{1,60}"
        r" account"
        r"|recip(ient)?notfound|badrcptto|validrcptto|not present in directory|does not exist",
    ),
    (
        _R.VIRUSDETECTED,
        r"\bvirus|malware|infected|trojan|malicious (content|attachment|url|link|software)"
        r"|(executable|dangerous|potentially harmful) (attachment|content|file)",
    ),
    (
        _R.SPAMDETECTED,
        r"\bspam\b|spam[- ]?(like|score|filter|content|check|probability|points)|spamassassin"
        r"|unsolicited|junk (mail|e-?mail)|classified as bulk|content filter|(message|mail)"
        r" content (rejected|refused|denied)|(message|mail|email) (was )?(rejected|refused|"
        r"filtered|blocked) (as|by) (spam|content)|nature of the content|phish|suspicious"
        r" (content|links?)|unacceptable content",
    ),
    (
        _R.EXCEEDLIMIT,  # header / attachment limits (Gmail), not the message size
        r"header (size|value|name)[^.;]{0,40}(exceed|too (long|large|big))|header size"
        r" exceeds|too many (attachments|headers)|number of attachments",
    ),
    (
        _R.MESGTOOBIG,
        r"(message|mail|email|data)( file)? (size |length )?(exceeds|exceeded|too (big|large)|"
        r"is too (big|large))|size (limit|exceeds|exceeded)|too (big|large) for|exceed(s|ed)?"
        r" [^.;]{0,40}size limit|maximum (inbound |incoming )?(message )?size|databytes"
        r"|message size|size of (your|the) message",
    ),
    (
        _R.TOOMANYCONN,
        r"too many (concurrent |simultaneous |smtp |open )?(connections|sessions)|connection"
        r" (rate )?limit|max(imum)? (number of )?(connections|concurrent)|exceeded the (maximum"
        r" number of |max )?connections?|max(imum)? (number of )?messages? per (connection|"
        r"session)|too many (recipients|rcpt)|concurrency limit",
    ),
    (
        _R.FAILEDSTARTTLS,  # RFC 3207; also MTA-STS (RFC 8461), DANE, REQUIRETLS (RFC 8689)
        r"starttls|\btls\b|\bssl\b|encryption (is )?(required|needed)|certificate|handshake"
        r"|mta-sts|\bdane\b|\btlsa\b|requiretls",
    ),
    (
        _R.POLICYVIOLATION,  # greylisting is the receiver's local policy, retried later
        r"\bpolic(y|ies)\b|prohibited|illegal attachment|attachment[^.;]{0,30}not (allowed|"
        r"permitted|accepted)|organi[sz]ation(al)? (settings|policy)|members-only|closed"
        r" mailing list|non-member|gr[ae]ylist|potential security issue|low priority"
        r"|content restriction",
    ),
    (
        _R.NOTCOMPLIANTRFC,
        r"\brfc ?(5322|2822|822|5321|2821|821)\b|not (rfc|standards?)[ -]?compliant"
        r"|headers? (are |is )?not (rfc )?compliant|duplicate (header|from|to|subject|"
        r"message-id|date)|multiple (addresses in )?(from|sender)|missing (a )?(valid )?(address"
        r" in )?(from|message-id|date|sender)|message is malformed|malformed (message|header|mime)"
        r"|encoded-word syntax|unicode character in a disallowed header|non-?compliant",
    ),
    (
        _R.CONTENTERROR,
        r"(invalid|bad|improper|unsupported|illegal) (mime|content[- ]type|characters?|8-?bit|"
        r"encoding|charset|binary)|mime (error|complexity|structure)|(8bit|bit) (data|characters)"
        r"|(content|media) (error|not supported)|conversion (failed|required|not supported|"
        r"prohibited)|line (too long|length exceeded)|bare (lf|linefeed|line feed|cr)",
    ),
    (
        _R.SECURITYERROR,  # SMTP AUTH (RFC 4954), not message authentication
        r"authentication (required|failed|failure|credentials|unsuccessful|mechanism)|(must|"
        r"need to|please) (authenticate|log ?in)|(client|sender|you) (was |were |are )?not"
        r" authenticated|unauthenticated (senders|relay|users?)|invalid credentials|password"
        r"|too many (login|authentication) attempts|security (issue|violation|error)",
    ),
    (
        _R.FILTERED,  # the recipient's own rules refuse us
        r"(user|recipient) (rules|preferences|filters?)\b|refuse[sd]? to (accept|receive)"
        r"|(rejected|blocked) by (the )?recipient|recipient (is only accepting|has (blocked|"
        r"restricted))|not accepting (any )?(e-?)?mail from (you|this sender)|user reject"
        r"|message filtered|you have been blocked by",
    ),
    (
        _R.EXPIRED,
        r"\bexpired\b|queue lifetime|(too long|timed out) in (the )?queue|in the queue too long"
        r"|delivery time (expired|exceeded)|giving up|retry (timeout|time) (exceeded|not"
        r" reached)|could not be delivered for [^.;]{0,20}(days|hours)|max(imum)? (queue|"
        r"delivery) time",
    ),
    (
        _R.NETWORKERROR,
        r"connection (refused|timed? ?out|reset|closed|dropped|lost|failed|error)"
        r"|connect(ion)? (call )?failed|timed? ?out|timeout|no route to host|(host|network)"
        r" (is )?unreachable|broken pipe|lost connection|disconnected|(mail|routing|forwarding)"
        r" loop|loops? back to myself|too many hops|hop count exceeded|\bdns\b|could not"
        r" connect",
    ),
    (
        _R.SPEEDING,
        r"rate[- ]?limit|throttl|too (fast|quickly)|too many (messages|mails|e-?mails)(?! on)"
        r"|slow(er)? down|(message|sending|send|mail) rate|exceeded [^.;]{0,30}(sending|message|"
        r"recipient) (limit|quota)",
    ),
    (
        _R.SYNTAXERROR,
        r"syntax error|unrecognized command|command (not )?(recognized|unrecognized|"
        r"implemented)|not implemented|bad sequence of commands|out of sequence|unknown"
        r" command|(command|line) too long|invalid command|protocol (violation|error)"
        r"|send hello first|(ehlo|helo|mail|rcpt) first",
    ),
    (
        _R.MAILERERROR,
        r"mailer error|(program|command|pipe|procmail|maildrop)[^.;]{0,40}(died|failed|exited|"
        r"returned)|exit (code|status) \d+",
    ),
)

_WEAK_RULES: Final[tuple[tuple[Reason, str], ...]] = (
    (
        _R.BLOCKED,
        r"\bblock(ed|ing)?\b|\bbanned\b|go away|not allowed to connect|\b(ip|host|server|"
        r"client)\b[^.;]{0,40}\b(rejected|refused|denied)",
    ),
    (_R.REJECTED, r"delivery not authorized|message refused|not authorized|access denied"),
    (
        _R.SYSTEMERROR,
        r"local error|internal (server )?error|temporar(y|ily) (local |system |server )?"
        r"(problem|error|failure|unavailable)|system (error|problem|failure)|server (is )?busy"
        r"|too busy|service (is )?(currently |temporarily )?(unavailable|not available|not"
        r" active)|try (again )?later|configuration error|misconfigured|resources temporarily"
        r" unavailable|queue file write error|transaction failed|(server|processing|"
        r"unexpected) error|shutting down|maintenance|please try again",
    ),
)


_TEXT_RULES: Final = RuleTable(_STRONG_RULES)
_WEAK_TEXT_RULES: Final = RuleTable(_WEAK_RULES)

#: RFC 5321 §4.2.2-4.2.3: what a bare reply code says when nothing else does. 550, 553
#: and 554 stay undecided: servers use them for every kind of refusal.
_CODE_FALLBACK: Final[dict[int, Reason]] = {
    421: _R.SYSTEMERROR,
    451: _R.SYSTEMERROR,
    452: _R.SYSTEMFULL,
    500: _R.SYNTAXERROR,
    501: _R.SYNTAXERROR,
    502: _R.SYNTAXERROR,
    503: _R.SYNTAXERROR,
    504: _R.SYNTAXERROR,
    555: _R.SYNTAXERROR,
    521: _R.NOTACCEPT,
    556: _R.NOTACCEPT,  # RFC 7504: host / domain does not accept mail
    523: _R.FAILEDSTARTTLS,
    538: _R.FAILEDSTARTTLS,  # encryption required (RFC 4954, 5248)
    525: _R.SECURITYERROR,
    530: _R.SECURITYERROR,
    534: _R.SECURITYERROR,
    535: _R.SECURITYERROR,
    551: _R.HASMOVED,  # "user not local; please try <forward-path>" (RFC 5321 §3.4)
    552: _R.MAILBOXFULL,  # "exceeded storage allocation"
}

#: reason → "subject.detail" when the reply carried no enhanced status
_INFERRED_STATUS: Final[dict[Reason, str]] = {
    _R.USERUNKNOWN: "1.1",
    _R.HOSTUNKNOWN: "1.2",
    _R.HASMOVED: "1.6",
    _R.NOTACCEPT: "3.2",
    _R.SUSPEND: "2.1",
    _R.MAILBOXFULL: "2.2",
    _R.EXCEEDLIMIT: "2.3",
    _R.MESGTOOBIG: "3.4",
    _R.SYSTEMFULL: "3.1",
    _R.SYSTEMERROR: "3.0",
    _R.NETWORKERROR: "4.0",
    _R.EXPIRED: "4.7",
    _R.SYNTAXERROR: "5.2",
    _R.CONTENTERROR: "6.0",
    _R.NOTCOMPLIANTRFC: "6.0",
    _R.SECURITYERROR: "7.0",
    _R.FAILEDSTARTTLS: "7.0",
    _R.REQUIREPTR: "7.25",
    _R.REJECTED: "7.1",
    _R.BLOCKED: "7.1",
    _R.BADREPUTATION: "7.1",
    _R.AUTHFAILURE: "7.1",
    _R.NORELAYING: "7.1",
    _R.SPAMDETECTED: "7.1",
    _R.VIRUSDETECTED: "7.1",
    _R.POLICYVIOLATION: "7.1",
    _R.FILTERED: "7.1",
    _R.DELIVERED: "0.0",
}

#: no reply at all: which RFC 3463 §3.5 detail the transport failure is (as Postfix logs)
_TRANSPORT_DETAIL: Final = (
    ("4.3", re.compile(r"\bdns\b|resolv|name server|servfail|getaddrinfo")),
    ("4.2", re.compile(r"reset|closed|disconnect|broken pipe|lost|eof")),
    ("4.1", re.compile(r"refused|timed? ?out|timeout|unreachable|no route|connect")),
)


def split_enhanced(text: str) -> tuple[str | None, str]:
    """Pull a leading RFC 3463 enhanced status code ("5.1.1 ...") off a reply text.

    Multi-line replies joined with ``\\n`` repeat the code on every line, with or
    without the reply code (``550-5.1.1 ...``, RFC 5321 §4.2.1; RFC 2034 §4); each
    line loses both and the rest is joined with single spaces. The status is the first
    one found; one of class 2, 4 or 5 only.
    """
    status: str | None = None
    parts: list[str] = []
    for raw in text.splitlines():
        line = raw.strip()
        code = _REPLY_CODE_RE.match(line)
        if code:
            line = line[code.end() :].lstrip()
        found = _STATUS_RE.match(line)
        if found:
            status = status or _canonical_status(found)
            line = line[found.end() :].lstrip()
        if line:
            parts.append(line)
    return status, " ".join(parts)


def classify_reply(code: int | None, text: str, enhanced: str | None = None) -> ReplyClass:
    """Classify one SMTP reply (``code`` None: no reply at all; ``text`` says why).

    ``enhanced`` is the status the caller already parsed, else the one leading
    ``text``. Without a reply code, only an enhanced status of class 5 makes the
    failure permanent: a router that knows an NXDOMAIN or null MX is final says so
    with ``enhanced="5.1.2"`` / ``"5.1.10"``.
    """
    found, body = split_enhanced(text)
    given = _STATUS_RE.fullmatch(enhanced.strip()) if enhanced else None
    status = _canonical_status(given) if given else found
    status_class = status[0] if status else None
    if code is not None:
        permanent = 500 <= code < 600
        delivered = 200 <= code < 300
    else:
        permanent = status_class == "5"
        delivered = status_class == "2"
    reason = _R.DELIVERED if delivered else _decide(code, status, _normalise(body))
    if status is None:
        status = _infer_status(reason, code, permanent, body)
    hard = permanent and reason in HARD_REASONS
    return ReplyClass(reason=reason, status=status, hard=hard, permanent=permanent)


def _decide(code: int | None, status: str | None, text: str) -> Reason:
    """The reason, from the signals in the order the module docstring gives."""
    by_status = _status_reason(status) if status else None
    if by_status and by_status[1] is _Tier.DECISIVE:
        return by_status[0]
    reason = _TEXT_RULES.first(text)
    if reason:
        return reason
    if by_status and by_status[1] is _Tier.SPECIFIC:
        return by_status[0]
    reason = _WEAK_TEXT_RULES.first(text)
    if reason:
        return reason
    if by_status and by_status[0] is not _R.UNDEFINED:
        return by_status[0]
    if code is None:
        return _R.NETWORKERROR  # no reply at all: refused, dropped, timed out
    return _CODE_FALLBACK.get(code) or (_R.ONHOLD if text else _R.UNDEFINED)


def _status_reason(status: str) -> tuple[Reason, _Tier] | None:
    """What a status says: per-class entry, then subject.detail, then the subject."""
    key = status[2:]
    rule = _STATUS_RULES.get(status) or _STATUS_RULES.get(key)
    if rule:
        return rule
    fallback = _SUBJECT_FALLBACK.get(key.split(".", 1)[0])
    return (fallback, _Tier.GENERIC) if fallback else None


def _infer_status(reason: Reason, code: int | None, permanent: bool, text: str) -> str | None:
    """An X.Y.Z for a reply that carried none: class from the code, cause from the reason."""
    detail = _INFERRED_STATUS.get(reason)
    if code is None and reason is _R.NETWORKERROR:
        lowered = text.lower()
        detail = next((d for d, rx in _TRANSPORT_DETAIL if rx.search(lowered)), detail)
    if detail is None:
        return None
    if reason is _R.DELIVERED:
        return "2.0.0"
    return f"{5 if permanent else 4}.{detail}"


def _canonical_status(match: re.Match[str]) -> str:
    """ "5.01.001" → "5.1.1": RFC 3463 §2 digits carry no leading zeros in meaning."""
    return f"{match.group(1)}.{int(match.group(2))}.{int(match.group(3))}"


def _normalise(text: str) -> str:
    """Lower-case, straight apostrophes, single spaces: what the text rules expect."""
    return " ".join(text.replace("\u2019", "'").lower().split())


# --- retry hints in 4xx replies ---------------------------------------------------

_UNIT_SECONDS: Final[dict[str, float]] = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_AMOUNT: Final = r"(\d+(?:\.\d+)?|an?|one)"
_UNIT: Final = r"(seconds?|secs?|s|minutes?|mins?|m|hours?|hrs?|h|days?|d)(?![a-z])"
_HINT_RE: Final = re.compile(
    rf"\b(?:in|after|for|wait(?:ing)?(?: at least| for)?)\s+{_AMOUNT}\s*{_UNIT}"
)
_MORE_RE: Final = re.compile(rf"\s*(?:and\s+)?(\d+(?:\.\d+)?)\s*{_UNIT}")
_CLOCK_RE: Final = re.compile(r"\b(?:in|after)\s+(\d{1,2}):(\d{2}):(\d{2})\b")


def retry_hint(text: str) -> float | None:
    """Seconds a 4xx reply asks us to wait ("try again in 30 seconds", "retry in 5
    minutes", "please try again after 1 hour", "in 2m", "in 1h30m", "in 00:05:00").

    None when the reply gives no number ("try again later"): the retry schedule decides.
    """
    lowered = text.lower()
    clock = _CLOCK_RE.search(lowered)
    if clock:
        hours, minutes, seconds = (int(g) for g in clock.groups())
        return float(hours * 3600 + minutes * 60 + seconds)
    match = _HINT_RE.search(lowered)
    if not match:
        return None
    amount = match.group(1)
    total = (1.0 if not amount[0].isdigit() else float(amount)) * _unit(match.group(2))
    end = match.end()
    while more := _MORE_RE.match(lowered, end):
        total += float(more.group(1)) * _unit(more.group(2))
        end = more.end()
    return total


def _unit(word: str) -> float:
    return _UNIT_SECONDS[word[0]]
