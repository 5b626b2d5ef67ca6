"""The corpus index against brute-force scans; batched indexing equals one text at a time."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from neuronscope.analysis.activations import neuron_activations
from neuronscope.analysis.max_activating import TopActivations, _true_positions, index_pass, length_batches, max_activating, token_refs
from neuronscope.analysis.neuron_view import EXAMPLES, WINDOW, window
from neuronscope.analysis.tokens import indexable_positions, token_strings
from neuronscope.storage.index import ActivationIndex, NewSource

from tests.support.activation_helpers import captured, projection_hooks
from tests.support.tiny_models import CORPUS as TRAINING_CORPUS

CORPUS = [*dict.fromkeys(TRAINING_CORPUS), "Paris", "A dog, a fox and a cat."]
PROMPTS = ["Neurons fire on the word fox.", "Rome is the capital of Italy."]


@pytest.mark.parametrize(
    "chunk, depth, decimals, order",
    [
        (40, 7, None, "random"),
        (3, 10, None, "random"),
        (25, 50, None, "random"),
        (16, 5, 1, "random"),  # many ties
        (16, 30, 1, "random"),  # many ties, deeper than the entries with windows
        (6, 4, None, "ascending"),  # every activation beats the thresholds: kept aside, merged often
        (6, 4, None, "descending"),  # none does once the lists are full
        (5, 60, None, "random"),  # the lists never fill
    ],
)
@pytest.mark.parametrize("windowed", [False, True], ids=["lists", "with windows"])
def test_top_activations_equal_a_sort(chunk, depth, decimals, order, windowed):
    """Running lists (dense while filling, thresholded once full) equal a sort of everything; with
    windows, each of the first EXAMPLES entries keeps its own window (here: its global row and
    value), ties included."""
    rng = np.random.default_rng(chunk)
    acts = rng.normal(size=(8 * chunk, 16)).astype(np.float32)  # [tokens, neurons]
    if decimals is not None:
        acts = acts.round(decimals)
    if order != "random":
        acts = np.sort(acts, axis=0)[:: 1 if order == "ascending" else -1].copy()
    acts = acts.reshape(8, chunk, 16)  # [chunks, tokens, neurons]
    top = TopActivations(16, depth=depth, device="cpu", windowed=windowed)
    for number in range(8):
        refs = token_refs(torch.full((chunk,), number), torch.arange(chunk))
        batch = torch.from_numpy(acts[number])

        def windows_of(rows, neurons, number=number, batch=batch):
            marks = torch.zeros((len(rows), WINDOW))
            marks[:, 0], marks[:, 1] = (number * chunk + rows).float(), batch[rows, neurons]
            return marks

        top.update(batch, refs, windows_of)
    result = top.result()
    flat = acts.reshape(-1, 16)  # [chunk number * chunk + position, neurons]
    kept = min(depth, len(flat))
    for neuron in range(16):
        np.testing.assert_array_equal(result.values[neuron], -np.sort(-flat[:, neuron])[:kept])
        rows = result.sequences[neuron] * chunk + result.positions[neuron]
        assert len(set(rows.tolist())) == kept
        np.testing.assert_array_equal(flat[rows, neuron], result.values[neuron])
        if windowed:
            shown = min(kept, EXAMPLES)
            assert result.windows.shape[1] == shown
            np.testing.assert_array_equal(result.windows[neuron, :, 0], rows[:shown])
            np.testing.assert_array_equal(result.windows[neuron, :, 1], result.values[neuron, :shown])


@pytest.mark.parametrize("depth", [5, 30])
def test_windowed_ties_follow_the_index_order_whatever_order_the_batches_come_in(depth):
    """Length batches arrive out of sequence order: tied entries are still ordered by (sequence,
    position), as the index orders them, so every one of the first EXAMPLES has its own window."""
    chunk, batches = 16, 8
    acts = np.random.default_rng(1).normal(size=(batches, chunk, 4)).round(0).astype(np.float32)  # many ties
    top = TopActivations(4, depth=depth, device="cpu", windowed=True)
    for number in reversed(range(batches)):
        batch = torch.from_numpy(acts[number])

        def windows_of(rows, neurons, number=number):
            marks = torch.zeros((len(rows), WINDOW))
            marks[:, 0] = (number * chunk + rows).float()
            return marks

        top.update(batch, token_refs(torch.full((chunk,), number), torch.arange(chunk)), windows_of)
    result = top.result()
    flat = acts.reshape(-1, 4)
    for neuron in range(4):
        rows = result.sequences[neuron] * chunk + result.positions[neuron]
        np.testing.assert_array_equal(flat[rows, neuron], -np.sort(-flat[:, neuron])[:depth])
        assert (np.lexsort((rows, -flat[rows, neuron])) == np.arange(depth)).all()  # by value, ties by row
        shown = min(depth, EXAMPLES)
        np.testing.assert_array_equal(result.windows[neuron, :, 0], rows[:shown])


def test_top_activations_of_uneven_batches_equal_a_sort():
    """Batches of any size, empty ones included, in any order: the lists are a sort of everything."""
    rng = np.random.default_rng(7)
    sizes = [0, 3, 120, 1, 0, 17, 2, 64, 5]
    acts = [rng.normal(size=(size, 32)).astype(np.float32) * rng.uniform(0.5, 2) for size in sizes]
    top = TopActivations(32, depth=20, device="cpu")
    for number, batch in enumerate(acts):
        top.update(torch.from_numpy(batch), token_refs(torch.full((len(batch),), number), torch.arange(len(batch))))
    result = top.result()
    for neuron in range(32):
        expected = -np.sort(-np.concatenate([batch[:, neuron] for batch in acts]))[:20]
        np.testing.assert_array_equal(result.values[neuron], expected)
        found = [acts[seq][pos, neuron] for seq, pos in zip(result.sequences[neuron], result.positions[neuron])]
        np.testing.assert_array_equal(found, result.values[neuron])


@pytest.mark.parametrize("batch_size, max_padding", [(1, 0.1), (4, 0.0), (4, 0.1), (32, 0.1), (32, 1e9)])
def test_length_batches_cover_every_text_once_within_the_limits(batch_size, max_padding):
    lengths = [int(n) for n in np.random.default_rng(batch_size).integers(1, 60, size=101)]
    batches = length_batches(lengths, batch_size, max_padding)
    assert sorted(i for batch in batches for i in batch) == list(range(len(lengths)))
    assert [lengths[i] for batch in batches for i in batch] == sorted(lengths)
    for batch in batches:
        real = sum(lengths[i] for i in batch)
        assert 1 <= len(batch) <= batch_size
        assert len(batch) == 1 or len(batch) * max(lengths[i] for i in batch) <= (1 + max_padding) * real
    if max_padding > 1e6:
        assert [len(batch) for batch in batches[:-1]] == [batch_size] * (len(batches) - 1)


def test_batched_indexing_equals_one_text_at_a_time(loaded):
    """Batched lists hold the true top values, each at a position whose unbatched activation it is."""
    sequences = [loaded.tokenizer(t)["input_ids"] for t in CORPUS]
    flags = [indexable_positions(loaded.tokenizer, s) for s in sequences]
    alone = [neuron_activations(loaded.model, loaded.adapter, torch.tensor([s])) for s in sequences]
    for batch in (1, 3, len(sequences)):
        tops = max_activating(loaded.model, loaded.adapter, sequences, flags, pad_id=0, depth=12, batch_size=batch)
        for layer, top in enumerate(tops):
            every = torch.cat([acts[layer] for acts in alone]).numpy()  # [all tokens, d_mlp]
            expected = -np.sort(-every, axis=0)[:12].T  # [d_mlp, 12]
            np.testing.assert_allclose(top.values, expected, rtol=1e-4, atol=1e-5)
            at_refs = np.array([
                [alone[seq][layer][pos, neuron].item() for seq, pos in zip(top.sequences[neuron], top.positions[neuron])]
                for neuron in range(top.values.shape[0])
            ])
            np.testing.assert_allclose(top.values, at_refs, rtol=1e-4, atol=1e-5)
    assert projection_hooks(loaded.adapter) == 0


def test_padding_never_enters(loaded):
    """With room for every position, the lists hold exactly the real positions: no padded one."""
    sequences = [loaded.tokenizer(t)["input_ids"] for t in CORPUS]
    flags = [[True] * len(s) for s in sequences]
    real = {(i, p) for i, s in enumerate(sequences) for p in range(len(s))}
    tops = max_activating(loaded.model, loaded.adapter, sequences, flags, pad_id=5, depth=1000, batch_size=4)
    for top in tops:
        assert top.values.shape[1] == len(real)
        for neuron in range(0, top.values.shape[0], 5):
            assert set(zip(top.sequences[neuron].tolist(), top.positions[neuron].tolist())) == real


def test_unindexable_positions_never_enter(loaded):
    sequences = [loaded.tokenizer(t)["input_ids"] for t in CORPUS]
    flags = [[p % 2 == 0 for p in range(len(s))] for s in sequences]
    tops = max_activating(loaded.model, loaded.adapter, sequences, flags, pad_id=0, depth=1000, batch_size=3)
    assert all((top.positions % 2 == 0).all() for top in tops)


def true_top_values(full: dict[str, list[torch.Tensor]], flags: dict[str, list[bool]], layer: int, k: int) -> np.ndarray:
    """``[d_mlp, k]``: each neuron's k highest activations over every indexable position of every source."""
    every = torch.cat([acts[layer][torch.tensor(flags[name])] for name, acts in full.items()]).numpy()
    return -np.sort(-every, axis=0)[:k].T


