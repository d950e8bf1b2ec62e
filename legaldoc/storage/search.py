"""Full-text search over chunks on both backends, with one query syntax (web-search style):

    words               every word (stemmed: "dismissed" finds "dismiss")
    "exact phrase"      the words next to each other
    this or that        either side
    -word  -"phrase"    without it

PostgreSQL reads it with `websearch_to_tsquery('english', ...)`; for SQLite FTS5 it is parsed here
and written as the equivalent FTS5 expression (every term quoted, so no FTS5 syntax leaks through).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import DatabaseError
from sqlalchemy.orm import Session

from legaldoc.errors import UsageError

HIGHLIGHT = "**"
"""Around each matched word in a snippet (markdown bold; the CLI renders it bold)."""

_TOKEN = re.compile(r'\s*(-?)(?:"([^"]*)"|([^\s"]+))')


@dataclass(frozen=True)
class Term:
    words: str  # one word or a phrase
    negated: bool = False


def parse_query(query: str) -> list[list[Term]]:
    """`query` as AND-ed groups of OR-ed terms; UsageError for what cannot be searched."""
    if query.count('"') % 2:
        raise UsageError(f"search query {query!r} has an unbalanced quote", hint='close the phrase: "motion to dismiss"')
    groups: list[list[Term]] = []
    join_next = False
    position = 0
    while position < len(query):
        match = _TOKEN.match(query, position)
        if match is None:
            break
        position = match.end()
        negated, phrase, word = match.group(1) == "-", match.group(2), match.group(3)
        if phrase is None and word is not None and word.lower() == "or" and not negated:
            join_next = bool(groups)
            continue
        words = " ".join(re.findall(r"\w+", phrase if phrase is not None else (word or "")))
        if not words:
            continue
        term = Term(words, negated)
        if join_next and not negated and not any(t.negated for t in groups[-1]):
            groups[-1].append(term)
        else:
            groups.append([term])
        join_next = False
    if not any(not t.negated for group in groups for t in group):
        raise UsageError(f"search query {query!r} has no word to look for", hint='e.g. legaldoc search "summary judgment"')
    return groups


def fts5_expression(groups: list[list[Term]]) -> str:
    def quoted(term: Term) -> str:
        return '"' + term.words.replace('"', '""') + '"'

    positive = [g for g in groups if not g[0].negated]
    negative = [g[0] for g in groups if g[0].negated]
    expression = " AND ".join("(" + " OR ".join(quoted(t) for t in group) + ")" for group in positive)
    if negative:
        expression = f"({expression}) NOT (" + " OR ".join(quoted(t) for t in negative) + ")"
    return expression


def websearch_text(groups: list[list[Term]]) -> str:
    """The parsed query written back in websearch syntax (what PostgreSQL reads)."""
    parts = []
    for group in groups:
        rendered = [(f'"{t.words}"' if " " in t.words else t.words) for t in group]
        parts.append(("-" if group[0].negated else "") + " or ".join(rendered))
    return " ".join(parts)


@dataclass(frozen=True)
class ChunkHit:
    chunk_id: int
    document_id: int
    source: str
    page_start: int
    page_end: int
    chunk_start: int
    score: float
    snippet: str
    chunk_text: str


def search_chunks(session: Session, project_id: int, query: str, limit: int, entity_type: str | None = None) -> list[ChunkHit]:
    """The best chunks of the project for `query`, best first."""
    groups = parse_query(query)
    dialect = session.get_bind().dialect.name
    typed = (" AND EXISTS (SELECT 1 FROM mentions m WHERE m.document_id = c.document_id AND m.chunk_idx = c.idx"
             " AND m.type = :entity_type)") if entity_type else ""  # fmt: skip
    parameters: dict[str, Any] = {"project": project_id, "limit": limit, "entity_type": entity_type}
    if dialect == "sqlite":
        parameters["query"] = fts5_expression(groups)
        statement = text(
            "SELECT c.id, c.document_id, d.source, c.page_start, c.page_end, c.start, bm25(chunks_fts) AS score,"
            f" snippet(chunks_fts, 0, '{HIGHLIGHT}', '{HIGHLIGHT}', ' … ', 24) AS snippet, c.text"
            " FROM chunks_fts JOIN chunks c ON c.id = chunks_fts.rowid JOIN documents d ON d.id = c.document_id"
            f" WHERE chunks_fts MATCH :query AND d.project_id = :project{typed}"
            " ORDER BY score, c.id LIMIT :limit"
        )
    else:
        parameters["query"] = websearch_text(groups)
        statement = text(
            "SELECT c.id, c.document_id, d.source, c.page_start, c.page_end, c.start, ts_rank_cd(c.search, q) AS score,"
            f" ts_headline('english', c.text, q, 'StartSel=\"{HIGHLIGHT}\", StopSel=\"{HIGHLIGHT}\", MaxWords=30, MinWords=15,"
            " MaxFragments=2, FragmentDelimiter=\" … \"') AS snippet, c.text"
            " FROM chunks c JOIN documents d ON d.id = c.document_id, websearch_to_tsquery('english', :query) q"
            f" WHERE c.search @@ q AND d.project_id = :project{typed}"
            " ORDER BY score DESC, c.id LIMIT :limit"
        )
    try:
        rows = session.execute(statement, parameters).all()
    except DatabaseError as exc:  # FTS syntax the parser let through: still the user's input, not a crash
        raise UsageError(f"cannot search for {query!r}: {getattr(exc, 'orig', exc)}",
                         hint='words, "phrases", or, -excluded') from None  # fmt: skip
    return [ChunkHit(r[0], r[1], r[2], r[3], r[4], r[5], float(r[6]), " ".join(str(r[7]).split()), r[8]) for r in rows]
