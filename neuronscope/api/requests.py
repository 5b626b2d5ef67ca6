"""The typed request of every route: fields, defaults, limits and the checks across fields.

Each is parsed once from the JSON body (or the query arguments of a GET/DELETE); ``as_body()`` is
the request in API names (job ``params``, cache keys). The choices come from the modules that
define them, and tests/api/test_request_schemas.py ties each type to docs/openapi.yaml.
"""

from __future__ import annotations

import dataclasses
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar, Iterator, Sequence

from neuronscope.analysis.attribution import ATTRIBUTION_PROBES
from neuronscope.analysis.compensation import COMPENSATIONS
from neuronscope.analysis.recovery import PRECISIONS, Recovery
from neuronscope.analysis.pruning_plan import SCOPES
from neuronscope.api.fields import (
    Request,
    boolean,
    choice,
    custom,
    integer,
    integers,
    number,
    string,
    text,
)
from neuronscope.api.fields import texts as text_list
from neuronscope.api.params import MAX_INT, get_float, get_int, get_int_list, get_list, get_str
from neuronscope.config import Settings
from neuronscope.errors import BadRequest
from neuronscope.jobs.job import CANCELLED, DONE, FAILED, QUEUED, RUNNING
from neuronscope.modeling import registry
from neuronscope.services.compression import CALIBRATED_METHODS, MAX_SPARSITY, METHODS, PLAN_FIELDS
from neuronscope.services.corpora import DEFAULT_CORPUS
from neuronscope.services.pruning import ABLATION_KINDS, EXPORT_FILES, IMPORTANCE_METHODS, SCORE_METHODS
from neuronscope.services.validation import check_groups, check_layer, check_neurons, token_count
from neuronscope.storage.corpora import check_corpus_name

MAX_LAYERS = 1024
SEARCH_TOKEN_K = 100
"""Most neurons a token search returns."""
SEARCH_TEXT_K = 50
"""Most neurons per token a text search returns."""
MAX_NAME_CHARS = registry.MAX_NAME_CHARS
JOB_STATUSES = (QUEUED, RUNNING, DONE, FAILED, CANCELLED)
TAYLOR_PASSES = 3
RECOVERY_PASSES = 4
"""Forward-pass equivalents per token of a recovery step: the teacher's forward, the student's forward and backward."""
"""Forward-pass equivalents per token of a gradient (Taylor / attribution) pass: forward + backward."""

NeuronGroups = dict[int, tuple[int, ...]]
NEURON_GROUPS_SCHEMA = {"$ref": "#/components/schemas/NeuronGroups"}


def _tokens(lm: Any, items: Sequence[str]) -> int:
    return sum(token_count(lm, item) for item in items)


# -- shared field readers ------------------------------------------------------------------


@contextmanager
def _naming(where: str) -> Iterator[None]:
    """A field error raised within the object at ``where`` (``neurons[2]``, ``plan``) names it:
    ``where: ...``."""
    try:
        yield
    except BadRequest as exc:
        raise BadRequest(f"{where}: {exc.details}") from exc


def read_neuron_groups(source: dict, key: str, settings: Settings) -> NeuronGroups:
    """``[{"layer_index": L, "neuron_indices": [...]}, ...]`` as ``{L: (...)}`` (each layer once)."""
    limit = settings.max_neurons_per_request
    items = get_list(source, key, max_items=limit)
    groups: NeuronGroups = {}
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise BadRequest(f"'{key}[{i}]' must be an object with 'layer_index' and 'neuron_indices'")
        with _naming(f"{key}[{i}]"):
            layer = get_int(item, "layer_index", minimum=0)
            neurons = get_int_list(item, "neuron_indices", max_items=limit)
        if layer in groups:
            raise BadRequest(f"'{key}' lists layer {layer} more than once")
        if min(neurons) < 0:
            raise BadRequest(f"'{key}[{i}].neuron_indices' must be >= 0")
        groups[layer] = tuple(neurons)
    return groups


def dump_neuron_groups(groups: NeuronGroups) -> list[dict]:
    return [{"layer_index": layer, "neuron_indices": list(neurons)} for layer, neurons in groups.items()]


