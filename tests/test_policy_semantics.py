"""Policy semantics: dict policies resolve extends/include, the one merge rule (``!replace``, ``amend``),
duplicate ids, concept roles, guidance ids, strict types, and the generated reference."""

from __future__ import annotations

import math
import textwrap
import typing
from pathlib import Path

import pytest

from guard.errors import PolicyError
from guard.policy import Replace, load_policy, policy_to_yaml, resolve_policy
from guard.policy.models import Concept, Policy

NUDITY = {"id": "sexual.nudity", "category": "sexual", "phrases": ["a naked woman", "full frontal nudity"]}


def write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(textwrap.dedent(text), encoding="utf-8")
    return p


def perr(source, **kw) -> str:
    with pytest.raises(PolicyError) as ei:
        load_policy(source, **kw)
    return str(ei.value)


# ----------------------------------------------------------------------------- dict policies


def test_dict_policy_extends_a_builtin():
    default = load_policy("default")
    p = load_policy({"version": 1, "name": "x", "extends": "default"})
    assert [c.id for c in p.concepts] == [c.id for c in default.concepts] and len(p.concepts) > 30
    assert p.extends is None and p.include == [] and p.name == "x"
    assert p.rules == default.rules and p.guidance == default.guidance


def test_dict_policy_extending_default_blocks_nudity_in_a_pipeline(tiny_pipe):
    import guard
    from conftest import FAST

    g = guard.protect(tiny_pipe, {"version": 1, "name": "x", "extends": "default", "output": {"enabled": False}})
    out = g(["a photo of a naked woman", "a cat sleeping on a sofa"], **FAST)
    assert out.guard_report.images[0].decision == "blocked"
    assert out.guard_report.images[1].decision != "blocked"


def test_dict_policy_paths_are_relative_to_base_dir(tmp_path, monkeypatch):
    write(tmp_path, "banks/b.yaml", "concepts:\n  - {id: violence.gore, category: violence, phrases: [gore]}\n")
    write(tmp_path, "parent.yaml", "name: parent\nconcepts:\n  - {id: a.b, category: a, phrases: [x]}\n")
    d = {"name": "d", "extends": "parent.yaml", "include": ["banks/b.yaml"]}
    p = load_policy(d, base_dir=tmp_path)
    assert [c.id for c in p.concepts] == ["a.b", "violence.gore"]
    assert p.base_path == tmp_path.absolute()
    # without base_dir: the working directory, stated in the error
    monkeypatch.chdir(tmp_path / "banks")
    msg = perr(d)
    assert "include[0]" in msg and "'banks/b.yaml' (relative to" in msg and str(tmp_path / "banks") in msg
    monkeypatch.chdir(tmp_path)
    assert len(load_policy(d).concepts) == 2
    assert resolve_policy(d)["concepts"][1]["id"] == "violence.gore"


# ----------------------------------------------------------------------------- the merge rule


BASE = """\
version: 1
name: base
concepts:
  - id: sexual.nudity
    category: sexual
    threshold: 0.7
    phrases: [a naked woman]
    terms: [nude]
  - id: violence.gore
    category: violence
    phrases: [a mutilated corpse]
screen: {threshold: 0.7, escalate_margin: 0.1, suspicion: {threshold: 0.3}}
guidance: {concepts: [nudity, gore], eta_cond: 2.0}
"""


def test_maps_merge_scalars_and_lists_override_concepts_by_id(tmp_path):
    write(tmp_path, "base.yaml", BASE)
    p = load_policy(
        write(
            tmp_path,
            "c.yaml",
            """\
        name: child
        extends: base.yaml
        screen: {threshold: 0.5, suspicion: {margin: 0.2}}
        guidance: {concepts: [blood]}
        concepts:
          - {id: sexual.nudity, role: escalate}
          - {id: hate.x, category: hate, phrases: [a hateful symbol]}
        """,
        )
    )
    assert p.screen.threshold == 0.5 and p.screen.escalate_margin == 0.1  # map merge, scalar override
    assert p.screen.suspicion.threshold == 0.3 and p.screen.suspicion.margin == 0.2  # nested maps too
    assert p.guidance.concepts == ["blood"] and p.guidance.eta_cond == 2.0  # other lists: replaced
    assert [c.id for c in p.concepts] == ["sexual.nudity", "violence.gore", "hate.x"]
    nud = p.concepts[0]
    assert nud.role == "escalate" and nud.threshold == 0.7 and nud.phrases == ["a naked woman"]


