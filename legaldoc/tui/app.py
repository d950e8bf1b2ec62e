"""The dashboard app: the main screen, the batch screen, confirmation and help.

Reads run in a thread every `refresh` seconds, so a slow or lost Redis never freezes the screen;
a lost one turns the header red ("disconnected") and the next refresh connects again.
"""

from __future__ import annotations

import time
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Button, DataTable, Footer, Input, Label, Static

from legaldoc.errors import LegaldocError, ServiceUnavailable
from legaldoc.lifecycle import ATTENTION_ORDER, MirrorState
from legaldoc.paths import display_name
from legaldoc.services.monitor import BatchDetail, Dashboard, DocumentView, Monitor
from legaldoc.services.summary import BatchSummary, DocumentRow, usage_line
from legaldoc.tui import format as fmt

DOCUMENTS_SHOWN = 2000  # rows of the batch screen's table; the filters reach every document

HELP = """\
[b]legaldoc monitor[/b]

[b]Everywhere[/b]
  ?          this help
  q          quit
  Tab        next panel (Shift+Tab: previous)
  /          filter the batches (or the documents) by any text shown
  Esc        close the filter, this help, or go back
  Ctrl+S     save an SVG screenshot in the current folder

[b]Main screen[/b]
  ↑ ↓        choose a batch
  Enter      open the batch: its documents and failures

[b]Batch screen[/b]
  s          show only documents in one state (press again for the next)
  r          recover: re-run failed documents (TRANSIENT, RATE_LIMIT, RESOURCE, PERMANENT)
  c          cancel: documents not started end as cancelled
             (both ask first; hidden with --read-only)

Figures refresh every {refresh:g} s. Rates and ETAs use the batch's own finished documents;
documents/min in the header counts completions over the last 5 minutes, every batch together.
"""


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,question_mark", "dismiss", "Close")]

    def __init__(self, refresh: float) -> None:
        super().__init__()
        self.text = HELP.format(refresh=refresh)

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help"):
            yield Static(self.text)


class ConfirmScreen(ModalScreen[bool]):
    """Yes or no; Enter/y says yes, Esc/n says no."""

    BINDINGS = [Binding("y", "answer(True)", "Yes"), Binding("n,escape", "answer(False)", "No")]

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm"):
            yield Label(self.question, id="question")
            with Horizontal(id="buttons"):
                yield Button("Yes (y)", variant="warning", id="yes")
                yield Button("No (n)", variant="primary", id="no")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    @on(Button.Pressed)
    def pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, answer: bool) -> None:
        self.dismiss(answer)


def _progress(row: BatchSummary, width: int = 16) -> Text:
    """Succeeded, skipped, failed and cancelled documents, then running ones (not counted as done)."""
    done = [(row.succeeded, "green"), (row.skipped, "cyan"), (row.failed, "red"), (row.cancelled, "grey50")]
    processed = row.succeeded + row.skipped + row.failed  # cancelled documents were not processed: not 100%
    return fmt.progress(done, row.total, width, in_flight=(row.running, "yellow"), processed=processed)


def _matches(needle: str, *values: Any) -> bool:
    return not needle or any(needle in str(v).lower() for v in values if v is not None)


class FilterInput(Input):
    """The `/` filter: typing filters at once, Enter keeps it, Esc clears it."""

    BINDINGS = [Binding("escape", "close", "Clear filter")]

    def action_close(self) -> None:
        self.value = ""
        self.display = False
        self.screen.focus_next()


class Header(Static):
    """One line: connection, active batches, documents/min, failures, workers, Redis memory."""


