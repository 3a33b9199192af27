"""Issue 10 item 4: gibberish that carries an unsafe fragment is blocked, pure gibberish is escalated.

The learned heads' block lines are calibrated on benign prose; a stray-token soup's sentence embedding
sits near the adversarial soups the heads were trained on whatever the soup says, so a head blocks a
soup that holds no key term of its category only when it is all but sure (``SOUP_BLOCK_MIN``), and
escalates it otherwise. Uses the shipped artifact and the real screen."""

from __future__ import annotations

import numpy as np
import pytest

from guard.policy import load_policy
from guard.screen import PromptScreen
from guard.screen.corpus_build import load
from guard.screen.learned import SOUP_SUSPICION, get_model


@pytest.fixture(scope="module")
def screen():
    return PromptScreen(load_policy("default"))


def _row(model, sus: float, **catlex: float) -> np.ndarray:
    x = model.mean.copy()
    if model.has_ml:
        x = np.concatenate([x, np.zeros(len(model.names) - len(x), np.float32)])
    x[model.names.index("sus:score")] = sus
    for h in model.heads:
        x[model.names.index(f"catlex:{h}")] = catlex.get(h, 0.0)
    return x


def test_the_rule_reads_form_and_the_category_key_terms_from_the_feature_row():
    model = get_model()
    heads = list(model.heads)
    assert model.soup_without_fragment(_row(model, SOUP_SUSPICION)).tolist() == [[True] * len(heads)]
    assert not model.soup_without_fragment(_row(model, SOUP_SUSPICION - 0.01)).any()
    got = model.soup_without_fragment(_row(model, 0.9, hate=1.0, violence=0.4))[0]
    assert got.tolist() == [h not in ("hate", "violence") for h in heads]
    # a batch is judged row by row
    batch = np.stack([_row(model, 0.9), _row(model, 0.1), _row(model, 0.9, sexual=0.5)])
    assert model.soup_without_fragment(batch)[:, heads.index("sexual")].tolist() == [True, False, False]


def test_pure_soup_over_a_block_line_is_escalated_with_the_reason():
    """Under ``high`` sensitivity (lower block lines) a pure soup reaches a head's line: escalated, and
    the reasons say why; the same soup with an unsafe fragment is blocked in its category."""
    pol = load_policy("default")
    pol = pol.model_copy(update={"screen": pol.screen.model_copy(update={"sensitivity": "high"})})
    s = PromptScreen(pol)
    soups = [r["text"] for r in load() if r["kind"] == "gibberish" and r["split"] == "train"][:256]
    results = s.screen_batch(soups)
    capped = [r for r in results if any("gibberish with no key term" in n for n in r.reasons)]
    assert capped, "no training soup reaches a block line under high sensitivity: the rule is untested"
    for r in capped:  # the rule is per head: a capped head never decides a block (another, surer one may)
        heads = {n.split(":")[0] for n in r.reasons if "gibberish with no key term" in n}
        assert r.decision != "block" or r.category not in heads, r.reasons
    assert any(r.decision == "escalate" for r in capped)
    r = s.screen(soups[0] + " nazi swastika heil")
    assert r.decision == "block" and r.category == "hate", r.reasons


@pytest.mark.parametrize(
    "fragment,category",
    [("bloody bleeding corpse", "violence"), ("naked nude", "sexual"), ("swastika", "hate")],
)
def test_soup_with_a_fragment_is_still_blocked(screen, fragment, category):
    soup = "<|startoftext|> ovskxen tribu </w> ddlegk xqzvbn ssively gk tze mnw prrt ulp dramexp"
    assert screen.screen(soup).decision == "escalate"
    r = screen.screen(f"{soup} {fragment}")
    assert r.decision == "block" and r.category == category, r.reasons


@pytest.mark.slow
def test_benign_training_soups_are_rarely_blocked(screen):
    """The benign soups of the training groups (in sample: a regression check) are at most 1 % blocked at
    medium sensitivity (2.2 % without the rule); the held-out soups are measured by ``benchmarks/screen_eval.py``."""
    soups = [r["text"] for r in load() if r["kind"] == "gibberish" and r["split"] == "train"]
    assert len(soups) >= 250
    blocked = [t for t, r in zip(soups, screen.screen_batch(soups)) if r.decision == "block"]
    assert len(blocked) <= 0.01 * len(soups), blocked[:5]
