"""HTML to readable text: block elements become lines, inline whitespace collapses as a browser does."""

from __future__ import annotations

import re
from html.parser import HTMLParser

_BLOCK = frozenset(
    ["address", "article", "aside", "blockquote", "body", "br", "dd", "div", "dl", "dt", "fieldset", "figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr", "li", "main", "nav", "ol", "p", "pre", "section", "table", "tbody", "thead", "tfoot", "tr", "ul", "title"]
)
_CELL = frozenset({"td", "th"})
_SKIP = frozenset({"script", "style", "head", "noscript", "template", "xml"})
_IN_HEAD = frozenset({"title", "meta", "link", "style", "script", "noscript", "base", "template"})
"""What may stand in <head>: any other tag ends an unclosed head (as browsers do), so a page whose
author forgot </head> still shows its body."""
_SPACE = re.compile(r"[ \t\r\n\f\u00a0\u200b]+")


class _TextCollector(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.lines: list[str] = []
        self.current: list[str] = []
        self.skipping: list[str] = []  # the skipped elements open around the parser, innermost last
        self.pre_depth = 0

    def _break(self) -> None:
        line = _SPACE.sub(" ", "".join(self.current)).strip() if not self.pre_depth else "".join(self.current)
        self.current = []
        if line or (self.lines and self.lines[-1]):
            self.lines.append(line)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self.skipping == ["head"] and tag not in _IN_HEAD:
            self.skipping.clear()  # body content: the head ended without </head>
        if tag in _SKIP:
            self.skipping.append(tag)
        elif tag == "pre":
            self._break()
            self.pre_depth += 1
        elif tag in _BLOCK:
            self._break()
        elif tag in _CELL:
            self.current.append("  ")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self.skipping == ["head"] and tag not in _IN_HEAD:
            self.skipping.clear()
        if tag in _BLOCK:
            self._break()

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP:
            if tag in self.skipping:  # close it and anything left open inside it
                del self.skipping[len(self.skipping) - 1 - self.skipping[::-1].index(tag) :]
        elif tag == "pre":
            self._break()
            self.pre_depth = max(0, self.pre_depth - 1)
        elif tag in _BLOCK and tag != "br":
            self._break()

    def handle_data(self, data: str) -> None:
        if not self.skipping:
            self.current.append(data)

    def text(self) -> str:
        self._break()
        return "\n".join(self.lines).strip()


_TAG_ATTRS = r"(?:\s[^<>\n]{0,400})?"
_ESCAPED_BREAK = re.compile(rf"<(?:br|/?(?:p|div|tr|li|h[1-6]|table|tbody|thead|center))\b{_TAG_ATTRS}/?>", re.I)
_ESCAPED_CELL = re.compile(rf"</?(?:td|th)\b{_TAG_ATTRS}>", re.I)
_ESCAPED_INLINE = re.compile(rf"</?(?:b|i|u|a|font|span|strong|em|small|big|sup|sub|nobr){_TAG_ATTRS}>", re.I)
_ESCAPED_MIN = 3
"""Tags shown as text, at least this many, mean the page carried escaped HTML (`&lt;td&gt;`), which
a browser would show as tags but a reader wants as text."""


def _unescaped_markup(text: str) -> str:
    """Markup a page printed as text ("<td align=left><br>Pursley v. Williams et al<br>") read as a
    browser would read it had it not been escaped: breaks as line breaks, cells spaced, inline tags gone."""
    if len(_ESCAPED_BREAK.findall(text)) + len(_ESCAPED_CELL.findall(text)) < _ESCAPED_MIN:
        return text
    text = _ESCAPED_BREAK.sub("\n", text)
    text = _ESCAPED_CELL.sub("  ", text)
    text = _ESCAPED_INLINE.sub("", text)
    lines = "\n".join(_SPACE_INLINE.sub(" ", line).strip() for line in text.split("\n"))
    return re.sub(r"\n{3,}", "\n\n", lines)


_SPACE_INLINE = re.compile(r"[ \t\u00a0]+")


def html_to_text(markup: str) -> str:
    """The visible text of an HTML document, one block per line."""
    collector = _TextCollector()
    collector.feed(markup)
    collector.close()
    return _unescaped_markup(collector.text())