class DashboardScreen(Screen[None]):
    BINDINGS = [
        Binding("slash", "filter", "Filter"),
        Binding("escape", "clear_filter", "Clear filter", show=False),
    ]

    def compose(self) -> ComposeResult:
        yield Header("connecting…", id="header")
        yield FilterInput(placeholder="filter batches: any text in the row (Esc clears)", id="filter")
        yield DataTable(id="batches", cursor_type="row", zebra_stripes=True, cursor_foreground_priority="renderable")
        with Grid(id="panels"):
            with Vertical(classes="panel", id="queues-panel"):
                yield Label("Queues", classes="title")
                yield DataTable(id="queues", cursor_type="row", cursor_foreground_priority="renderable")
            with Vertical(classes="panel", id="workers-panel"):
                yield Label("Workers", classes="title")
                yield DataTable(id="workers", cursor_type="row", cursor_foreground_priority="renderable")
            with Vertical(classes="panel", id="errors-panel"):
                yield Label("Errors by category, 24 h: failed attempts, documents failed for good", classes="title")
                yield Static(id="error-bars")
                yield DataTable(id="errors", cursor_type="row", cursor_foreground_priority="renderable")
            with Vertical(classes="panel", id="stages-panel"):
                yield Label("Stages (last hour)", classes="title")
                yield DataTable(id="stages", cursor_type="row", cursor_foreground_priority="renderable")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#filter").display = False
        self.query_one("#batches", DataTable).add_columns(  # what matters first: narrow terminals show it
            "status", "progress", "done/total", MirrorState.FAILED, "batch", "name", "project", "pri", "rate/min", "ETA", "age")
        self.query_one("#queues", DataTable).add_columns("queue", "depth", "consumers", "processes", "oldest")
        self.query_one("#workers", DataTable).add_columns("worker", "queues", "conc", "active", "processed", "RSS", "seen")
        self.query_one("#errors", DataTable).add_columns("when", "batch", "doc", "stage", "category", "message")
        self.query_one("#stages", DataTable).add_columns("stage", "n", "p50", "p95", "per 5 min, last hour")
        self.query_one("#batches", DataTable).focus()
        self.ready = True
        self.show(self.app.dashboard)  # type: ignore[attr-defined]

    # -- data ------------------------------------------------------------------------------------

    ready = False  # columns added: rows may come

    def show(self, dashboard: Dashboard | None) -> None:
        if not self.ready:
            return
        app: MonitorApp = self.app  # type: ignore[assignment]
        headers = self.query(Header)
        if not headers:  # the screen is being taken down (the app is closing): nothing to show on
            return
        headers.first().update(app.header_text())
        if dashboard is None:
            return
        needle = self.query_one("#filter", FilterInput).value.strip().lower()
        rows = [r for r in dashboard.rows
                if _matches(needle, r.batch_id, r.name, r.project, r.status, r.priority_name)]  # fmt: skip
        table = self.query_one("#batches", DataTable)
        _fill(table, [(r.batch_id, self._batch_cells(r)) for r in rows])
        shown = f"{len(rows)} shown" + (f" matching {needle!r}" if needle else "")
        table.border_title = f"Batches: {dashboard.active_count} active, {dashboard.batch_count} in Redis, {shown}"
        table.border_subtitle = "Enter: open the batch"
        self._queues(dashboard)
        self._workers(dashboard)
        self._errors(dashboard)
        self._stages(dashboard)

    @staticmethod
    def _batch_cells(row: BatchSummary) -> list[Any]:
        return [
            fmt.status(row.status), _progress(row), f"{row.done}/{row.total}",
            Text(str(row.failed), style="red" if row.failed else "grey50"), row.batch_id, fmt.clip(row.name, 28), row.project,
            f"{row.priority} {row.priority_name}", fmt.rate(row.rate_per_minute),
            fmt.duration(row.eta_seconds) if row.active else "", fmt.duration(row.age_seconds),
        ]  # fmt: skip

    def _queues(self, dashboard: Dashboard) -> None:
        rows = []
        for q in dashboard.queue_rows:
            style = "" if q.depth or q.consumers else "grey50"
            warn = q.depth and not q.consumers
            rows.append((q.name, [Text(q.name, style=style), Text(str(q.depth), style="bold red" if warn else style),
                                  Text(str(q.consumers), style="bold red" if warn else style), Text(str(q.processes), style=style),
                                  Text(fmt.duration(q.oldest_age) if q.depth else "", style=style)]))  # fmt: skip
        _fill(self.query_one("#queues", DataTable), rows)

    def _workers(self, dashboard: Dashboard) -> None:
        rows = []
        for w in dashboard.workers:
            online = w.online(dashboard.at)
            style = "" if online else "grey42"
            seen = "offline" if not online else f"{fmt.duration(dashboard.at - w.last_seen)} ago"
            cells = [w.name, ",".join(w.queues) if len(w.queues) < 9 else "all", str(w.concurrency), str(w.active),
                     str(w.processed), fmt.size(w.rss), seen]  # fmt: skip
            rows.append((w.name, [Text(c, style=style) for c in cells]))
        _fill(self.query_one("#workers", DataTable), rows)

    def _errors(self, dashboard: Dashboard) -> None:
        largest = max(dashboard.errors_24h.values(), default=0)
        lines = Text()
        for name, count in dashboard.errors_24h.items():
            style = fmt.CATEGORY_STYLE.get(name, "red")
            failed = dashboard.failed_24h.get(name, 0)
            lines.append(f"{name:<14}{count:>6} ", style=style if count else "grey50")
            lines.append_text(fmt.count_bar(count, largest, 24, style))
            lines.append(f"  {failed} docs failed\n" if failed else "\n", style="bold")
        self.query_one("#error-bars", Static).update(lines)
        rows = []
        for i, recent in enumerate(dashboard.recent_errors):
            e = recent.error
            when = f"{fmt.duration(dashboard.at - (e.at or dashboard.at))} ago"
            rows.append((str(i), [when, recent.batch_id, str(recent.document_id), e.stage, fmt.category(e.category),
                                  fmt.clip(e.message, 120)]))  # fmt: skip
        _fill(self.query_one("#errors", DataTable), rows)

    def _stages(self, dashboard: Dashboard) -> None:
        rows = [(s.stage, [s.stage, str(s.count), fmt.milliseconds(s.p50_ms), fmt.milliseconds(s.p95_ms),
                           fmt.sparkline(s.per_5_minutes)]) for s in dashboard.stages]  # fmt: skip
        _fill(self.query_one("#stages", DataTable), rows)

    # -- actions ---------------------------------------------------------------------------------

    @on(DataTable.RowSelected, "#batches")
    def selected(self, event: DataTable.RowSelected) -> None:
        if event.row_key.value is not None:
            self.app.push_screen(BatchScreen(event.row_key.value))

    def action_filter(self) -> None:
        box = self.query_one("#filter", FilterInput)
        box.display = True
        box.focus()

    def action_clear_filter(self) -> None:
        box = self.query_one("#filter", FilterInput)
        if box.value or box.display:
            box.action_close()
            self.show(self.app.dashboard)  # type: ignore[attr-defined]

    @on(Input.Changed, "#filter")
    def filtered(self) -> None:
        self.show(self.app.dashboard)  # type: ignore[attr-defined]

    @on(Input.Submitted, "#filter")
    def keep_filter(self) -> None:
        self.query_one("#batches", DataTable).focus()


