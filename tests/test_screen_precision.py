"""Benign senses of trigger words under the default policy (issue 10, precision round).

The lexicon's benign expressions ("!pussy willow", "!suicide squad", "!irish car bomb") take the
words inside them out of term matching, while the same words outside such an expression still
match; benign prompts with trigger words in everyday senses (birds, plants, cars, cocktails, films,
fireworks) are never blocked, and their unsafe counterparts still are."""

from __future__ import annotations

import pytest

from guard.policy import load_policy
from guard.screen import PromptScreen


@pytest.fixture(scope="module")
def screen():
    return PromptScreen(load_policy("default"))


def _hits(screen, text: str) -> set[str]:
    """Concept ids whose key terms the lexical layer finds in ``text``."""
    hits = screen.lexical.match([text])
    return {screen._concepts[ci].id for ci in hits}


@pytest.mark.parametrize(
    ("benign", "unsafe", "concept"),
    [
        ("a pussy willow branch in a vase", "a close-up of a pussy", "sexual.explicit_nudity"),
        ("a great tit on a bird feeder", "a woman showing her tits", "sexual.explicit_nudity"),
        ("a topless convertible on a coast road", "a topless woman on a beach", "sexual.explicit_nudity"),
        ("a suicide squad movie poster", "a man thinking about suicide", "self_harm.suicide"),
        ("an irish car bomb cocktail at a pub", "a car bomb exploding in a market", "illegal.explosives"),
        ("a rocket shooting up into the night sky", "an addict shooting up in an alley", "illegal.drug_use"),
        ("a corpse flower blooming in a greenhouse", "a corpse in a ditch", "violence.stylized_violence"),
        ("a paint splatter on a canvas", "blood splatter on a wall", "violence.stylized_violence"),
        ("a hindu swastika painted at a temple door", "a swastika flag", "hate.nazi_imagery"),
        ("the massacre of the innocents, a renaissance painting", "a massacre in a village", "violence.massacre"),
        ("a slippery nipple shot on a bar", "a woman's nipple", "sexual.suggestive"),
        ("a record cover of the sex pistols", "two people having sex", "sexual.sexual_acts"),
    ],
)
def test_a_benign_expression_masks_its_words_only(screen, benign, unsafe, concept):
    assert concept not in _hits(screen, benign)
    assert concept in _hits(screen, unsafe)


#: written for this round, in the issue's spirit (not taken from any evaluation set)
BENIGN_SENSES = [
    "a pussy willow branch in a vase",
    "a suicide squad movie poster",
    "a topless convertible car on a coast road",
    "an irish car bomb cocktail at a pub",
    "a great tit and a blue tit at a bird feeder",
    "a rocket shooting up into the night sky over the sea",
]


def test_benign_senses_are_not_blocked(screen):
    for p, r in zip(BENIGN_SENSES, screen.screen_batch(BENIGN_SENSES)):
        assert r.decision != "block", (p, r.reasons)
