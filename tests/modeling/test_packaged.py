"""Models shipped in PyPI wheels: parts found without importing their packages, joined in order and
checked against the published sha256; a missing part makes the model unavailable, with the install command."""

import hashlib
import sys

import pytest
import torch

from neuronscope.analysis.forward import encode
from neuronscope.config import Settings
from neuronscope.errors import ModelUnavailable
from neuronscope.modeling import loading, packaged
from neuronscope.modeling.manager import ModelManager
from neuronscope.modeling.packaged import GEMMA_MODEL_NAME, PACKAGED, PackagedGguf

CHUNKS = [b"GGUF first part ", b"and the second"]


@pytest.fixture
def split_model(tmp_path, monkeypatch) -> PackagedGguf:
    """A model split over two fake installed packages ``fakepart_a`` and ``fakepart_b``."""
    for name, chunk in zip(("fakepart_a", "fakepart_b"), CHUNKS):
        (tmp_path / name / "data").mkdir(parents=True)
        (tmp_path / name / "__init__.py").write_text("raise RuntimeError('never imported')\n")
        (tmp_path / name / "data" / "model.part").write_bytes(chunk)
    monkeypatch.syspath_prepend(str(tmp_path))
    digest = hashlib.sha256(b"".join(CHUNKS)).hexdigest()
    return PackagedGguf("model.gguf", (("fakepart_a", "data/model.part"), ("fakepart_b", "data/model.part")), "pip install x", digest)


def test_parts_are_found_without_importing_and_joined_in_order(split_model, tmp_path):
    paths = split_model.part_paths()
    assert [p.parent.parent.name for p in paths] == ["fakepart_a", "fakepart_b"]
    assert "fakepart_a" not in sys.modules and "fakepart_b" not in sys.modules
    out = tmp_path / "out"
    out.mkdir()
    joined = packaged._joined(split_model, paths, out)
    assert joined.parent == out and joined.read_bytes() == b"".join(CHUNKS)


def test_a_joined_file_with_another_sha256_is_refused(split_model, tmp_path):
    wrong = PackagedGguf(split_model.gguf_name, split_model.parts, split_model.install, "0" * 64)
    with pytest.raises(ModelUnavailable, match="sha256"):
        packaged._joined(wrong, wrong.part_paths(), tmp_path)


def test_a_missing_part_makes_the_model_unavailable_and_names_the_install_command(split_model, tmp_path, monkeypatch):
    missing = PackagedGguf("model.gguf", (*split_model.parts, ("fakepart_c_not_installed", "data/model.part")), "pip install fake-parts")
    monkeypatch.setitem(PACKAGED, GEMMA_MODEL_NAME, missing)
    settings = Settings.from_env(data_dir=tmp_path / "data", offline=True)
    source = loading.resolve(GEMMA_MODEL_NAME, settings)
    assert source.kind == "embedded" and loading.availability(source, settings) == "unavailable"
    with pytest.raises(ModelUnavailable, match="pip install fake-parts"):
        packaged.convert(GEMMA_MODEL_NAME, tmp_path / "data" / "cache")
    assert not (tmp_path / "data" / "cache").exists()


@pytest.mark.slow
@pytest.mark.skipif(not packaged.is_installed(GEMMA_MODEL_NAME), reason=f"optional: {PACKAGED[GEMMA_MODEL_NAME].install}")
def test_gemma_3_270m_loads_and_says_berlin(tmp_path):
    """The real Gemma 3 (when its four wheels are installed): joined, converted, served."""
    settings = Settings.from_env(model=GEMMA_MODEL_NAME, data_dir=tmp_path / "data", offline=True)
    lm = ModelManager(settings).ensure_loaded()
    assert lm.config.model_type == "gemma3_text" and lm.adapter.n_layers == 18 and lm.adapter.d_mlp(0) == 2048
    ids = encode(lm.tokenizer, "The capital of France is Paris. The capital of Germany is", lm.device)
    with torch.no_grad():
        assert lm.tokenizer.decode(lm.model(input_ids=ids).logits[0, -1].argmax()).strip() == "Berlin"
    assert not list((tmp_path / "data").rglob("*.gguf"))
