"""An ordered table of (label, regex) rules answering "which rule matches first?" fast.

Used by :mod:`deliver.classify`. The answer is always the one trying the rules one
after the other would give (``tests/test_classify.py`` checks it on every reply of
its table and on random texts); only the work is different.
"""

from __future__ import annotations

import re
from typing import Any, Final, Generic, TypeVar

__all__ = ["RuleTable"]

R = TypeVar("R")


class RuleTable(Generic[R]):
    """Ordered (reason, regex) rules, most specific first; the first rule to match wins.

    Searching 35 alternations one after the other costs ~400 µs on a 300-character
    Gmail reply, so the table is read the other way round, in one pass over the
    reply's words. Every alternative of a rule starts at a word with literal text (or
    a group of literal options); the table indexes each alternative by that literal
    prefix and, at each word start, tries only the rules whose prefix is there, with
    ``match`` anchored at that word. The answer is the one searching rule after rule
    gives (``tests/test_classify.py`` checks it); a typical reply takes 5-30 µs.
    """

    __slots__ = ("_index", "_starts", "rules")

    def __init__(self, sources: tuple[tuple[R, str], ...]) -> None:
        rules: list[tuple[R, re.Pattern[str]]] = []
        by_prefix: dict[tuple[str, int], list[str]] = {}
        for number, (reason, source) in enumerate(sources):
            alternatives = _split_top_level(source, "|")
            rules.append((reason, _anchored(alternatives)))
            for alternative in alternatives:
                for prefix in _literal_prefixes(alternative):
                    by_prefix.setdefault((prefix, number), []).append(alternative)
        entries = [(p, n, _anchored(a)) for (p, n), a in by_prefix.items()]
        keys = {_key(prefix) for prefix, _, _ in entries}
        #: the table itself: (reason, regex), most specific first
        self.rules: Final = tuple(rules)
        #: a word's first letters → (literal prefix, rule number, the alternatives it
        #: starts) for every prefix starting with those letters or a shorter key
        self._index: Final = {
            key: tuple(
                sorted((e for e in entries if key.startswith(_key(e[0]))), key=lambda e: e[1])
            )
            for key in keys
        }
        #: the longest key at each word start, as a trie (a flat alternation is slow)
        self._starts: Final = re.compile(rf"\b{_trie_regex(keys)}")

    def first(self, text: str) -> R | None:
        """The reason of the first rule that matches anywhere in ``text``, if any."""
        best = len(self.rules)
        index = self._index
        for start in self._starts.finditer(text):
            at = start.start()
            for prefix, number, pattern in index[start.group()]:
                if number >= best:
                    break
                if text.startswith(prefix, at) and pattern.match(text, at):
                    best = number
        return self.rules[best][0] if best < len(self.rules) else None


def _key(prefix: str) -> str:
    """Index key of a literal prefix: up to its first four word characters."""
    run = _WORD_RUN_RE.match(prefix)
    return run.group()[:4] if run else prefix[:2]


def _trie_regex(words: set[str]) -> str:
    """A regex matching the longest of ``words`` (greedy trie: each letter tried once)."""
    trie: dict[str, dict[str, Any]] = {}
    for word in words:
        node = trie
        for char in word:
            node = node.setdefault(char, {})
        node[""] = {}

    def build(node: dict[str, Any]) -> str:
        branches = [re.escape(c) + build(child) for c, child in sorted(node.items()) if c]
        if not branches:
            return ""
        body = branches[0] if len(branches) == 1 else f"(?:{'|'.join(branches)})"
        return f"(?:{body})?" if "" in node else body

    return build(trie)


def _anchored(alternatives: list[str]) -> re.Pattern[str]:
    """One regex for the alternatives, each starting at a word (what the index assumes)."""
    return re.compile("|".join(rf"\b(?:{a})" for a in alternatives))


_WORD_RUN_RE: Final = re.compile(r"\w+")
#: what a regex may spell literally: escaped punctuation, or any non-special character
_LITERAL_RE: Final = re.compile(r"(?:\\[.\-/()\[\]?*+]|[^.^$*+?{}\[\]\\|()])+")


def _split_top_level(pattern: str, separator: str) -> list[str]:
    """Split a regex at ``separator`` outside groups, classes and escapes."""
    parts, depth, start, i, in_class = [], 0, 0, 0, False
    while i < len(pattern):
        char = pattern[i]
        if char == "\\":
            i += 1
        elif in_class:
            in_class = char != "]"
        elif char == "[":
            in_class = True
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == separator and depth == 0:
            parts.append(pattern[start:i])
            start = i + 1
        i += 1
    parts.append(pattern[start:])
    return parts


def _literal_prefixes(alternative: str) -> list[str]:
    """The literal texts a match of ``alternative`` must start with (one per option of a
    leading group), at least two characters of a word: what :class:`_RuleTable` indexes."""
    rest = alternative
    if rest.startswith("(?<!"):  # a lookbehind consumes nothing
        rest = rest[_group_end(rest) :]
    rest = rest.removeprefix(r"\b")
    if rest.startswith("("):
        end = _group_end(rest)
        if rest[end : end + 1] in ("?", "*", "{"):
            raise ValueError(f"rule alternative starts with an optional group: {alternative!r}")
        options = _split_top_level(rest[1 : end - 1].removeprefix("?:"), "|")
        after = _literal_run(rest[end:])
        return [
            p + after if _literal_run(o) == o else p for o in options for p in _literal_prefixes(o)
        ]
    prefix = _literal_run(rest)
    if len(prefix) < 2 or not prefix[:2].isalnum():
        raise ValueError(f"rule alternative must start with a literal word: {alternative!r}")
    return [prefix]


def _literal_run(pattern: str) -> str:
    """The literal text ``pattern`` starts with (a quantified last character excluded)."""
    match = _LITERAL_RE.match(pattern)
    run = match.group() if match else ""
    if pattern[len(run) : len(run) + 1] in ("?", "*", "{"):
        run = run[:-2] if run.endswith(("\\.", "\\-")) else run[:-1]
    return re.sub(r"\\(.)", r"\1", run)


def _group_end(pattern: str) -> int:
    """Index just past the group that opens ``pattern``."""
    depth = 0
    for i, char in enumerate(pattern):
        if char == "\\" or (i and pattern[i - 1] == "\\"):
            continue
        depth += (char == "(") - (char == ")")
        if depth == 0:
            return i + 1
    raise ValueError(f"unbalanced group: {pattern!r}")