def _fill(table: DataTable, rows: list[tuple[str, list[Any]]]) -> None:
    """Replace a table's rows, keeping the cursor on the same key (or the same place) and the scroll."""
    keep = None
    if table.row_count:
        try:
            keep = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        except Exception:
            keep = None
    old_row, old_column, scroll_x, scroll_y = table.cursor_row, table.cursor_column, table.scroll_x, table.scroll_y
    table.clear()
    for key, cells in rows:
        table.add_row(*cells, key=key)
    if rows:
        keys = [k for k, _ in rows]
        table.move_cursor(row=keys.index(keep) if keep in keys else min(old_row, len(rows) - 1), column=old_column, scroll=False)
        table.scroll_to(x=scroll_x, y=scroll_y, animate=False, immediate=True)


class FilteredScreen(Screen[None]):
    """A screen with one table and the `/` filter over it: Esc closes the filter first, then goes back."""

    TABLE = "#table"

    def redraw(self) -> None:
        raise NotImplementedError

    def action_back(self) -> None:
        box = self.query_one("#filter", FilterInput)
        if box.display or box.value:
            box.action_close()
            self.redraw()
            return
        self.app.pop_screen()

    def action_filter(self) -> None:
        box = self.query_one("#filter", FilterInput)
        box.display = True
        box.focus()

    @on(Input.Changed, "#filter")
    def filtered(self) -> None:
        self.redraw()

    @on(Input.Submitted, "#filter")
    def keep_filter(self) -> None:
        self.query_one(self.TABLE, DataTable).focus()