def test_replace_tag_replaces_instead_of_merging(tmp_path):
    write(tmp_path, "base.yaml", BASE)
    p = load_policy(
        write(
            tmp_path,
            "c.yaml",
            """\
        name: child
        extends: base.yaml
        screen: !replace {threshold: 0.5}
        concepts:
          - !replace {id: sexual.nudity, category: sexual, phrases: [topless]}
        """,
        )
    )
    assert p.screen.threshold == 0.5 and p.screen.escalate_margin == 0.05  # the parent's 0.1 is gone
    assert p.screen.suspicion.threshold == 0.4
    nud = p.concepts[0]
    assert nud.phrases == ["topless"] and nud.threshold is None and nud.terms == []
    p2 = load_policy(
        write(
            tmp_path,
            "c2.yaml",
            """\
        name: child
        extends: base.yaml
        concepts: !replace
          - {id: hate.x, category: hate, phrases: [a hateful symbol]}
        """,
        )
    )
    assert [c.id for c in p2.concepts] == ["hate.x"]
    # the same from Python
    p3 = load_policy({"name": "py", "extends": "base.yaml", "screen": Replace({"threshold": 0.5})}, base_dir=tmp_path)
    assert p3.screen.escalate_margin == 0.05 and p3.screen.threshold == 0.5


def test_amend_changes_an_included_concept_and_checks_its_id(tmp_path):
    write(
        tmp_path,
        "bank.yaml",
        """\
        concepts:
          - {id: sexual.nudity, category: sexual, phrases: [a naked woman]}
        """,
    )
    write(tmp_path, "terms.yaml", "amend:\n  - {id: sexual.nudity, terms: [nude]}\n")
    p = load_policy(
        write(
            tmp_path,
            "p.yaml",
            """\
        name: p
        include: [bank.yaml, terms.yaml]
        amend:
          - {id: sexual.nudity, threshold: 0.5}
        """,
        )
    )
    assert p.concepts[0].terms == ["nude"] and p.concepts[0].threshold == 0.5
    write(tmp_path, "typo.yaml", "amend:\n  - {id: sexual.nudty, terms: [nude]}\n")
    msg = perr(write(tmp_path, "q.yaml", "name: q\ninclude: [bank.yaml, typo.yaml]\n"))
    assert "typo.yaml:2:10" in msg and "no concept 'sexual.nudty'" in msg and "did you mean 'sexual.nudity'" in msg


def test_duplicate_ids_are_errors_with_both_locations(tmp_path):
    # the attack: a block concept followed by an allow duplicate of it, in one bank
    write(
        tmp_path,
        "bank.yaml",
        """\
        concepts:
          - id: sexual.nudity
            category: sexual
            action: block
            phrases: [a naked woman]
          - id: sexual.nudity
            category: sexual
            action: allow
            phrases: [a naked woman]
        """,
    )
    msg = perr(write(tmp_path, "p.yaml", "name: p\ninclude: [bank.yaml]\n"))
    assert "bank.yaml:6:9: duplicate concept id 'sexual.nudity'" in msg and "bank.yaml:2:9" in msg
    # across two includes, and between an include and the file's own concepts
    write(tmp_path, "b1.yaml", "concepts:\n  - {id: a.b, category: a, phrases: [x]}\n")
    write(
        tmp_path,
        "b2.yaml",
        "concepts:\n  - {id: c.d, category: c, phrases: [y]}\n  - {id: a.b, category: a, "
        "role: benign_contrast, phrases: [x]}\n",
    )
    msg = perr(write(tmp_path, "q.yaml", "name: q\ninclude: [b1.yaml, b2.yaml]\n"))
    assert "b2.yaml:3:10" in msg and "b1.yaml:2:10" in msg
    msg = perr(
        write(tmp_path, "r.yaml", "name: r\ninclude: [b1.yaml]\nconcepts:\n  - {id: a.b, category: a, phrases: [z]}\n")
    )
    assert "r.yaml:4:10" in msg and "b1.yaml:2:10" in msg
    # duplicate rule ids too; in a dict, the key path
    msg = perr({"name": "d", "concepts": [NUDITY, dict(NUDITY)]})
    assert "duplicate concept id 'sexual.nudity'" in msg
    # but a child may redefine its parent's concept by id (the documented extends rule)
    write(tmp_path, "parent.yaml", "name: parent\ninclude: [b1.yaml]\n")
    child = load_policy(
        write(tmp_path, "child.yaml", "name: c\nextends: parent.yaml\nconcepts:\n  - {id: a.b, role: escalate}\n")
    )
    assert child.concepts[0].role == "escalate"


