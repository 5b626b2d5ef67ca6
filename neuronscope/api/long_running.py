"""Routes: one decorator per route declares its name, typed request, status, cacheability and async.

::

    @route(bp, "POST", "pruning/neuron-importance", NeuronImportance, cacheable=True, supports_async=True)
    def neuron_importance(svc: Services, req: NeuronImportance, progress: ProgressFn = no_progress) -> dict:
        return svc.pruning.neuron_importance(layers=req.layers, texts=req.input_texts, ..., progress=progress)

The view it registers parses the request once (JSON body for POST, query arguments otherwise;
400 before anything runs), checks its texts against the loaded model's token limit, and calls the
handler. An operation with ``supports_async`` is also a long operation: ``?async=true`` (or
``POST /api/jobs`` naming it) queues it as a job, and a synchronous call must fit the work budget
(``NEURONSCOPE_SYNC_BUDGET_SECONDS``). ``?async=true`` elsewhere is a 400.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable
from urllib.parse import unquote_to_bytes

from flask import Blueprint, request, url_for

from neuronscope.api.csv_export import Table, csv_response, wants_csv
from neuronscope.api.fields import NoFields, Request, query_scalar, single_argument
from neuronscope.api.params import get_bool
from neuronscope.errors import BadRequest, NotFound
from neuronscope.jobs.job import Job
from neuronscope.services import Services, services
from neuronscope.services.long_runs import LongCall
from neuronscope.services.validation import encode_texts

CACHE_HEADER = "X-NeuronScope-Cache"

Handler = Callable[..., Any]


@dataclass(frozen=True)
class Operation:
    """One route: ``name`` is its path after ``/api/`` (a long operation's job endpoint name).

    ``cacheable``: the result depends only on the model and the request, and running it changes
    nothing (no files written, no index built), so a repeat may come from the cache.
    ``status``: of a success (201 where the operation creates something).
    ``table``: the answer's table for ``?format=csv`` (:class:`~neuronscope.api.csv_export.Table`).
    """

    name: str
    request: type[Request]
    handler: Handler
    method: str = "POST"
    cacheable: bool = False
    supports_async: bool = False
    status: int = 200
    table: Table | None = None
    job: str | None = None

    @property
    def job_name(self) -> str:
        """The name of its jobs (``POST /api/jobs`` ``endpoint``): ``job``, else the route's name."""
        return self.job or self.name

    def parse(self, svc: Services, source: dict) -> Request:
        """The typed request in ``source``, its texts checked against the loaded model (400 otherwise)."""
        parsed = self.request.parse(source, svc.settings)
        check_token_limits(svc, parsed.free_texts())
        return parsed

    def long_call(self, svc: Services, parsed: Request) -> LongCall:
        def estimate(lm: Any) -> int:
            parsed.check_model(lm)
            return parsed.forward_tokens(lm, svc)

        params = parsed.as_body()
        key = {**params, "samples": svc.samples.list()[: svc.settings.max_texts]} if params.get("use_samples") else params
        return LongCall(
            self.job_name,
            params,
            lambda progress: self.handler(svc, parsed, progress=progress),
            self.cacheable,
            cache_params=key,
            estimate=estimate,
        )


ASYNC_VIEWS: set[str] = set()
"""Flask endpoint names of the views that accept ``?async=true``."""
CSV_VIEWS: set[str] = set()
"""Flask endpoint names of the views that accept ``?format=csv``."""
OPERATIONS: dict[str, Operation] = {}
"""Every route declared with :func:`route`, by ``"METHOD name"``."""
LONG_OPERATIONS: dict[str, Operation] = {}
"""The operations that run as jobs (``supports_async``): what ``POST /api/jobs`` accepts."""


def route(
    bp: Blueprint,
    method: str,
    name: str,
    request_type: type[Request],
    *,
    cacheable: bool = False,
    supports_async: bool = False,
    status: int = 200,
    table: Table | None = None,
    job: str | None = None,
) -> Callable[[Handler], Handler]:
    """Register the decorated handler as ``method /api/<name>``. ``name`` may hold ``<converter:arg>``
    segments: passed to the handler as keyword arguments, or, where the request declares a field of
    that name (long operations, whose jobs hold the whole request), read into that field. ``job``
    names a long operation's jobs when its route name holds such segments."""

    def register(handler: Handler) -> Handler:
        operation = Operation(name, request_type, handler, method, cacheable, supports_async, status, table, job)
        OPERATIONS[f"{method} {name}"] = operation
        if supports_async:
            LONG_OPERATIONS[operation.job_name] = operation
            ASYNC_VIEWS.add(f"{bp.name}.{handler.__name__}")
        if table is not None:
            CSV_VIEWS.add(f"{bp.name}.{handler.__name__}")

        def view(**path: Any):
            return respond(operation, **path)

        bp.add_url_rule(f"/{name}", endpoint=handler.__name__, view_func=view, methods=[method])
        return handler

    return register


def file_routes(bp: Blueprint, area: str, service: Callable[[Services], Any], table: Table | None = None) -> None:
    """``GET /api/<area>/files`` (the list) and ``GET /api/<area>/<name>.json`` (one file, with
    ``table`` for ``?format=csv``) of a folder of result files kept by ``service(svc)``, which has
    ``list_files()`` and ``read(name)``."""

    @route(bp, "GET", f"{area}/files", NoFields)
    def list_files(svc: Services, r: NoFields) -> dict:
        return service(svc).list_files()

    @route(bp, "GET", f"{area}/<json_file:filename>", NoFields, table=table)
    def read_file(svc: Services, r: NoFields, filename: str) -> dict:
        return service(svc).read(filename)


def respond(operation: Operation, **path: Any):
    """The response of ``operation`` to the current request."""
    svc = services()
    source = operation.request.from_body() if operation.method == "POST" else operation.request.from_query(request.args)
    fields = set(operation.request.field_names())
    source.update({key: value for key, value in path.items() if key in fields})
    path = {key: value for key, value in path.items() if key not in fields}
    parsed = operation.parse(svc, source)
    if not operation.supports_async:
        result = operation.handler(svc, parsed, **path)
        return result if isinstance(result, tuple) else _answer(operation, result, {}, path)
    call = operation.long_call(svc, parsed)
    if async_flag():
        return accepted(svc.long_runs.submit(call))
    outcome = svc.long_runs.run(call, budget=svc.settings.sync_budget_seconds)
    headers = {CACHE_HEADER: "hit" if outcome.cached else "miss"} if call.cacheable else {}
    return _answer(operation, outcome.result, headers, path)


def _answer(operation: Operation, body: dict, headers: dict, path: dict):
    """``body`` as JSON, or its table as CSV where the route has one and ``?format=csv`` asks for it."""
    if operation.table is not None and wants_csv():
        return csv_response(*operation.table(body, path), headers=headers)
    return body, operation.status, headers


def prepare_call(svc: Services, endpoint: str, body: dict) -> LongCall:
    """Validate ``body`` for the long operation ``endpoint``: 404 for an unknown operation, 400 for a bad body."""
    operation = LONG_OPERATIONS.get(endpoint)
    if operation is None:
        known = ", ".join(sorted(LONG_OPERATIONS)) or "none"
        raise NotFound(f"no long operation {endpoint!r}; the long operations are: {known}")
    return operation.long_call(svc, operation.parse(svc, body))


def check_token_limits(svc: Services, texts: list[str], *, load: bool = False) -> None:
    """400 when a text is over the token limit of the loaded model (``load``: load the default model
    first when none is loaded; otherwise the check waits for the service, which repeats it)."""
    if not texts:
        return
    lm = svc.manager.peek() or (svc.manager.ensure_loaded() if load else None)
    if lm is not None:
        encode_texts(lm, texts, svc.settings.max_input_tokens)


def async_flag() -> bool:
    """``?async=true|false`` (400 for another value)."""
    raw = single_argument(request.args, "async") if "async" in request.args else None
    return raw is not None and get_bool({"async": query_scalar(raw, "boolean")}, "async")


def check_query_string() -> None:
    """Before every /api request: the query string must be UTF-8 once percent-decoded; ``?async=true``
    where the route cannot run as a job, and ``?format=`` where it has no table, are a 400, not
    ignored, and so is either given twice."""
    routed = request.url_rule is not None  # unknown routes and methods keep their 404 / 405
    if not (routed and request.path.startswith("/api/")):
        return
    try:
        unquote_to_bytes(request.query_string).decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("the query string is not valid UTF-8 once percent-decoded") from None
    as_job = async_flag()
    if as_job and request.endpoint not in ASYNC_VIEWS:
        raise BadRequest(f"{request.method} {request.path} does not run as a job: drop ?async=true")
    if "format" in request.args:
        single_argument(request.args, "format")
        if request.endpoint not in CSV_VIEWS:
            raise BadRequest(f"{request.method} {request.path} answers only JSON: drop ?format=")
        if as_job and wants_csv():
            raise BadRequest("a job's result is JSON: ?format=csv is for a synchronous call; drop one of the two")


def accepted(job: Job):
    """202 for a queued job, with its ``Location``."""
    location = url_for("jobs.job_detail", job_id=job.job_id)
    body = {
        "job_id": job.job_id,
        "status": job.status,
        "endpoint": job.endpoint,
        "location": location,
        "events": url_for("jobs.job_events", job_id=job.job_id),
    }
    return body, 202, {"Location": location}