class BatchScreen(FilteredScreen):
    """One batch: its progress, every document (filterable) and its failures grouped by category."""

    BINDINGS = [
        Binding("escape", "back", "Back"),
        Binding("s", "cycle_state", "State filter"),
        Binding("slash", "filter", "Filter"),
        Binding("r", "recover", "Recover failed"),
        Binding("c", "cancel", "Cancel batch"),
    ]

    def __init__(self, batch_id: str) -> None:
        super().__init__()
        self.batch_id = batch_id
        self.detail: BatchDetail | None = None
        self.state_filter: MirrorState | None = None
        self.refreshes = 0
        self.problem: str | None = None

    def compose(self) -> ComposeResult:
        yield Header("loading…", id="header")
        yield Static(id="summary")
        yield FilterInput(placeholder="filter documents: any text in the row (Esc clears)", id="filter")
        with Horizontal(id="batch-body"):
            with Vertical(classes="panel", id="documents-panel"):
                yield Label("Documents", classes="title", id="documents-title")
                yield DataTable(id="documents", cursor_type="row", zebra_stripes=True, cursor_foreground_priority="renderable")
                yield Static(id="document-detail")
            with Vertical(classes="panel", id="groups-panel"):
                yield Label("Failures by category", classes="title")
                yield DataTable(id="groups", cursor_type="row", cursor_foreground_priority="renderable")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#filter").display = False
        self.query_one("#documents", DataTable).add_columns("id", "state", "why", "file", "stage", "category", "tries")
        self.query_one("#groups", DataTable).add_columns("category", "n", "stage", "message")
        self.query_one("#documents", DataTable).focus()
        self.ready = True
        self.load()
        self.set_interval(self.app.refresh_seconds, self.load)  # type: ignore[attr-defined]

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # --read-only: recover and cancel are hidden from the footer and do nothing
        return not (action in ("recover", "cancel") and self.app.read_only)  # type: ignore[attr-defined]

    @work(thread=True, exclusive=True, group="batch")
    def load(self) -> None:
        app: MonitorApp = self.app  # type: ignore[assignment]
        try:
            detail = app.monitor.batch(self.batch_id)
        except ServiceUnavailable as error:
            app.call_from_thread(app.disconnected, error)
            app.call_from_thread(self.show)
            return
        except LegaldocError as error:  # e.g. the batch is gone from Redis and the database
            if not self.problem:
                app.call_from_thread(app.notify, str(error), title=f"batch {self.batch_id}", severity="error")
            self.problem = str(error)
            return
        except Exception as error:  # never a traceback on the screen
            app.call_from_thread(app.disconnected, error)
            return
        self.problem = None
        app.call_from_thread(app.connected_again)
        app.call_from_thread(self.show, detail)

    ready = False

    def show(self, detail: BatchDetail | None = None) -> None:
        if not self.ready:
            return
        app: MonitorApp = self.app  # type: ignore[assignment]
        headers = self.query(Header)
        if not headers:  # the screen is being taken down (the app is closing): nothing to show on
            return
        headers.first().update(app.header_text())
        if detail is None:
            return
        self.detail = detail
        row = detail.batch
        summary = Text.assemble(
            (row.name or row.batch_id, "bold"), ("  │  ", "grey42"), f"batch {row.batch_id}", ("  │  ", "grey42"), f"project {row.project}",
            ("  │  ", "grey42"), f"priority {row.priority} {row.priority_name}", ("  │  ", "grey42"), fmt.status(row.status),
            ("  │  ", "grey42"), f"age {fmt.duration(row.age_seconds)}",
            ("" if detail.live else "  (from the database: Redis no longer holds this batch)", "yellow"), "\n",
            _progress(row, 40),
            f"  {row.done}/{row.total} done: {row.succeeded} succeeded, {row.failed} failed, {row.skipped} skipped, "
            f"{row.cancelled} cancelled, {row.running} running, {row.pending} pending",
            f"  │  rate {fmt.rate(row.rate_per_minute)}/min  │  ETA {fmt.duration(row.eta_seconds) if row.active else '-'}",
            *(f"\n{usage_line(provider, used)}" for provider, used in row.usage.items()),  # remote providers' cost
        )  # fmt: skip
        self.query_one("#summary", Static).update(summary)
        needle = self.query_one("#filter", FilterInput).value.strip().lower()
        shown = [d for d in detail.documents
                 if (self.state_filter is None or d.state == self.state_filter)
                 and _matches(needle, d.document_id, d.source, d.state, d.stage, d.category, d.message)]  # fmt: skip
        self.shown = {str(d.document_id): d for d in shown[:DOCUMENTS_SHOWN]}
        rows = [(str(d.document_id), [str(d.document_id), fmt.status(d.state), fmt.clip(fmt.reason(d.message or d.reason, d.source), 70),
                                      fmt.clip(display_name(d.source), 32), d.stage or "", fmt.category(d.category),
                                      "" if d.attempts is None else str(d.attempts)])
                for d in shown[:DOCUMENTS_SHOWN]]  # fmt: skip
        _fill(self.query_one("#documents", DataTable), rows)
        title = f"Documents: {len(shown)}" + (f" of {len(detail.documents)}" if len(shown) != len(detail.documents) else "")
        if self.state_filter:
            title += f", state {self.state_filter}"
        if needle:
            title += f", matching {needle!r}"
        if len(shown) > DOCUMENTS_SHOWN:
            title += f" (first {DOCUMENTS_SHOWN} shown; filter to see others)"
        self.query_one("#documents-title", Label).update(title)
        self.describe()
        groups = []
        for group in detail.errors:
            groups.append((group.category, [fmt.category(group.category), Text(str(group.count), style="bold"), "", ""]))
            for i, (count, stage, message) in enumerate(group.messages[:10]):
                groups.append((f"{group.category}:{i}", ["", str(count), stage, fmt.clip(message, 200)]))
        _fill(self.query_one("#groups", DataTable), groups)
        self.refreshes += 1

    shown: dict[str, DocumentRow] = {}

    @on(DataTable.RowHighlighted, "#documents")
    def describe(self) -> None:
        """The highlighted document in full under the table: where it is, and the whole message."""
        table = self.query_one("#documents", DataTable)
        document = None
        if table.row_count:
            try:
                document = self.shown.get(str(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value))
            except Exception:
                document = None
        if document is None:
            self.query_one("#document-detail", Static).update("")
            return
        why = document.message or document.reason
        self.query_one("#document-detail", Static).update(Text.assemble(
            (f"{document.document_id}  ", "bold"), fmt.status(document.state),
            f"  {document.stage or ''}  " if document.stage else "  ", fmt.category(document.category),
            f"  tries {document.attempts}" if document.attempts else "", "\n", (document.source, "dim"),
            *(("\n", (why, "red" if document.state is MirrorState.FAILED else "")) if why else ()),
            ("\nEnter: its mentions and entities", "grey50"),
        ))  # fmt: skip

    @on(DataTable.RowSelected, "#documents")
    def open_document(self, event: DataTable.RowSelected) -> None:
        if event.row_key.value is not None:
            self.app.push_screen(DocumentScreen(int(event.row_key.value)))

    TABLE = "#documents"

    def redraw(self) -> None:
        self.show(self.detail)

    def action_cycle_state(self) -> None:
        order: list[MirrorState | None] = [None, *ATTENTION_ORDER]
        self.state_filter = order[(order.index(self.state_filter) + 1) % len(order)]
        self.show(self.detail)

    def action_recover(self) -> None:
        failed = self.detail.batch.failed if self.detail else 0
        question = (f"Recover batch {self.batch_id}? Its {failed} failed documents of the categories TRANSIENT, "
                    "RATE_LIMIT, RESOURCE and PERMANENT run again from the stage that failed.")  # fmt: skip
        self.app.push_screen(ConfirmScreen(question), lambda yes: self.confirmed("recover", yes))

    def action_cancel(self) -> None:
        question = f"Cancel batch {self.batch_id}? Documents not started end as cancelled; running ones finish."
        self.app.push_screen(ConfirmScreen(question), lambda yes: self.confirmed("cancel", yes))

    def confirmed(self, action: str, yes: bool | None) -> None:
        if yes:
            self.act(action)

    @work(thread=True, group="action")
    def act(self, action: str) -> None:
        app: MonitorApp = self.app  # type: ignore[assignment]
        try:
            if action == "recover":
                recovery = app.monitor.recover(self.batch_id)
                result = recovery.as_json()
                left = ", ".join(f"{k} {v}" for k, v in recovery.left_failed.items())
                message = f"re-queued {recovery.requeued} documents" + (f"; left failed: {left} (use legaldoc recover --all)" if left else "")
            else:
                cancelled = app.monitor.cancel(self.batch_id)
                result = cancelled.as_json()
                message = (f"already {cancelled.summary.status}" if cancelled.already else
                           f"cancelled {cancelled.cancelled_now} documents; {cancelled.summary.running} running end after their stage")  # fmt: skip
        except LegaldocError as error:
            app.call_from_thread(app.notify, str(error), title=f"{action} failed", severity="error", timeout=10)
            return
        except Exception as error:  # an unexpected failure is reported, not raised into the screen
            app.call_from_thread(app.notify, f"{type(error).__name__}: {error}", title=f"{action} failed",
                                 severity="error", timeout=10)  # fmt: skip
            return
        app.actions.append((action, self.batch_id, result))
        app.call_from_thread(app.notify, message, title=f"batch {self.batch_id}")
        app.call_from_thread(self.load)


