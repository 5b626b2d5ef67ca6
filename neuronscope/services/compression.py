"""Real pruning: evaluate perplexity, plan which neurons to remove, remove them and save a smaller model."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import torch
from torch import nn

from neuronscope.analysis.evaluation import LossReport, next_token_loss
from neuronscope.analysis.progress import ProgressFn, no_progress, scaled
from neuronscope.analysis.calibration import Calibration
from neuronscope.analysis.pruning_plan import select_neurons
from neuronscope.analysis.recovery import Recovery, recover
from neuronscope.analysis.scores import CALIBRATED_METHODS, SCORE_METHODS, SCORERS
from neuronscope.analysis.compensation import compensate, dense_layers
from neuronscope.analysis.surgery import kept_neurons, parameter_count, parameters_per_neuron, pruned_copy
from neuronscope.config import Settings
from neuronscope.errors import BadRequest, Conflict
from neuronscope.modeling.adapters import adapter_for
from neuronscope.modeling.manager import LoadedModel, ModelManager, release_memory
from neuronscope.services.calibration import calibration, neuron_scores, pad_id, token_pieces
from neuronscope.services.evaluation_set import (
    DefaultSets,
    Evaluation,
    TextSet,
    check_overlap,
    evaluation_record,
    token_digest,
)
from neuronscope.services.samples import SampleService
from neuronscope.services.validation import check_groups, encode_texts, token_limit
from neuronscope.services.model_card import model_card
from neuronscope.storage.files import atomic_write_bytes, atomic_write_json
from neuronscope.storage.folders import staged_folder
from neuronscope.storage.quota import StorageQuota
from neuronscope.timestamps import utc_now

METHODS = SCORE_METHODS
MAX_SPARSITY = 0.95
PRUNING_RECORD = "neuronscope_pruning.json"
MODEL_CARD = "README.md"
PLAN_FIELDS = ("method", "scope", "sparsity", "seed", "compensation")
LARGE_LOSS_RATIO = 1.5
BROKEN_RATIO = 10.0


class CompressionService:
    def __init__(self, settings: Settings, manager: ModelManager, samples: SampleService, text_sets: DefaultSets):
        self.settings = settings
        self.manager = manager
        self.samples = samples
        self.text_sets = text_sets
        self.quota = StorageQuota(settings, PRUNING_RECORD)

    # -- texts ---------------------------------------------------------------------------------

    def _texts(self, lm: LoadedModel, texts: Sequence[str] | None, use_samples: bool, default: TextSet) -> TextSet:
        """The given texts, the stored samples that fit the token limit, or the ``default`` set
        (the request has checked that not both are given)."""
        if texts is not None:
            return TextSet("texts", None, tuple(texts))
        if use_samples:
            limit, _ = token_limit(lm, self.settings.max_input_tokens)
            return TextSet("samples", None, tuple(self.samples.fitting(lm, limit)[: self.settings.max_texts]))
        return default

    def evaluation_texts(self, lm: LoadedModel, texts: Sequence[str] | None = None, use_samples: bool = False) -> TextSet:
        """The texts a perplexity is measured on: the given ones, the stored samples, or the default evaluation set."""
        return self._texts(lm, texts, use_samples, self.text_sets.evaluation())

    def sequences(self, lm: LoadedModel, chosen: TextSet) -> Evaluation:
        """``chosen`` as 1-D token id sequences to evaluate on, with their ``evaluation`` record.

        Given texts must fit the token limit (400 otherwise); stored samples that do not were skipped;
        a named set's texts are cut into pieces that fit it, so short-context models can use them too.
        """
        limit, _ = token_limit(lm, self.settings.max_input_tokens)
        if chosen.split is None:
            sequences = [ids[0] for ids in encode_texts(lm, list(chosen.texts), limit)]
        else:
            sequences = [piece for text in chosen.texts for piece in token_pieces(lm, text, limit) if len(piece) >= 2]
        if sum(len(seq) - 1 for seq in sequences) < 1:
            raise BadRequest("the texts are too short: at least one text needs two tokens")
        record = evaluation_record(
            sequences, corpus=chosen.corpus, split=chosen.split, texts=len(chosen.texts), max_length=limit, dtype=lm.model.dtype
        )
        return Evaluation(sequences, record)

    def calibration(
        self,
        lm: LoadedModel,
        texts: Sequence[str] | None,
        use_samples: bool,
        seed: int = 0,
        *,
        evaluation: TextSet,
        allow_overlap: bool = False,
    ) -> tuple[Calibration, str]:
        """The calibration of a plan (the rule of ``services/calibration.py``) and its texts' source;
        400 when its texts overlap the ``evaluation`` texts, unless ``allow_overlap``."""
        chosen = self._texts(lm, texts, use_samples, self.text_sets.calibration())
        check_overlap(chosen.texts, evaluation.texts, allow_overlap)
        return calibration(lm, chosen.texts, self.settings.max_input_tokens, seed), chosen.source

    def _recovery_texts(
        self, lm: LoadedModel, inputs: Calibration, given: Sequence[str] | None, evaluation: TextSet, allow_overlap: bool
    ) -> tuple[list[torch.Tensor], str]:
        """What recovery trains on (1-D token ids each) and its source: the ``given`` calibration texts'
        sequences, else the default recovery texts (the whole calibration split), checked for overlap."""
        if given is not None:
            return inputs.sequences, "texts"
        chosen = self.text_sets.recovery()
        check_overlap(chosen.texts, evaluation.texts, allow_overlap)
        return self.sequences(lm, chosen).sequences, chosen.source

    def loss(
        self, lm: LoadedModel, model, sequences, progress: ProgressFn = no_progress, ablate=None
    ) -> LossReport:
        """Next-token loss of ``model`` (the loaded one or a pruned copy) with ``lm``'s tokenizer and adapter."""
        return next_token_loss(
            model, sequences, adapter=lm.adapter, ablate=ablate, pad_id=pad_id(lm), progress=progress
        )

    # -- neurons -------------------------------------------------------------------------------

    def _check_groups(self, lm: LoadedModel, groups: Mapping[int, Sequence[int]], *, keep_one: bool) -> dict[int, list[int]]:
        """``{layer: neurons}`` checked against the model; with ``keep_one`` no layer may lose every neuron."""
        checked = check_groups(lm, groups)
        for layer, neurons in checked.items():
            if keep_one and len(neurons) >= lm.adapter.d_mlp(layer):
                raise BadRequest(f"layer {layer} would lose all its {len(neurons)} neurons; keep at least one")
        return checked

    def _parameter_change(self, lm: LoadedModel, removed: Mapping[int, Sequence[int]], compensation: str) -> dict:
        """Parameters before and after removing ``removed`` with ``compensation``, which may add
        biases (LLaMA's zero gate and up biases come with the output bias): what apply will save."""
        before = parameter_count(lm.model)
        fewer = sum(len(neurons) * parameters_per_neuron(lm.adapter, layer) for layer, neurons in removed.items())
        if compensation != "none" and any(removed.values()) and lm.adapter.supports_output_bias():
            widths = [lm.adapter.d_mlp(layer) - len(removed.get(layer, ())) for layer in range(lm.adapter.n_layers)]
            fewer -= lm.adapter.added_bias_parameters(widths)
        return {"before": before, "after": before - fewer, "removed": fewer, "reduction": fewer / before}

    def _layers(self, lm: LoadedModel, removed: Mapping[int, Sequence[int]]) -> list[dict]:
        return [
            {
                "layer_index": layer,
                "neurons": lm.adapter.d_mlp(layer),
                "removed": len(removed.get(layer, ())),
                "kept": lm.adapter.d_mlp(layer) - len(removed.get(layer, ())),
            }
            for layer in range(lm.adapter.n_layers)
        ]

    # -- pruned copies and their quality -------------------------------------------------------

    def dense_loss(self, lm: LoadedModel, measured: Evaluation, progress: ProgressFn = no_progress) -> LossReport:
        """The loaded model's loss on ``measured``, memoized per token ids."""
        return lm.memo.get(_dense_key(measured), lambda: self.loss(lm, lm.model, measured.sequences, progress))

    def dense_loss_known(self, lm: LoadedModel) -> bool:
        """Whether the loaded model's loss on the default evaluation set is memoized already (a cost
        estimate then counts no pass for it)."""
        return _dense_known(lm, self.sequences(lm, self.text_sets.evaluation()))

    def compressed(
        self,
        lm: LoadedModel,
        removed: Mapping[int, Sequence[int]],
        compensation: str,
        inputs: Calibration,
        progress: ProgressFn = no_progress,
    ) -> tuple[nn.Module, list[dict]]:
        """A copy of the loaded model with ``removed`` gone and ``compensation`` applied (from the
        calibration ``inputs``), and the per-layer compensation report; the served model is not touched."""
        _require_compensations(lm, [compensation])
        pruned = pruned_copy(lm.model, removed)
        if compensation == "none":
            return pruned, []
        try:
            with_outputs = compensation == "reconstruct"
            layers = lm.memo.get(
                ("dense_layers", inputs.digest(), with_outputs),
                lambda: dense_layers(
                    lm.adapter, inputs.sequences, range(lm.adapter.n_layers), with_outputs, scaled(progress, 0.0, 0.5)
                ),
            )
            kept = {layer: kept_neurons(lm.adapter.d_mlp(layer), neurons) for layer, neurons in removed.items()}
            report = compensate(
                lm.adapter, adapter_for(pruned), removed, kept, compensation, inputs.sequences, layers, scaled(progress, 0.5, 1.0)
            )
        except BaseException:
            del pruned
            release_memory()
            raise
        return pruned, report

    def quality(
        self,
        lm: LoadedModel,
        removed: Mapping[int, Sequence[int]],
        compensation: str,
        inputs: Calibration,
        measured: Evaluation,
        progress: ProgressFn = no_progress,
    ) -> dict:
        """Perplexity before and after removing ``removed`` with ``compensation``, measured on a
        temporary copy (nothing written): the plan's estimate and the sweep's row."""
        dense = 0.0 if _dense_known(lm, measured) else 0.4
        copied = dense + 0.3 * (1.0 - dense)
        before = self.dense_loss(lm, measured, scaled(progress, 0.0, dense))
        pruned, report = self.compressed(lm, removed, compensation, inputs, scaled(progress, dense, copied))
        try:
            after = self.loss(lm, pruned, measured.sequences, scaled(progress, copied, 1.0))
        finally:
            del pruned
            release_memory()
        return {
            "perplexity_before": before.perplexity,
            "perplexity_after": after.perplexity,
            "ratio": after.perplexity / before.perplexity,
            "evaluation": measured.record,
            "compensation_layers": report,
        }

    def _plan_calibration(
        self, lm: LoadedModel, needed: bool, texts, use_samples: bool, seed: int, allow_overlap: bool
    ) -> tuple[Calibration, dict | None]:
        """The calibration a plan or sweep reads when ``needed`` (scores of calibrated methods,
        compensation), and its description (``None`` when not needed)."""
        if not needed:
            return Calibration(seed=seed), None
        inputs, source = self.calibration(
            lm, texts, use_samples, seed, evaluation=self.text_sets.evaluation(), allow_overlap=allow_overlap
        )
        return inputs, {"text_source": source, "texts": len(inputs.sequences), "tokens": inputs.tokens, "sha256": token_digest(inputs.sequences)}

    # -- endpoints -----------------------------------------------------------------------------

    def evaluate(
        self,
        *,
        texts: Sequence[str] | None = None,
        use_samples: bool = False,
        ablate: Mapping[int, Sequence[int]] | None = None,
        progress: ProgressFn = no_progress,
    ) -> dict:
        """Perplexity, mean next-token loss and tokens counted, optionally with neurons ablated (without,
        the loaded model's loss is memoized per token ids, shared with plan estimates and sweeps)."""
        with self.manager.use() as lm:
            removed = self._check_groups(lm, ablate or {}, keep_one=False)
            chosen = self.evaluation_texts(lm, texts, use_samples)
            measured = self.sequences(lm, chosen)
            if removed:
                report = self.loss(lm, lm.model, measured.sequences, progress, ablate=removed)
            else:
                report = self.dense_loss(lm, measured, progress)
            return {
                "model_name": lm.name,
                **report.as_dict(),
                "text_source": chosen.source,
                "evaluation": measured.record,
                "ablated_neurons": sum(len(neurons) for neurons in removed.values()),
            }

    def plan(
        self,
        *,
        sparsity: float,
        method: str,
        scope: str = "layer",
        texts: Sequence[str] | None = None,
        use_samples: bool = False,
        seed: int = 0,
        compensation: str = "none",
        estimate: bool = False,
        allow_overlap: bool = False,
        progress: ProgressFn = no_progress,
    ) -> dict:
        """The neurons to remove for ``sparsity`` of the MLP neurons, chosen by ``method`` within ``scope``
        (the request has checked the values: :class:`neuronscope.api.requests.Plan`); with ``estimate``,
        the perplexity after removing them with ``compensation``, measured on a temporary copy."""
        with self.manager.use() as lm:
            _require_compensations(lm, [compensation])
            if estimate:
                _require_resident(lm, "an estimate")
            needed = method in CALIBRATED_METHODS or compensation != "none"
            inputs, described = self._plan_calibration(lm, needed, texts, use_samples, seed, allow_overlap)
            scores = neuron_scores(lm, method, inputs, scaled(progress, 0.0, 0.5 if estimate else 0.95))
            removed = select_neurons(scores, sparsity, scope)
            total = sum(lm.adapter.d_mlp(layer) for layer in range(lm.adapter.n_layers))
            count = sum(len(neurons) for neurons in removed.values())
            estimated = None
            if estimate:
                measured = self.sequences(lm, self.text_sets.evaluation())
                estimated = self.quality(lm, removed, compensation, inputs, measured, scaled(progress, 0.5, 1.0))
            progress(1.0, "plan ready")
            return {
                "model_name": lm.name,
                "method": method,
                "scope": scope,
                "sparsity": sparsity,
                "seed": seed if SCORERS[method].seeded else None,
                "compensation": compensation,
                "calibration": described,
                "total_neurons": total,
                "removed_neurons": count,
                "achieved_sparsity": count / total,
                "layers": self._layers(lm, removed),
                "parameters": self._parameter_change(lm, removed, compensation),
                "neurons": [{"layer_index": layer, "neuron_indices": neurons} for layer, neurons in removed.items()],
                "estimate": estimated,
                "warnings": quality_warnings(estimated["ratio"]) if estimated else [],
            }

    def apply(
        self,
        *,
        neurons: Mapping[int, Sequence[int]],
        output_name: str,
        plan_model: str | None = None,
        plan_info: Mapping | None = None,
        texts: Sequence[str] | None = None,
        use_samples: bool = False,
        evaluate: bool = True,
        compensation: str = "none",
        calibration_texts: Sequence[str] | None = None,
        allow_overlap: bool = False,
        max_perplexity_ratio: float | None = None,
        recovery: Recovery | None = None,
        progress: ProgressFn = no_progress,
    ) -> dict:
        """Remove ``neurons`` from a copy of the loaded model, compensate, and save it as ``output_name``.

        The served model is never modified: the neurons are removed from a deep copy, which is
        saved to ``<models dir>/<output_name>/`` through a staged folder and then dropped.
        ``output_name`` is a plain new name (checked by :class:`neuronscope.api.requests.Apply`).
        With ``max_perplexity_ratio``, a copy whose measured ratio exceeds it is not saved (409).
        """
        target = self.settings.resolved_models_dir / output_name
        with self.manager.use() as lm:
            removed = self._check_apply(lm, target, plan_model, neurons)
            _require_compensations(lm, [compensation])
            self.quota.check_room_for_model(lm.parameter_bytes())
            chosen = self.evaluation_texts(lm, texts, use_samples)
            inputs = Calibration()
            if compensation != "none" or (recovery is not None and calibration_texts is not None):
                inputs, _ = self.calibration(lm, calibration_texts, False, evaluation=chosen, allow_overlap=allow_overlap)
            training, source = self._recovery_texts(lm, inputs, calibration_texts, chosen, allow_overlap) if recovery else ([], None)
            measured = self.sequences(lm, chosen) if evaluate else Evaluation([], {})
            before = self.dense_loss(lm, measured, scaled(progress, 0.0, 0.4)) if evaluate else None
            pruned, report = self.compressed(lm, removed, compensation, inputs, scaled(progress, 0.4, 0.45))
            try:
                recovered = None
                if recovery is not None:
                    recovered = self._recovered(lm, pruned, training, source, recovery, scaled(progress, 0.45, 0.7))
                after = self.loss(lm, pruned, measured.sequences, scaled(progress, 0.7, 0.85)) if evaluate else None
                ratio = after.perplexity / before.perplexity if evaluate else None
                if max_perplexity_ratio is not None and ratio > max_perplexity_ratio:
                    raise Conflict(
                        f"removing these neurons multiplies perplexity by {ratio:.6g}, over max_perplexity_ratio "
                        f"{max_perplexity_ratio:g}; nothing was saved"
                    )
                sizes = _mlp_sizes(pruned)
                parameters = _parameter_counts(lm.model, pruned)
                evaluation = {
                    **measured.record, "text_source": chosen.source, "before": before.as_dict(), "after": after.as_dict()
                } if evaluate else None
                record = _record(lm, plan_info, removed, sizes, compensation, recovered, parameters, evaluation)
                _save(target, output_name, pruned, lm.tokenizer, record)
                progress(1.0, f"saved {output_name}")
            finally:
                del pruned
                release_memory()
            source_model = lm.name
        return {
            "output_name": output_name,
            "source_model": source_model,
            "location": f"models/{output_name}",
            "removed_neurons": sum(len(idx) for idx in removed.values()),
            "mlp_sizes": sizes,
            "per_layer_sizes_differ": len(set(sizes)) > 1,
            "loads_with_transformers": len(set(sizes)) == 1,
            "parameters": parameters,
            "files": _folder_sizes(target),
            "compensation": compensation,
            "compensation_layers": report,
            "recovery": recovered,
            "evaluation": evaluation,
            "perplexity_before": before.perplexity if evaluate else None,
            "perplexity_after": after.perplexity if evaluate else None,
            "ratio": ratio,
            "warnings": quality_warnings(ratio) if evaluate else [],
            "switch_with": {"endpoint": "POST /api/models/switch", "body": {"model_name": output_name}},
        }

    def _recovered(
        self, lm: LoadedModel, pruned, training: list[torch.Tensor], source: str, recovery: Recovery, progress: ProgressFn
    ) -> dict:
        """Distil ``pruned`` toward the loaded model on ``training`` (in place); the recovery report."""
        limit, _ = token_limit(lm, self.settings.max_input_tokens)
        return {
            **recover(pruned, lm.model, training, recovery, limit, progress),
            "text_source": source,
            "texts_tokens": sum(len(seq) for seq in training),
        }

    def sweep(
        self,
        *,
        methods: Sequence[str],
        sparsities: Sequence[float],
        compensations: Sequence[str] = ("none",),
        scope: str = "layer",
        seed: int = 0,
        texts: Sequence[str] | None = None,
        use_samples: bool = False,
        allow_overlap: bool = False,
        progress: ProgressFn = no_progress,
    ) -> dict:
        """The perplexity of every plan ``method`` x ``sparsity`` x ``compensation`` on the default
        evaluation set (each row is what :meth:`plan` with ``estimate`` answers for it); requests
        waiting for the model run between rows."""
        with self.manager.use() as lm:
            _require_resident(lm, "a sweep")
            _require_compensations(lm, compensations)
            needed = any(m in CALIBRATED_METHODS for m in methods) or any(c != "none" for c in compensations)
            inputs, described = self._plan_calibration(lm, needed, texts, use_samples, seed, allow_overlap)
            measured = self.sequences(lm, self.text_sets.evaluation())
            total, rows = len(methods) * len(sparsities) * len(compensations), []
            first = 0.0 if _dense_known(lm, measured) else 1.0 / (total + 1)
            dense = self.dense_loss(lm, measured, scaled(progress, 0.0, first))
            for method in methods:
                scores = neuron_scores(lm, method, inputs)
                for sparsity in sparsities:
                    removed = select_neurons(scores, sparsity, scope)
                    for compensation in compensations:
                        if rows:
                            self.manager.let_waiting_run()
                        share = (1.0 - first) / total
                        step = scaled(progress, first + share * len(rows), first + share * (len(rows) + 1))
                        quality = self.quality(lm, removed, compensation, inputs, measured, step)
                        rows.append({
                            "method": method,
                            "sparsity": sparsity,
                            "compensation": compensation,
                            "perplexity": quality["perplexity_after"],
                            "ratio": quality["ratio"],
                            "parameters_after": self._parameter_change(lm, removed, compensation)["after"],
                        })
            progress(1.0, f"swept {total} plans")
            return {
                "model_name": lm.name,
                "scope": scope,
                "seed": seed,
                "calibration": described,
                "dense_perplexity": dense.perplexity,
                "evaluation": measured.record,
                "rows": rows,
            }

    def _check_apply(
        self, lm: LoadedModel, target: Path, plan_model: str | None, neurons: Mapping[int, Sequence[int]]
    ) -> dict[int, list[int]]:
        """The neurons to remove, checked: a model held in memory, a free target, the plan's model
        loaded, each layer keeps one."""
        _require_resident(lm, "removing neurons")
        same = [p.name for p in target.parent.iterdir() if p.name.casefold() == target.name.casefold()] if target.parent.is_dir() else []
        if same:
            raise BadRequest(f"a model named {same[0]!r} already exists in the models directory (letter case aside, names must differ)")
        if plan_model is not None and plan_model != lm.name:
            raise BadRequest(f"the plan was made for {plan_model!r} but the loaded model is {lm.name!r}")
        return self._check_groups(lm, neurons, keep_one=True)


