"""The text/plain part of a newsletter, derived from its HTML Jinja2 template.

A campaign is sent as ``multipart/alternative``. :func:`html_to_text_template` runs once per
campaign on the HTML *template source* and returns a text *template*; both are then rendered per
contact with the same variables. :func:`html_to_text` applies the same rules to HTML that is
already rendered. Rendering the text template gives what :func:`html_to_text` gives for the
rendered HTML, as long as the values are plain text.

Rules (what a reader of a plain-text newsletter expects):

- dropped: ``<head>``, ``<style>``, ``<script>``, ``<title>``, ``<template>``, ``<noscript>``,
  comments, and elements hidden by ``display:none`` or ``hidden`` (preheaders);
- blocks start on a new line; paragraphs, headings, lists, tables, ``<pre>``, ``<hr>`` and
  ``<blockquote>`` are set off by one blank line, and there are never two blank lines in a row;
- ``h1`` is underlined with ``=``, ``h2`` with ``-``, ``h3`` with ``~``; h4 to h6 stand alone;
- links read ``text (url)``, or just the text when it is the URL (``mailto:`` is not shown);
  images read ``[alt]``, or nothing without alt text;
- lists read ``- item`` and ``1. item``; nested lists and wrapped lines hang under the text;
- data tables: one row per line, cells joined by `` | ``; in layout tables (``role`` is
  ``presentation`` or ``none``, as email builders write them) each cell is a paragraph; empty
  cells vanish;
- entities are decoded, whitespace collapses as in a browser (``&nbsp;`` counts as a space,
  zero-width characters go), ``<pre>`` keeps its text;
- prose wraps at ``width`` columns without breaking words or URLs.

Jinja in the source is opaque: ``{{ expr }}`` is kept where its value shows, ``{% stmt %}`` and
``{# comment #}`` are kept in source order even from dropped content (``<style>``, attribute
values), so the block structure stays as balanced as the source's. Whitespace-control dashes
(``{%-``) are applied to the HTML and then removed: in the text template they would eat the
line breaks written here.

What only rendering can know is left to the text template, which keeps what it needs in a
``namespace`` called ``_sokures``:

- a line holding an expression is wrapped when rendered, in ``{% filter wordwrap(...) %}``:
  the algorithm this module applies to literal lines, which are wrapped here, once;
- a heading holding an expression is captured and underlined to its rendered length (its
  longest line); one cut by blocks that do not balance gets a rule as long as its source text;
- a link whose text holds statements is captured: if the text renders empty, so does the URL;
- where ``{% if %}``/``{% for %}`` paths meet owing different line breaks (a loop of ``<li>``
  after a paragraph: a blank line before the first item, a line break between the others),
  each path records what it owes and the next text reads it. Paths that agree need none of
  this, and most templates get none of it.

Render the text template as ``deliver.compose`` does: autoescape off, default delimiters,
``trim_blocks`` off (a sandbox is fine).

Limits: ``{% extends %}`` and ``{% include %}`` are refused (flatten the template first). Jinja
inside a tag name is not understood. HTML elements must open and close inside the same Jinja
block (``{% if x %}<a href="...">{% endif %}`` cannot be followed). An expression is taken as
text: one that renders HTML (``{{ body|safe }}``) shows its tags, one that renders empty keeps
its separators (``<p>{{ note }}</p>`` leaves a blank line: wrap it in ``{% if note %}``). In
unusual nestings (a line going on into a branch that holds a heading or a ``<pre>``) a line may
stay unwrapped or wrap a few columns early.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from html.parser import HTMLParser
from typing import Literal

from deliver.errors import InputError

__all__ = ["html_to_text", "html_to_text_template"]

_NS = "_sokures"  # the text template's namespace for state that only rendering can know
_HEADING = f"{_NS}.h"  # a heading holding expressions, captured to be underlined
_LINK_TEXT = f"{_NS}.l"  # a link text holding statements, captured to know if it is empty
_ITEM = f"{_NS}.i"  # a list item that may render empty, captured to drop its bullet's space
_MIN_WIDTH = 20


def html_to_text_template(source: str, *, width: int = 76) -> str:
    """Text template (Jinja2 source) from an HTML template source."""
    return _convert(_scan_jinja(source), width, template=True)


def html_to_text(html: str, *, width: int = 76) -> str:
    """Plain text from rendered HTML (same rules, used for ad-hoc HTML)."""
    return _convert([html], width, template=False)


def _convert(parts: list[str | _Tag], width: int, *, template: bool) -> str:
    if width < _MIN_WIDTH:
        raise ValueError(f"width must be at least {_MIN_WIDTH}, not {width}")
    # Jinja tags become placeholders the HTML parser keeps whole, in text and attributes alike
    marked = "".join(
        part if isinstance(part, str) else f"\ue000{i}\ue001" for i, part in enumerate(parts)
    )
    builder = _TextBuilder()
    walker = _HtmlWalker(builder, parts if template else None, width)
    walker.feed(marked)
    walker.close()
    layout = _Layout(builder.finish(), width, template=template)
    text = layout.render()
    if text.endswith("\n\n"):
        text = text.rstrip("\n") + "\n"
    if not template:
        return text if text.strip() else ""
    if builder.runtime_used or layout.captures:
        text = f'{{% set {_NS} = namespace(s=(2, 0, "")) %}}' + text
    if text.endswith("\n"):
        # Jinja drops a template's final newline (keep_trailing_newline is off by default)
        text += "{# end of text part #}"
    return text


# --- Jinja tokens -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Tag:
    """A Jinja tag of the source, as it goes into the text template."""

    kind: Literal["expr", "stmt", "comment"]
    src: str
    keyword: str = ""
    role: Literal["", "open", "middle", "close"] = ""
    family: str = ""
    scoped: bool = False  # defines names: cannot move into a {% filter %} block (a scope)


_OPENERS = frozenset(
    {"if", "for", "macro", "call", "filter", "block", "with", "autoescape", "trans"}
)
_OPAQUE = frozenset({"macro", "call", "set"})  # bodies not rendered where they stand
_TAG_START = re.compile(r"\{([{%#])")
_STRING = re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"", re.S)
_KEYWORD = re.compile(r"[+]?\s*([A-Za-z_]\w*)")
_BLOCK_SET = re.compile(r"set\s+[\w.]+(?:\s*,\s*[\w.]+)*\s*(?:\|.*)?", re.S)
_END_RAW = re.compile(r"\{%(-?)\s*endraw\s*-?%\}")


def _scan_jinja(source: str) -> list[str | _Tag]:
    """The source split into HTML text and Jinja tags, whitespace control applied."""
    parts: list[str | _Tag] = []
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


def _make_tag(raw: str, left: bool, right: bool, line: int) -> _Tag:
    inner = raw[2 + left : len(raw) - 2 - right]
    src = raw[:2] + inner + raw[-2:]
    if raw[1] == "{":
        return _Tag("expr", src)
    if raw[1] == "#":
        return _Tag("comment", src)
    m = _KEYWORD.match(inner)
    word = m.group(1) if m else ""
    if word in ("extends", "include"):
        raise InputError(
            f"{{% {word} %}} cannot be converted to text: flatten the template first", line=line
        )
    if word in _OPENERS:
        return _Tag("stmt", src, word, "open", word, scoped=word == "macro")
    if word == "set":
        block = _BLOCK_SET.fullmatch(inner.strip(" +\t\r\n")) is not None
        return _Tag("stmt", src, word, "open" if block else "", "set", scoped=True)
    if word in ("elif", "else"):
        return _Tag("stmt", src, word, "middle", "if" if word == "elif" else "")
    if word.startswith("end") and word[3:] in _OPENERS | {"set"}:
        return _Tag("stmt", src, word, "close", word[3:])
    return _Tag("stmt", src, word, scoped=word in ("import", "from"))


def _balanced(tags: list[_Tag]) -> bool:
    return _balanced_roles([tag.role for tag in tags])


def _balanced_roles(roles: list[str]) -> bool:
    depth = 0
    for role in roles:
        if role == "open":
            depth += 1
        elif role == "close" or (role == "middle" and not depth):
            depth -= 1
        if depth < 0:
            return False
    return depth == 0


# --- output items -----------------------------------------------------------------------------


@dataclass(eq=False)
class _Line:
    """An output line (a paragraph before wrapping)."""

    hang: int  # indent of the lines it wraps onto
    wrap: bool
    loop: _Code | None = None  # the {% for %} whose passes all write on this line


@dataclass(eq=False)
class _Text:
    text: str
    line: _Line | None = None
    prefix: bool = False  # a list bullet: not wrapped with the line


@dataclass(eq=False)
class _Code:
    """Jinja source: an expression shown in a line, a statement, or state bookkeeping."""

    src: str
    line: _Line | None = None  # set when it is visible content
    prefix: bool = False
    role: str = ""
    scoped: bool = False


@dataclass(eq=False)
class _Gap:
    """Line breaks and indent, or a separator, before content.

    ``code``: ``text`` is Jinja source; ``state``: decided when rendered, from the namespace and
    the requests made since the paths met. The indent is kept apart: inside ``|indent(h)``
    (a wrapped list item) the filter writes its first ``h`` columns.
    """

    text: str = ""
    indent: str = ""
    code: bool = False
    state: _State | None = None

    def render(self, hang: int = 0, *, first_line: bool = False) -> str:
        """The gap; inside ``|indent(hang)``, whose filter indents all lines but its first."""
        indent = self.indent[hang:]
        start = self.indent if first_line else indent
        if self.state is not None:
            return _runtime_gap(self.state, indent, start)
        return self.text + (indent if "\n" in self.text else start)

    @property
    def breaks(self) -> bool:
        return self.code or self.state is not None or "\n" in self.text


@dataclass(eq=False)
class _Slot:
    """A place filled in later, when the paths meeting after it are known."""

    item: _Gap | _Code | None = None


@dataclass(eq=False)
class _Underline:
    char: str
    indent: str
    first: _Text | _Code  # the heading's first content
    runtime: bool = False  # the heading may render empty: it sets the namespace when it is not


_Content = _Text | _Code
_Item = _Text | _Code | _Gap | _Slot | _Underline


# --- pending separators and the paths of the template -------------------------------------------


@dataclass(frozen=True)
class _State:
    """What is owed before the next content.

    ``static``: ``n`` newlines end the output (2 at the start; 3 right after a list bullet,
    which like the start absorbs line breaks and separators, but writes no indent), ``m`` are
    wanted before the next content (1: a new line, 2: a blank line), ``p`` separates it on the
    same line. ``runtime``: the namespace holds the state, ``m`` and ``p`` were requested since.
    ``deferred``: at the head of ``loop``, decided when it closes.
    """

    mode: Literal["static", "runtime", "deferred"] = "static"
    n: int = 2
    m: int = 0
    p: str = ""
    loop: _Frame | None = field(default=None, compare=False)


@dataclass(eq=False)
class _Frame:
    family: str
    entry: _State
    entry_slot: _Slot
    opener: _Code
    ends: list[tuple[_State, _Slot]] = field(default_factory=list)
    has_else: bool = False
    forced: bool = False  # a loop whose head must be decided when rendered
    deferred: list[tuple[_Slot, _State, str]] = field(default_factory=list)


def _norm(st: _State) -> _State:
    """A static state with what cannot matter dropped, so equal states compare equal."""
    if st.mode != "static":
        return st
    m = st.m if st.m > st.n else 0
    p = st.p if not st.n and not m else ""
    return st if (m, p) == (st.m, st.p) else _State("static", st.n, m, p)


_BULLET = 3  # n right after a list bullet


def _with_margin(st: _State, margin: int) -> _State:
    if margin <= st.m:
        return st
    if st.mode != "static":
        return _State(st.mode, st.n, margin, st.p, st.loop)
    return st if margin <= st.n else _State("static", st.n, margin)


def _with_separator(st: _State, sep: str) -> _State:
    # "" < " " < " | ": the strongest separator wins
    if sep <= st.p:
        return st
    if st.mode != "static":
        return _State(st.mode, st.n, st.m, sep, st.loop)
    return st if st.n or st.m else _State("static", 0, 0, sep)


def _merge(entry: _State, local: _State) -> _State:
    return _with_separator(_with_margin(entry, local.m), local.p)


def _fill(st: _State, indent: str) -> _Gap | None:
    if st.m > st.n:
        return _Gap("\n" * (st.m - st.n), indent)
    if st.n:
        return _Gap(indent=indent) if indent and st.n != _BULLET else None
    return _Gap(st.p) if st.p else None


def _breaks(st: _State) -> bool:
    if st.mode == "runtime":
        return st.m >= 1
    return st.m > st.n or 0 < st.n < _BULLET


def _lit(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _runtime_gap(st: _State, indent: str, start_indent: str | None = None) -> str:
    """The gap as an expression of the namespace; ``start_indent``: when no line break is due."""
    s = f"{_NS}.s"
    start_indent = indent if start_indent is None else start_indent
    ind = f'({_lit(start_indent)} if {s}[0] != {_BULLET} else "")' if start_indent else '""'
    if st.m:
        newlines = f'"\\n" * ([{s}[1], {st.m}]|max - {s}[0])'
        if not indent and not start_indent:
            return f"{{{{ {newlines} }}}}"
        due = f"[{s}[1], {st.m}]|max > {s}[0]"
        return f"{{{{ {newlines} ~ {_lit(indent)} if {due} else {ind} }}}}"
    sep = f"[{s}[2], {_lit(st.p)}]|max" if st.p else f"{s}[2]"
    newlines = f'"\\n" * ({s}[1] - {s}[0])'
    if indent:
        newlines += f" ~ {_lit(indent)}"
    return f"{{{{ {newlines} if {s}[1] > {s}[0] else ({ind} if {s}[0] else {sep}) }}}}"


def _record(st: _State) -> _Code | None:
    """The statement that leaves ``st`` in the namespace for the paths' meeting point."""
    s = f"{_NS}.s"
    if st.mode == "static":
        return _Code(f"{{% set {s} = ({st.n}, {st.m}, {_lit(st.p)}) %}}")
    if not st.m and not st.p:
        return None
    m = f"[{s}[1], {st.m}]|max" if st.m else f"{s}[1]"
    p = f"[{s}[2], {_lit(st.p)}]|max" if st.p else f"{s}[2]"
    return _Code(f"{{% set {s} = ({s}[0], {m}, {p}) %}}")