@dataclass(frozen=True, kw_only=True)
class TextSource(Request):
    """The optional ``texts`` / ``use_samples`` pair: given texts, the stored samples, or (neither) built-in texts."""

    texts: tuple[str, ...] | None = text_list(default=None, max_items="max_texts")
    use_samples: bool = boolean(default=False)

    def check(self, settings: Settings) -> None:
        if self.texts is not None and self.use_samples:
            raise BadRequest("give either 'texts' or 'use_samples', not both")

    def chosen_texts(self, svc: Any, role: str) -> Sequence[str]:
        """The texts the request reads for ``role`` (``evaluation`` or ``calibration``): given, samples, or the default set."""
        if self.texts is not None:
            return self.texts
        if self.use_samples:
            return svc.samples.list()[: svc.settings.max_texts]
        return (svc.text_sets.evaluation() if role == "evaluation" else svc.text_sets.calibration()).texts


# -- models and samples --------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class SwitchModel(Request):
    model_name: str = string(max_chars=MAX_NAME_CHARS)


@dataclass(frozen=True, kw_only=True)
class AddSample(Request):
    prompt: str = text(max_chars="max_sample_chars")


@dataclass(frozen=True, kw_only=True)
class DeleteSample(Request):
    """Exactly one of ``index`` (a position in ``GET /api/samples``) and ``prompt`` (its text)."""

    index: int | None = integer(default=None, minimum=0, maximum=MAX_INT)
    prompt: str | None = string(default=None, max_chars="max_sample_chars")

    def check(self, settings: Settings) -> None:
        if (self.index is None) == (self.prompt is None):
            raise BadRequest("give exactly one of 'index' (its position in GET /api/samples) and 'prompt' (its text)")


# -- pruning analyses ----------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class WeightAnalysis(Request):
    tolerance: float = number(default=0.0, minimum=0.0)


@dataclass(frozen=True, kw_only=True)
class Candidates(Request):
    threshold: float = number(default=10.0, minimum=0.0, maximum=100.0)
    method: str = choice(SCORE_METHODS, default="magnitude")
    layer_index: int | None = integer(default=None, minimum=0)
    limit: int | None = integer(default=None, minimum=1)
    offset: int = integer(default=0, minimum=0)


@dataclass(frozen=True, kw_only=True)
class ImpactAnalysis(Request):
    layer_index: int = integer(minimum=0)
    neuron_indices: tuple[int, ...] = integers(max_items="max_neurons_per_request", minimum=0)
    input_text: str = text()
    ablation: str = choice(ABLATION_KINDS, default="zero")


def _read_layer_list(source: dict, key: str, settings: Settings) -> tuple[int, ...] | str:
    if source[key] == "all":
        return "all"
    if isinstance(source[key], str):
        raise BadRequest(f"'{key}' must be a list of layer indices or \"all\"")
    layers = get_int_list(source, key, max_items=MAX_LAYERS)
    if min(layers) < 0:
        raise BadRequest(f"'{key}' must hold layer indices >= 0")
    return tuple(layers)


LAYER_LIST_SCHEMA = {
    "oneOf": [
        {"type": "array", "minItems": 1, "maxItems": MAX_LAYERS, "uniqueItems": True, "items": {"type": "integer", "minimum": 0}},
        {"type": "string", "enum": ["all"]},
    ]
}


LAYERS_CHOICE = "give exactly one of 'layer_index' (one layer) and 'layer_indices' (a list, or \"all\")"


