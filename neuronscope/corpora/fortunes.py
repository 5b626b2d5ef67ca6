"""Debian's ``fortunes`` package read as documents: one document per fortune cookie.

The package installs BSD ``fortune`` cookie files under ``/usr/share/games/fortunes``: plain
text, one cookie after another, each ended by a line holding only ``%``. Files holding ASCII
art (``art``, ``ascii-art``) are left out, as are the ``.dat`` indexes and the ``.u8`` links
(the same files again). Overstriking (``X\\bX``, bold on old terminals) is reduced to the text.
"""

from __future__ import annotations

import re
from pathlib import Path

FORTUNES_DIR = Path("/usr/share/games/fortunes")
PACKAGE = "fortunes"
SOURCE = "Debian package 'fortunes' (fortune-mod 1.99.1 cookie files), /usr/share/games/fortunes"
LICENCE = "BSD (fortune-mod, The Regents of the University of California); see docs/corpora.md"
NOT_PROSE = frozenset({"art", "ascii-art"})
_OVERSTRIKE = re.compile(".\b")
_SEPARATOR = re.compile(r"^%\s*$", re.MULTILINE)


def cookie_files(folder: Path = FORTUNES_DIR) -> list[Path]:
    """The cookie files of ``folder`` holding prose, sorted by name (symlinks and indexes left out)."""
    return sorted(
        path for path in folder.iterdir()
        if path.is_file() and not path.is_symlink() and not path.suffix and path.name not in NOT_PROSE
    )


def read_cookies(path: Path) -> list[str]:
    """The cookies of one file, in file order, overstriking removed, surrounding blank lines and trailing spaces stripped."""
    text = _OVERSTRIKE.sub("", path.read_bytes().decode("utf-8", errors="replace"))
    return [cookie.strip("\n").rstrip() for cookie in _SEPARATOR.split(text) if cookie.strip()]


def fortune_documents(folder: Path = FORTUNES_DIR) -> list[tuple[str, str]]:
    """``(category, cookie)`` for every cookie of every prose file of ``folder``, in a fixed order."""
    return [(path.name, cookie) for path in cookie_files(folder) for cookie in read_cookies(path)]
