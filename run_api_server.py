#!/usr/bin/env python3
"""Start the NeuronScope API on a production WSGI server (waitress).

Settings come from the environment (see neuronscope/config.py and README.md);
the flags below override them.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import socket
import sys
import time

from waitress.channel import HTTPChannel
from waitress.server import BaseWSGIServer, create_server
from waitress.task import ErrorTask

from neuronscope import create_app
from neuronscope.api.long_running import prepare_call
from neuronscope.config import Settings, settings_help
from neuronscope.services.corpora import DEFAULT_CORPUS
from neuronscope.errors import NeuronScopeError


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Run the NeuronScope API server.",
        epilog="settings (environment variables; README.md explains each):\n" + settings_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--host", help="address to bind (env HOST, default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (env PORT, default 5001)")
    parser.add_argument("--model", help="model to load at start-up (env NEURONSCOPE_MODEL, default the embedded SmolLM2)")
    parser.add_argument("--device", help="auto, cpu or cuda (env NEURONSCOPE_DEVICE, default auto)")
    parser.add_argument("--data-dir", help="where every file is written (env NEURONSCOPE_DATA_DIR, default data/)")
    parser.add_argument("--threads", type=int, help="WSGI worker threads (env NEURONSCOPE_THREADS, default 16)")
    parser.add_argument("--no-preload", action="store_true", help="load the model on the first request instead of at start-up")
    parser.add_argument(
        "--no-corpus-index", action="store_true",
        help="do not index the default corpus in the background at start-up (env NEURONSCOPE_INDEX_DEFAULT_CORPUS=0)",
    )
    parser.add_argument("--log-level", default="INFO", help="logging level (default INFO)")
    return parser.parse_args(argv)


WAITRESS_MARGIN = 4
"""waitress's own size limits are this many times the app's, so the app refuses oversized headers
and bodies first (in JSON); beyond waitress's limit (which bounds what it buffers) waitress refuses
them itself, also in JSON (:class:`JsonErrorTask`)."""


class JsonErrorTask(ErrorTask):
    """waitress's own refusals (a body or headers over its limits, a malformed request line) in the
    app's error shape ``{"error", "details"}`` instead of plain text."""

    def execute(self) -> None:
        error = self.request.error
        body = json.dumps({"error": error.reason, "details": str(error.body)}).encode("utf-8")
        self.status = f"{error.code} {error.reason}"
        self.response_headers.append(("Content-Type", "application/json"))
        self.set_close_on_finish()
        self.content_length = len(body)
        self.write(body)
        self.channel.linger_on_close = True


LINGER_SECONDS = 2.0
LINGER_BYTES = 8 * 2**20


class JsonErrorChannel(HTTPChannel):
    """waitress's channel with JSON refusals (:class:`JsonErrorTask`) closed gracefully.

    A refused request may still be arriving (the rest of an oversized body or header block).
    Closing a socket with unread input makes the kernel reset the connection, and a reset can
    make the client discard the answer before reading it. So after a refusal the channel shuts
    its write side (the client reads the answer, then the end of the stream), and reads and drops
    what the client still sends until it closes, for at most ``LINGER_SECONDS`` and
    ``LINGER_BYTES`` (the "lingering close" of Apache and nginx).
    """

    error_task_class = JsonErrorTask
    linger_on_close = False
    lingering_since: float | None = None
    lingered_bytes = 0

    def handle_close(self) -> None:
        if self.linger_on_close and self.lingering_since is None and self.connected:
            try:
                self.socket.shutdown(socket.SHUT_WR)
            except OSError:
                return super().handle_close()
            self.lingering_since, self.will_close = time.monotonic(), False
            return None
        return super().handle_close()

    def readable(self) -> bool:
        return True if self.lingering_since is not None else super().readable()

    def writable(self) -> bool:
        return False if self.lingering_since is not None else super().writable()

    def handle_read(self) -> None:
        if self.lingering_since is None:
            return super().handle_read()
        try:
            data = self.recv(self.adj.recv_bytes)
        except OSError:
            data = b""
        self.lingered_bytes += len(data)
        spent = time.monotonic() - self.lingering_since
        if not data or self.lingered_bytes > LINGER_BYTES or spent > LINGER_SECONDS:
            super().handle_close()
        return None


def waitress_options(settings: Settings) -> dict:
    """Keywords for ``waitress.serve``: address, threads and size limits above the app's own."""
    return {
        "host": settings.host,
        "port": settings.port,
        "threads": settings.threads,
        "ident": "NeuronScope",
        "max_request_body_size": WAITRESS_MARGIN * settings.max_request_bytes,
        "max_request_header_size": WAITRESS_MARGIN * settings.max_header_bytes,
    }


def make_server(app, settings: Settings, **overrides):
    """A waitress server for ``app`` with :func:`waitress_options` (``overrides`` win) whose own
    error answers are JSON."""
    server = create_server(app, **{**waitress_options(settings), **overrides})
    listeners = [server, *getattr(server, "map", {}).values()]
    for listener in listeners:
        if isinstance(listener, BaseWSGIServer):
            listener.channel_class = JsonErrorChannel
    return server


def start_default_indexing(app, log: logging.Logger) -> None:
    """Queue the indexing of the default corpus for the loaded model as a job (a no-op when done before)."""
    svc = app.extensions["neuronscope"]
    try:
        job = svc.long_runs.submit(prepare_call(svc, "corpora/index", {"name": DEFAULT_CORPUS}))
    except NeuronScopeError as exc:
        log.warning("the default corpus is not indexed in the background: %s", exc.details)
        return
    log.info("indexing the default corpus in the background: job %s", job.job_id)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    overrides = {
        key: value
        for key, value in {
            "host": args.host, "port": args.port, "model": args.model, "device": args.device,
            "data_dir": args.data_dir, "threads": args.threads,
        }.items()
        if value is not None
    }
    if args.no_preload:
        overrides["preload_model"] = False
    if args.no_corpus_index:
        overrides["index_default_corpus"] = False
    elif not os.environ.get("NEURONSCOPE_INDEX_DEFAULT_CORPUS", "").strip():
        overrides["index_default_corpus"] = True  # on for the server, off for create_app (tests)
    log = logging.getLogger("neuronscope")
    try:
        settings = Settings.from_env(**overrides)
        app = create_app(settings)
    except ValueError as exc:
        log.error("bad configuration: %s", exc)
        return 2
    if settings.preload_model:
        try:
            app.extensions["neuronscope"].manager.ensure_loaded()
        except NeuronScopeError as exc:
            log.error("could not load %s: %s", settings.model, exc.details)
            return 1
    if settings.index_default_corpus:
        start_default_indexing(app, log)
    log.info("serving on http://%s:%d/api/", settings.host, settings.port)
    server = make_server(app, settings)
    server.print_listen("waitress serving on http://{}:{}")
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    try:
        server.run()
    except KeyboardInterrupt:
        log.info("interrupted")
    finally:
        stop_jobs(app, log)
    return 0


JOB_SHUTDOWN_WAIT_S = 30.0
"""How long a stopping server waits for the running job to reach its next progress step and stop."""


def stop_jobs(app, log: logging.Logger) -> None:
    """Cancel the queued and running jobs, so their files say ``cancelled`` after a restart."""
    if not app.extensions["neuronscope"].long_runs.jobs.shutdown(JOB_SHUTDOWN_WAIT_S):
        log.warning("the running job did not stop within %.0f s", JOB_SHUTDOWN_WAIT_S)


if __name__ == "__main__":
    sys.exit(main())