def _require_compensations(lm: LoadedModel, compensations: Sequence[str]) -> None:
    """400 for ``bias`` on an architecture whose MLP output projection cannot have a bias (and still
    load with stock transformers); ``reconstruct`` then refits the kept rows without one."""
    if "bias" in compensations and not lm.adapter.supports_output_bias():
        raise BadRequest(
            f"compensation 'bias' needs an MLP output bias, which {lm.config.model_type!r} models cannot "
            "have and still load with stock transformers; use 'none' or 'reconstruct' (a refit without a bias)"
        )


def _dense_key(measured: Evaluation) -> tuple:
    """The memo key of the loaded model's loss on ``measured``."""
    return ("dense_loss", measured.record["sha256"], measured.record["batch_tokens"])


def _dense_known(lm: LoadedModel, measured: Evaluation) -> bool:
    """Whether ``lm``'s loss on ``measured`` is memoized (then it takes no time, and no share of the progress)."""
    return _dense_key(measured) in lm.memo


def _require_resident(lm: LoadedModel, work: str) -> None:
    """409 when a device map offloaded some weights: ``work`` copies the whole model (its pruned
    copy), which needs every weight in memory."""
    if lm.offloaded:
        raise Conflict(
            f"{lm.name!r} is spread by NEURONSCOPE_DEVICE_MAP with weights offloaded to CPU or disk; "
            f"{work} copies the whole model, so load it with enough NEURONSCOPE_MAX_MEMORY "
            "for every weight to stay on a device"
        )