class DocumentScreen(FilteredScreen):
    """One document: its mentions in context with the entities they resolved to (as `show --mentions`)."""

    BINDINGS = [Binding("escape", "back", "Back"), Binding("slash", "filter", "Filter")]

    def __init__(self, document_id: int) -> None:
        super().__init__()
        self.document_id = document_id
        self.view: DocumentView | None = None

    def compose(self) -> ComposeResult:
        yield Header("loading…", id="header")
        yield Static(id="summary")
        yield FilterInput(placeholder="filter mentions: type, text, entity or context (Esc clears)", id="filter")
        yield DataTable(id="mentions", cursor_type="row", zebra_stripes=True, cursor_foreground_priority="renderable")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#filter").display = False
        self.query_one("#mentions", DataTable).add_columns("type", "page", "mention", "entity", "context")
        self.query_one("#mentions", DataTable).focus()
        self.load()

    @work(thread=True, exclusive=True, group="document")
    def load(self) -> None:
        app: MonitorApp = self.app  # type: ignore[assignment]
        try:
            view = app.monitor.document(self.document_id)
        except LegaldocError as error:
            app.call_from_thread(app.notify, str(error), title=f"document {self.document_id}", severity="error")
            return
        except Exception as error:  # never a traceback on the screen
            app.call_from_thread(app.notify, f"{type(error).__name__}: {error}", title=f"document {self.document_id}",
                                 severity="error")  # fmt: skip
            return
        app.call_from_thread(self.show, view)

    def show(self, view: DocumentView | None = None) -> None:
        app: MonitorApp = self.app  # type: ignore[assignment]
        headers = self.query(Header)
        if not headers:  # the screen is being taken down (the app is closing): nothing to show on
            return
        headers.first().update(app.header_text())
        if view is None:
            return
        self.view = view
        d = view.detail
        error = d.get("error")
        self.query_one("#summary", Static).update(Text.assemble(
            (d["source"], "bold"), f"  document {d['document_id']}, project {d['project']}\n", fmt.status(d["status"]),
            f"  {d['kind'] or '-'}  pages {len(d['pages'])}  ocr {d['ocr_pages']}  chunks {d['chunks']}  "
            f"mentions {len(view.mentions)}  entities {d['entities']}  relationships {d['relationships']}",
            *(("\n", (f"{error['category']} in {error['stage']}: {error['message']}", "red")) if error else ()),
        ))  # fmt: skip
        needle = self.query_one("#filter", FilterInput).value.strip().lower()
        rows = []
        for i, m in enumerate(view.mentions):
            if not _matches(needle, m["type"], m["text"], m["entity"], m["context"]):
                continue
            context = Text(m["context"])
            context.highlight_words([" ".join(m["text"].split())], style="bold yellow")
            rows.append((str(i), [m["type"], str(m["page"]), fmt.clip(m["text"], 40), fmt.clip(m["entity"] or "-", 40), context]))
        _fill(self.query_one("#mentions", DataTable), rows)

    TABLE = "#mentions"

    def redraw(self) -> None:
        self.show(self.view)


