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
stay unwrapped or wrap a few columns early. Statements inside an ``href`` that is not shown
(``#...``, ``javascript:``) are dropped; an ``alt`` or URL made only of statements that render
empty shows ``[]`` or ``()``; a loop-built ``<ol>`` of ten items or more hangs wrapped lines one
column short.

How it works, module by module (all private):

- :mod:`._jinja` splits the source into HTML text and Jinja tags, whitespace control applied;
- :mod:`._walker` parses the HTML, the tags standing in it as placeholders, and turns elements
  into requests: content, line breaks, separators, statements;
- :mod:`._builder` turns those into output items (:mod:`._items`), and joins the paths of
  ``{% if %}`` and ``{% for %}`` blocks, in the namespace when they do not agree;
- :mod:`._layout` wraps the lines and underlines the headings, here when they are literal, in
  the text template when they hold Jinja, and writes the result.
"""

from __future__ import annotations

from deliver.errors import InputError
from deliver.htmltext._builder import TextBuilder
from deliver.htmltext._items import NS
from deliver.htmltext._jinja import Tag, scan_jinja
from deliver.htmltext._layout import Layout
from deliver.htmltext._walker import HtmlWalker, mark_tags

__all__ = ["html_to_text", "html_to_text_template"]

_MIN_WIDTH = 20


def html_to_text_template(source: str, *, width: int = 76) -> str:
    """Text template (Jinja2 source) from an HTML template source."""
    if "\ue000" in source or "\ue001" in source:
        # the converter's own placeholders for Jinja tags (private-use characters)
        raise InputError("the template contains U+E000 or U+E001 (private-use characters)")
    return _convert(scan_jinja(source), width, template=True)


def html_to_text(html: str, *, width: int = 76) -> str:
    """Plain text from rendered HTML (same rules, used for ad-hoc HTML)."""
    return _convert([html], width, template=False)


def _convert(parts: list[str | Tag], width: int, *, template: bool) -> str:
    """The text of ``parts`` (rendered HTML whole, or a template source scanned for Jinja)."""
    if width < _MIN_WIDTH:
        raise ValueError(f"width must be at least {_MIN_WIDTH}, not {width}")
    builder = TextBuilder()
    walker = HtmlWalker(builder, parts if template else None, width)
    # Jinja tags become placeholders the HTML parser keeps whole, in text and attributes alike
    walker.feed(mark_tags(parts))
    walker.close()
    layout = Layout(builder.finish(), width, template=template)
    text = layout.render()
    if text.endswith("\n\n"):
        text = text.rstrip("\n") + "\n"
    if not template:
        return text if text.strip() else ""
    if builder.runtime_used or layout.captures:
        text = f'{{% set {NS} = namespace(s=(2, 0, "")) %}}' + text
    if text.endswith("\n"):
        # Jinja drops a template's final newline (keep_trailing_newline is off by default)
        text += "{# end of text part #}"
    return text
