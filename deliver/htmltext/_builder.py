"""The builder: output items from the walker's requests, and the paths of Jinja blocks.

The HTML walker asks for content (:meth:`TextBuilder.content`) and for what must come before
the next content: a line break or a blank line (:meth:`~TextBuilder.block`), a separator on
the same line (:meth:`~TextBuilder.separate`), a ``<br>``. What is owed is a :class:`State`;
it is written as a :class:`Gap` when the next content comes.

Where ``{% if %}`` and ``{% for %}`` paths meet, their states may differ: a branch that ends
with a paragraph owes a blank line, one that is empty owes what was owed before it. Each open
block is a :class:`Frame` that keeps the state at its start and at the end of each branch; when
it closes the paths are joined (:meth:`TextBuilder._join`, :meth:`TextBuilder._join_loop`). If
they agree nothing is written; otherwise each path records its state in the text template's
namespace, in the :class:`Slot` left for it, and the next gap is decided when rendered.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from deliver.errors import InputError
from deliver.htmltext._items import (
    BULLET,
    ITEM,
    NS,
    Code,
    Content,
    Gap,
    Item,
    Line,
    Slot,
    State,
    Text,
    Underline,
    lit,
)
from deliver.htmltext._jinja import OPAQUE, Tag, balanced_roles

__all__ = ["Frame", "TextBuilder"]


@dataclass(eq=False)
class Frame:
    """An open Jinja block, and the states its paths end in."""

    family: str
    entry: State  # owed at the opening tag
    entry_slot: Slot  # before the opening tag: records ``entry`` if the paths do not agree
    opener: Code
    ends: list[tuple[State, Slot]] = field(default_factory=list)  # at each elif and else
    has_else: bool = False
    forced: bool = False  # a loop whose head must be decided when rendered
    # gaps at the head of a loop's pass (slot, state asked in the pass, indent)
    deferred: list[tuple[Slot, State, str]] = field(default_factory=list)


def _norm(st: State) -> State:
    """A static state with what cannot matter dropped, so equal states compare equal."""
    if st.mode != "static":
        return st
    m = st.m if st.m > st.n else 0
    p = st.p if not st.n and not m else ""
    return st if (m, p) == (st.m, st.p) else State("static", st.n, m, p)


def _with_margin(st: State, margin: int) -> State:
    """``st``, with ``margin`` line breaks (1: a new line, 2: a blank line) wanted at least."""
    if margin <= st.m:
        return st
    if st.mode != "static":
        return State(st.mode, st.n, margin, st.p, st.loop)
    return st if margin <= st.n else State("static", st.n, margin)


def _with_separator(st: State, sep: str) -> State:
    """``st``, with ``sep`` at least between the last content and the next on the same line."""
    # "" < " " < " | ": the strongest separator wins
    if sep <= st.p:
        return st
    if st.mode != "static":
        return State(st.mode, st.n, st.m, sep, st.loop)
    return st if st.n or st.m else State("static", 0, 0, sep)


def _merge(entry: State, local: State) -> State:
    """What is owed at a loop pass's head: ``entry``, plus what the pass asked since."""
    return _with_separator(_with_margin(entry, local.m), local.p)


def _fill(st: State, indent: str) -> Gap | None:
    """The gap a static state writes before the next content, none if there is nothing."""
    if st.m > st.n:
        return Gap("\n" * (st.m - st.n), indent)
    if st.n:
        return Gap(indent=indent) if indent and st.n != BULLET else None
    return Gap(st.p) if st.p else None


def _breaks(st: State) -> bool:
    """Does the next content after ``st`` start a new line?"""
    if st.mode == "runtime":
        return st.m >= 1
    return st.m > st.n or 0 < st.n < BULLET


def _record(st: State) -> Code | None:
    """The statement that leaves ``st`` in the namespace for the paths' meeting point."""
    s = f"{NS}.s"
    if st.mode == "static":
        return Code(f"{{% set {s} = ({st.n}, {st.m}, {lit(st.p)}) %}}")
    if not st.m and not st.p:
        return None
    m = f"[{s}[1], {st.m}]|max" if st.m else f"{s}[1]"
    p = f"[{s}[2], {lit(st.p)}]|max" if st.p else f"{s}[2]"
    return Code(f"{{% set {s} = ({s}[0], {m}, {p}) %}}")