def _mlp_sizes(model) -> list[int]:
    adapter = adapter_for(model)
    return [adapter.d_mlp(layer) for layer in range(adapter.n_layers)]


def _save(target: Path, output_name: str, pruned, tokenizer, record: dict) -> None:
    """The pruned model, its tokenizer, pruning record and model card, as folder ``target`` (staged, so
    the folder appears complete or not at all)."""
    with staged_folder(target) as staging:
        pruned.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        atomic_write_json(staging / PRUNING_RECORD, record, indent=1)
        atomic_write_bytes(staging / MODEL_CARD, model_card(output_name, record).encode("utf-8"))


def _parameter_counts(full, pruned) -> dict:
    before, after = parameter_count(full), parameter_count(pruned)
    return {"before": before, "after": after, "removed": before - after, "reduction": (before - after) / before}


def quality_warnings(ratio: float) -> list[str]:
    """What a perplexity ratio means for a user: nothing, a large loss of quality, a broken model."""
    if ratio > BROKEN_RATIO:
        return [f"this plan breaks the model: perplexity x{ratio:.3g} (over x{BROKEN_RATIO:g})"]
    if ratio > LARGE_LOSS_RATIO:
        return [f"large loss of quality: perplexity x{ratio:.3g} (over x{LARGE_LOSS_RATIO:g})"]
    return []


