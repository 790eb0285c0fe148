"""The HTML walker: HTML semantics (blocks, lists, links, tables...) as builder requests.

:class:`HtmlWalker` is an :class:`~html.parser.HTMLParser`. It is fed the source with its
Jinja tags as placeholders (:func:`mark_tags`), so the parser sees plain HTML and keeps every
tag whole, in text and in attribute values alike; the walker reads them back. It keeps the
stack of open elements (closing those HTML leaves implied, such as an ``<li>`` before the
next), drops what is not shown, and turns the rest into requests to the
:class:`~deliver.htmltext._builder.TextBuilder`: content, line breaks and separators, and the
Jinja statements in source order.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from html.parser import HTMLParser

from deliver.htmltext._builder import TextBuilder
from deliver.htmltext._items import LINK_TEXT, NS, Code, Content, Gap, Slot, Text
from deliver.htmltext._jinja import Tag, balanced, balanced_roles

__all__ = ["HtmlWalker", "mark_tags"]


def mark_tags(parts: list[str | Tag]) -> str:
    """The source, each Jinja tag replaced by a placeholder holding its index in ``parts``."""
    return "".join(
        part if isinstance(part, str) else f"\ue000{i}\ue001" for i, part in enumerate(parts)
    )


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
    pieces: list[Content]
    key: str  # the URL as compared with the link's text
    start: int  # first output item inside the link
    depth: int  # Jinja block depth at the opening tag


@dataclass(eq=False)
class _List:
    ordered: bool
    next: int
    depth: int  # Jinja block depth at <ol>: an item deeper is numbered when rendered
    slot: Slot
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


def _source_of(pieces: list[Content]) -> str:
    return "".join(p.text if isinstance(p, Text) else p.src for p in pieces)


class HtmlWalker(HTMLParser):
    """HTML semantics (what is a block, a list, a link...) on top of a :class:`TextBuilder`."""

    def __init__(self, builder: TextBuilder, tags: list[str | Tag] | None, width: int) -> None:
        super().__init__(convert_charrefs=True)
        self._b = builder
        self._tags = tags  # by placeholder number; None for rendered HTML
        self._width = width
        self._stack: list[_Element] = []
        self._skip = 0  # hidden elements open: their content is dropped
        self._pre = 0  # <pre> elements open
        self._pre_fresh = False  # right after <pre>: a first newline is dropped
        self._pre_pending = ""  # trailing whitespace of <pre> text, written if text follows
        self._lists: list[_List] = []
        self._tables: list[bool] = []  # layout table?
        self._buf: list[str] = []  # text, joined before use: the parser may cut it anywhere

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

    def _split(self, text: str) -> list[str | Tag]:
        """Text and the Jinja tags its placeholders stand for."""
        if self._tags is None or "\ue000" not in text:
            return [text]
        parts: list[str | Tag] = []
        pos = 0
        for m in _PLACEHOLDER.finditer(text):
            parts += [text[pos : m.start()], self._tags[int(m.group(1))]]
            pos = m.end()
        parts.append(text[pos:])
        return [part for part in parts if part != ""]

    def _statements_in(self, text: str) -> None:
        for part in self._split(text):
            if isinstance(part, Tag) and part.kind != "expr":
                self._b.statement(part)

    def _flush(self) -> None:
        """The text gathered since the last tag: content, expressions and statements."""
        if not self._buf:
            return
        text = "".join(self._buf)
        self._buf.clear()
        for part in self._split(text):
            if isinstance(part, Tag):
                if part.kind != "expr":
                    self._b.statement(part)
                elif not self._skip:
                    self._expression(part)
            elif not self._skip:
                self._text(part)

    def _expression(self, tag: Tag) -> None:
        pieces: list[Content] = [Code(tag.src)]
        if self._pre and self._pre_pending:
            pieces.insert(0, Text(self._pre_pending))
        self._pre_pending = ""
        self._pre_fresh = False
        self._b.content(pieces)

    def _text(self, text: str) -> None:
        """Text outside ``<pre>``: whitespace collapses to separators, as in a browser."""
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
        self._b.content([Text(core)])
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
            self._b.content([Text(core)])

    # elements

    def _implied_ends(self, tag: str) -> None:
        """Closes the elements a start tag ends when their end tags are left out (``<li>``)."""
        rule = _IMPLIED.get(tag)
        if rule is not None:
            self._close_open(*rule)
        if tag in _CLOSES_P:
            self._close_open(frozenset({"p"}), None)

    def _close_open(self, closes: frozenset[str], bounds: frozenset[str] | None) -> None:
        """Closes the innermost open element in ``closes``, if no element of ``bounds`` is open
        inside it (``bounds`` ``None``: no element that is not inline)."""
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
            b.content([Text("-" * max(self._width - len(b.indent), 3))])
            b.block(2)
        elif tag == "img" and attrs.get("alt"):
            pieces = self._attribute_pieces(attrs["alt"] or "", collapse=True)
            if pieces:
                b.content([Text("["), *pieces, Text("]")])

    def _attribute_pieces(self, value: str, *, collapse: bool) -> list[Content]:
        """An attribute value as output; its statements go out alone if they do not balance."""
        parts = self._split(value.strip())
        tags = [part for part in parts if isinstance(part, Tag)]
        if not balanced(tags):
            for tag in tags:
                if tag.kind != "expr":
                    self._b.statement(tag)
            return []
        pieces: list[Content] = []
        for part in parts:
            if isinstance(part, Tag):
                pieces.append(Code(part.src))
            elif (text := _WS.sub(" ", part) if collapse else part).strip():
                pieces.append(Text(text))
        return pieces

    def _open_list(self, element: _Element, attrs: dict[str, str | None]) -> None:
        in_item = any(e.tag == "li" and e.active for e in self._stack)
        element.after = 1 if in_item else 2
        self._b.block(element.after)
        start = attrs.get("start") or "1"
        slot = Slot()
        self._b.items.append(slot)
        first = int(start) if start.strip().isdecimal() else 1  # isdigit() accepts '²'
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

    def _bullet(self, ctx: _List | None) -> tuple[list[Content], int]:
        """The bullet with its space (kept out of the item's wrapped text) and its width."""
        if ctx is None or not ctx.ordered:
            return [Text("- ")], 2
        if self._tags is not None and (ctx.counter or self._b.depth > ctx.depth):
            # items made by a loop: only rendering knows their number
            if not ctx.counter:
                ctx.counter = f"{NS}.n{len(self._lists)}"
                ctx.slot.item = Code(f"{{% set {ctx.counter} = {ctx.next - 1} %}}")
                self._b.runtime_used = True
            self._b.items.append(Code(f"{{% set {ctx.counter} = {ctx.counter} + 1 %}}"))
            return [Code(f"{{{{ {ctx.counter} }}}}"), Text(". ")], len(str(ctx.next)) + 2
        label = f"{ctx.next}. "
        ctx.next += 1
        return [Text(label)], len(label)

    def _open_link(self, element: _Element, attrs: dict[str, str | None]) -> None:
        href = (attrs.get("href") or "").strip()
        if not href or href.startswith("#") or href.lower().startswith("javascript:"):
            return
        pieces = self._attribute_pieces(href, collapse=False)
        if not pieces:
            return
        first = pieces[0]
        if isinstance(first, Text) and first.text.lower().startswith("mailto:"):
            first.text = first.text[len("mailto:") :]
        b = self._b
        element.link = _Link(pieces, _norm_url(_source_of(pieces)), len(b.items), b.depth)

    def _close_link(self, link: _Link) -> None:
        """``(url)`` after the link's text, unless the text is the URL (or is empty)."""
        b = self._b
        inside = b.items[link.start :]
        shown: list[str] = []
        for item in inside:
            if isinstance(item, Text | Code) and item.line is not None:
                shown.append(item.text if isinstance(item, Text) else item.src)
            elif isinstance(item, Gap):
                shown.append(" ")
        text = _norm_url("".join(shown))
        if not text or text == link.key:
            return
        tags = [item.role for item in inside if isinstance(item, Code) and item.role]
        if not tags or b.depth != link.depth or not balanced_roles(tags):
            b.link_url(link.pieces)
            return
        # the text may render empty, and then so does the link: capture it to know
        b.items.insert(link.start, Code(f"{{% set {LINK_TEXT} %}}", role="open"))
        b.items.append(Code(f"{{% endset %}}{{{{ {LINK_TEXT} }}}}", role="close"))
        b.runtime_used = True
        b.statement(Tag("stmt", f"{{% if {LINK_TEXT}|trim %}}", "if", "open", "if"))
        b.link_url(link.pieces)
        b.statement(Tag("stmt", "{% endif %}", "endif", "close", "if"))

    def _underline(self, element: _Element) -> None:
        """The heading's underline, measured from its first content (none if it has none)."""
        for item in self._b.items[element.mark :]:
            if isinstance(item, Text | Code) and item.line is not None and not item.prefix:
                if element.heading:
                    self._b.underline(element.heading, item)
                return
