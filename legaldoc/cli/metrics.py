"""`legaldoc metrics serve|show`: Prometheus metrics of the installation."""

from __future__ import annotations

import sys
import threading
from typing import Annotated

import typer

from legaldoc.cli.common import connected
from legaldoc.cli.output import fail, handled, note
from legaldoc.errors import UsageError
from legaldoc.services import metrics as service
from legaldoc.services.wiring import Runtime

app = typer.Typer(help="Prometheus metrics: queues, workers, batches, stage durations, failures, caches, providers.",
                  no_args_is_help=True)  # fmt: skip


@app.command()
@connected("redis")
def serve(
    rt: Runtime,
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="TCP port of /metrics.")] = 9808,
    host: Annotated[str, typer.Option("--host", help="Address to listen on (0.0.0.0 for every interface).")] = "127.0.0.1",
) -> None:
    """Answer Prometheus scrapes on http://HOST:PORT/metrics until interrupted (Ctrl-C, SIGTERM)."""
    with handled():
        rt.require("state", "broker")
    stop = threading.Event()
    try:
        server, thread = service.serve(rt, host, port)
    except OSError as error:
        fail(UsageError(f"cannot listen on {host}:{port}: {error.strerror}", hint="choose another --port"))
    note(f"serving metrics on http://{host}:{port}/metrics")
    try:
        stop.wait()
    finally:
        server.shutdown()
        thread.join(5)


@app.command()
@connected("redis")
def show(rt: Runtime) -> None:
    """Print the metrics once, in Prometheus's text format (for a node exporter's textfile collector)."""
    with handled():
        rt.require("state", "broker")
    sys.stdout.write(service.exposition(rt).decode())