class _TextBuilder:
    """Output items from content and block requests; joins the paths of Jinja blocks."""

    def __init__(self) -> None:
        self.items: list[_Item] = []
        self.indent = ""
        self.nowrap = 0
        self.runtime_used = False
        self._state = _State()
        self._frames: list[_Frame] = []
        self._line: _Line | None = None
        self._anchor: _Code | None = None  # outermost loop whose passes may share a line

    @property
    def depth(self) -> int:
        return len(self._frames)

    def block(self, margin: int) -> None:
        self._state = _with_margin(self._state, margin)

    def separate(self, sep: str = " ") -> None:
        self._state = _with_separator(self._state, sep)

    def glue(self) -> None:
        """After a list bullet: the item's text follows it, whatever blocks open first."""
        self._state = _State(n=_BULLET)

    def unglue(self, start: int = -1, depth: int = -1) -> None:
        """The list item (from item ``start``) ends; with no text, its bullet loses its space."""
        st = self._state
        if st.mode == "static" and st.n == _BULLET:
            for item in reversed(self.items):
                if isinstance(item, _Text | _Code) and (item.line is not None or item.prefix):
                    if isinstance(item, _Text) and item.prefix:
                        item.text = item.text.rstrip()
                    break
            self._state = _norm(replace(st, n=0))
        elif st.mode == "runtime":
            s = f"{_NS}.s"
            self.items.append(
                _Code(f'{{% if {s}[0] == {_BULLET} %}}{{% set {s} = (0, 0, "") %}}{{% endif %}}')
            )
            roles = [it.role for it in self.items[start:] if isinstance(it, _Code) and it.role]
            if start >= 0 and depth == self.depth and _balanced_roles(roles):
                # whether the item has text is known when rendered: capture it, then strip it
                self.items.insert(start, _Code(f"{{% set {_ITEM} %}}", role="open"))
                self.items.append(_Code(f"{{% endset %}}{{{{ {_ITEM}.rstrip() }}}}", role="close"))

    def content(self, pieces: list[_Content], *, prefix: bool = False, hang: int = -1) -> None:
        st = self._state
        gap, breaks = self._gap()
        if gap is not None:
            self.items.append(gap)
        if st.mode == "deferred" and st.loop is not None and not st.m:
            self._anchor = self._anchor or st.loop.opener
        if breaks or self._line is None or self._line.wrap != (self.nowrap == 0):
            self._line = _Line(len(self.indent) if hang < 0 else hang, self.nowrap == 0)
            if not st.m:
                self._line.loop = self._anchor  # the loop's passes go on on the same line
        self._anchor = None
        for piece in pieces:
            piece.line = self._line
            piece.prefix = prefix
            self.items.append(piece)
        self._state = _State(n=0)

    def link_url(self, pieces: list[_Content]) -> None:
        """``(url)`` after a link's text, even when the text ended a block or a line."""
        st = self._state
        wrapped = [_Text("("), *pieces, _Text(")")]
        if st.mode == "static" and st.m and not st.n:
            self._state = replace(st, m=0, p=" ")
            self.content(wrapped)
            self.block(st.m)
        elif st.mode == "runtime":
            # the same, with the line break owed in the namespace: set aside, then owed again
            s = f"{_NS}.s"
            owed = f"[{s}[1], {st.m}]|max"
            self.items.append(
                _Code(
                    f"{{% set {_NS}.m = 0 if {s}[0] else {owed} %}}"
                    f'{{% set {s} = ({s}[0], {owed} if {s}[0] else 0, "" if {s}[0] else " ") %}}'
                )
            )
            self._state = _State("runtime")
            self.content(wrapped)
            self.items.append(_Code(f'{{% set {s} = (0, {_NS}.m, "") %}}'))
            self._state = _State("runtime")
        else:
            self.separate()
            self.content(wrapped)

    def br(self) -> None:
        # a line break owed, not written: a "\n" ending a path in a {% filter wordwrap %}
        # block would be lost, and one at the end of a block would add to its margin
        self._resolve_deferred()
        st = self._state
        if st.mode == "static":
            self._state = _with_margin(st, min(max(st.n, st.m) + 1, 2))
            return
        s = f"{_NS}.s"
        n = f"[{s}[0], {s}[1], {st.m}]|max"
        self.items.append(_Code(f'{{% set {s} = ({s}[0], [{n} + 1, 2]|min, "") %}}'))
        self._state = _State("runtime", m=1)  # implied by the namespace, and a new line

    def underline(self, char: str, first: _Content) -> None:
        self._resolve_deferred()
        runtime = self._state.mode == "runtime"
        self.items.append(_Underline(char, self.indent, first, runtime))
        self._state = _State("runtime") if runtime else _State(n=0)

    def statement(self, tag: _Tag) -> None:
        if tag.role == "open":
            self._open(tag)
        elif tag.role == "middle":
            self._middle(tag)
        elif tag.role == "close":
            self._close(tag)
        else:
            self.items.append(_Code(tag.src, scoped=tag.scoped))

    def finish(self) -> list[_Item]:
        if self._frames:
            raise InputError(f"{{% {self._frames[-1].family} %}} is never closed")
        st = self._state
        if st.mode == "runtime":
            self.items.append(_Gap(f'{{{{ "" if {_NS}.s[0] else "\\n" }}}}', code=True))
        elif not st.n:
            self.items.append(_Gap("\n"))
        return self.items

    def _gap(self) -> tuple[_Gap | _Slot | None, bool]:
        st = self._state
        if st.mode == "static":
            return _fill(st, self.indent), _breaks(st)
        if st.mode == "deferred" and st.loop is not None:
            slot = _Slot()
            st.loop.deferred.append((slot, st, self.indent))
            return slot, _breaks(_merge(st.loop.entry, st))
        self.runtime_used = True
        return _Gap(indent=self.indent, state=st), st.m >= 1

    def _resolve_deferred(self) -> None:
        st = self._state
        if st.mode == "deferred" and st.loop is not None:
            st.loop.forced = True
            if not st.m:
                self._anchor = self._anchor or st.loop.opener
            self._state = _State("runtime", m=st.m, p=st.p)

    def _open(self, tag: _Tag) -> None:
        if tag.family in ("if", "for"):
            self._resolve_deferred()
        slot = _Slot()
        opener = _Code(tag.src, role="open", scoped=tag.scoped)
        self.items += [slot, opener]
        frame = _Frame(tag.family, self._state, slot, opener)
        self._frames.append(frame)
        if tag.family == "for":
            self._state = _State("deferred", loop=frame)
        elif tag.family in _OPAQUE:
            self._state = _State(n=0)

    def _middle(self, tag: _Tag) -> None:
        frame = self._frames[-1] if self._frames else None
        allowed = ("if",) if tag.keyword == "elif" else ("if", "for")
        if frame is None or frame.family not in allowed:
            raise InputError(f"{tag.src} is not inside an if or for block")
        slot = _Slot()
        self.items += [slot, _Code(tag.src, role="middle")]
        frame.ends.append((self._state, slot))
        frame.has_else = frame.has_else or tag.keyword == "else"
        self._state = frame.entry

    def _close(self, tag: _Tag) -> None:
        if not self._frames or self._frames[-1].family != tag.family:
            raise InputError(f"{tag.src} does not close an open block")
        frame = self._frames.pop()
        slot = _Slot()
        self.items += [slot, _Code(tag.src, role="close")]
        end = (self._state, slot)
        if frame.family == "if":
            ends = [*frame.ends, end]
            if not frame.has_else:
                ends.append((frame.entry, frame.entry_slot))
            self._state = self._join(ends)
        elif frame.family == "for":
            self._state = self._join_loop(frame, end)
        elif frame.family in _OPAQUE:
            self._state = frame.entry

    def _join(self, ends: list[tuple[_State, _Slot]]) -> _State:
        first = ends[0][0]
        if all(state == first for state, _ in ends):
            return first
        for state, slot in ends:
            slot.item = _record(state)
        self.runtime_used = True
        return _State("runtime")

    def _join_loop(self, frame: _Frame, end: tuple[_State, _Slot]) -> _State:
        """Joins the loop's head (first pass, next passes) and its exit (no pass, last pass)."""
        entry = frame.entry
        body = frame.ends if frame.has_else else [*frame.ends, end]
        exits = [end] if frame.has_else else []

        def resolved(st: _State) -> _State:
            return _merge(entry, st) if st.mode == "deferred" else st

        if not frame.forced and all(resolved(st) == entry for st, _ in body + exits):
            for slot, local, indent in frame.deferred:
                head = _merge(entry, local)
                if head.mode == "runtime":  # every pass starts from the same namespace state
                    slot.item = _Gap(indent=indent, state=head)
                else:
                    slot.item = _fill(head, indent)
            return entry
        self.runtime_used = True
        frame.entry_slot.item = _record(entry)
        for st, slot in body + exits:
            slot.item = _record(_State("runtime", m=st.m, p=st.p) if st.mode == "deferred" else st)
        for slot, local, indent in frame.deferred:
            slot.item = _Gap(indent=indent, state=local)
        return _State("runtime")


