from flask import Blueprint

from neuronscope.services import services

bp = Blueprint("health", __name__)


@bp.get("/health")
def health():
    svc = services()
    manager = svc.manager
    current = manager.peek()
    return {
        "status": "healthy",
        "message": "NeuronScope API server is running",
        "model_name": current.name if current else None,
        "model_ready": current is not None,
        "loading_model": manager.loading_name,
        "waiting_for_model": manager.waiting,
        "jobs": svc.long_runs.jobs.activity(),
    }