@pytest.fixture
def indexed_app(make_app, model_name):
    """An app with a small index depth, two generated files and the corpus indexed in two requests."""
    app = make_app(model=model_name, index_depth=6)
    client = app.test_client()
    files = [client.post("/api/activations/generate", json={"prompt": p}).json["filename"] for p in PROMPTS]
    for part in (CORPUS[:5], CORPUS[5:]):
        response = client.post("/api/activations/corpus", json={"texts": part, "batch_size": 3})
        assert response.status_code == 200, response.json
    return app, files


def test_index_returns_the_true_top_k(indexed_app):
    """Every neuron's indexed list equals a brute-force scan of the stored and recomputed activations."""
    app, files = indexed_app
    svc = app.extensions["neuronscope"]
    lm = svc.manager.ensure_loaded()
    full: dict[str, list[torch.Tensor]] = {}
    flags: dict[str, list[bool]] = {}
    for name in files:  # activation files: their stored float32 sidecars
        meta = svc.activations.store.meta(name)
        arrays = svc.activations.store.layers(name, range(meta["n_layers"]))
        full[name] = [torch.from_numpy(arrays[layer]) for layer in range(meta["n_layers"])]
        flags[name] = indexable_positions(lm.tokenizer, meta["token_ids"])
    for text in CORPUS:  # corpus texts: recomputed one at a time, keyed by their text
        ids = lm.tokenizer(text)["input_ids"]
        full[text] = neuron_activations(lm.model, lm.adapter, torch.tensor([ids]))
        flags[text] = indexable_positions(lm.tokenizer, ids)
    index = svc.queries.index
    assert index.stats(lm.name)["sources"] == len(files) + len(CORPUS)
    for layer in range(lm.adapter.n_layers):
        expected = true_top_values(full, flags, layer, 6)
        for neuron in range(lm.adapter.d_mlp(layer)):
            hits = index.top(lm.name, layer, neuron, 6)
            np.testing.assert_allclose([h.activation for h in hits], expected[neuron], rtol=1e-4, atol=1e-5)
            for hit in hits:
                key = hit.source.name if hit.source.kind == "file" else "".join(hit.source.tokens)
                assert hit.activation == pytest.approx(full[key][layer][hit.position, neuron].item(), rel=1e-4, abs=1e-5)