# --- HTML -------------------------------------------------------------------------------------


def _names(names: str) -> frozenset[str]:
    return frozenset(names.split())


_VOID = _names("area base br col embed hr img input link meta param source track wbr")
_SKIP = frozenset({"head", "style", "script", "title", "template", "noscript"})
_HEADINGS = {"h1": "=", "h2": "-", "h3": "~", "h4": "", "h5": "", "h6": ""}
# line breaks wanted around a block: 2 sets it off by a blank line
_MARGINS = {
    **dict.fromkeys(_names("p dl figure form fieldset address"), 2),
    **dict.fromkeys(
        _names(
            "div section article header footer nav aside main center tr dt caption figcaption "
            "details summary html body"
        ),
        1,
    ),
}
_INLINE = _names(
    "a abbr b big cite code em font i kbd label mark q s samp small span strike strong sub sup "
    "time tt u var"
)
_CLOSES_P = _names(  # start tags that end an open <p>
    "address article aside blockquote center details div dl fieldset figcaption figure footer "
    "form h1 h2 h3 h4 h5 h6 header hr main nav ol p pre section table ul"
)
# start tag: (open elements it closes, elements that stop the search)
_IMPLIED: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "li": (frozenset({"li"}), frozenset({"ul", "ol"})),
    "dt": (frozenset({"dt", "dd"}), frozenset({"dl"})),
    "dd": (frozenset({"dt", "dd"}), frozenset({"dl"})),
    "td": (frozenset({"td", "th"}), frozenset({"tr", "table"})),
    "th": (frozenset({"td", "th"}), frozenset({"tr", "table"})),
    "tr": (frozenset({"tr"}), frozenset({"table", "thead", "tbody", "tfoot"})),
    "thead": (frozenset({"thead", "tbody", "tfoot"}), frozenset({"table"})),
    "tbody": (frozenset({"thead", "tbody", "tfoot"}), frozenset({"table"})),
    "tfoot": (frozenset({"thead", "tbody", "tfoot"}), frozenset({"table"})),
    "body": (frozenset({"head"}), frozenset()),
}
_HIDDEN_STYLE = re.compile(r"(?:^|;)\s*display\s*:\s*none", re.I)
_PLACEHOLDER = re.compile("\ue000(\\d+)\ue001")
_WS = re.compile(r"[ \t\n\r\f\xa0]+")
_INVISIBLE = re.compile("[\u00ad\u034f\u200b-\u200d\u2060\ufeff]")


