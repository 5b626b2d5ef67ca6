"""Model listing, details, switching and memory reports."""

from __future__ import annotations

import json
import os

import psutil
import torch

from neuronscope.config import EMBEDDED_MODEL_NAME, Settings
from neuronscope.errors import BadRequest, Conflict, NotFound
from neuronscope.modeling import loading, registry
from neuronscope.modeling.manager import LoadedModel, ModelManager
from neuronscope.services.compression import PRUNING_RECORD
from neuronscope.storage.folders import remove_folder
from neuronscope.storage.quota import StorageQuota, tree_bytes


class ModelService:
    def __init__(self, settings: Settings, manager: ModelManager):
        self.settings = settings
        self.manager = manager

    def _entry(self, name: str) -> registry.ModelEntry | None:
        return registry.local_entry(self.settings.resolved_models_dir, name) or registry.REGISTRY.get(name)

    def _describe(self, entry: registry.ModelEntry, current: LoadedModel | None) -> dict:
        """``entry``'s facts, with live ones and ``loaded`` taken from ``current`` (one snapshot)."""
        source = loading.resolve(entry.name, self.settings)
        info = entry.describe()
        if current is not None and current.name == entry.name:
            info.update(_live_facts(current))
        info.update(
            source=source.kind,
            location=source.location if source.kind != "local" else f"models/{entry.name}",
            availability=loading.availability(source, self.settings),
            loaded=current is not None and current.name == entry.name,
        )
        return info

    def list_models(self) -> dict:
        """``{"models": {name: info}, "current_model": name}`` for the registry and local models,
        built from one snapshot of the current model (a switch in between cannot make it contradict itself)."""
        names = [*registry.REGISTRY, *registry.local_models(self.settings.resolved_models_dir)]
        current = self.manager.peek()
        if current is not None and current.name not in names:
            names.append(current.name)
        models = {}
        for name in names:
            entry = self._entry(name) or _entry_for_loaded(current)
            models[name] = self._describe(entry, current)
        current_name = current.name if current is not None else None
        return {"models": models, "current_model": current_name, "default_model": self.settings.model}

    def model_info(self, name: str) -> dict:
        """Details of one model known to the registry, the models folder, or currently loaded."""
        if not registry.is_valid_name(name):
            raise BadRequest(f"{name!r} is not a model name")
        entry = self._entry(name)
        current = self.manager.peek()
        if entry is None and current is not None and current.name == name:
            entry = _entry_for_loaded(current)
        if entry is None:
            raise NotFound(f"unknown model {name!r}; GET /api/models lists the known ones")
        return {**self._describe(entry, current), "pruning": self._pruning_record(name)}

    def _pruning_record(self, name: str) -> dict | None:
        """A model saved by apply: its ``neuronscope_pruning.json`` (provenance, removed neurons, the
        kept neurons' original indices, compensation, evaluation); ``None`` for any other model."""
        if registry.local_entry(self.settings.resolved_models_dir, name) is None:
            return None
        path = self.settings.resolved_models_dir / name / PRUNING_RECORD
        try:
            return json.loads(path.read_text("utf-8"))
        except (OSError, ValueError):
            return None

    def switch(self, name: str) -> dict:
        """Load ``name`` (registry, local folder or Hub id) and make it the current model."""
        loaded = self.manager.switch(name)
        entry = self._entry(name) or _entry_for_loaded(loaded)
        return {
            "message": f"Successfully switched to {name}",
            "current_model": loaded.name,
            "model_info": self._describe(entry, loaded),
            "memory_usage": self.memory(),
        }

    def delete(self, name: str) -> dict:
        """Delete a model the server saved (``apply``); never the loaded one, never a registry model,
        never a folder someone else put in the models directory (409 for those)."""
        if not registry.is_valid_name(name):
            raise BadRequest(f"{name!r} is not a model name")
        if name in registry.REGISTRY:
            raise Conflict(f"{name!r} is a registry model, not a model the server saved")
        folder = registry.local_model_dir(self.settings.resolved_models_dir, name)
        if folder is None:
            raise NotFound(f"no saved model {name!r}; GET /api/models lists the local ones")
        if name not in StorageQuota(self.settings, PRUNING_RECORD).saved_models():
            raise Conflict(f"{name!r} was not saved by NeuronScope (it has no {PRUNING_RECORD}); remove it by hand")
        if name in (self.manager.current_name, self.manager.loading_name):
            raise Conflict(f"{name!r} is the loaded model; switch to another model first")
        freed = tree_bytes(folder)
        remove_folder(folder)
        return {"deleted": name, "freed_bytes": freed}

    def memory(self) -> dict:
        """System, process, model and GPU memory in bytes."""
        vm = psutil.virtual_memory()
        current = self.manager.peek()
        report = {
            "total_memory": vm.total,
            "used_memory": vm.total - vm.available,
            "available_memory": vm.available,
            "model_memory": current.parameter_bytes() if current else 0,
            "process_rss": psutil.Process(os.getpid()).memory_info().rss,
            "current_model": current.name if current else None,
            "device": str(current.device) if current else None,
            "placement": current.placement() if current else {},
        }
        if torch.cuda.is_available():
            free, total = torch.cuda.mem_get_info()
            report["gpu"] = {
                "total_memory": total,
                "free_memory": free,
                "allocated_memory": torch.cuda.memory_allocated(),
                "reserved_memory": torch.cuda.memory_reserved(),
            }
        return report


def _live_facts(current: LoadedModel) -> dict:
    """The loaded model's shape as it is: ``mlp_sizes`` per layer (they differ in a model pruned
    with a global scope), ``intermediate_size`` their largest, as the saved config says."""
    config = current.config
    sizes = [current.adapter.d_mlp(layer) for layer in range(current.adapter.n_layers)]
    return {
        "layers": current.adapter.n_layers,
        "hidden_size": current.adapter.d_model,
        "intermediate_size": max(sizes),
        "mlp_sizes": sizes,
        "num_attention_heads": getattr(config, "num_attention_heads", None),
        "parameters": sum(p.numel() for p in current.model.parameters()),
    }


def _entry_for_loaded(current: LoadedModel) -> registry.ModelEntry:
    description = "The embedded model" if current.name == EMBEDDED_MODEL_NAME else f"Hub model {current.name}"
    return registry.entry_from_config(current.name, current.config.to_dict(), description)
