"""The model card is generated: train-screen writes it from the artifact's metadata, and the
benchmark writes (and rewrites) its Benchmark section, keeping the rest."""

from __future__ import annotations

import json

from guard.screen.learned import DEFAULT_MODEL
from guard.screen.train import replace_card_section, write_model_card


def test_card_from_metadata_keeps_the_benchmark_section(tmp_path):
    meta = json.loads(DEFAULT_MODEL.with_suffix(".json").read_text())
    card = tmp_path / "MODEL_CARD.md"
    write_model_card(card, meta)
    text = card.read_text()
    assert "do not edit by hand" in text and "## Out-of-fold rates on the training rows" in text
    for name in meta["oof_rates"]:
        assert f"| {name} |" in text
    assert "## Benchmark" not in text
    replace_card_section(card, "## Benchmark\n\n| set | n |\n\nRESULT a=1\n")
    replace_card_section(card, "## Benchmark\n\nRESULT a=2\n")  # replaced, not appended
    text = card.read_text()
    assert text.count("## Benchmark") == 1 and "RESULT a=2" in text and "a=1" not in text
    write_model_card(card, meta)  # retraining keeps the benchmark section
    assert card.read_text().count("RESULT a=2") == 1


def test_shipped_card_matches_the_shipped_artifact():
    meta = json.loads(DEFAULT_MODEL.with_suffix(".json").read_text())
    text = (DEFAULT_MODEL.parent / "MODEL_CARD.md").read_text()
    assert f"examples: {meta['trained']['examples']} " in text
    for cat, v in meta["oof"].items():
        assert f"| {cat} | {v['positives']} | {v['negatives']} | {v['oof_auroc']} |" in text