def test_a_partial_entry_for_a_missing_parent_concept_suggests_the_id(tmp_path):
    write(tmp_path, "base.yaml", BASE)
    msg = perr(
        write(tmp_path, "c.yaml", "name: c\nextends: base.yaml\nconcepts:\n  - {id: sexual.nudty, role: escalate}\n")
    )
    assert "c.yaml:4:5: concepts[2].category: required key is missing" in msg
    assert "no concept 'sexual.nudty' exists to merge into; did you mean 'sexual.nudity'?" in msg


def test_a_directly_built_policy_cannot_silently_drop_extends():
    with pytest.raises(Exception, match="extends is applied by guard.policy.load_policy"):
        Policy.model_validate({"name": "x", "extends": "default"})


# ----------------------------------------------------------------------------- roles


def test_roles_and_the_old_action_spelling(tmp_path):
    p = load_policy(
        write(
            tmp_path,
            "p.yaml",
            """\
        name: p
        concepts:
          - {id: a.block, category: a, phrases: [x1], role: block}
          - {id: a.esc, category: a, phrases: [x2], action: escalate}
          - {id: a.benign, category: a, phrases: [x3], action: allow}
          - {id: a.signal, category: a, phrases: [x4], action: allow, contrast: false}
          - {id: a.sig2, category: a, phrases: [x5], role: signal}
        """,
        )
    )
    roles = [c.role for c in p.concepts]
    assert roles == ["block", "escalate", "benign_contrast", "signal", "signal"]
    assert [c.action for c in p.concepts] == ["block", "escalate", "allow", "allow", "allow"]
    assert [c.contrast for c in p.concepts] == [False, False, True, False, False]
    notes = p.notes
    assert len(notes) == 3 and "p.yaml:5:56" in notes[1] and "role: benign_contrast" in notes[1]
    assert "contrast: false" in notes[2] and "role: signal" in notes[2]
    # the resolved copy uses role only and reloads to the same hash
    assert "action:" not in policy_to_yaml(p).split("concepts:")[1].split("rules:")[0]
    c = Concept(id="x.y", category="x", phrases=["p"], action="allow", contrast=False)
    assert c.role == "signal"
    with pytest.raises(Exception, match="contradicts"):
        Concept(id="x.y", category="x", phrases=["p"], action="allow", role="block")


def test_shipped_policies_use_roles():
    default = load_policy("default")
    assert next(c for c in default.concepts if c.id == "minors.presence").role == "signal"
    for name in ("default.yaml", "strict.yaml", "art-styles.yaml"):
        text = (Path(__file__).parent.parent / "policies" / name).read_text()
        assert "action: allow" not in text and "contrast:" not in text


# ----------------------------------------------------------------------------- guidance ids


def test_guidance_concept_ids_are_checked_with_did_you_mean(tmp_path):
    text = f"name: g\nconcepts:\n  - {NUDITY}\nguidance:\n  concepts: [sexual.nudity, gore and blood, sexual.nudit]\n"
    msg = perr(write(tmp_path, "g.yaml", text.replace("'", '"')))
    assert "g.yaml:5:45: guidance.concepts[2]" in msg and "did you mean 'sexual.nudity'" in msg
    ok = load_policy({"name": "g", "concepts": [NUDITY], "guidance": {"concepts": ["sexual.nudity", "a, b. c"]}})
    assert ok.guidance.concepts[0] == "sexual.nudity"


