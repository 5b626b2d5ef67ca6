"""A small folder in the format of Debian's fortunes package, for the default corpus in tests."""

from __future__ import annotations

from pathlib import Path

LONG_COOKIE_WORDS = 300


def write_cookies(folder: Path) -> Path:
    """Two prose files, an art file, an index and a ``.u8`` link (the layout of /usr/share/games/fortunes)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "science").write_text("Light is fast.\n\t\t-- A physicist\n%\nB\bBold text here.\n%\n")
    (folder / "work").write_text("A long one.\n" + "word " * LONG_COOKIE_WORDS + "\n%\nShort.\n%\n")
    (folder / "art").write_text("  /\\_/\\\n ( o.o )\n%\n")
    (folder / "science.dat").write_bytes(b"\x00\x01")
    (folder / "science.u8").symlink_to("science")
    return folder
