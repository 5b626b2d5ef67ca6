"""Corpora: the default corpus (built from Debian's ``fortunes`` on first use), uploads, deletion,
and indexing a corpus' ``explore`` split for the loaded model into the corpus' own index."""

from __future__ import annotations

import logging
import threading
from collections import Counter
from contextlib import contextmanager
from typing import Iterator

from neuronscope.analysis.forward import encode
from neuronscope.analysis.progress import ProgressFn, no_progress
from neuronscope.config import Settings
from neuronscope.corpora import fortunes
from neuronscope.corpora.texts import MAX_TEXT_TOKENS, MAX_WORDS, SPLITS, corpus_texts, split_ids
from neuronscope.corpora.uploads import parse_upload
from neuronscope.errors import BadRequest, Conflict, CorpusUnavailable
from neuronscope.modeling.manager import LoadedModel, ModelManager
from neuronscope.services.activations import ActivationService
from neuronscope.timestamps import utc_now
from neuronscope.services.validation import context_length
from neuronscope.storage.corpora import CorpusStore, check_corpus_name

log = logging.getLogger(__name__)

DEFAULT_CORPUS = "default"


class CorpusService:
    def __init__(self, settings: Settings, manager: ModelManager, activations: ActivationService):
        self.settings = settings
        self.manager = manager
        self.activations = activations
        self.store = CorpusStore(settings.data_dir / "corpora", settings.index_depth)
        self.fortunes_dir = fortunes.FORTUNES_DIR
        self._lock = threading.Lock()
        self._indexing: Counter[str] = Counter()

    def _ensure_default(self) -> None:
        """Build and cache the default corpus from the installed ``fortunes`` package if not cached yet."""
        if self.store.exists(DEFAULT_CORPUS) or not self.fortunes_dir.is_dir():
            return
        texts = corpus_texts(fortunes.fortune_documents(self.fortunes_dir))
        self.store.write(self._record(DEFAULT_CORPUS, fortunes.SOURCE, fortunes.LICENCE, texts))
        log.info("built the default corpus: %d texts from %s", len(texts), self.fortunes_dir)

    @staticmethod
    def _record(name: str, source: str, licence: str, texts: list[dict]) -> dict:
        return {
            "name": name, "source": source, "licence": licence, "created_at": utc_now(),
            "rule": f"texts of <= {MAX_WORDS} words, <= {MAX_TEXT_TOKENS} tokens when indexed",
            "texts": texts,
        }

    def get(self, name: str) -> dict:
        """The corpus record ``name`` (the default corpus is built on first use; 503 when its package is missing)."""
        if check_corpus_name(name) == DEFAULT_CORPUS:
            self._ensure_default()
            if not self.store.exists(DEFAULT_CORPUS):
                raise CorpusUnavailable(
                    f"the default corpus needs Debian's '{fortunes.PACKAGE}' package ({self.fortunes_dir}): run `make corpus`"
                )
        return self.store.read(name)

    def describe(self, name: str) -> dict:
        """Name, source, licence, sizes per split, and the models indexed on it."""
        record = self.get(name)
        texts = record["texts"]
        splits = split_ids(texts)
        index = self.store.index(name) if self.store.has_index(name) else None
        return {
            "name": name,
            "source": record["source"],
            "licence": record["licence"],
            "created_at": record["created_at"],
            "texts": len(texts),
            "words": sum(len(t["text"].split()) for t in texts),
            "splits": {split: len(ids) for split, ids in splits.items()},
            "indexed_models": index.indexed_models() if index is not None else [],
        }

    def list(self) -> dict:
        self._ensure_default()
        corpora = [self.describe(name) for name in self.store.names()]
        return {"corpora": corpora, "count": len(corpora), "splits": list(SPLITS)}

    def upload(self, name: str, filename: str, data: bytes) -> dict:
        """Store the uploaded file as corpus ``name``: 400 for a bad or reserved name (in any letter
        case) or a bad file, 409 when a corpus of that name (in any letter case) exists."""
        check_corpus_name(name)
        if name.casefold() == DEFAULT_CORPUS:
            raise BadRequest(f"{DEFAULT_CORPUS!r} is reserved for the built-in corpus (in any letter case)")
        taken = self.store.same_name(name)
        if taken is not None:
            raise Conflict(
                f"a corpus named {taken!r} exists (names are compared ignoring letter case); "
                "delete it first or choose another name"
            )
        documents = parse_upload(filename, data)
        texts = corpus_texts([("upload", text) for text in documents], join=False)
        if len(texts) > self.settings.max_corpus_texts:
            raise BadRequest(f"the file makes {len(texts)} texts; the limit is {self.settings.max_corpus_texts} (max_corpus_texts)")
        self.store.write(self._record(name, f"upload: {filename}", "as given by the uploader", texts))
        return self.describe(name)

    def delete(self, name: str) -> dict:
        """Remove corpus ``name`` and its index: 400 for the default corpus (in any letter case), 409
        while it is being indexed, 404 when absent."""
        if check_corpus_name(name).casefold() == DEFAULT_CORPUS:
            raise BadRequest(f"the {DEFAULT_CORPUS!r} corpus cannot be deleted")
        with self._lock:
            if self._indexing[name.casefold()]:
                raise Conflict(f"corpus {name!r} is being indexed; delete it once its index run has ended")
            self.store.delete(name)
        return {"message": f"deleted corpus {name!r}", "name": name}

    @contextmanager
    def _indexed(self, name: str) -> Iterator[None]:
        """Mark corpus ``name`` as being indexed (so it cannot be deleted, in any letter case) for the
        ``with`` block."""
        key = name.casefold()
        with self._lock:
            self._indexing[key] += 1
        try:
            yield
        finally:
            with self._lock:
                self._indexing[key] -= 1
                if not self._indexing[key]:
                    del self._indexing[key]

    def explore_tokens(self, lm: LoadedModel, name: str) -> int:
        """Tokens an index pass of corpus ``name`` runs through ``lm`` (its capped ``explore`` texts)."""
        cap = self.token_cap(lm)
        return sum(min(cap, len(ids)) for ids in lm.tokenizer([t["text"] for t in self._explore(name)])["input_ids"])

    def index(self, name: str, *, batch_size: int, progress: ProgressFn = no_progress) -> dict:
        """Index corpus ``name``'s ``explore`` split for the loaded model (texts already indexed are skipped).

        Each text is capped at ``MAX_TEXT_TOKENS`` tokens (or the model's context length when shorter).
        The corpus cannot be deleted meanwhile (409).
        """
        with self._indexed(name):
            texts = self._explore(name)
            with self.manager.use() as lm:
                cap = self.token_cap(lm)
                encoded = [encode(lm.tokenizer, t["text"])[0, :cap].tolist() for t in texts]
                names = [str(t["id"]) for t in texts]
                result = self.activations.index_sequences(
                    lm, self.store.index(name), names, encoded, batch_size, progress, full=True
                )
        return {**result, "corpus": name, "split": "explore"}

    def _explore(self, name: str) -> list[dict]:
        return [t for t in self.get(name)["texts"] if t["split"] == "explore"]

    @staticmethod
    def token_cap(lm: LoadedModel) -> int:
        """Tokens an indexed text keeps: ``MAX_TEXT_TOKENS``, or the model's context when shorter."""
        return min(MAX_TEXT_TOKENS, context_length(lm) or MAX_TEXT_TOKENS)