class TextBuilder:
    """Output items from content and block requests; joins the paths of Jinja blocks."""

    def __init__(self) -> None:
        self.items: list[Item] = []
        self.indent = ""
        self.nowrap = 0
        self.runtime_used = False
        self._state = State()
        self._frames: list[Frame] = []
        self._line: Line | None = None
        self._anchor: Code | None = None  # outermost loop whose passes may share a line

    @property
    def depth(self) -> int:
        return len(self._frames)

    def block(self, margin: int) -> None:
        self._state = _with_margin(self._state, margin)

    def separate(self, sep: str = " ") -> None:
        self._state = _with_separator(self._state, sep)

    def glue(self) -> None:
        """After a list bullet: the item's text follows it, whatever blocks open first."""
        self._state = State(n=BULLET)

    def unglue(self, start: int = -1, depth: int = -1) -> None:
        """The list item (from item ``start``) ends; with no text, its bullet loses its space."""
        st = self._state
        if st.mode == "static" and st.n == BULLET:
            for item in reversed(self.items):
                if isinstance(item, Text | Code) and (item.line is not None or item.prefix):
                    if isinstance(item, Text) and item.prefix:
                        item.text = item.text.rstrip()
                    break
            self._state = _norm(replace(st, n=0))
        elif st.mode == "runtime":
            s = f"{NS}.s"
            self.items.append(
                Code(f'{{% if {s}[0] == {BULLET} %}}{{% set {s} = (0, 0, "") %}}{{% endif %}}')
            )
            roles = [it.role for it in self.items[start:] if isinstance(it, Code) and it.role]
            if start >= 0 and depth == self.depth and balanced_roles(roles):
                # whether the item has text is known when rendered: capture it, then strip it
                self.items.insert(start, Code(f"{{% set {ITEM} %}}", role="open"))
                self.items.append(Code(f"{{% endset %}}{{{{ {ITEM}.rstrip() }}}}", role="close"))

    def content(self, pieces: list[Content], *, prefix: bool = False, hang: int = -1) -> None:
        st = self._state
        gap, breaks = self._gap()
        if gap is not None:
            self.items.append(gap)
        if st.mode == "deferred" and st.loop is not None and not st.m:
            self._anchor = self._anchor or st.loop.opener
        if breaks or self._line is None or self._line.wrap != (self.nowrap == 0):
            self._line = Line(len(self.indent) if hang < 0 else hang, self.nowrap == 0)
            if not st.m:
                self._line.loop = self._anchor  # the loop's passes go on on the same line
        self._anchor = None
        for piece in pieces:
            piece.line = self._line
            piece.prefix = prefix
            self.items.append(piece)
        self._state = State(n=0)

    def link_url(self, pieces: list[Content]) -> None:
        """``(url)`` after a link's text, even when the text ended a block or a line."""
        st = self._state
        wrapped = [Text("("), *pieces, Text(")")]
        if st.mode == "static" and st.m and not st.n:
            self._state = replace(st, m=0, p=" ")
            self.content(wrapped)
            self.block(st.m)
        elif st.mode == "runtime":
            # the same, with the line break owed in the namespace: set aside, then owed again
            s = f"{NS}.s"
            owed = f"[{s}[1], {st.m}]|max"
            self.items.append(
                Code(
                    f"{{% set {NS}.m = 0 if {s}[0] else {owed} %}}"
                    f'{{% set {s} = ({s}[0], {owed} if {s}[0] else 0, "" if {s}[0] else " ") %}}'
                )
            )
            self._state = State("runtime")
            self.content(wrapped)
            self.items.append(Code(f'{{% set {s} = (0, {NS}.m, "") %}}'))
            self._state = State("runtime")
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
        s = f"{NS}.s"
        n = f"[{s}[0], {s}[1], {st.m}]|max"
        self.items.append(Code(f'{{% set {s} = ({s}[0], [{n} + 1, 2]|min, "") %}}'))
        self._state = State("runtime", m=1)  # implied by the namespace, and a new line

    def underline(self, char: str, first: Content) -> None:
        self._resolve_deferred()
        runtime = self._state.mode == "runtime"
        self.items.append(Underline(char, self.indent, first, runtime))
        self._state = State("runtime") if runtime else State(n=0)

    def statement(self, tag: Tag) -> None:
        if tag.role == "open":
            self._open(tag)
        elif tag.role == "middle":
            self._middle(tag)
        elif tag.role == "close":
            self._close(tag)
        else:
            self.items.append(Code(tag.src, scoped=tag.scoped))

    def finish(self) -> list[Item]:
        if self._frames:
            raise InputError(f"{{% {self._frames[-1].family} %}} is never closed")
        st = self._state
        if st.mode == "runtime":
            self.items.append(Gap(f'{{{{ "" if {NS}.s[0] else "\\n" }}}}', code=True))
        elif not st.n:
            self.items.append(Gap("\n"))
        return self.items

    def _gap(self) -> tuple[Gap | Slot | None, bool]:
        st = self._state
        if st.mode == "static":
            return _fill(st, self.indent), _breaks(st)
        if st.mode == "deferred" and st.loop is not None:
            slot = Slot()
            st.loop.deferred.append((slot, st, self.indent))
            return slot, _breaks(_merge(st.loop.entry, st))
        self.runtime_used = True
        return Gap(indent=self.indent, state=st), st.m >= 1

    def _resolve_deferred(self) -> None:
        st = self._state
        if st.mode == "deferred" and st.loop is not None:
            st.loop.forced = True
            if not st.m:
                self._anchor = self._anchor or st.loop.opener
            self._state = State("runtime", m=st.m, p=st.p)

    def _open(self, tag: Tag) -> None:
        if tag.family in ("if", "for"):
            self._resolve_deferred()
        slot = Slot()
        opener = Code(tag.src, role="open", scoped=tag.scoped)
        self.items += [slot, opener]
        frame = Frame(tag.family, self._state, slot, opener)
        self._frames.append(frame)
        if tag.family == "for":
            self._state = State("deferred", loop=frame)
        elif tag.family in OPAQUE:
            self._state = State(n=0)

    def _middle(self, tag: Tag) -> None:
        frame = self._frames[-1] if self._frames else None
        allowed = ("if",) if tag.keyword == "elif" else ("if", "for")
        if frame is None or frame.family not in allowed:
            raise InputError(f"{tag.src} is not inside an if or for block")
        slot = Slot()
        self.items += [slot, Code(tag.src, role="middle")]
        frame.ends.append((self._state, slot))
        frame.has_else = frame.has_else or tag.keyword == "else"
        self._state = frame.entry

    def _close(self, tag: Tag) -> None:
        if not self._frames or self._frames[-1].family != tag.family:
            raise InputError(f"{tag.src} does not close an open block")
        frame = self._frames.pop()
        slot = Slot()
        self.items += [slot, Code(tag.src, role="close")]
        end = (self._state, slot)
        if frame.family == "if":
            ends = [*frame.ends, end]
            if not frame.has_else:
                ends.append((frame.entry, frame.entry_slot))
            self._state = self._join(ends)
        elif frame.family == "for":
            self._state = self._join_loop(frame, end)
        elif frame.family in OPAQUE:
            self._state = frame.entry

    def _join(self, ends: list[tuple[State, Slot]]) -> State:
        first = ends[0][0]
        if all(state == first for state, _ in ends):
            return first
        for state, slot in ends:
            slot.item = _record(state)
        self.runtime_used = True
        return State("runtime")

    def _join_loop(self, frame: Frame, end: tuple[State, Slot]) -> State:
        """Joins the loop's head (first pass, next passes) and its exit (no pass, last pass)."""
        entry = frame.entry
        body = frame.ends if frame.has_else else [*frame.ends, end]
        exits = [end] if frame.has_else else []

        def resolved(st: State) -> State:
            return _merge(entry, st) if st.mode == "deferred" else st

        if not frame.forced and all(resolved(st) == entry for st, _ in body + exits):
            for slot, local, indent in frame.deferred:
                head = _merge(entry, local)
                if head.mode == "runtime":  # every pass starts from the same namespace state
                    slot.item = Gap(indent=indent, state=head)
                else:
                    slot.item = _fill(head, indent)
            return entry
        self.runtime_used = True
        frame.entry_slot.item = _record(entry)
        for st, slot in body + exits:
            slot.item = _record(State("runtime", m=st.m, p=st.p) if st.mode == "deferred" else st)
        for slot, local, indent in frame.deferred:
            slot.item = Gap(indent=indent, state=local)
        return State("runtime")
