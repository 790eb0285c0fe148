"""The lab's content filter: a small, SpamAssassin-style score over a message's text.

Real providers judge content with models nobody outside can read. The lab only needs a
filter whose decisions are explainable and repeatable, so the demo and the tests can put a
copy in the spam folder *for its content* (and a newsletter written like spam gets
caught, as it would be). Each rule adds its weight once; a message whose total reaches the
provider's threshold (5.0 by default, SpamAssassin's own default) is filed as spam.

:func:`score` is pure: bytes in, a :class:`ContentScore` (total and the rules that hit) out.
"""

from __future__ import annotations

import email
import email.policy
import html
import re
from collections.abc import Callable
from dataclasses import dataclass
from email.message import EmailMessage

__all__ = ["DEFAULT_THRESHOLD", "RULES", "ContentScore", "Rule", "message_text", "score"]

DEFAULT_THRESHOLD = 5.0
_TAGS = re.compile(r"<[^>]+>")
_URL_HOST = re.compile(r"https?://([^/\s\"'<>:?#]+)", re.I)
_IPV4 = re.compile(r"\d{1,3}(\.\d{1,3}){3}")
_SHORTENERS = frozenset({"bit.ly", "tinyurl.com", "goo.gl", "t.co", "ow.ly", "is.gd", "buff.ly"})


@dataclass(frozen=True, slots=True)
class Parts:
    """What the rules read: the subject, the plain text (or text derived from the HTML),
    the HTML if any, and the link hosts."""

    subject: str
    text: str
    html: str | None
    hosts: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    weight: float
    description: str
    test: Callable[[Parts], bool]


def _phrase(*words: str) -> Callable[[Parts], bool]:
    pattern = re.compile(r"\b(" + "|".join(re.escape(w) for w in words) + r")\b", re.I)
    return lambda p: bool(pattern.search(p.subject) or pattern.search(p.text))


def _caps_subject(p: Parts) -> bool:
    letters = [c for c in p.subject if c.isalpha()]
    return len(letters) >= 10 and sum(c.isupper() for c in letters) / len(letters) > 0.7


def _image_only(p: Parts) -> bool:
    return p.html is not None and "<img" in p.html.lower() and len(p.text.split()) < 12


RULES: tuple[Rule, ...] = (
    Rule("SUBJ_ALL_CAPS", 1.5, "the subject is mostly capital letters", _caps_subject),
    Rule(
        "EXCLAIM_RUN",
        1.0,
        "a run of three or more '!'",
        lambda p: "!!!" in p.subject or "!!!" in p.text,
    ),
    Rule(
        "MONEY_RUN",
        1.5,
        "'$$$' or '€€€'",
        lambda p: any(m in s for s in (p.subject, p.text) for m in ("$$$", "€€€")),
    ),
    Rule(
        "FREE_MONEY",
        2.0,
        "free money, cash or gift card offers",
        _phrase("free money", "free cash", "cash bonus", "free gift card", "claim your prize"),
    ),
    Rule(
        "URGENCY",
        1.0,
        "pressure to act now",
        _phrase("act now", "limited time only", "urgent response", "expires today"),
    ),
    Rule(
        "GUARANTEE",
        1.0,
        "guarantees and no-risk promises",
        _phrase("100% guaranteed", "risk-free", "risk free", "no risk"),
    ),
    Rule(
        "WINNER",
        2.0,
        "'you are a winner' and lottery wording",
        _phrase("you are a winner", "you have won", "lottery", "jackpot"),
    ),
    Rule("PHARMA", 3.0, "pharmacy spam words", _phrase("viagra", "cialis", "pharmacy")),
    Rule(
        "CRYPTO_RICHES",
        2.0,
        "get-rich crypto offers",
        _phrase("crypto profits", "double your bitcoin", "guaranteed returns"),
    ),
    Rule(
        "URL_IP_HOST",
        2.0,
        "a link to a bare IP address",
        lambda p: any(_IPV4.fullmatch(h) for h in p.hosts),
    ),
    Rule(
        "URL_SHORTENER",
        1.0,
        "a link through a URL shortener",
        lambda p: any(h.lower() in _SHORTENERS for h in p.hosts),
    ),
    Rule("IMAGE_ONLY", 1.5, "an HTML message that is little more than images", _image_only),
)


@dataclass(frozen=True, slots=True)
class ContentScore:
    total: float
    hits: tuple[str, ...]

    def spam(self, threshold: float = DEFAULT_THRESHOLD) -> bool:
        return self.total >= threshold

    def describe(self) -> str:
        """``score 3.5 (SUBJ_ALL_CAPS, FREE_MONEY)``, as a filter's header would show it."""
        return f"score {self.total:.1f}" + (f" ({', '.join(self.hits)})" if self.hits else "")


def message_text(raw: bytes) -> Parts:
    """The subject, text and HTML of a message (parts decoded, at most the first of each)."""
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    subject = str(msg.get("Subject", ""))
    text: str | None = None
    markup: str | None = None
    for part in msg.walk():
        if part.is_multipart() or part.get_content_maintype() != "text":
            continue
        try:
            content = part.get_content()
        except (LookupError, ValueError):  # an unknown charset or a broken encoding
            continue
        if part.get_content_subtype() == "html" and markup is None:
            markup = content
        elif part.get_content_subtype() == "plain" and text is None:
            text = content
    if text is None:
        text = html.unescape(_TAGS.sub(" ", markup or ""))
    hosts = tuple(_URL_HOST.findall(markup or "") + _URL_HOST.findall(text))
    return Parts(subject, text, markup, hosts)


def score(raw: bytes) -> ContentScore:
    parts = message_text(raw)
    hit = [rule for rule in RULES if rule.test(parts)]
    return ContentScore(round(sum(rule.weight for rule in hit), 2), tuple(r.name for r in hit))
