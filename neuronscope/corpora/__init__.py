"""Corpora of real text: the default corpus built from an installed package, and uploads."""