@dataclass(eq=False)
class _Link:
    pieces: list[_Content]
    key: str  # the URL as compared with the link's text
    start: int  # first output item inside the link
    depth: int  # Jinja block depth at the opening tag


@dataclass(eq=False)
class _List:
    ordered: bool
    next: int
    depth: int  # Jinja block depth at <ol>: an item deeper is numbered when rendered
    slot: _Slot
    counter: str = ""


@dataclass(eq=False)
class _Element:
    tag: str
    active: bool = True
    skip_root: bool = False
    after: int = 0  # margin after the element
    indent: str | None = None  # indent to restore
    link: _Link | None = None
    heading: str | None = None  # underline character
    mark: int = 0  # first output item of a heading or list item
    depth: int = 0  # Jinja block depth at the start tag


def _is_hidden(attrs: list[tuple[str, str | None]]) -> bool:
    return any(
        name == "hidden" or (name == "style" and value and _HIDDEN_STYLE.search(value))
        for name, value in attrs
    )


def _norm_url(text: str) -> str:
    text = _WS.sub(" ", text).strip().lower()
    for scheme in ("https://", "http://", "mailto:"):
        if text.startswith(scheme):
            text = text[len(scheme) :]
            break
    return text.rstrip("/")


def _source_of(pieces: list[_Content]) -> str:
    return "".join(p.text if isinstance(p, _Text) else p.src for p in pieces)