def _record(
    lm: LoadedModel,
    plan: Mapping | None,
    removed: Mapping[int, list[int]],
    sizes: list[int],
    compensation: str,
    recovered: dict | None,
    parameters: dict,
    evaluation: dict | None,
) -> dict:
    """What ``neuronscope_pruning.json`` keeps: provenance, the plan's settings, the removed neurons,
    the kept neurons' original indices per layer, compensation, parameters and the evaluation."""
    summary = None
    if plan:
        summary = {key: plan[key] for key in PLAN_FIELDS if isinstance(plan.get(key), (str, int, float))}
    return {
        "source_model": lm.name,
        "created_at": utc_now(),
        "plan": summary,
        "compensation": compensation,
        "recovery": recovered,
        "removed": [{"layer_index": layer, "neuron_indices": idx} for layer, idx in removed.items()],
        "kept": [
            {"layer_index": layer, "original_indices": kept_neurons(lm.adapter.d_mlp(layer), removed.get(layer, ())).tolist()}
            for layer in range(lm.adapter.n_layers)
        ],
        "mlp_sizes": sizes,
        "parameters": parameters,
        "evaluation": evaluation,
    }


def _folder_sizes(folder: Path) -> dict:
    files = {path.name: path.stat().st_size for path in folder.iterdir() if path.is_file()}
    return {
        "total_bytes": sum(files.values()),
        "weights_bytes": sum(size for name, size in files.items() if name.endswith(".safetensors")),
        "files": files,
    }
