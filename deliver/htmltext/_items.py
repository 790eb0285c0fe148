"""The output items: what the builder writes and the layout turns into text.

The builder (:mod:`._builder`) does not write text directly: it writes a list of items, content
(:class:`Text`, :class:`Code`) grouped into :class:`Line` paragraphs, the :class:`Gap` before
each content, :class:`Slot` places filled in once the paths meeting after them are known, and
:class:`Underline` marks after headings. The layout (:mod:`._layout`) then wraps the lines and
writes the text or the text template.

What only rendering can know is kept in the text template's namespace, :data:`NS`:

- ``s``: the :class:`State` where Jinja paths meet, the tuple ``(n, m, p)``;
- ``h``, ``l``, ``i``: a heading, a link text or a list item captured by ``{% set %}`` blocks
  (to underline it, to know whether it is empty, to strip it);
- ``m``: a line break set aside while a link's URL is written; ``n1``, ``n2``...: the number
  of the next item of an ordered list built by a loop.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from deliver.htmltext._builder import Frame

__all__ = [
    "BULLET",
    "HEADING",
    "ITEM",
    "LINK_TEXT",
    "NS",
    "Code",
    "Content",
    "Gap",
    "Item",
    "Line",
    "Slot",
    "State",
    "Text",
    "Underline",
    "lit",
]

NS = "_sokures"  # the text template's namespace for state that only rendering can know
HEADING = f"{NS}.h"  # a heading holding expressions, captured to be underlined
LINK_TEXT = f"{NS}.l"  # a link text holding statements, captured to know if it is empty
ITEM = f"{NS}.i"  # a list item that may render empty, captured to drop its bullet's space


@dataclass(eq=False)
class Line:
    """An output line (a paragraph before wrapping)."""

    hang: int  # indent of the lines it wraps onto
    wrap: bool
    loop: Code | None = None  # the {% for %} whose passes all write on this line


@dataclass(eq=False)
class Text:
    """Literal text, in a line or a list bullet."""

    text: str
    line: Line | None = None
    prefix: bool = False  # a list bullet: not wrapped with the line


@dataclass(eq=False)
class Code:
    """Jinja source: an expression shown in a line, a statement, or state bookkeeping."""

    src: str
    line: Line | None = None  # set when it is visible content
    prefix: bool = False
    role: str = ""
    scoped: bool = False


@dataclass(eq=False)
class Gap:
    """Line breaks and indent, or a separator, before content.

    ``code``: ``text`` is Jinja source; ``state``: decided when rendered, from the namespace and
    the requests made since the paths met. The indent is kept apart: inside ``|indent(h)``
    (a wrapped list item) the filter writes its first ``h`` columns.
    """

    text: str = ""
    indent: str = ""
    code: bool = False
    state: State | None = None

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
class Slot:
    """A place filled in later, when the paths meeting after it are known."""

    item: Gap | Code | None = None


@dataclass(eq=False)
class Underline:
    """A heading's underline: counted here when the heading is literal, when rendered if not."""

    char: str
    indent: str
    first: Text | Code  # the heading's first content
    runtime: bool = False  # the heading may render empty: it sets the namespace when it is not


Content = Text | Code
Item = Text | Code | Gap | Slot | Underline


# --- what is owed before the next content --------------------------------------------------------


@dataclass(frozen=True)
class State:
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
    loop: Frame | None = field(default=None, compare=False)


BULLET = 3  # n right after a list bullet


def lit(s: str) -> str:
    """``s`` as a Jinja string literal."""
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _runtime_gap(st: State, indent: str, start_indent: str | None = None) -> str:
    """The gap as an expression of the namespace; ``start_indent``: when no line break is due."""
    s = f"{NS}.s"
    start_indent = indent if start_indent is None else start_indent
    ind = f'({lit(start_indent)} if {s}[0] != {BULLET} else "")' if start_indent else '""'
    if st.m:
        newlines = f'"\\n" * ([{s}[1], {st.m}]|max - {s}[0])'
        if not indent and not start_indent:
            return f"{{{{ {newlines} }}}}"
        due = f"[{s}[1], {st.m}]|max > {s}[0]"
        return f"{{{{ {newlines} ~ {lit(indent)} if {due} else {ind} }}}}"
    sep = f"[{s}[2], {lit(st.p)}]|max" if st.p else f"{s}[2]"
    newlines = f'"\\n" * ({s}[1] - {s}[0])'
    if indent:
        newlines += f" ~ {lit(indent)}"
    return f"{{{{ {newlines} if {s}[1] > {s}[0] else ({ind} if {s}[0] else {sep}) }}}}"
