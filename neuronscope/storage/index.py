"""The corpus index: the top activating token positions of every neuron, in one SQLite file.

Per model, layer and neuron the index keeps the ``depth`` (default 50) highest activations over
everything indexed, each with its source (an activation file or a corpus text) and position: one
row per neuron in ``neuron_tops``, its list stored as three little-endian arrays (float32
activations, int32 source ids, int32 positions), best first, and, for the first ``EXAMPLES``
entries of a list that an indexing pass gave windows, their activation windows (float32
``[EXAMPLES, WINDOW]``, NaN where an entry has none or past a window's end), so a neuron page
shows its examples without running the model. The ``sources`` table keeps each text's token ids
and readable tokens, so context snippets are cut at query time and activations can be
recomputed. Adding sources merges the new top lists into the stored ones in one
transaction, so the index stays one bounded row per neuron however large the corpus grows.

With an indexing pass of a corpus (:func:`~neuronscope.analysis.max_activating.index_pass`)
the index also keeps, per neuron, the ``depth`` most negative activations (``neuron_bottoms``,
stored negated so both tails merge the same way) and exact statistics (``neuron_stats``: count,
mean, sum of squared deviations, positives, min, max, the fixed-bin histogram, merged exactly
when more sources are added; the top input tokens and the lookup score of the latest pass) and,
per token id seen often enough, each layer's neurons with the highest mean activation on it
(``token_neurons``, from the latest pass: search by token).

Concurrency: WAL mode (readers never wait for the writer), one short-lived connection per
operation (safe under a multi-threaded WSGI server), writes serialised by a lock and
``BEGIN IMMEDIATE``.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Protocol, Sequence

import numpy as np

from neuronscope.analysis.neuron_stats import LayerStats, TokenView
from neuronscope.analysis.neuron_view import EXAMPLES, WINDOW

SCHEMA_VERSION = 3
SCHEMA = """
CREATE TABLE IF NOT EXISTS models (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS sources (
    id INTEGER PRIMARY KEY,
    model_id INTEGER NOT NULL REFERENCES models(id),
    kind TEXT NOT NULL CHECK (kind IN ('file', 'corpus')),
    name TEXT NOT NULL,
    token_ids BLOB NOT NULL,
    tokens TEXT NOT NULL,
    n_tokens INTEGER NOT NULL,
    created_at REAL NOT NULL,
    UNIQUE (model_id, kind, name)
);
CREATE TABLE IF NOT EXISTS neuron_stats (
    model_id INTEGER NOT NULL REFERENCES models(id),
    layer INTEGER NOT NULL,
    neuron INTEGER NOT NULL,
    count INTEGER NOT NULL,
    mean REAL NOT NULL,
    m2 REAL NOT NULL,
    positive INTEGER NOT NULL,
    minimum REAL NOT NULL,
    maximum REAL NOT NULL,
    histogram BLOB NOT NULL,
    input_ids BLOB,
    input_means BLOB,
    input_counts BLOB,
    score REAL,
    PRIMARY KEY (model_id, layer, neuron)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS token_neurons (
    model_id INTEGER NOT NULL REFERENCES models(id),
    token_id INTEGER NOT NULL,
    layer INTEGER NOT NULL,
    count INTEGER NOT NULL,
    neurons BLOB NOT NULL,
    means BLOB NOT NULL,
    PRIMARY KEY (model_id, token_id, layer)
) WITHOUT ROWID;
"""
_VALUE, _ID, _COUNT = np.dtype("<f4"), np.dtype("<i4"), np.dtype("<i8")
TAILS = ("neuron_tops", "neuron_bottoms")
_TAIL_TABLE = """
CREATE TABLE IF NOT EXISTS {table} (
    model_id INTEGER NOT NULL REFERENCES models(id),
    layer INTEGER NOT NULL,
    neuron INTEGER NOT NULL,
    activations BLOB NOT NULL,
    source_ids BLOB NOT NULL,
    positions BLOB NOT NULL,
    windows BLOB,
    PRIMARY KEY (model_id, layer, neuron)
) WITHOUT ROWID;
"""
_LAYER_LISTS = """
SELECT neuron, activations, source_ids, positions, windows FROM {table} WHERE model_id = ? AND layer = ?
"""
_NEURON_LISTS = """
SELECT neuron, activations, source_ids, positions, windows FROM {table}
WHERE model_id = (SELECT id FROM models WHERE name = ?) AND layer = ? AND neuron IN (SELECT value FROM json_each(?))
"""
_STATS_COLUMNS = "count, mean, m2, positive, minimum, maximum, histogram, input_ids, input_means, input_counts, score"


class LayerTops(Protocol):
    """Top positions of every neuron of one layer: ``[d_mlp, k]`` arrays, sequences index the new
    sources; ``windows`` those of the first entries or None
    (:class:`~neuronscope.analysis.max_activating.TopList`)."""

    values: np.ndarray
    sequences: np.ndarray
    positions: np.ndarray
    windows: np.ndarray | None

    def padded_windows(self) -> np.ndarray:
        """``[d_mlp, k, WINDOW]``: the windows, NaN where an entry has none."""


@dataclass(frozen=True)
class NewSource:
    """A text to index: ``kind`` ``file`` (an activation file, ``name`` its file name) or ``corpus``."""

    kind: str
    name: str
    token_ids: Sequence[int]
    tokens: Sequence[str]


@dataclass(frozen=True)
class StoredSource:
    id: int
    kind: str
    name: str
    token_ids: list[int]
    tokens: list[str]

    @property
    def label(self) -> str:
        """How results name the source: the activation file name, or ``corpus:<id>``."""
        return self.name if self.kind == "file" else f"corpus:{self.id}"


@dataclass(frozen=True)
class Hit:
    """One indexed token position of a neuron; ``window``: the neuron's activations over the
    position's example window, when the index stored it."""

    activation: float
    source: StoredSource
    position: int
    window: np.ndarray | None = None


@dataclass(frozen=True)
class NeuronRecord:
    """One neuron's stored statistics (see :mod:`neuronscope.analysis.neuron_stats`)."""

    count: int
    mean: float
    m2: float
    positive: int
    minimum: float
    maximum: float
    histogram: np.ndarray
    input_ids: list[int]
    input_means: list[float]
    input_counts: list[int]
    score: float | None


@dataclass(frozen=True)
class TopListRows:
    """One neuron's stored list, best first: ``values``, ``sources``, ``positions`` ``[<=depth]``;
    ``windows`` ``[<=EXAMPLES, WINDOW]`` (NaN rows: none stored)."""

    values: np.ndarray
    sources: np.ndarray
    positions: np.ndarray
    windows: np.ndarray


def _decode(values: bytes, sources: bytes, positions: bytes, windows: bytes | None) -> TopListRows:
    return TopListRows(
        np.frombuffer(values, dtype=_VALUE),
        np.frombuffer(sources, dtype=_ID).astype(np.int64),
        np.frombuffer(positions, dtype=_ID).astype(np.int64),
        np.frombuffer(windows, dtype=_VALUE).reshape(-1, WINDOW) if windows else np.empty((0, WINDOW), dtype=np.float32),
    )


class ActivationIndex:
    """The SQLite index of max-activating token positions (see the module docstring)."""

    def __init__(self, path: Path, depth: int = 50):
        self.path = path
        self.depth = depth
        self._write_lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        with closing(sqlite3.connect(path, timeout=30, isolation_level=None)) as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(SCHEMA + "".join(_TAIL_TABLE.format(table=table) for table in TAILS))
            for table in TAILS:
                if "windows" not in {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}:
                    conn.execute(f"ALTER TABLE {table} ADD COLUMN windows BLOB")
            conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        with closing(sqlite3.connect(self.path, timeout=30, isolation_level=None)) as conn:
            conn.execute("PRAGMA synchronous=NORMAL")
            yield conn

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._write_lock, self._connect() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def indexed_names(self, model: str, kind: str, names: Sequence[str]) -> set[str]:
        """Which of ``names`` (of ``kind``) are already indexed for ``model``."""
        query = """SELECT s.name FROM sources AS s JOIN models AS m ON m.id = s.model_id
                   WHERE m.name = ? AND s.kind = ? AND s.name IN (SELECT value FROM json_each(?))"""
        with self._connect() as conn:
            return {row[0] for row in conn.execute(query, (model, kind, json.dumps(list(names))))}

    def add(
        self, model: str, sources: Sequence[NewSource], tops: Sequence[LayerTops], *,
        bottoms: Sequence[LayerTops] | None = None, stats: Sequence[LayerStats] | None = None,
        views: Sequence[TokenView] | None = None,
    ) -> list[int]:
        """Store ``sources`` and merge their per-layer top lists ``tops`` (one per layer), atomically.

        ``bottoms``: the per-layer bottom lists, values negated (most negative first);
        ``stats``: per-layer statistics, merged exactly into the stored ones; ``views``: per-layer
        input tokens and lookup scores, replacing the stored ones. Returns the new source ids,
        in the order of ``sources``.
        """
        with self._transaction() as conn:
            conn.execute("INSERT OR IGNORE INTO models (name) VALUES (?)", (model,))
            model_id = conn.execute("SELECT id FROM models WHERE name = ?", (model,)).fetchone()[0]
            ids = [self._insert_source(conn, model_id, source) for source in sources]
            source_ids = np.asarray(ids, dtype=np.int64)
            for table, lists in zip(TAILS, (tops, bottoms or [])):
                for layer, top in enumerate(lists):
                    self._merge_layer(conn, table, model_id, layer, top, source_ids[top.sequences])
            for layer, layer_stats in enumerate(stats or []):
                self._merge_stats(conn, model_id, layer, layer_stats, views[layer] if views else None)
            for layer, view in enumerate(views or []):
                conn.execute("DELETE FROM token_neurons WHERE model_id = ? AND layer = ?", (model_id, layer))
                conn.executemany(
                    "INSERT INTO token_neurons VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        (model_id, int(t), layer, int(c), n.astype(_ID).tobytes(), m.astype(_VALUE).tobytes())
                        for t, c, n, m in zip(view.token_ids, view.token_counts, view.token_neurons, view.token_means)
                    ),
                )
        return ids

    def token_neurons(self, model: str, token_id: int, layers: Sequence[int] | None = None) -> list[tuple[int, int, float, int]]:
        """``(layer, neuron, mean, count)``: per layer, the neurons with the highest mean activation on
        ``token_id`` (from the latest indexing pass), of ``layers`` (all when None)."""
        query = """SELECT layer, count, neurons, means FROM token_neurons
                   WHERE model_id = (SELECT id FROM models WHERE name = ?) AND token_id = ?"""
        with self._connect() as conn:
            rows = conn.execute(query, (model, token_id)).fetchall()
        return [
            (layer, int(n), float(m), count)
            for layer, count, neurons, means in rows
            if layers is None or layer in layers
            for n, m in zip(np.frombuffer(neurons, dtype=_ID), np.frombuffer(means, dtype=_VALUE))
        ]

    @staticmethod
    def _merge_stats(conn: sqlite3.Connection, model_id: int, layer: int, stats: LayerStats, view: TokenView | None) -> None:
        """Merge ``stats`` of every neuron of ``layer`` into the stored ones; store ``view``'s token results."""
        rows = conn.execute(
            f"SELECT neuron, {_STATS_COLUMNS} FROM neuron_stats WHERE model_id = ? AND layer = ?", (model_id, layer)
        ).fetchall()
        if rows:
            rows.sort()
            old = LayerStats(
                count=np.array([r[1] for r in rows], dtype=np.int64), mean=np.array([r[2] for r in rows]),
                m2=np.array([r[3] for r in rows]), positive=np.array([r[4] for r in rows], dtype=np.int64),
                minimum=np.array([r[5] for r in rows]), maximum=np.array([r[6] for r in rows]),
                histogram=np.stack([np.frombuffer(r[7], dtype=_COUNT) for r in rows]).astype(np.int64),
            )
            if len(rows) == len(stats.count):
                stats = old.merged(stats)
        records = []
        for n in range(len(stats.count)):
            token_part = (None, None, None, None)
            if view is not None:
                score = float(view.score[n])
                token_part = (
                    view.input_ids[n].astype(_ID).tobytes(), view.input_means[n].astype(_VALUE).tobytes(),
                    view.input_counts[n].astype(_ID).tobytes(), score if np.isfinite(score) else None,
                )
            elif rows:
                token_part = rows[n][8:12]
            records.append((
                model_id, layer, n, int(stats.count[n]), float(stats.mean[n]), float(stats.m2[n]), int(stats.positive[n]),
                float(stats.minimum[n]), float(stats.maximum[n]), stats.histogram[n].astype(_COUNT).tobytes(), *token_part,
            ))
        conn.executemany("INSERT OR REPLACE INTO neuron_stats VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", records)

    def neuron_stats(self, model: str, layer: int, neuron: int) -> NeuronRecord | None:
        """The stored statistics of one neuron, or None when nothing is indexed for it."""
        query = f"""SELECT {_STATS_COLUMNS} FROM neuron_stats
                    WHERE model_id = (SELECT id FROM models WHERE name = ?) AND layer = ? AND neuron = ?"""
        with self._connect() as conn:
            row = conn.execute(query, (model, layer, neuron)).fetchone()
        if row is None:
            return None
        count, mean, m2, positive, minimum, maximum, histogram, ids, means, counts, score = row
        return NeuronRecord(
            count=count, mean=mean, m2=m2, positive=positive, minimum=minimum, maximum=maximum,
            histogram=np.frombuffer(histogram, dtype=_COUNT).astype(np.int64),
            input_ids=np.frombuffer(ids, dtype=_ID).tolist() if ids is not None else [],
            input_means=np.frombuffer(means, dtype=_VALUE).tolist() if means is not None else [],
            input_counts=np.frombuffer(counts, dtype=_ID).tolist() if counts is not None else [],
            score=score,
        )

    @staticmethod
    def _insert_source(conn: sqlite3.Connection, model_id: int, source: NewSource) -> int:
        cursor = conn.execute(
            "INSERT INTO sources (model_id, kind, name, token_ids, tokens, n_tokens, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                model_id, source.kind, source.name, np.asarray(source.token_ids, dtype="<i4").tobytes(),
                json.dumps(list(source.tokens)), len(source.token_ids), time.time(),
            ),
        )
        return int(cursor.lastrowid)

    def _merge_layer(self, conn: sqlite3.Connection, table: str, model_id: int, layer: int, new: LayerTops, sources: np.ndarray) -> None:
        """Merge the candidates ``new`` (``[d_mlp, k]``, ``sources`` their source ids) into the stored
        lists; rewrite the neurons that changed.

        Lists are ordered by activation (descending), then source id (the order sources were added
        in) and position: a total order, so ties never make a list depend on how candidates were
        batched. Only the first ``EXAMPLES``
        windows of a list are stored: a stored entry past them can never move ahead of them, so the
        merged list's first ``EXAMPLES`` always have their windows when the candidates do.
        """
        d_mlp = new.values.shape[0]
        old_values = np.full((d_mlp, self.depth), -np.inf, dtype=np.float32)
        old_sources = np.zeros((d_mlp, self.depth), dtype=np.int64)
        old_positions = np.zeros((d_mlp, self.depth), dtype=np.int64)
        old_windows = np.full((d_mlp, self.depth, WINDOW), np.nan, dtype=np.float32)
        for neuron, *blobs in conn.execute(_LAYER_LISTS.format(table=table), (model_id, layer)):
            if neuron < d_mlp:
                stored = _decode(*blobs)
                count = len(stored.values)
                old_values[neuron, :count] = stored.values
                old_sources[neuron, :count] = stored.sources
                old_positions[neuron, :count] = stored.positions
                old_windows[neuron, : len(stored.windows)] = stored.windows
        all_values = np.concatenate([old_values, new.values.astype(np.float32)], axis=1)
        all_sources = np.concatenate([old_sources, sources], axis=1)
        all_positions = np.concatenate([old_positions, new.positions], axis=1)
        order = np.lexsort((all_positions, all_sources, -all_values), axis=1)[:, : self.depth]
        values = np.take_along_axis(all_values, order, axis=1)
        kept_sources = np.take_along_axis(all_sources, order, axis=1)
        positions = np.take_along_axis(all_positions, order, axis=1)
        first = order[:, :EXAMPLES, None]
        windows = np.take_along_axis(np.concatenate([old_windows, new.padded_windows()], axis=1), first, axis=1)
        changed = ((values != old_values) | (kept_sources != old_sources) | (positions != old_positions)).any(axis=1)
        counts = np.isfinite(values).sum(axis=1)
        conn.executemany(
            f"INSERT OR REPLACE INTO {table} VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                (
                    model_id, layer, int(n),
                    values[n, : counts[n]].astype(_VALUE).tobytes(),
                    kept_sources[n, : counts[n]].astype(_ID).tobytes(),
                    positions[n, : counts[n]].astype(_ID).tobytes(),
                    windows[n, : min(counts[n], EXAMPLES)].astype(_VALUE).tobytes(),
                )
                for n in np.nonzero(changed & (counts > 0))[0]
            ),
        )

    def top(self, model: str, layer: int, neuron: int, k: int, *, tail: str = "top") -> list[Hit]:
        """The ``k`` highest (``tail="bottom"``: lowest) activations of neuron (layer, neuron) with
        their sources, most extreme first."""
        table, sign = ("neuron_tops", 1.0) if tail == "top" else ("neuron_bottoms", -1.0)
        with self._connect() as conn:
            rows = conn.execute(_NEURON_LISTS.format(table=table), (model, layer, json.dumps([neuron]))).fetchall()
            if not rows:
                return []
            stored = _decode(*rows[0][1:])
            sources = self._sources(conn, np.unique(stored.sources[:k]).tolist())
        windows = [w if not np.isnan(w[0]) else None for w in stored.windows] + [None] * max(0, k - len(stored.windows))
        return [
            Hit(sign * float(value), sources[int(source)], int(position), window)
            for value, source, position, window in zip(stored.values[:k], stored.sources[:k], stored.positions[:k], windows)
        ]

    def neuron_lists(self, model: str, layer: int, neurons: Sequence[int]) -> dict[int, TopListRows]:
        """The stored lists of ``neurons`` of ``layer`` (a neuron with nothing stored is absent)."""
        with self._connect() as conn:
            rows = conn.execute(
                _NEURON_LISTS.format(table="neuron_tops"), (model, layer, json.dumps([int(n) for n in neurons]))
            ).fetchall()
        return {neuron: _decode(*blobs) for neuron, *blobs in rows}

    @staticmethod
    def _sources(conn: sqlite3.Connection, ids: Sequence[int]) -> dict[int, StoredSource]:
        query = "SELECT id, kind, name, token_ids, tokens FROM sources WHERE id IN (SELECT value FROM json_each(?))"
        rows = conn.execute(query, (json.dumps([int(i) for i in ids]),)).fetchall()
        return {
            row[0]: StoredSource(row[0], row[1], row[2], np.frombuffer(row[3], dtype=_ID).tolist(), json.loads(row[4]))
            for row in rows
        }

    def sources(self, ids: Sequence[int]) -> dict[int, StoredSource]:
        """The stored sources with these ids, token ids included."""
        with self._connect() as conn:
            return self._sources(conn, ids)

    def version(self, model: str) -> str:
        """Changes whenever sources are added for ``model``, also across a deleted and re-created
        index: this file's path, the number of sources and the latest one's creation time."""
        query = """SELECT COUNT(*), MAX(s.created_at) FROM sources AS s JOIN models AS m ON m.id = s.model_id WHERE m.name = ?"""
        with self._connect() as conn:
            count, latest = conn.execute(query, (model,)).fetchone()
        return f"{self.path}:{count}:{latest!r}"

    def indexed_models(self) -> list[dict]:
        """Each model with indexed sources: ``{model_name, texts, tokens}``."""
        query = """SELECT m.name, COUNT(s.id), COALESCE(SUM(s.n_tokens), 0) FROM models AS m
                   JOIN sources AS s ON s.model_id = m.id GROUP BY m.id ORDER BY m.name"""
        with self._connect() as conn:
            return [{"model_name": name, "texts": texts, "tokens": tokens} for name, texts, tokens in conn.execute(query)]

    def stats(self, model: str) -> dict[str, int]:
        """How much is indexed for ``model``: sources by kind and tokens."""
        query = """SELECT s.kind, COUNT(*), COALESCE(SUM(s.n_tokens), 0) FROM sources AS s
                   JOIN models AS m ON m.id = s.model_id WHERE m.name = ? GROUP BY s.kind"""
        with self._connect() as conn:
            rows = {kind: (count, tokens) for kind, count, tokens in conn.execute(query, (model,))}
        files, corpus = rows.get("file", (0, 0)), rows.get("corpus", (0, 0))
        return {
            "sources": files[0] + corpus[0],
            "activation_files": files[0],
            "corpus_texts": corpus[0],
            "tokens": files[1] + corpus[1],
            "depth": self.depth,
        }