@dataclass(frozen=True, kw_only=True)
class NeuronImportance(Request):
    """Exactly one of ``layer_index`` (one layer) and ``layer_indices`` (a list, or ``"all"``)."""

    layer_index: int | None = integer(default=None, minimum=0)
    layer_indices: tuple[int, ...] | str | None = custom(_read_layer_list, LAYER_LIST_SCHEMA, default=None)
    input_texts: tuple[str, ...] = text_list(max_items="max_texts")
    method: str = choice(IMPORTANCE_METHODS, default="ablation")
    ablation: str = choice(ABLATION_KINDS, default="zero")
    critical_threshold: float | None = number(default=None, minimum=0.0)

    @classmethod
    def parse(cls, source: dict, settings: Settings) -> "NeuronImportance":
        """As the spec's ``oneOf``: exactly one of the two keys is present (even as null, which then is refused)."""
        if ("layer_index" in source) == ("layer_indices" in source):
            raise BadRequest(LAYERS_CHOICE)
        return super().parse(source, settings)

    def check(self, settings: Settings) -> None:
        if (self.layer_index is None) == (self.layer_indices is None):
            raise BadRequest(LAYERS_CHOICE)

    def as_body(self) -> dict:
        """Only the one of ``layer_index`` / ``layer_indices`` given, so the body can be sent again."""
        body = super().as_body()
        del body["layer_indices" if self.layer_index is not None else "layer_index"]
        return body

    @property
    def layers(self) -> int | list[int] | str:
        """What the service takes: one layer, a list of layers, or ``"all"``."""
        if self.layer_index is not None:
            return self.layer_index
        return self.layer_indices if self.layer_indices == "all" else list(self.layer_indices)

    def chosen_layers(self, lm: Any) -> list[int]:
        """The layers asked for, ``"all"`` spelled out for ``lm``."""
        if self.layers == "all":
            return list(range(lm.adapter.n_layers))
        return [self.layers] if isinstance(self.layers, int) else self.layers

    def check_model(self, lm: Any) -> None:
        for layer in self.chosen_layers(lm):
            check_layer(lm, layer)

    def forward_tokens(self, lm: Any, svc: Any) -> int:
        chosen, n_layers = self.chosen_layers(lm), lm.adapter.n_layers
        if self.method == "attribution":
            passes = (1 + ATTRIBUTION_PROBES // 2) * len(chosen)  # the probes' backward passes are batched
        else:  # an ablation at layer L re-runs only the blocks from L on
            passes = 1 + sum(-(-lm.adapter.d_mlp(layer) * (n_layers - layer) // n_layers) for layer in chosen)
        return passes * _tokens(lm, self.input_texts)


def _read_candidates(source: dict, key: str, settings: Settings) -> tuple[tuple[int, int], ...]:
    items = get_list(source, key, max_items=settings.max_neurons_per_request)
    candidates = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise BadRequest(f"'{key}[{i}]' must be an object with layer_index and neuron_index")
        with _naming(f"{key}[{i}]"):
            candidates.append((get_int(item, "layer_index", minimum=0), get_int(item, "neuron_index", minimum=0)))
    return tuple(candidates)


CANDIDATES_SCHEMA = {
    "type": "array",
    "minItems": 1,
    "items": {
        "type": "object",
        "required": ["layer_index", "neuron_index"],
        "properties": {"layer_index": {"type": "integer", "minimum": 0}, "neuron_index": {"type": "integer", "minimum": 0}},
    },
}


@dataclass(frozen=True, kw_only=True)
class BatchAnalysis(Request):
    pruning_candidates: tuple[tuple[int, int], ...] = custom(
        _read_candidates,
        CANDIDATES_SCHEMA,
        dump=lambda pairs: [{"layer_index": layer, "neuron_index": neuron} for layer, neuron in pairs],
    )
    input_texts: tuple[str, ...] = text_list(max_items="max_texts")
    batch_size: int = integer(default=10, minimum=1, maximum="max_batch_size")
    ablation: str = choice(ABLATION_KINDS, default="zero")

    def check_model(self, lm: Any) -> None:
        for layer, neuron in self.pruning_candidates:
            check_neurons(lm, layer, [neuron])

    def forward_tokens(self, lm: Any, svc: Any) -> int:
        count = len(self.pruning_candidates)
        return (2 + count + min(self.batch_size, count)) * _tokens(lm, self.input_texts)


@dataclass(frozen=True, kw_only=True)
class Export(Request):
    type: str = choice(tuple(EXPORT_FILES))


# -- compression ---------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Evaluate(TextSource):
    ablate: NeuronGroups | None = custom(read_neuron_groups, NEURON_GROUPS_SCHEMA, default=None, dump=dump_neuron_groups)

    def check_model(self, lm: Any) -> None:
        check_groups(lm, self.ablate or {})

    def forward_tokens(self, lm: Any, svc: Any) -> int:
        return _tokens(lm, self.chosen_texts(svc, "evaluation"))


@dataclass(frozen=True, kw_only=True)
class Plan(TextSource):
    sparsity: float = number(minimum=0.0, maximum=MAX_SPARSITY)
    method: str = choice(METHODS)
    scope: str = choice(SCOPES, default="layer")
    seed: int = integer(default=0, minimum=0, maximum=MAX_INT)
    compensation: str = choice(COMPENSATIONS, default="none")
    estimate: bool = boolean(default=False)
    allow_overlap: bool = boolean(default=False)

    def forward_tokens(self, lm: Any, svc: Any) -> int:
        calibrated = self.method in CALIBRATED_METHODS
        passes = (TAYLOR_PASSES if self.method == "taylor" else 1) if calibrated else 0
        passes += COMPENSATION_PASSES[self.compensation]
        evaluation = _evaluation_passes(lm, svc, 1) * _tokens(lm, svc.text_sets.evaluation().texts) if self.estimate else 0
        return passes * _tokens(lm, self.chosen_texts(svc, "calibration")) + evaluation


def _evaluation_passes(lm: Any, svc: Any, pruned: int) -> int:
    """Passes over the default evaluation set: one per ``pruned`` model, plus the dense model's
    unless its loss is memoized."""
    return pruned + (not svc.compression.dense_loss_known(lm))


COMPENSATION_PASSES = {"none": 0, "bias": 1, "reconstruct": 2}
"""Forward passes over the calibration texts a compensation makes: bias one (the dense statistics);
reconstruct one more (the calibration carried through the pruned model, each block run once where
it adds its MLP output to the residual stream)."""


MAX_SWEEP_SPARSITIES = 20
MAX_RECOVERY_STEPS = 10_000


def _read_recovery(source: dict, key: str, settings: Settings) -> Recovery:
    value = source[key]
    if not isinstance(value, dict):
        raise BadRequest("'recovery' must be an object with 'steps', 'learning_rate' and 'tokens_per_step'")
    unknown = set(value) - {"steps", "learning_rate", "tokens_per_step", "seed", "precision"}
    if unknown:
        raise BadRequest(f"'recovery' has unknown fields: {', '.join(sorted(unknown))}")
    return Recovery(
        steps=get_int(value, "steps", minimum=1, maximum=MAX_RECOVERY_STEPS),
        learning_rate=get_float(value, "learning_rate", minimum=1e-12, maximum=1.0),
        tokens_per_step=get_int(value, "tokens_per_step", minimum=2, maximum=settings.max_input_tokens),
        seed=get_int(value, "seed", 0, minimum=0, maximum=MAX_INT),
        precision=get_str(value, "precision", "auto", choices=PRECISIONS),
    )


RECOVERY_SCHEMA = {
    "type": "object",
    "required": ["steps", "learning_rate", "tokens_per_step"],
    "properties": {
        "steps": {"type": "integer", "minimum": 1, "maximum": MAX_RECOVERY_STEPS},
        "learning_rate": {"type": "number", "minimum": 1e-12, "maximum": 1.0},
        "tokens_per_step": {"type": "integer", "minimum": 2},
        "seed": {"type": "integer", "minimum": 0, "maximum": MAX_INT},
        "precision": {"type": "string", "enum": list(PRECISIONS)},
    },
}


def _read_choices(options: Sequence[str]):
    def read(source: dict, key: str, settings: Settings) -> tuple[str, ...]:
        values = get_list(source, key, max_items=len(options))
        for i, value in enumerate(values):
            if value not in options:
                raise BadRequest(f"'{key}[{i}]' must be one of {', '.join(options)}; got {value!r}")
        if len(set(values)) != len(values):
            raise BadRequest(f"'{key}' must not repeat values")
        return tuple(values)

    return read


def _read_sparsities(source: dict, key: str, settings: Settings) -> tuple[float, ...]:
    values = get_list(source, key, max_items=MAX_SWEEP_SPARSITIES)
    for i, value in enumerate(values):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= MAX_SPARSITY:
            raise BadRequest(f"'{key}[{i}]' must be a number in [0, {MAX_SPARSITY}]")
    if len(set(values)) != len(values):
        raise BadRequest(f"'{key}' must not repeat values")
    return tuple(float(value) for value in values)


def _choices_schema(options: Sequence[str]) -> dict:
    return {"type": "array", "minItems": 1, "uniqueItems": True, "items": {"type": "string", "enum": list(options)}}


@dataclass(frozen=True, kw_only=True)
class Sweep(TextSource):
    """Every ``methods`` x ``sparsities`` x ``compensations`` plan, measured; ``texts`` calibrate."""

    methods: tuple[str, ...] = custom(_read_choices(METHODS), _choices_schema(METHODS), dump=list)
    sparsities: tuple[float, ...] = custom(
        _read_sparsities,
        {
            "type": "array", "minItems": 1, "maxItems": MAX_SWEEP_SPARSITIES, "uniqueItems": True,
            "items": {"type": "number", "minimum": 0.0, "maximum": MAX_SPARSITY},
        },
        dump=list,
    )
    compensations: tuple[str, ...] = custom(
        _read_choices(COMPENSATIONS), _choices_schema(COMPENSATIONS), default=("none",), dump=list
    )
    scope: str = choice(SCOPES, default="layer")
    seed: int = integer(default=0, minimum=0, maximum=MAX_INT)
    allow_overlap: bool = boolean(default=False)

    def forward_tokens(self, lm: Any, svc: Any) -> int:
        rows = len(self.methods) * len(self.sparsities) * len(self.compensations)
        passes = sum(TAYLOR_PASSES if m == "taylor" else m in CALIBRATED_METHODS for m in self.methods)
        passes += sum(COMPENSATION_PASSES[c] for c in self.compensations) * len(self.sparsities) * len(self.methods)
        evaluation = _evaluation_passes(lm, svc, rows) * _tokens(lm, svc.text_sets.evaluation().texts)
        return passes * _tokens(lm, self.chosen_texts(svc, "calibration")) + evaluation


def _read_output_name(source: dict, key: str, settings: Settings) -> str:
    """A name for a new local model: a plain folder name, not a registry model's."""
    name = get_str(source, key, max_chars=MAX_NAME_CHARS)
    if not registry.is_local_name(name):
        raise BadRequest(
            f"output_name {name!r} must be a plain folder name of at most {MAX_NAME_CHARS} "
            "characters: letters, digits, '_' and '-', with single dots between parts"
        )
    taken = next((known for known in registry.REGISTRY if known.casefold() == name.casefold()), None)
    if taken is not None:
        raise BadRequest(f"output_name {name!r} is the name of a registry model ({taken}, letter case aside); choose another")
    return name


@dataclass(frozen=True)
class SubmittedPlan:
    """A plan sent back to apply: its neurons, the model it was made for, the whole object as sent."""

    neurons: NeuronGroups
    model_name: str | None
    info: dict


def _read_plan(source: dict, key: str, settings: Settings) -> SubmittedPlan:
    """The plan sent to apply: its neurons, and the settings it records (method, scope, sparsity,
    seed, compensation), each checked as /api/pruning/plan checks it when present: they go into the
    saved model's record and card, and apply uses the plan's compensation."""
    plan = source[key]
    if not isinstance(plan, dict):
        raise BadRequest("'plan' must be the object returned by /api/pruning/plan")
    if plan.get("neurons") == []:
        raise BadRequest("the plan removes no neuron (its sparsity rounds to 0 neurons per layer): there is nothing to apply")
    neurons = read_neuron_groups(plan, "neurons", settings)
    with _naming(key):
        for name, spec in Plan.specs():
            if name in PLAN_FIELDS and plan.get(name) is not None:
                spec.read(plan, name, settings, spec)
    return SubmittedPlan(neurons, get_str(plan, "model_name", None, max_chars=MAX_NAME_CHARS), plan)


PLAN_SCHEMA = {
    "type": "object",
    "required": ["neurons"],
    "properties": {"model_name": {"type": "string"}, "neurons": NEURON_GROUPS_SCHEMA},
}


@dataclass(frozen=True, kw_only=True)
class Apply(TextSource):
    """Exactly one of ``plan`` (what /api/pruning/plan returned) and ``neurons``."""

    output_name: str = custom(_read_output_name, {"type": "string", "maxLength": MAX_NAME_CHARS})
    plan: SubmittedPlan | None = custom(_read_plan, PLAN_SCHEMA, default=None, dump=lambda plan: plan.info)
    neurons: NeuronGroups | None = custom(read_neuron_groups, NEURON_GROUPS_SCHEMA, default=None, dump=dump_neuron_groups)
    evaluate: bool = boolean(default=True)
    compensation: str | None = choice(COMPENSATIONS, default=None)
    calibration_texts: tuple[str, ...] | None = text_list(default=None, max_items="max_texts")
    allow_overlap: bool = boolean(default=False)
    max_perplexity_ratio: float | None = number(default=None, minimum=0.0)
    recovery: Recovery | None = custom(_read_recovery, RECOVERY_SCHEMA, default=None, dump=dataclasses.asdict)

    def check(self, settings: Settings) -> None:
        if (self.plan is None) == (self.neurons is None):
            raise BadRequest("give exactly one of 'plan' (an object returned by /api/pruning/plan) or 'neurons'")
        if self.max_perplexity_ratio is not None and not self.evaluate:
            raise BadRequest("'max_perplexity_ratio' needs the evaluation: leave 'evaluate' true")
        super().check(settings)

    @property
    def chosen_compensation(self) -> str:
        """The compensation given, else the plan's (so applying a plan does what it estimated), else none."""
        if self.compensation is not None:
            return self.compensation
        planned = self.plan.info.get("compensation") if self.plan is not None else None
        return planned or "none"

    @property
    def removed(self) -> NeuronGroups:
        """The neurons to remove: the plan's, or the ones given."""
        return self.plan.neurons if self.plan is not None else self.neurons

    def check_model(self, lm: Any) -> None:
        check_groups(lm, self.removed)

    def forward_tokens(self, lm: Any, svc: Any) -> int:
        evaluation = 2 * _tokens(lm, self.chosen_texts(svc, "evaluation")) if self.evaluate else 0
        calibration = self.calibration_texts or svc.text_sets.calibration().texts
        recovery = RECOVERY_PASSES * self.recovery.steps * self.recovery.tokens_per_step if self.recovery else 0
        return evaluation + COMPENSATION_PASSES[self.chosen_compensation] * _tokens(lm, calibration) + recovery


# -- activations, clusters, queries --------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class GenerateActivations(Request):
    prompt: str = text()
    model_name: str | None = string(default=None, max_chars=MAX_NAME_CHARS)

    def free_texts(self) -> list[str]:
        """None at the door when another model is named: its own limit applies once it is loaded."""
        return [] if self.model_name is not None else [self.prompt]


MAX_PREDICTIONS = 20
"""Most next tokens per position a comparison lists."""


@dataclass(frozen=True, kw_only=True)
class CompareActivations(Request):
    """A prompt on the loaded model and with ``ablate``'s neurons removed (a plan's ``neurons``)."""

    prompt: str = text()
    ablate: NeuronGroups = custom(read_neuron_groups, NEURON_GROUPS_SCHEMA, dump=dump_neuron_groups)
    layer_index: int = integer(minimum=0)
    top_k: int = integer(default=16, minimum=1, maximum="max_neurons_per_request")
    predictions: int = integer(default=5, minimum=1, maximum=MAX_PREDICTIONS)


@dataclass(frozen=True, kw_only=True)
class IndexCorpus(Request):
    """Exactly one of ``texts`` and ``use_samples: true``."""

    texts: tuple[str, ...] | None = text_list(default=None, max_items="max_corpus_texts")
    use_samples: bool = boolean(default=False)
    batch_size: int = integer(default=32, minimum=1, maximum="max_batch_size")

    def check(self, settings: Settings) -> None:
        if self.use_samples == (self.texts is not None):
            raise BadRequest("send either 'texts' (a list of strings) or 'use_samples': true")

    def forward_tokens(self, lm: Any, svc: Any) -> int:
        return _tokens(lm, self.texts if self.texts is not None else svc.samples.list())


@dataclass(frozen=True, kw_only=True)
class ActivationSlice(Request):
    layer: tuple[int, ...] | None = integers(default=None, max_items="max_neurons_per_request", minimum=0)
    top_k: int | None = integer(default=None, minimum=1, maximum="max_neurons_per_request")


@dataclass(frozen=True, kw_only=True)
class GenerateClusters(Request):
    activation_file: str = string(max_chars=MAX_NAME_CHARS)
    layer_index: int = integer(minimum=0)
    n_clusters: int = integer(minimum=2, maximum="max_clusters")


@dataclass(frozen=True, kw_only=True)
class QueryNeuron(Request):
    layer_index: int = integer(minimum=0)
    neuron_index: int = integer(minimum=0)
    top_k: int = integer(default=10, minimum=1, maximum="max_top_k")
    corpus: str | None = string(default=None, max_chars=64)


@dataclass(frozen=True, kw_only=True)
class QueryCluster(Request):
    cluster_id: int = integer(minimum=0)
    top_k: int = integer(default=10, minimum=1, maximum="max_top_k")
    cluster_file: str | None = string(default=None, max_chars=MAX_NAME_CHARS)
    corpus: str | None = string(default=None, max_chars=64)


# -- jobs ----------------------------------------------------------------------------------


def _read_job_body(source: dict, key: str, settings: Settings) -> dict:
    if not isinstance(source[key], dict):
        raise BadRequest("'body' must be a JSON object: the request body of the endpoint")
    return source[key]


@dataclass(frozen=True, kw_only=True)
class SubmitJob(Request):
    endpoint: str = string(max_chars=100)
    body: dict | None = custom(_read_job_body, {"type": "object"}, default=None)


@dataclass(frozen=True, kw_only=True)
class ListJobs(Request):
    status: str | None = choice(JOB_STATUSES, default=None)


# -- corpora and neuron pages ---------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class IndexNamedCorpus(Request):
    """``POST /api/corpora/{name}/index``: ``name`` comes from the path, and is checked at the door
    (a bad name is a 400 before a job is queued)."""

    name: str = string(max_chars=64)
    batch_size: int = integer(default=32, minimum=1, maximum="max_batch_size")

    def check(self, settings: Settings) -> None:
        check_corpus_name(self.name)

    def forward_tokens(self, lm: Any, svc: Any) -> int:
        return svc.corpora.explore_tokens(lm, self.name)


@dataclass(frozen=True, kw_only=True)
class NeuronPage(Request):
    corpus: str = string(default=DEFAULT_CORPUS, max_chars=64)


@dataclass(frozen=True, kw_only=True)
class NeuronActivations(Request):
    text: str = text(max_chars="max_sample_chars")


@dataclass(frozen=True, kw_only=True)
class NeuronSearch(Request):
    """Exactly one of ``token`` (a token string or id: from the index statistics) and ``text``
    (run once: the top neurons at each token)."""

    token: str | None = string(default=None, max_chars=200)
    text: str | None = text(default=None, max_chars="max_sample_chars")
    layer: int | None = integer(default=None, minimum=0)
    corpus: str = string(default=DEFAULT_CORPUS, max_chars=64)
    k: int | None = integer(default=None, minimum=1, maximum=SEARCH_TOKEN_K)

    def check(self, settings: Settings) -> None:
        if (self.token is None) == (self.text is None):
            raise BadRequest("give either ?token= (a token or a token id) or ?text=")
        if self.text is not None and self.k is not None and self.k > SEARCH_TEXT_K:
            raise BadRequest(f"'k' must be <= {SEARCH_TEXT_K} with ?text=, got {self.k}")


@dataclass(frozen=True, kw_only=True)
class UploadCorpus(Request):
    """``POST /api/corpora``: the form's ``name`` (default: the file name without its suffix); the
    ``file`` part itself is read by the view."""

    content_type: ClassVar[str] = "multipart/form-data"
    name: str | None = string(default=None, max_chars=64)