def test_rule_references_are_located(tmp_path):
    msg = perr(
        write(
            tmp_path,
            "r.yaml",
            """\
        name: r
        concepts:
          - {id: sexual.nudity, category: sexual, phrases: [x]}
        rules:
          - id: r1
            all_of:
              - {concept: sexual.nudty}
              - {category: sexul}
        """,
        )
    )
    assert "r.yaml:7:19: rules[0].all_of[0].concept" in msg and "did you mean 'sexual.nudity'" in msg
    assert "r.yaml:8:20: rules[0].all_of[1].category" in msg and "did you mean 'sexual'" in msg


# ----------------------------------------------------------------------------- strict types


@pytest.mark.parametrize(
    "section,key,value,expect",
    [
        ("screen", "max_prompt_chars", True, "valid integer"),
        ("screen", "threshold", True, "valid number"),
        ("screen", "threshold", "0.5", "valid number"),
        ("screen", "enabled", 1, "valid boolean"),
        ("guidance", "warmup_steps", 1.5, "valid integer"),
        (None, "fail_open", "yes", "valid boolean"),
        (None, "version", True, "integer 1"),
        (None, "version", 1.0, "integer 1"),
    ],
)
def test_no_type_coercion(section, key, value, expect):
    d = {"name": "t"}
    if section:
        d[section] = {key: value}
    else:
        d[key] = value
    msg = perr(d)
    assert expect in msg and (f"{section}.{key}" if section else key) in msg


def test_concept_threshold_true_is_not_one(tmp_path):
    msg = perr(
        write(tmp_path, "t.yaml", "name: t\nconcepts:\n  - {id: a.b, category: a, phrases: [x], threshold: true}\n")
    )
    assert "t.yaml:3:53: concepts[0].threshold" in msg and "valid number" in msg


def _float_fields():
    """(dotted path, model) of every float field in the schema."""
    from guard.policy.docs import SECTIONS

    out = []
    for path, model in SECTIONS:
        for name, f in model.model_fields.items():
            ann = f.annotation
            args = typing.get_args(ann) if typing.get_origin(ann) is not dict else ()
            if float in args or ann is float:
                out.append((path, name))
    return out


FLOAT_FIELDS = _float_fields()


def test_every_float_field_was_found():
    assert ("guidance.sld", "scale") in FLOAT_FIELDS and ("concepts[]", "threshold") in FLOAT_FIELDS
    assert len(FLOAT_FIELDS) >= 20


def _policy_with(path: str, key: str, value) -> dict:
    """A minimal valid policy with ``key: value`` in the section at ``path``."""
    concept = dict(NUDITY)
    d: dict = {"name": "f", "concepts": [concept]}
    if path == "(top level)":
        d[key] = value
    elif path == "concepts[]":
        concept[key] = value
    elif path == "rules[]":
        d["concepts"].append({"id": "m.p", "category": "minors", "phrases": ["a child"]})
        d["rules"] = [{"id": "r", "all_of": [{"concept": "m.p"}, {"category": "sexual"}], key: value}]
    elif path == "rules[].all_of[]":
        d["concepts"].append({"id": "m.p", "category": "minors", "phrases": ["a child"]})
        d["rules"] = [{"id": "r", "all_of": [{"concept": "m.p", key: value}, {"category": "sexual"}]}]
    elif path.startswith("output.classifiers"):  # the old list syntax, or the map of id -> settings
        kind = path.split("type: ")[1].rstrip(")")
        clf = {"type": kind, key: value}
        if kind == "clip_zero_shot":
            clf.update({"model_path": "clip", "concepts": {"x": ["a cat"]}})
        d["output"] = {"classifiers": [clf] if "[]" in path else {"c": clf}}
    elif path == "output.categories.<category>":
        d["output"] = {"categories": {"sexual": {"signals": {"nudenet": {"ANUS_EXPOSED": 0.5}}, key: value}}}
    elif path == "erasers[]":
        d["erasers"] = [{"path": "e.safetensors", key: value}]
    else:
        node = d
        for part in path.split("."):
            node = node.setdefault(part, {})
        node[key] = value
    return d


