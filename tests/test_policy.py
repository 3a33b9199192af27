"""Policy files: loading, extends/include, and a clear located error for every kind of mistake."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from guard.errors import PolicyError
from guard.policy import builtin_policies, load_policy, policy_to_yaml


def write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(textwrap.dedent(text), encoding="utf-8")
    return p


MINIMAL = """\
version: 1
name: mini
concepts:
  - id: sexual.nudity
    category: sexual
    phrases: [a naked woman, full frontal nudity]
"""


@pytest.mark.parametrize("name", ["default", "strict", "art-styles"])
def test_builtin_policies_load(name):
    assert name in builtin_policies()
    p = load_policy(name)
    assert p.concepts and all(c.phrases for c in p.concepts)
    assert len(p.sha256) == 64


def test_default_covers_required_categories():
    cats = {c.category for c in load_policy("default").concepts if c.action == "block"}
    for required in ("sexual", "minors", "violence", "self_harm", "hate", "illegal"):
        assert required in cats


def test_strict_extends_default_and_is_stricter():
    d, s = load_policy("default"), load_policy("strict")
    d_ids = {c.id for c in d.concepts}
    assert d_ids <= {c.id for c in s.concepts}
    assert s.screen.threshold <= d.screen.threshold
    assert set(s.output.categories) == set(d.output.categories) >= {"sexual", "gore"}
    for name, cat in s.output.categories.items():
        for cid, labels in cat.signals.items():
            for label, t in labels.items():
                assert t <= d.output.categories[name].signals[cid].get(label, 1.0)


def test_minimal_policy_and_defaults(tmp_path):
    p = load_policy(write(tmp_path, "p.yaml", MINIMAL))
    assert p.name == "mini"
    assert p.fail_open is False and p.on_block == "blank"
    assert p.audit.store_prompts is False
    assert p.output.classifiers[0].thresholds["FEMALE_GENITALIA_EXPOSED"] == 0.45
    assert p.source and p.source.endswith("p.yaml")


def test_extends_overrides_and_merges_concepts_by_id(tmp_path):
    write(tmp_path, "base.yaml", MINIMAL + "screen: {threshold: 0.7, escalate_margin: 0.1}\n")
    child = write(
        tmp_path,
        "child.yaml",
        """\
        version: 1
        name: child
        extends: base.yaml
        screen: {threshold: 0.5}
        concepts:
          - id: sexual.nudity
            category: sexual
            phrases: [topless woman]
            threshold: 0.55
          - id: violence.gore
            category: violence
            phrases: [a mutilated corpse]
        """,
    )
    p = load_policy(child)
    assert p.name == "child"
    assert p.screen.threshold == 0.5 and p.screen.escalate_margin == 0.1  # deep merge
    ids = [c.id for c in p.concepts]
    assert ids == ["sexual.nudity", "violence.gore"]
    assert p.concepts[0].phrases == ["topless woman"] and p.concepts[0].threshold == 0.55


def test_include_concept_banks(tmp_path):
    write(
        tmp_path,
        "banks/b.yaml",
        """\
        concepts:
          - id: violence.gore
            category: violence
            phrases: [a mutilated corpse]
        """,
    )
    p = load_policy(write(tmp_path, "p.yaml", MINIMAL + "include: [banks/b.yaml]\n"))
    assert {c.id for c in p.concepts} == {"sexual.nudity", "violence.gore"}


def test_sha_changes_with_content_not_formatting(tmp_path):
    a = load_policy(write(tmp_path, "a.yaml", MINIMAL))
    b = load_policy(write(tmp_path, "b.yaml", "# a comment\n" + MINIMAL.replace("version: 1\n", "version: 1\n\n")))
    c = load_policy(write(tmp_path, "c.yaml", MINIMAL.replace("full frontal", "frontal")))
    assert a.sha256 == b.sha256 != c.sha256


def test_resolved_yaml_round_trips(tmp_path):
    p = load_policy("strict")
    out = write(tmp_path, "resolved.yaml", policy_to_yaml(p))
    assert load_policy(out).sha256 == p.sha256


# ----------------------------------------------------------------------------- errors


def err(tmp_path, text, name="bad.yaml") -> str:
    with pytest.raises(PolicyError) as ei:
        load_policy(write(tmp_path, name, text))
    return str(ei.value)


def test_misspelled_key_names_line_and_suggestion(tmp_path):
    msg = err(tmp_path, MINIMAL + "screen:\n  treshold: 0.5\n")
    assert "bad.yaml:8:3" in msg
    assert "screen.treshold" in msg
    assert "did you mean 'threshold'" in msg


def test_misspelled_top_level_and_nested_concept_key(tmp_path):
    msg = err(tmp_path, MINIMAL.replace("phrases:", "phrasez:"))
    assert "bad.yaml:6:5" in msg and "concepts[0].phrasez" in msg and "did you mean 'phrases'" in msg
    msg = err(tmp_path, MINIMAL + "fail_opne: true\n")
    assert "bad.yaml:7:1" in msg and "did you mean 'fail_open'" in msg


def test_wrong_type_and_bad_enum_are_located(tmp_path):
    msg = err(tmp_path, MINIMAL + "on_block: explode\nscreen:\n  threshold: high\n")
    assert "bad.yaml:7:11" in msg and "on_block" in msg and "'blank' or 'raise'" in msg and "'explode'" in msg
    assert "bad.yaml:9:14" in msg and "screen.threshold" in msg
    assert "2 problems" in msg


def test_out_of_range_threshold_and_bad_action(tmp_path):
    msg = err(tmp_path, MINIMAL + "    threshold: 1.5\n    action: deny\n")
    assert "concepts[0].threshold" in msg and "less than or equal to 1" in msg
    assert "concepts[0].action" in msg and "'deny'" in msg and "old spelling" in msg


def test_missing_required_keys(tmp_path):
    msg = err(tmp_path, "version: 1\nconcepts:\n  - id: x\n    category: y\n")
    assert "name: required key is missing" in msg
    assert "concepts[0].phrases: required key is missing" in msg


def test_unknown_nudenet_label_suggests(tmp_path):
    msg = err(
        tmp_path,
        MINIMAL + "output:\n  classifiers:\n    - type: nudenet\n      thresholds: {FEMALE_BREAST_EXPOSD: 0.4}\n",
    )
    assert "FEMALE_BREAST_EXPOSD" in msg and "FEMALE_BREAST_EXPOSED" in msg
    assert "output.classifiers[0].thresholds" in msg


def test_malformed_yaml_names_line(tmp_path):
    msg = err(tmp_path, "name: x\nconcepts: [a, b\nfoo: 1\n")
    assert "bad.yaml:" in msg and "malformed YAML" in msg


def test_duplicate_key_and_duplicate_concept_id(tmp_path):
    msg = err(tmp_path, MINIMAL + "name: again\n")
    assert "duplicate key 'name'" in msg and "bad.yaml:7" in msg
    dup = MINIMAL + "  - id: sexual.nudity\n    category: sexual\n    phrases: [x]\n"
    msg = err(tmp_path, dup)
    assert "bad.yaml:7:9: duplicate concept id 'sexual.nudity'" in msg and "bad.yaml:4:9" in msg


def test_empty_file_non_mapping_and_bad_encoding(tmp_path):
    assert "empty" in err(tmp_path, "")
    assert "must be a mapping" in err(tmp_path, "- a\n- b\n")
    p = tmp_path / "latin1.yaml"
    p.write_bytes("name: caf\xe9\n".encode("latin-1"))
    with pytest.raises(PolicyError, match="not UTF-8"):
        load_policy(p)


def test_missing_file_lists_builtins(tmp_path):
    with pytest.raises(PolicyError, match="not found.*default"):
        load_policy(tmp_path / "nope.yaml")
    with pytest.raises(PolicyError, match="empty"):
        load_policy("")
    with pytest.raises(PolicyError, match="must be a path"):
        load_policy(42)  # type: ignore[arg-type]


def test_extends_cycle_and_missing_parent(tmp_path):
    write(tmp_path, "a.yaml", "name: a\nextends: b.yaml\n")
    write(tmp_path, "b.yaml", "name: b\nextends: a.yaml\n")
    with pytest.raises(PolicyError, match="cycle"):
        load_policy(tmp_path / "a.yaml")
    msg = err(tmp_path, "name: c\nextends: missing.yaml\n", "c.yaml")
    assert "c.yaml:2" in msg and "missing.yaml" in msg


def test_invalid_parent_is_reported_against_its_file(tmp_path):
    write(tmp_path, "parent.yaml", "name: p\nscreen: {treshold: 0.3}\n")
    msg = err(tmp_path, "name: c\nextends: parent.yaml\n", "child.yaml")
    assert "parent.yaml:2" in msg and "did you mean 'threshold'" in msg


def test_include_errors_name_the_bank_file(tmp_path):
    write(tmp_path, "bank.yaml", "concepts:\n  - id: x\n    category: c\n    phrase: [oops]\n")
    msg = err(tmp_path, "name: p\ninclude: [bank.yaml]\n")
    assert "bank.yaml:4:5" in msg and "did you mean 'phrases'" in msg
    msg = err(tmp_path, "name: p\ninclude: [nothere.yaml]\n")
    assert "include[0]" in msg and "nothere.yaml" in msg


def test_bad_concept_id_and_empty_phrase(tmp_path):
    msg = err(tmp_path, MINIMAL.replace("sexual.nudity", "has spaces"))
    assert "concepts[0].id" in msg
    msg = err(tmp_path, MINIMAL.replace("[a naked woman, full frontal nudity]", "['  ']"))
    assert "phrase 0 is empty" in msg