class _HtmlWalker(HTMLParser):
    """HTML semantics (what is a block, a list, a link...) on top of a :class:`_TextBuilder`."""

    def __init__(self, builder: _TextBuilder, tags: list[str | _Tag] | None, width: int) -> None:
        super().__init__(convert_charrefs=True)
        self._b = builder
        self._tags = tags  # by placeholder number; None for rendered HTML
        self._width = width
        self._stack: list[_Element] = []
        self._skip = 0
        self._pre = 0
        self._pre_fresh = False
        self._pre_pending = ""
        self._lists: list[_List] = []
        self._tables: list[bool] = []  # layout table?
        self._buf: list[str] = []

    # HTMLParser events

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._flush()
        self._implied_ends(tag)
        hidden = tag in _SKIP or _is_hidden(attrs)
        skipped = self._skip > 0 or hidden
        self._attribute_statements(tag, attrs, emitting=not skipped)
        if tag in _VOID:
            if not skipped:
                self._void(tag, dict(attrs))
            return
        element = _Element(tag, active=not skipped, skip_root=hidden)
        self._skip += hidden
        if not skipped:
            self._open(element, dict(attrs))
        self._stack.append(element)

    def handle_endtag(self, tag: str) -> None:
        self._flush()
        for i in range(len(self._stack) - 1, -1, -1):
            if self._stack[i].tag == tag:
                self._pop_to(i)
                return

    def handle_data(self, data: str) -> None:
        self._buf.append(data)

    def handle_comment(self, data: str) -> None:
        self._flush()
        self._statements_in(data)

    def handle_decl(self, decl: str) -> None:
        self.handle_comment(decl)

    def handle_pi(self, data: str) -> None:
        self.handle_comment(data)

    def unknown_decl(self, data: str) -> None:
        self.handle_comment(data)

    def close(self) -> None:
        super().close()
        self._flush()
        self._pop_to(0)

    # text

    def _split(self, text: str) -> list[str | _Tag]:
        if self._tags is None or "\ue000" not in text:
            return [text]
        parts: list[str | _Tag] = []
        pos = 0
        for m in _PLACEHOLDER.finditer(text):
            parts += [text[pos : m.start()], self._tags[int(m.group(1))]]
            pos = m.end()
        parts.append(text[pos:])
        return [part for part in parts if part != ""]

    def _statements_in(self, text: str) -> None:
        for part in self._split(text):
            if isinstance(part, _Tag) and part.kind != "expr":
                self._b.statement(part)

    def _flush(self) -> None:
        if not self._buf:
            return
        text = "".join(self._buf)
        self._buf.clear()
        for part in self._split(text):
            if isinstance(part, _Tag):
                if part.kind != "expr":
                    self._b.statement(part)
                elif not self._skip:
                    self._expression(part)
            elif not self._skip:
                self._text(part)

    def _expression(self, tag: _Tag) -> None:
        pieces: list[_Content] = [_Code(tag.src)]
        if self._pre and self._pre_pending:
            pieces.insert(0, _Text(self._pre_pending))
        self._pre_pending = ""
        self._pre_fresh = False
        self._b.content(pieces)

    def _text(self, text: str) -> None:
        text = _INVISIBLE.sub("", text)
        if self._pre:
            self._pre_text(text)
            return
        core = _WS.sub(" ", text).strip(" ")
        if not core:
            if text:
                self._b.separate()
            return
        if _WS.match(text):
            self._b.separate()
        self._b.content([_Text(core)])
        if _WS.match(text[-1]):
            self._b.separate()

    def _pre_text(self, text: str) -> None:
        text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\xa0", " ")
        if self._pre_fresh and text.startswith("\n"):
            text = text[1:]  # HTML drops the newline right after <pre>
        self._pre_fresh = False
        text = re.sub(r"[ \t]+\n", "\n", self._pre_pending + text)
        core = text.rstrip()
        self._pre_pending = text[len(core) :]
        if core:
            if self._b.indent:
                core = re.sub(r"\n(?=[^\n])", "\n" + self._b.indent, core)
            self._b.content([_Text(core)])

    # elements

    def _implied_ends(self, tag: str) -> None:
        rule = _IMPLIED.get(tag)
        if rule is not None:
            self._close_open(*rule)
        if tag in _CLOSES_P:
            self._close_open(frozenset({"p"}), None)

    def _close_open(self, closes: frozenset[str], bounds: frozenset[str] | None) -> None:
        for i in range(len(self._stack) - 1, -1, -1):
            tag = self._stack[i].tag
            if tag in closes:
                self._pop_to(i)
                return
            if (tag not in _INLINE) if bounds is None else (tag in bounds):
                return

    def _pop_to(self, index: int) -> None:
        while len(self._stack) > index:
            self._close(self._stack.pop())

    def _attribute_statements(
        self, tag: str, attrs: list[tuple[str, str | None]], *, emitting: bool
    ) -> None:
        """Statements in attributes that are not shown still shape the template: keep them."""
        for name, value in attrs:
            shown = emitting and (tag, name) in (("a", "href"), ("img", "alt"))
            self._statements_in(name)
            if value and not shown:
                self._statements_in(value)

    def _open(self, element: _Element, attrs: dict[str, str | None]) -> None:
        b, tag = self._b, element.tag
        if tag in _HEADINGS:
            b.block(2)
            b.nowrap += 1
            element.heading, element.mark, element.after = _HEADINGS[tag], len(b.items), 2
        elif tag == "pre":
            b.block(2)
            b.nowrap += 1
            self._pre += 1
            self._pre_fresh, element.after = True, 2
        elif tag in ("ul", "ol"):
            self._open_list(element, attrs)
        elif tag == "li":
            self._open_item(element)
        elif tag == "table":
            b.block(2)
            self._tables.append(attrs.get("role") in ("presentation", "none"))
            element.after = 2
        elif tag in ("td", "th"):
            if self._tables and self._tables[-1]:
                b.block(2)
                element.after = 2
            else:
                b.separate(" | ")
        elif tag == "a":
            self._open_link(element, attrs)
        elif tag in ("blockquote", "dd"):
            element.after = 2 if tag == "blockquote" else 1
            b.block(element.after)
            element.indent = b.indent
            b.indent += "  "
        elif tag in _MARGINS:
            element.after = _MARGINS[tag]
            b.block(element.after)

    def _close(self, element: _Element) -> None:
        self._skip -= element.skip_root
        if not element.active:
            return
        b = self._b
        if element.link is not None:
            self._close_link(element.link)
        if element.heading is not None:
            b.nowrap -= 1
            self._underline(element)
        if element.tag == "pre":
            self._pre -= 1
            b.nowrap -= 1
            self._pre_pending = ""
        if element.tag == "li":
            b.unglue(element.mark, element.depth)
        if element.indent is not None:
            b.indent = element.indent
        if element.tag in ("ul", "ol"):
            self._lists.pop()
        elif element.tag == "table":
            self._tables.pop()
        b.block(element.after)

    def _void(self, tag: str, attrs: dict[str, str | None]) -> None:
        b = self._b
        if tag == "br":
            b.br()
        elif tag == "hr":
            b.block(2)
            b.content([_Text("-" * max(self._width - len(b.indent), 3))])
            b.block(2)
        elif tag == "img" and attrs.get("alt"):
            pieces = self._attribute_pieces(attrs["alt"] or "", collapse=True)
            if pieces:
                b.content([_Text("["), *pieces, _Text("]")])

    def _attribute_pieces(self, value: str, *, collapse: bool) -> list[_Content]:
        """An attribute value as output; its statements go out alone if they do not balance."""
        parts = self._split(value.strip())
        tags = [part for part in parts if isinstance(part, _Tag)]
        if not _balanced(tags):
            for tag in tags:
                if tag.kind != "expr":
                    self._b.statement(tag)
            return []
        pieces: list[_Content] = []
        for part in parts:
            if isinstance(part, _Tag):
                pieces.append(_Code(part.src))
            elif (text := _WS.sub(" ", part) if collapse else part).strip():
                pieces.append(_Text(text))
        return pieces

    def _open_list(self, element: _Element, attrs: dict[str, str | None]) -> None:
        in_item = any(e.tag == "li" and e.active for e in self._stack)
        element.after = 1 if in_item else 2
        self._b.block(element.after)
        start = attrs.get("start") or "1"
        slot = _Slot()
        self._b.items.append(slot)
        first = int(start) if start.strip().isdigit() else 1
        self._lists.append(_List(element.tag == "ol", first, self._b.depth, slot))

    def _open_item(self, element: _Element) -> None:
        b = self._b
        b.unglue()
        b.block(1)
        pieces, width = self._bullet(self._lists[-1] if self._lists else None)
        element.mark, element.depth = len(b.items), b.depth
        outer = b.indent
        b.content(pieces, prefix=True, hang=len(outer) + width)
        b.glue()
        element.indent, element.after = outer, 1
        b.indent = outer + " " * width

    def _bullet(self, ctx: _List | None) -> tuple[list[_Content], int]:
        """The bullet with its space (kept out of the item's wrapped text) and its width."""
        if ctx is None or not ctx.ordered:
            return [_Text("- ")], 2
        if self._tags is not None and (ctx.counter or self._b.depth > ctx.depth):
            # items made by a loop: only rendering knows their number
            if not ctx.counter:
                ctx.counter = f"{_NS}.n{len(self._lists)}"
                ctx.slot.item = _Code(f"{{% set {ctx.counter} = {ctx.next - 1} %}}")
                self._b.runtime_used = True
            self._b.items.append(_Code(f"{{% set {ctx.counter} = {ctx.counter} + 1 %}}"))
            return [_Code(f"{{{{ {ctx.counter} }}}}"), _Text(". ")], len(str(ctx.next)) + 2
        label = f"{ctx.next}. "
        ctx.next += 1
        return [_Text(label)], len(label)

    def _open_link(self, element: _Element, attrs: dict[str, str | None]) -> None:
        href = (attrs.get("href") or "").strip()
        if not href or href.startswith("#") or href.lower().startswith("javascript:"):
            return
        pieces = self._attribute_pieces(href, collapse=False)
        if not pieces:
            return
        first = pieces[0]
        if isinstance(first, _Text) and first.text.lower().startswith("mailto:"):
            first.text = first.text[len("mailto:") :]
        b = self._b
        element.link = _Link(pieces, _norm_url(_source_of(pieces)), len(b.items), b.depth)

    def _close_link(self, link: _Link) -> None:
        b = self._b
        inside = b.items[link.start :]
        shown: list[str] = []
        for item in inside:
            if isinstance(item, _Text | _Code) and item.line is not None:
                shown.append(item.text if isinstance(item, _Text) else item.src)
            elif isinstance(item, _Gap):
                shown.append(" ")
        text = _norm_url("".join(shown))
        if not text or text == link.key:
            return
        tags = [item.role for item in inside if isinstance(item, _Code) and item.role]
        if not tags or b.depth != link.depth or not _balanced_roles(tags):
            b.link_url(link.pieces)
            return
        # the text may render empty, and then so does the link: capture it to know
        b.items.insert(link.start, _Code(f"{{% set {_LINK_TEXT} %}}", role="open"))
        b.items.append(_Code(f"{{% endset %}}{{{{ {_LINK_TEXT} }}}}", role="close"))
        b.runtime_used = True
        b.statement(_Tag("stmt", f"{{% if {_LINK_TEXT}|trim %}}", "if", "open", "if"))
        b.link_url(link.pieces)
        b.statement(_Tag("stmt", "{% endif %}", "endif", "close", "if"))

    def _underline(self, element: _Element) -> None:
        for item in self._b.items[element.mark :]:
            if isinstance(item, _Text | _Code) and item.line is not None and not item.prefix:
                if element.heading:
                    self._b.underline(element.heading, item)
                return