def test_neuron_query_reports_tokens_with_context(indexed_app):
    app, files = indexed_app
    client = app.test_client()
    response = client.post("/api/queries/neuron", json={"layer_index": 1, "neuron_index": 7, "top_k": 4})
    assert response.status_code == 200
    body = response.json
    assert body["count"] == 4 and "message" not in body
    activations = [t["activation"] for t in body["top_tokens"]]
    assert activations == sorted(activations, reverse=True)
    for entry in body["top_tokens"]:
        assert entry["context"].count("[[") == 1
        assert f"[[{entry['token']}]]" in entry["context"]
        assert entry["source"] in files or entry["source"].startswith("corpus:")
    stored = client.get(f"/api/queries/{body['filename']}")
    assert stored.status_code == 200 and stored.json["top_tokens"] == body["top_tokens"]
    assert body["filename"] in client.get("/api/queries/files").json["files"]


def test_reindexing_the_same_texts_is_skipped(indexed_app):
    app, _ = indexed_app
    client = app.test_client()
    response = client.post("/api/activations/corpus", json={"texts": CORPUS[:3] + ["A brand new text."]})
    assert response.json["texts_indexed"] == 1 and response.json["texts_skipped"] == 3


def test_concurrent_writers_give_the_serial_index(tmp_path, loaded):
    """Threads adding sources at once end with the same index as adding them one after another."""
    sequences = [loaded.tokenizer(t)["input_ids"] for t in CORPUS]
    flags = [indexable_positions(loaded.tokenizer, s) for s in sequences]

    tops = [  # forward passes stay serial (hooks are per module); the writes run concurrently
        max_activating(loaded.model, loaded.adapter, [s], [f], pad_id=0, depth=4, batch_size=1)
        for s, f in zip(sequences, flags)
    ]

    def add_one(index: ActivationIndex, i: int) -> None:
        tokens = token_strings(loaded.tokenizer, sequences[i])
        index.add(loaded.name, [NewSource("corpus", f"text{i}", sequences[i], tokens)], tops[i])

    serial = ActivationIndex(tmp_path / "serial.sqlite3", depth=4)
    for i in range(len(CORPUS)):
        add_one(serial, i)
    parallel = ActivationIndex(tmp_path / "parallel.sqlite3", depth=4)
    threads = [threading.Thread(target=add_one, args=(parallel, i)) for i in range(len(CORPUS))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for layer in range(loaded.adapter.n_layers):
        for neuron in range(0, loaded.adapter.d_mlp(layer), 7):
            a = [(h.activation, h.source.name, h.position) for h in serial.top(loaded.name, layer, neuron, 4)]
            b = [(h.activation, h.source.name, h.position) for h in parallel.top(loaded.name, layer, neuron, 4)]
            assert [value for value, _, _ in a] == [value for value, _, _ in b]
            # texts with a common beginning tie; ties are ordered by source id, which is arrival order
            assert sorted(entry for entry in a if entry[0] > a[-1][0]) == sorted(entry for entry in b if entry[0] > b[-1][0])


def test_queries_run_while_a_corpus_is_indexed(make_app):
    """Threads query the index while another thread indexes a corpus: every answer is consistent."""
    app = make_app(index_depth=8)
    client = app.test_client()
    client.post("/api/activations/corpus", json={"texts": CORPUS[:2]})
    errors: list[str] = []

    def query(worker: int) -> None:
        own = app.test_client()
        for i in range(15):
            body = {"layer_index": i % 2, "neuron_index": (worker * 15 + i) % 64, "top_k": 8}
            response = own.post("/api/queries/neuron", json=body)
            values = [t["activation"] for t in response.json.get("top_tokens", [])]
            if response.status_code != 200 or values != sorted(values, reverse=True) or not values:
                errors.append(f"{response.status_code} {response.json}")

    def index() -> None:
        for start in range(2, len(CORPUS)):
            response = app.test_client().post("/api/activations/corpus", json={"texts": [CORPUS[start]], "batch_size": 1})
            if response.status_code != 200:
                errors.append(f"index {response.status_code} {response.json}")

    threads = [threading.Thread(target=query, args=(w,)) for w in range(6)] + [threading.Thread(target=index)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert client.post("/api/activations/corpus", json={"texts": CORPUS}).json["texts_skipped"] == len(CORPUS)


def test_stored_windows_survive_merges_and_equal_a_capture(tmp_path, loaded):
    """Two indexing passes added one after the other: the first EXAMPLES entries of each merged
    list carry their windows, equal to an independent capture; lists from a pass without windows
    come back without them."""
    texts = [*CORPUS, " ".join(CORPUS[:3])]  # the last one longer than a window
    sequences = [loaded.tokenizer(t)["input_ids"] for t in texts]
    flags = [indexable_positions(loaded.tokenizer, s) for s in sequences]
    assert len(sequences[-1]) > WINDOW
    index = ActivationIndex(tmp_path / "index.sqlite3", depth=EXAMPLES + 5)
    for part in (slice(0, 4), slice(4, None)):
        result = index_pass(loaded.model, loaded.adapter, sequences[part], flags[part], pad_id=0, depth=index.depth, batch_size=3)
        sources = [NewSource("corpus", str(i), sequences[i], token_strings(loaded.tokenizer, sequences[i])) for i in range(len(texts))[part]]
        index.add(loaded.name, sources, result.tops, bottoms=result.bottoms)
    acts = {str(i): captured(loaded.model, loaded.adapter, s) for i, s in enumerate(sequences)}
    for layer in range(loaded.adapter.n_layers):
        for neuron in range(0, loaded.adapter.d_mlp(layer), 5):
            for tail in ("top", "bottom"):
                hits = index.top(loaded.name, layer, neuron, EXAMPLES, tail=tail)
                assert len(hits) == EXAMPLES
                for hit in hits:
                    start, end = window(len(hit.source.token_ids), hit.position)
                    expected = acts[hit.source.name][layer][start:end, neuron]
                    np.testing.assert_allclose(hit.window[: end - start], expected, rtol=1e-4, atol=1e-5)
    bare = ActivationIndex(tmp_path / "bare.sqlite3", depth=4)
    tops = max_activating(loaded.model, loaded.adapter, sequences[:2], flags[:2], pad_id=0, depth=4, batch_size=2)
    bare.add(loaded.name, [NewSource("corpus", str(i), sequences[i], token_strings(loaded.tokenizer, sequences[i])) for i in range(2)], tops)
    assert all(hit.window is None for hit in bare.top(loaded.name, 0, 0, 4))


@pytest.mark.parametrize("size, density", [(8, 0.5), (4096, 0.001), (4096, 0.6), (1003, 0.01), (0, 0.0)])
def test_true_positions_equal_nonzero(size, density):
    mask = torch.from_numpy(np.random.default_rng(size).random(size) < density)
    np.testing.assert_array_equal(_true_positions(mask).numpy(), np.nonzero(mask.numpy())[0])