@pytest.mark.parametrize("path,key", FLOAT_FIELDS)
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_nan_and_inf_are_refused_in_every_float_field(path, key, bad):
    msg = perr(_policy_with(path, key, bad))
    assert "finite number" in msg, msg


@pytest.mark.parametrize(
    "path,key,value",
    [
        ("output.classifiers[] (type: nudenet)", "thresholds", {"FEMALE_BREAST_EXPOSED": math.nan}),
        ("output.classifiers[] (type: safety_checker)", "thresholds", {"nsfw_concept_0": math.inf}),
        ("output.classifiers[] (type: clip_zero_shot)", "thresholds", {"x": math.nan}),
    ],
)
def test_nan_in_threshold_maps_is_refused(path, key, value):
    assert "finite number" in perr(_policy_with(path, key, value))


def test_nan_in_a_yaml_file_is_located(tmp_path):
    msg = perr(write(tmp_path, "n.yaml", "name: n\nguidance:\n  sld:\n    scale: .nan\n"))
    assert "n.yaml:4:12: guidance.sld.scale" in msg and "finite number" in msg


# ----------------------------------------------------------------------------- unknown keys, per section


def _sections():
    from guard.policy.docs import SECTIONS

    return [p for p, _ in SECTIONS]


@pytest.mark.parametrize("path", _sections())
def test_every_section_rejects_unknown_keys(path):
    d = _policy_with(path, "bogus_key", 1)
    msg = perr(d)
    assert "unknown key 'bogus_key'" in msg, msg
    shown = {
        "(top level)": "bogus_key",
        "concepts[]": "concepts[0].bogus_key",
        "rules[]": "rules[0].bogus_key",
        "rules[].all_of[]": "rules[0].all_of[0].bogus_key",
        "erasers[]": "erasers[0].bogus_key",
    }
    if path.startswith("output.classifiers"):
        want = "output.classifiers[0].bogus_key" if "[]" in path else "output.classifiers.c.bogus_key"
    elif path == "output.categories.<category>":
        want = "output.categories.sexual.bogus_key"
    else:
        want = shown.get(path) or f"{path}.bogus_key"
    assert want in msg, msg


@pytest.mark.parametrize("path", ["screen.suspicion", "guidance.sld", "output.actions", "audit"])
def test_unknown_keys_in_files_are_located_with_did_you_mean(tmp_path, path):
    from guard.policy.docs import SECTIONS

    model = dict(SECTIONS)[path]
    real = next(iter(model.model_fields))
    parts = path.split(".")
    text = "name: u\n" + "".join("  " * i + f"{p}:\n" for i, p in enumerate(parts))
    text += "  " * len(parts) + f"{real}x: 1\n"
    msg = perr(write(tmp_path, "u.yaml", text))
    line = len(parts) + 2
    assert f"u.yaml:{line}:{2 * len(parts) + 1}" in msg and f"did you mean '{real}'" in msg


def test_bank_rejects_unknown_keys(tmp_path):
    write(tmp_path, "bank.yaml", "concepts: []\nconcept: []\n")
    msg = perr(write(tmp_path, "p.yaml", "name: p\ninclude: [bank.yaml]\n"))
    assert "bank.yaml:2:1" in msg and "did you mean 'concepts'" in msg


# ----------------------------------------------------------------------------- the reference


def test_docs_policy_md_is_generated_and_current():
    from guard.policy.docs import generate

    path = Path(__file__).parent.parent / "docs" / "policy.md"
    assert path.read_text(encoding="utf-8") == generate(), (
        "docs/policy.md is stale: run `python -m guard.policy.docs > docs/policy.md`"
    )


def test_every_field_has_a_description():
    from guard.policy.docs import undocumented

    assert undocumented() == []
