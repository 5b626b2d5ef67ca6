"""Long operations: one registry shared by their own views and by ``POST /api/jobs``.

A long operation registers ``prepare(services, body) -> (params, work)`` under its endpoint
name (the path after ``/api/``). ``prepare`` validates the body (a bad one gets its 400 before
anything is queued) and returns the normalised parameters that determine the result and
``work(progress) -> body``, which calls the service. Its view is then one line::

    @long_operation("pruning/neuron-importance", cacheable=True)
    def _neuron_importance(svc: Services, body: dict) -> tuple[dict, Work]:
        layer = get_int(body, "layer_index", minimum=0)
        ...
        return {"layer_index": layer, ...}, lambda progress: svc.pruning.neuron_importance(layer, ..., progress=progress)

    @bp.post("/pruning/neuron-importance")
    def neuron_importance():
        return run_long("pruning/neuron-importance", json_body())
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from flask import url_for

from neuronscope.api.params import get_bool, query_args
from neuronscope.errors import NotFound
from neuronscope.jobs.job import Job
from neuronscope.services import Services, services
from neuronscope.services.long_runs import LongCall, Work

CACHE_HEADER = "X-NeuronScope-Cache"

Prepare = Callable[[Services, dict], tuple[dict, Work]]


@dataclass(frozen=True)
class LongOperation:
    endpoint: str
    prepare: Prepare
    cacheable: bool
    status: int = 200


LONG_OPERATIONS: dict[str, LongOperation] = {}


def long_operation(endpoint: str, *, cacheable: bool, status: int = 200) -> Callable[[Prepare], Prepare]:
    """Register the decorated ``prepare`` as the long operation ``endpoint``.

    ``cacheable``: the result depends only on the model and the parameters, and running it
    changes nothing (no files written, no index built), so a repeat may come from the cache.
    ``status``: of a synchronous success (201 where the operation creates something).
    """

    def register(prepare: Prepare) -> Prepare:
        LONG_OPERATIONS[endpoint] = LongOperation(endpoint, prepare, cacheable, status)
        return prepare

    return register


def prepare_call(svc: Services, endpoint: str, body: dict) -> LongCall:
    """Validate ``body`` for the long operation ``endpoint``: 404 for an unknown operation, 400 for a bad body."""
    operation = LONG_OPERATIONS.get(endpoint)
    if operation is None:
        known = ", ".join(sorted(LONG_OPERATIONS)) or "none"
        raise NotFound(f"no long operation {endpoint!r}; the long operations are: {known}")
    params, work = operation.prepare(svc, body)
    return LongCall(endpoint, params, work, operation.cacheable)


def run_long(endpoint: str, body: dict):
    """The response of a long operation's view: with ``?async=true`` 202 and a job, else the result.

    A synchronous result of a cacheable operation carries the ``X-NeuronScope-Cache: hit|miss``
    header; a hit also has ``"cached": true`` in its body.
    """
    svc = services()
    call = prepare_call(svc, endpoint, body)
    if get_bool(query_args(), "async", False):
        return accepted(svc.long_runs.submit(call))
    outcome = svc.long_runs.run(call)
    headers = {CACHE_HEADER: "hit" if outcome.cached else "miss"} if call.cacheable else {}
    return outcome.result, LONG_OPERATIONS[endpoint].status, headers


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
