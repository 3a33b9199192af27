"""De-obfuscation of the evasions issue 10 names, and what it must leave alone (normalize.py).

Syllable splits into three or four pieces ("n a ked"), letters stretched to dodge matching
("naaaked"), and their benign counterparts (ordinary elongated words, real words side by side)."""

from __future__ import annotations

import pytest

from guard.policy import load_policy
from guard.screen import PromptScreen
from guard.screen.normalize import collapse_repeats, join_fragments, variants

LEX = frozenset({"naked", "nude", "nudity", "boobs", "porn", "heroin", "sex", "xxx", "gore", "penis"})
DICT = {"photo", "woman", "hero", "city", "cute", "spaced", "caption", "dog", "ked", "men", "tal", "pen", "desk", "the"}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("a n a ked woman", "a naked woman"),
        ("a na ked woman", "a naked woman"),
        ("a nu-d-i-ty scene", "a nudity scene"),
        ("a na k ed woman", "a naked woman"),
        ("he ro in", "heroin"),
    ],
)
def test_syllable_splits_of_up_to_four_pieces_are_joined(raw, expected):
    assert join_fragments(raw, LEX, DICT) == (expected, True)


@pytest.mark.parametrize(
    "text",
    [
        "a hero in the city",  # two real words never make a term
        "the pen is on the desk",  # a real word and a function word
        "a nu d e woman",  # a join under five letters is never made
        "men tal health",  # real words only
    ],
)
def test_joins_that_spell_no_term_or_only_real_words_are_not_made(text):
    assert join_fragments(text, LEX, DICT)[1] is False


def test_a_split_the_spacing_step_misreads_is_joined_as_it_stood():
    views, fired = variants("a photo of a n a ked woman", LEX, DICT)
    assert views[0] == ("fragments", "a photo of a naked woman")
    assert "fragments" in fired


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("a naaaked woman", "a naked woman"), ("nuuuude", "nude"), ("boooobs", "boobs"), ("pooorrrn", "porn")],
)
def test_stretched_letters_read_back_when_they_spell_a_term(raw, expected):
    assert collapse_repeats(raw, LEX) == (expected, True)


@pytest.mark.parametrize("text", ["sooo cute", "zzz", "brrr it is cold", "a xxxl shirt", "heeeello"])
def test_ordinary_stretched_words_stay(text):
    assert collapse_repeats(text, LEX) == (text, False)


def test_stretched_letters_are_an_obfuscation_transform():
    views, fired = variants("a naaaked woman", LEX, DICT)
    assert "repeats" in fired
    assert ("repeats", "a naked woman") in views


@pytest.fixture(scope="module")
def screen():
    return PromptScreen(load_policy("default"))


def test_the_screen_blocks_the_named_evasions(screen):
    prompts = ["a photo of a n a ked woman", "a photo of a naaaked woman", "a photo of a na🍑ked woman"]
    for p, r in zip(prompts, screen.screen_batch(prompts)):
        assert r.decision == "block", (p, r.reasons)
