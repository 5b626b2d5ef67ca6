#!/usr/bin/env python3
"""Start the NeuronScope API on a production WSGI server (waitress).

Settings come from the environment (see neuronscope/config.py and README.md);
the flags below override them.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from waitress import serve

from neuronscope import create_app
from neuronscope.api.long_running import prepare_call
from neuronscope.config import Settings
from neuronscope.services.corpora import DEFAULT_CORPUS
from neuronscope.errors import NeuronScopeError


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Run the NeuronScope API server.")
    parser.add_argument("--host", help="address to bind (env HOST, default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (env PORT, default 5001)")
    parser.add_argument("--model", help="model to load at start-up (env NEURONSCOPE_MODEL, default the embedded SmolLM2)")
    parser.add_argument("--device", help="auto, cpu or cuda (env NEURONSCOPE_DEVICE, default auto)")
    parser.add_argument("--data-dir", help="where every file is written (env NEURONSCOPE_DATA_DIR, default data/)")
    parser.add_argument("--threads", type=int, help="WSGI worker threads (env NEURONSCOPE_THREADS, default 8)")
    parser.add_argument("--no-preload", action="store_true", help="load the model on the first request instead of at start-up")
    parser.add_argument(
        "--no-corpus-index", action="store_true",
        help="do not index the default corpus in the background at start-up (env NEURONSCOPE_INDEX_DEFAULT_CORPUS=0)",
    )
    parser.add_argument("--log-level", default="INFO", help="logging level (default INFO)")
    return parser.parse_args(argv)


def start_default_indexing(app, log: logging.Logger) -> None:
    """Queue the indexing of the default corpus for the loaded model as a job (a no-op when done before)."""
    svc = app.extensions["neuronscope"]
    try:
        job = svc.long_runs.submit(prepare_call(svc, "corpora/index", {"corpus": DEFAULT_CORPUS}))
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
    serve(app, host=settings.host, port=settings.port, threads=settings.threads, ident="NeuronScope")
    return 0


if __name__ == "__main__":
    sys.exit(main())
