"""The default corpus: reading fortune cookie files, the word rule, the fixed disjoint split."""

from __future__ import annotations

import pytest

from neuronscope.corpora import fortunes
from neuronscope.corpora.texts import MAX_WORDS, SPLITS, corpus_texts, cut_texts, split_ids, split_of

from tests.support.corpus_support import write_cookies


def test_fortune_documents_read_prose_cookies_only(tmp_path):
    write_cookies(tmp_path)
    documents = fortunes.fortune_documents(tmp_path)
    assert documents == [
        ("science", "Light is fast.\n\t\t-- A physicist"),
        ("science", "Bold text here."),
        ("work", "A long one.\n" + ("word " * 300).rstrip()),
        ("work", "Short."),
    ]


def test_texts_respect_the_word_limit_and_keep_every_word(tmp_path):
    write_cookies(tmp_path)
    documents = fortunes.fortune_documents(tmp_path)
    texts = cut_texts(documents, max_words=50)
    assert all(len(text.split()) <= 50 for _, text in texts)
    assert [w for _, text in texts for w in text.split()] == [w for _, doc in documents for w in doc.split()]
    assert {category for category, _ in texts} == {"science", "work"}
    assert texts[0] == ("science", "Light is fast.\n\t\t-- A physicist\n\nBold text here.")


def test_uploads_keep_one_text_per_document():
    texts = cut_texts([("upload", "one"), ("upload", "two")], join=False)
    assert texts == [("upload", "one"), ("upload", "two")]


def test_splits_are_disjoint_cover_everything_and_are_fixed():
    documents = [(f"c{i % 3}", f"document number {i} " * (i % 7 + 1)) for i in range(400)]
    texts = corpus_texts(documents, max_words=20)
    splits = split_ids(texts)
    ids = [t["id"] for t in texts]
    assert sorted(i for split in SPLITS for i in splits[split]) == ids
    for a in SPLITS:
        for b in SPLITS:
            assert a == b or not set(splits[a]) & set(splits[b])
    assert corpus_texts(documents, max_words=20) == texts
    assert [split_of(i) for i in range(10)] == ["explore"] * 6 + ["calibration"] * 2 + ["evaluation"] * 2
    counts = {split: len(splits[split]) for split in SPLITS}
    assert counts["explore"] > counts["calibration"] > 0 and counts["evaluation"] > 0


@pytest.mark.skipif(not fortunes.FORTUNES_DIR.is_dir(), reason="Debian's fortunes package is not installed (make corpus)")
def test_the_installed_package_makes_a_large_varied_corpus():
    texts = corpus_texts(fortunes.fortune_documents())
    words = sum(len(t["text"].split()) for t in texts)
    assert words >= 400_000  # about 680,000 tokens for SmolLM2's tokenizer (docs/corpora.md)
    assert all(len(t["text"].split()) <= MAX_WORDS for t in texts)
    assert {"literature", "news", "science", "computers", "startrek", "law"} <= {t["category"] for t in texts}
