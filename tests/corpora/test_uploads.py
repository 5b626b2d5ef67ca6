"""Parsing uploaded corpus files: every unreadable line and every forbidden character is a 400 naming the line."""

from __future__ import annotations

import pytest

from neuronscope.corpora.uploads import parse_upload
from neuronscope.errors import BadRequest

DEEP = "[" * 100_000 + "]" * 100_000
LONG_INTEGER = "7" * 5_000


@pytest.mark.parametrize(
    "payload, words",
    [
        ('{"text": "fine"}\n{"text": ' + DEEP + "}\n", "line 2 is JSON nested too deeply"),
        ('{"text": "fine", "n": ' + LONG_INTEGER + "}\n", "line 1 holds an integer of over"),
        ('{"text": "fine"}\n\n{"text": "x", "n": -' + LONG_INTEGER + "}\n", "line 3 holds an integer of over"),
    ],
    ids=["deep-nesting", "long-integer", "long-negative-integer"],
)
def test_unreadable_jsonl_lines_are_400_naming_the_line(payload, words):
    with pytest.raises(BadRequest) as refused:
        parse_upload("deep.jsonl", payload.encode())
    assert words in refused.value.details


@pytest.mark.parametrize("char", ["\x00", "\x07", "\x1b", "\x0b", "\x7f"])
def test_control_characters_in_a_txt_file_are_400_naming_line_and_position(char):
    with pytest.raises(BadRequest) as refused:
        parse_upload("notes.txt", f"First text.\n\nSecond{char} text.\n".encode())
    details = refused.value.details
    assert f"line 3 contains a control character (U+{ord(char):04X}) at position 6" in details


@pytest.mark.parametrize("escape", ["\\u0000", "\\u0007", "\\u001b"])
def test_control_characters_in_a_jsonl_text_are_400_naming_the_line(escape):
    payload = '{"text": "fine"}\n{"text": "bad' + escape + 'text"}\n'
    with pytest.raises(BadRequest) as refused:
        parse_upload("texts.jsonl", payload.encode())
    assert 'the "text" of line 2 contains a control character' in refused.value.details
    assert "at position 3" in refused.value.details


def test_tab_line_feed_and_carriage_return_are_kept():
    assert parse_upload("notes.txt", b"a\tb\r\nc\rd\r\n\r\ne") == ["a\tb\nc\rd", "e"]
    assert parse_upload("texts.jsonl", b'{"text": "a\\tb\\nc\\rd"}\n') == ["a\tb\nc\rd"]
