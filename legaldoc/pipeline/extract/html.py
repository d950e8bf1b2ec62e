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


def html_to_text(markup: str) -> str:
    """The visible text of an HTML document, one block per line."""
    collector = _TextCollector()
    collector.feed(markup)
    collector.close()
    return collector.text()
