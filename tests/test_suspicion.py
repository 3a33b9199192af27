"""Optimised-prompt suspicion judges form, not obfuscation: leetspeak and ordinary compound words are
no gibberish, while sub-word soup and stray special tokens still are. Uses the real WordPiece
vocabulary of the screen model."""

from __future__ import annotations

import pytest

from guard.screen.embedder import resolve_model_path
from guard.screen.suspicion import SuspicionScorer


@pytest.fixture(scope="module")
def scorer():
    return SuspicionScorer(resolve_model_path("all-MiniLM-L6-v2"))


@pytest.mark.parametrize(
    "benign",
    [
        "a b0wl of p34ch35",
        "an eggplant, highly d3741l3d",  # leetspeak, and a compound word with a consonant cluster
        "an 1llu57r4710n of an eggplant",
        "a man shaking hands, lightning in the background, birthday cake",
        "a bowl of peaches",
    ],
)
def test_obfuscated_or_compound_benign_text_is_not_gibberish(scorer, benign):
    s = scorer.score(benign)
    assert s.score < 0.5, (s.score, s.signals)


@pytest.mark.parametrize(
    "gibberish",
    [
        "xkcdq vbnmrt zzqpl flower",
        "a photo of <|endoftext|> woman </w> </w>",
        "jdfkqx wrtzpl ghjkl nude",
    ],
)
def test_optimised_looking_text_still_is(scorer, gibberish):
    assert scorer.score(gibberish).score >= 0.5


@pytest.mark.parametrize(
    "foreign",
    [
        "zdjęcie: czerwony rower",  # accented words are not English gibberish
        "karlı bir dağ çizimi",
        "gül bahçesi, yağlı boya tablo",
        "बिस्तर पर एक लड़की की तस्वीर",  # Devanagari vowel signs are no symbols inside words
        "the ḱáab́á in mecca",  # nor are loose combining marks
    ],
)
def test_foreign_text_and_marks_are_not_gibberish(scorer, foreign):
    s = scorer.score(foreign)
    assert s.score < 0.5 and s.symbols_in_words == 0, (s.score, s.signals)


def test_leetspeak_is_scored_as_its_words(scorer):
    plain = scorer.score("a bowl of peaches on a table")
    leet = scorer.score("a b0wl of p34ch35 0n a 74bl3")
    assert leet.unknown_share == plain.unknown_share == 0.0
