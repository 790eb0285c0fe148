"""The Jinja scanner: an HTML template source split into HTML text and Jinja tags.

:func:`scan_jinja` finds the tags the way Jinja's lexer does (strings and brackets inside a tag
do not end it), applies whitespace control (``{%-``, ``-%}``) to the text around them and
removes the dashes, and passes ``{% raw %}`` bodies through as text. Each tag is classified
(:class:`Tag`) so the walker and the builder can follow the template's block structure
without understanding its expressions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from deliver.errors import InputError

__all__ = ["OPAQUE", "Tag", "balanced", "balanced_roles", "scan_jinja"]


@dataclass(frozen=True)
class Tag:
    """A Jinja tag of the source, as it goes into the text template."""

    kind: Literal["expr", "stmt", "comment"]
    src: str  # as written in the text template: whitespace-control dashes removed
    keyword: str = ""  # a statement's first word: "if", "endfor", "set"...
    role: Literal["", "open", "middle", "close"] = ""  # its place in a block, if any
    family: str = ""  # its block: "if", "for"... ("" for else, which fits if and for)
    scoped: bool = False  # defines names: cannot move into a {% filter %} block (a scope)


_OPENERS = frozenset(
    {"if", "for", "macro", "call", "filter", "block", "with", "autoescape", "trans"}
)
OPAQUE = frozenset({"macro", "call", "set"})  # bodies not rendered where they stand
_TAG_START = re.compile(r"\{([{%#])")
_STRING = re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"", re.S)
_KEYWORD = re.compile(r"[+]?\s*([A-Za-z_]\w*)")
_BLOCK_SET = re.compile(r"set\s+[\w.]+(?:\s*,\s*[\w.]+)*\s*(?:\|.*)?", re.S)
_END_RAW = re.compile(r"\{%(-?)\s*endraw\s*-?%\}")


def scan_jinja(source: str) -> list[str | Tag]:
    """The source split into HTML text and Jinja tags, whitespace control applied."""
    parts: list[str | Tag] = []
    pos = 0
    strip_next = False
    while (m := _TAG_START.search(source, pos)) is not None:
        text = source[pos : m.start()]
        parts.append(text.lstrip() if strip_next else text)
        end = _tag_end(source, m.start(), m.group(1))
        raw = source[m.start() : end]
        left = raw[2] == "-"
        right = len(raw) - 3 > 2 + left and raw[-3] == "-"
        if left and isinstance(parts[-1], str):
            parts[-1] = parts[-1].rstrip()
        tag = _make_tag(raw, left, right, _line_of(source, m.start()))
        strip_next = right
        pos = end
        if tag.keyword == "raw":
            close = _END_RAW.search(source, end)
            if close is None:
                raise InputError("{% raw %} is never closed", line=_line_of(source, m.start()))
            inner = source[end : close.start()]
            inner = inner.lstrip() if right else inner
            parts.append(inner.rstrip() if close.group(1) else inner)
            strip_next = close.group(0)[-3] == "-"
            pos = close.end()
            continue
        parts.append(tag)
    parts.append(source[pos:].lstrip() if strip_next else source[pos:])
    return [part for part in parts if part != ""]


def _line_of(source: str, pos: int) -> int:
    return source.count("\n", 0, pos) + 1


def _tag_end(source: str, start: int, kind: str) -> int:
    """Index after the tag opened at ``start``; strings and brackets as Jinja's lexer sees them."""
    if kind == "#":
        end = source.find("#}", start + 2)
        if end < 0:
            raise InputError("unclosed {# comment", line=_line_of(source, start))
        return end + 2
    close = "}" if kind == "{" else "%"
    depth = 0
    i = start + 2
    while i < len(source):
        c = source[i]
        if c in "'\"":
            string = _STRING.match(source, i)
            if string is None:
                break
            i = string.end()
            continue
        if c in "([{":
            depth += 1
        elif c in ")]}" and depth:
            depth -= 1
        elif c == close and not depth and source.startswith("}", i + 1):
            return i + 2
        i += 1
    raise InputError(f"unclosed {{{kind} tag", line=_line_of(source, start))


def _make_tag(raw: str, left: bool, right: bool, line: int) -> Tag:
    """The tag ``raw``, its dashes removed (``left``: ``{%-``, ``right``: ``-%}``), classified."""
    inner = raw[2 + left : len(raw) - 2 - right]
    src = raw[:2] + inner + raw[-2:]
    if raw[1] == "{":
        return Tag("expr", src)
    if raw[1] == "#":
        return Tag("comment", src)
    m = _KEYWORD.match(inner)
    word = m.group(1) if m else ""
    if word in ("extends", "include"):
        raise InputError(
            f"{{% {word} %}} cannot be converted to text: flatten the template first", line=line
        )
    if word in _OPENERS:
        return Tag("stmt", src, word, "open", word, scoped=word == "macro")
    if word == "set":
        block = _BLOCK_SET.fullmatch(inner.strip(" +\t\r\n")) is not None
        return Tag("stmt", src, word, "open" if block else "", "set", scoped=True)
    if word in ("elif", "else"):
        return Tag("stmt", src, word, "middle", "if" if word == "elif" else "")
    if word.startswith("end") and word[3:] in _OPENERS | {"set"}:
        return Tag("stmt", src, word, "close", word[3:])
    return Tag("stmt", src, word, scoped=word in ("import", "from"))


def balanced(tags: list[Tag]) -> bool:
    """Do these tags open and close whole blocks (see :func:`balanced_roles`)?"""
    return balanced_roles([tag.role for tag in tags])


def balanced_roles(roles: list[str]) -> bool:
    """Does every block opened here close here, and every block closed here open here?

    A middle tag (``elif``, ``else``) outside any block opened here counts as a close: it
    belongs to a block the sequence does not hold whole.
    """
    depth = 0
    for role in roles:
        if role == "open":
            depth += 1
        elif role == "close" or (role == "middle" and not depth):
            depth -= 1
        if depth < 0:
            return False
    return depth == 0
