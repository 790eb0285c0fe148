"""The layout: wraps the output lines and writes the final text (or text template).

Each wrapped :class:`~deliver.htmltext._items.Line` becomes a *region*, a run of items from its
first content to its last. A region of literal text is wrapped here, once, by :func:`_wrap`.
A region holding Jinja is wrapped when rendered, inside ``{% filter wordwrap(...) %}``: it is
grown until the Jinja blocks in it balance, and statements that define names are hoisted
before the filter (a block is a scope). Lines that one region cannot hold stay unwrapped.

Headings are underlined the same way: counted here when literal, otherwise captured in a
``{% set %}`` block and measured when rendered.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Callable
from functools import partial

from deliver.htmltext._items import HEADING, NS, Code, Gap, Item, Line, Slot, Text, Underline, lit

__all__ = ["Layout"]


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


_Flat = Text | Code | Gap | Underline
_Region = tuple[int, int, int]  # first item, last item, hang


class Layout:
    """Wraps the lines (here when literal, when rendered otherwise) and writes the text."""

    def __init__(self, items: list[Item], width: int, *, template: bool) -> None:
        self._items: list[_Flat] = []
        for item in items:
            if not isinstance(item, Slot):
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
        """The text, or the text template: wrapped lines and underlined headings."""
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
        """Item ``i`` as written outside a literal region."""
        item = self._items[i]
        if isinstance(item, Text):
            return _escape(item.text) if self._template else item.text
        if isinstance(item, Underline):
            return self._underlines.get(i, "")
        return item.src if isinstance(item, Code) else item.render(hang, first_line=first_line)

    def _region(self, start: int, end: int, hang: int, *, static: bool) -> str:
        """Items ``start..end`` wrapped: here if ``static``, in a ``{% filter %}`` if not."""
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
            scoped = isinstance(item, Code) and item.scoped
            (hoisted if scoped else body).append(self._emit(i, hang, first_line=first_line))
            first_line = first_line and not (isinstance(item, Gap) and item.breaks)
        return (
            f"{''.join(hoisted)}{{% filter wordwrap({width}, break_long_words=false, "
            f"break_on_hyphens=false){indent} %}}{''.join(body)}{{% endfilter %}}"
        )

    @staticmethod
    def _plain(item: _Flat) -> str:
        if isinstance(item, Gap):
            return item.render()
        return item.text if isinstance(item, Text) else ""

    def _is_static(self, start: int, end: int) -> bool:
        """Are the items ``start`` to ``end - 1`` literal text only?"""
        return all(
            isinstance(item, Text) or (isinstance(item, Gap) and not item.code)
            for item in self._items[start:end]
        )

    def _headings(self) -> None:
        """Underlines: counted here for literal headings, when rendered otherwise."""
        for u, item in enumerate(self._items):
            if not isinstance(item, Underline):
                continue
            first = self._at[id(item.first)]
            prefix = "\n" + item.indent
            set_state = f'{{% set {NS}.s = (0, 0, "") %}}' if item.runtime else ""
            if self._is_static(first, u):
                text = "".join(self._plain(it) for it in self._items[first:u]).strip()
                length = max((len(line) for line in text.splitlines()), default=0)
                self._underlines[u] = prefix + item.char * length + set_state
            elif span := self._grow(first, u - 1, partial(self._capturable, first=first)):
                self.captures = True
                self._captured.update(range(span[0], span[1] + 1))
                self._before[span[0]] = self._before.get(span[0], "") + f"{{% set {HEADING} %}}"
                longest = f'({HEADING}|trim).splitlines()|map("length")|max'
                self._underlines[u] = (
                    f"{{% endset %}}{{{{ {HEADING}.rstrip() }}}}{{% if {HEADING}|trim %}}{prefix}"
                    f"{{{{ {lit(item.char)} * ({longest}) }}}}{set_state}{{% endif %}}"
                )
            else:  # cut by blocks that do not balance: a rule as long as the source text
                text = "".join(
                    it.text if isinstance(it, Text) else it.src
                    for it in self._items[first:u]
                    if isinstance(it, Text) or (isinstance(it, Code) and it.line is not None)
                )
                self._underlines[u] = prefix + item.char * max(len(text.strip()), 3) + set_state

    def _capturable(self, i: int, *, first: int) -> bool:
        """Can item ``i`` go inside the ``{% set %}`` block that captures a heading?"""
        item = self._items[i]
        if isinstance(item, Underline) or (isinstance(item, Code) and item.scoped):
            return False
        # before the heading's first content: line breaks and statements only
        return i >= first or not isinstance(item, Text | Code) or item.line is None

    def _regions(self) -> dict[int, tuple[int, int, bool]]:
        """Wrap regions by first item: (last item, hang, literal?)."""
        lines: dict[int, tuple[Line, list[int]]] = {}
        for i, item in enumerate(self._items):
            if isinstance(item, Text | Code) and item.line is not None and not item.prefix:
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
            isinstance(item, Text | Underline)
            or (isinstance(item, Code) and item.line is not None)
            or (isinstance(item, Gap) and item.state is not None and item.state.m > 0)
            or (isinstance(item, Gap) and not item.code and "\n" in item.text)
            for item in self._items[end + 1 : start]
        )

    def _region_span(self, start: int, end: int, hang: int, floor: int) -> tuple[int, int] | None:
        span = self._grow(start, end, partial(self._movable, hang=hang, after=floor))
        return span if span is not None and self._hoistable(*span) else None

    def _depth(self, start: int, end: int) -> tuple[int, int]:
        """Over ``start..end``: the lowest Jinja block depth reached (a middle tag closes, then
        opens) and the depth at the end, relative to the depth at ``start``."""
        depth = low = 0
        for item in self._items[start : end + 1]:
            if isinstance(item, Code) and item.role:
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
            if isinstance(item, Code) and item.scoped and (item.role or depth):
                return False
            if isinstance(item, Code) and item.role:
                depth += {"open": 1, "close": -1, "middle": 0}[item.role]
        return True

    def _movable(self, i: int, *, hang: int, after: int) -> bool:
        """Can item ``i`` go inside ``{% filter wordwrap %}`` (a scope, wrapping each line)?"""
        item = self._items[i]
        if i <= after or i in self._captured or isinstance(item, Underline):
            return False
        if isinstance(item, Code) and item.scoped and item.role:
            return False
        if isinstance(item, Text | Code) and item.line is not None:
            # content wraps with its own line's hang
            return item.line.wrap and item.line.hang == hang
        # the indent filter indents every line but the first: a line break inside must be
        # indented at least as much, and the filter writes the first ``hang`` columns
        if isinstance(item, Gap) and hang and not item.code and (item.breaks or item.indent):
            return item.indent.startswith(" " * hang)
        return True