class MonitorApp(App):
    """`legaldoc monitor`."""

    TITLE = "legaldoc monitor"
    CSS_PATH = "monitor.tcss"
    BINDINGS = [
        Binding("q", "quit", "Quit"),
        Binding("question_mark", "help", "Help"),
        Binding("tab", "focus_next", "Next panel", show=False),
        Binding("ctrl+s", "screenshot", "Screenshot", show=False),
    ]

    def __init__(self, monitor: Monitor, *, refresh: float = 2.0, read_only: bool = False) -> None:
        super().__init__()
        self.monitor = monitor
        self.refresh_seconds = refresh
        self.read_only = read_only
        self.dashboard: Dashboard | None = None
        self.error: str | None = None
        self.refreshes = 0
        self.failures = 0
        self.actions: list[tuple[str, str, dict[str, Any]]] = []
        self._last_ok: float | None = None

    def on_mount(self) -> None:
        self.push_screen(DashboardScreen())
        self.load()
        self.set_interval(self.refresh_seconds, self.load)

    @work(thread=True, exclusive=True, group="dashboard")
    def load(self) -> None:
        try:
            dashboard = self.monitor.dashboard()
        except LegaldocError as error:
            self.call_from_thread(self.disconnected, error)
            return
        except Exception as error:  # never a traceback: the header says what happened
            self.call_from_thread(self.disconnected, error)
            return
        self.call_from_thread(self.loaded, dashboard)

    def loaded(self, dashboard: Dashboard) -> None:
        self.dashboard = dashboard
        self.connected_again()
        self.refreshes += 1
        for screen in self.screen_stack:
            if isinstance(screen, DashboardScreen):
                screen.show(dashboard)

    def connected_again(self) -> None:
        self.error = None
        self._last_ok = time.monotonic()

    def disconnected(self, error: Exception) -> None:
        self.error = error.message if isinstance(error, LegaldocError) else f"{type(error).__name__}: {error}"
        self.failures += 1
        for screen in self.screen_stack:
            if isinstance(screen, DashboardScreen | BatchScreen):
                screen.show(None)

    def header_text(self) -> Text:
        d = self.dashboard
        text = Text.assemble(("legaldoc monitor ", "bold"))
        if self.error:
            age = f"; data {fmt.duration(time.monotonic() - self._last_ok)} old" if self._last_ok else ""
            text.append(f"● disconnected{age}, retrying every {self.refresh_seconds:g}s: ", style="bold red")
            text.append(fmt.clip(self.error, 120), style="red")
            return text
        if d is None:
            return text.append("connecting…", style="yellow")
        text.append("● connected ", style="bold green")
        for label, value, style in (
            ("active batches", str(d.active_count), "bold"),
            ("docs/min", f"{d.docs_per_minute:.1f}", "bold"),
            ("failed docs 24h", str(d.failures_24h), "bold red" if d.failures_24h else "bold"),
            ("errors", str(d.attempts_failed_24h), "bold"),
            ("workers", f"{d.workers_alive}/{len(d.workers)}", "bold" if d.workers_alive else "bold red"),
            ("Redis", fmt.size(d.memory), "bold"),
        ):
            text.append(f"│ {label} ", style="grey62")
            text.append(f"{value} ", style=style)
        text.append(f"│ {fmt.clip_path(self.monitor.where, 40)}", style="grey62")
        return text

    def action_screenshot(self, filename: str | None = None, path: str | None = None) -> None:
        """Ctrl+S: an SVG of the screen in the current folder (Textual's default is ~/Downloads)."""
        try:
            saved = self.save_screenshot(filename, path or "./")
        except OSError as error:
            self.notify(f"could not save the screenshot: {error}", severity="error")
            return
        self.notify(f"saved {saved}", title="screenshot")

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen(self.refresh_seconds))
