"""Background jobs (submit, list, inspect, cancel, follow as Server-Sent Events) and the result cache."""

from __future__ import annotations

import json
from typing import Iterator

from flask import Blueprint, Response

from neuronscope.api import requests as req
from neuronscope.api.long_running import accepted, prepare_call, route
from neuronscope.jobs.job import FINISHED
from neuronscope.services import Services, services

bp = Blueprint("jobs", __name__)


@route(bp, "POST", "jobs", req.SubmitJob)
def submit_job(svc: Services, r: req.SubmitJob):
    return accepted(svc.long_runs.submit(prepare_call(svc, r.endpoint, r.body or {})))


@route(bp, "GET", "jobs", req.ListJobs)
def list_jobs(svc: Services, r: req.ListJobs) -> dict:
    return {"jobs": svc.long_runs.jobs.recent(r.status)}


@bp.get("/jobs/<job_id>")
def job_detail(job_id: str):
    return services().long_runs.jobs.describe(job_id)


@bp.delete("/jobs/<job_id>")
def cancel_job(job_id: str):
    return services().long_runs.jobs.cancel(job_id)


@bp.get("/jobs/<job_id>/events")
def job_events(job_id: str):
    svc = services()
    runner = svc.long_runs.jobs
    runner.describe(job_id)  # 404 now, before the stream starts
    views = runner.follow(
        job_id, heartbeat_s=svc.settings.event_heartbeat_seconds, lifetime_s=svc.settings.event_stream_seconds
    )
    return Response(
        svc.long_runs.streams.open(_server_sent_events(views)),
        mimetype="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@bp.get("/cache")
def cache_stats():
    return services().long_runs.cache.stats()


@bp.delete("/cache")
def clear_cache():
    return {"cleared": services().long_runs.cache.clear()}


def _server_sent_events(views: Iterator[dict | None]) -> Iterator[str]:
    """One ``data:`` event per job view (``None`` becomes a keep-alive comment, whose write also
    finds a client that went away); a comment says when the stream ends before the job does."""
    finished = False
    for view in views:
        if view is None:
            yield ": keep-alive\n\n"
            continue
        finished = view["status"] in FINISHED
        yield f"data: {json.dumps(view)}\n\n"
    if not finished:
        yield ": stream lifetime reached; reconnect to follow the job\n\n"