# --- layout: wrapping and final text ------------------------------------------------------------


def _wrap(text: str, width: int, hang: int) -> str:
    """Jinja's ``wordwrap(width, break_long_words=false, break_on_hyphens=false)|indent(hang)``."""
    lines = [
        "\n".join(
            textwrap.wrap(
                line,
                width=width,
                expand_tabs=False,
                replace_whitespace=False,
                break_long_words=False,
                break_on_hyphens=False,
            )
        )
        for line in text.splitlines()
    ]
    wrapped = "\n".join(lines)
    if not hang:
        return wrapped
    first, *rest = (wrapped + "\n").splitlines()
    pad = " " * hang
    return "\n".join([first, *(pad + line if line else line for line in rest)])


def _escape(text: str) -> str:
    """Literal text in a template: no ``{`` may start a Jinja tag."""
    return re.sub(r"\{(?=[{%#]|\Z)", '{{ "{" }}', text)


_Flat = _Text | _Code | _Gap | _Underline
_Region = tuple[int, int, int]  # first item, last item, hang


class _Layout:
    """Wraps the lines (here when literal, when rendered otherwise) and writes the text."""

    def __init__(self, items: list[_Item], width: int, *, template: bool) -> None:
        self._items: list[_Flat] = []
        for item in items:
            if not isinstance(item, _Slot):
                self._items.append(item)
            elif item.item is not None:
                self._items.append(item.item)
        self._width = width
        self._template = template
        self._at = {id(item): i for i, item in enumerate(self._items)}
        self._before: dict[int, str] = {}
        self._underlines: dict[int, str] = {}
        self.captures = False  # a heading is captured in the namespace
        self._captured: set[int] = set()  # items inside a heading's capture

    def render(self) -> str:
        self._headings()
        regions = self._regions()
        out: list[str] = []
        i = 0
        while i < len(self._items):
            out.append(self._before.get(i, ""))
            if i in regions:
                end, hang, static = regions[i]
                out.append(self._region(i, end, hang, static=static))
                i = end + 1
                continue
            out.append(self._emit(i))
            i += 1
        return "".join(out)

    def _emit(self, i: int, hang: int = 0, *, first_line: bool = False) -> str:
        item = self._items[i]
        if isinstance(item, _Text):
            return _escape(item.text) if self._template else item.text
        if isinstance(item, _Underline):
            return self._underlines.get(i, "")
        return item.src if isinstance(item, _Code) else item.render(hang, first_line=first_line)

    def _region(self, start: int, end: int, hang: int, *, static: bool) -> str:
        width = max(self._width - hang, 10)
        if static:
            text = "".join(self._plain(item) for item in self._items[start : end + 1])
            wrapped = _wrap(text, width, hang)
            return _escape(wrapped) if self._template else wrapped
        indent = f"|indent({hang})" if hang else ""
        hoisted: list[str] = []
        body: list[str] = []
        first_line = True
        for i in range(start, end + 1):
            item = self._items[i]
            scoped = isinstance(item, _Code) and item.scoped
            (hoisted if scoped else body).append(self._emit(i, hang, first_line=first_line))
            first_line = first_line and not (isinstance(item, _Gap) and item.breaks)
        return (
            f"{''.join(hoisted)}{{% filter wordwrap({width}, break_long_words=false, "
            f"break_on_hyphens=false){indent} %}}{''.join(body)}{{% endfilter %}}"
        )

    @staticmethod
    def _plain(item: _Flat) -> str:
        if isinstance(item, _Gap):
            return item.render()
        return item.text if isinstance(item, _Text) else ""

    def _is_static(self, start: int, end: int) -> bool:
        return all(
            isinstance(item, _Text) or (isinstance(item, _Gap) and not item.code)
            for item in self._items[start:end]
        )

    def _headings(self) -> None:
        """Underlines: counted here for literal headings, when rendered otherwise."""
        for u, item in enumerate(self._items):
            if not isinstance(item, _Underline):
                continue
            first = self._at[id(item.first)]
            prefix = "\n" + item.indent
            set_state = f'{{% set {_NS}.s = (0, 0, "") %}}' if item.runtime else ""
            if self._is_static(first, u):
                text = "".join(self._plain(it) for it in self._items[first:u]).strip()
                length = max((len(line) for line in text.splitlines()), default=0)
                self._underlines[u] = prefix + item.char * length + set_state
            elif span := self._grow(first, u - 1, partial(self._capturable, first=first)):
                self.captures = True
                self._captured.update(range(span[0], span[1] + 1))
                self._before[span[0]] = self._before.get(span[0], "") + f"{{% set {_HEADING} %}}"
                longest = f'({_HEADING}|trim).splitlines()|map("length")|max'
                self._underlines[u] = (
                    f"{{% endset %}}{{{{ {_HEADING}.rstrip() }}}}{{% if {_HEADING}|trim %}}{prefix}"
                    f"{{{{ {_lit(item.char)} * ({longest}) }}}}{set_state}{{% endif %}}"
                )
            else:  # cut by blocks that do not balance: a rule as long as the source text
                text = "".join(
                    it.text if isinstance(it, _Text) else it.src
                    for it in self._items[first:u]
                    if isinstance(it, _Text) or (isinstance(it, _Code) and it.line is not None)
                )
                self._underlines[u] = prefix + item.char * max(len(text.strip()), 3) + set_state

    def _capturable(self, i: int, *, first: int) -> bool:
        """Can item ``i`` go inside the ``{% set %}`` block that captures a heading?"""
        item = self._items[i]
        if isinstance(item, _Underline) or (isinstance(item, _Code) and item.scoped):
            return False
        # before the heading's first content: line breaks and statements only
        return i >= first or not isinstance(item, _Text | _Code) or item.line is None

    def _regions(self) -> dict[int, tuple[int, int, bool]]:
        """Wrap regions by first item: (last item, hang, literal?)."""
        lines: dict[int, tuple[_Line, list[int]]] = {}
        for i, item in enumerate(self._items):
            if isinstance(item, _Text | _Code) and item.line is not None and not item.prefix:
                lines.setdefault(id(item.line), (item.line, []))[1].append(i)
        regions: list[_Region] = []
        for line, at in lines.values():
            done = regions[-1][1] if regions else -1
            if not line.wrap or at[-1] <= done:
                continue
            first = next(i for i in at if i > done)
            own = None
            if line.loop is not None and done < self._at[id(line.loop)] < first:
                own = self._region_span(self._at[id(line.loop)], at[-1], line.hang, done)
            own = own or self._region_span(first, at[-1], line.hang, done)
            merged = None
            if own is None or at[0] <= done or (regions and self._joined(done, own[0])):
                # a line that may go on the previous ones (a block in a branch ended them)
                merged = self._merge(regions, at[-1], line.hang)
            if merged is not None:
                regions[-1] = merged
            elif own is not None:
                regions.append((*own, line.hang))
        return {start: (end, hang, self._is_static(start, end + 1)) for start, end, hang in regions}

    def _merge(self, regions: list[_Region], end: int, hang: int) -> _Region | None:
        """One region from the last ones (of the same hang) to ``end``; they are dropped."""
        for k in range(1, min(len(regions), 8) + 1):
            if regions[-k][2] != hang:
                return None
            floor = regions[-k - 1][1] if len(regions) > k else -1
            span = self._region_span(regions[-k][0], end, hang, floor)
            if span is not None:
                del regions[len(regions) - k + 1 :]
                return (*span, hang)
        return None

    def _joined(self, end: int, start: int) -> bool:
        """Does nothing between two regions break the line for sure?"""
        return not any(
            isinstance(item, _Text | _Underline)
            or (isinstance(item, _Code) and item.line is not None)
            or (isinstance(item, _Gap) and item.state is not None and item.state.m > 0)
            or (isinstance(item, _Gap) and not item.code and "\n" in item.text)
            for item in self._items[end + 1 : start]
        )

    def _region_span(self, start: int, end: int, hang: int, floor: int) -> tuple[int, int] | None:
        span = self._grow(start, end, partial(self._movable, hang=hang, after=floor))
        return span if span is not None and self._hoistable(*span) else None

    def _depth(self, start: int, end: int) -> tuple[int, int]:
        depth = low = 0
        for item in self._items[start : end + 1]:
            if isinstance(item, _Code) and item.role:
                depth += {"open": 1, "close": -1, "middle": -1}[item.role]
                low = min(low, depth)
                depth += item.role == "middle"
        return low, depth

    def _grow(self, start: int, end: int, ok: Callable[[int], bool]) -> tuple[int, int] | None:
        """Grows ``start..end`` over items ``ok`` accepts until its Jinja blocks balance."""
        if not all(ok(i) for i in range(start, end + 1)):
            return None
        for _ in range(64):
            low, depth = self._depth(start, end)
            if low < 0:
                start -= 1
                if start < 0 or not ok(start):
                    return None
            elif depth > 0:
                end += 1
                if end >= len(self._items) or not ok(end):
                    return None
            else:
                return start, end
        return None

    def _hoistable(self, start: int, end: int) -> bool:
        """Are the statements defining names in ``start..end`` simple and outside any block?

        A ``{% filter %}`` block is a scope: ``{% set x = 1 %}`` inside would not be seen after
        it, so such statements go just before the block instead.
        """
        depth = 0
        for item in self._items[start : end + 1]:
            if isinstance(item, _Code) and item.scoped and (item.role or depth):
                return False
            if isinstance(item, _Code) and item.role:
                depth += {"open": 1, "close": -1, "middle": 0}[item.role]
        return True

    def _movable(self, i: int, *, hang: int, after: int) -> bool:
        """Can item ``i`` go inside ``{% filter wordwrap %}`` (a scope, wrapping each line)?"""
        item = self._items[i]
        if i <= after or i in self._captured or isinstance(item, _Underline):
            return False
        if isinstance(item, _Code) and item.scoped and item.role:
            return False
        if isinstance(item, _Text | _Code) and item.line is not None:
            # content wraps with its own line's hang
            return item.line.wrap and item.line.hang == hang
        # the indent filter indents every line but the first: a line break inside must be
        # indented at least as much, and the filter writes the first ``hang`` columns
        if isinstance(item, _Gap) and hang and not item.code and (item.breaks or item.indent):
            return item.indent.startswith(" " * hang)
        return True
