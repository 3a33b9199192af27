"""The output check: per-label thresholds, require any / all cascades (a later classifier sees only
the images the earlier ones flagged), action choice and its reason, the policy schema."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from guard.errors import GuardError, PolicyError
from guard.output.base import ClassifierOutput, Detection, ImageClassifier
from guard.output.check import BLOCKING_ACTIONS, CheckVerdict, OutputChecker, apply_action
from guard.policy import load_policy
from guard.policy.models import (
    ClipZeroShotConfig,
    NudeNetConfig,
    OutputConfig,
    SafetyCheckerConfig,
)
from output_tiny import drawing


class Counting(ImageClassifier):
    """Scores FACE_FEMALE 1.0 for the images whose marker (pixel [0, 0, 0]) is in ``hot``."""

    labels = ("FACE_FEMALE", "FEET_EXPOSED")

    def __init__(self, name, hot, box=None):
        self.name, self.hot, self.box = name, set(hot), box
        self.seen: list[list[int]] = []

    def classify(self, images):
        marks = [int(np.asarray(im)[0, 0, 0]) for im in images]
        self.seen.append(marks)
        outs = []
        for m in marks:
            hit = m in self.hot
            dets = [Detection("FACE_FEMALE", 0.9, self.box)] if hit and self.box else []
            outs.append(ClassifierOutput({"FACE_FEMALE": 1.0 if hit else 0.1, "FEET_EXPOSED": 0.3}, dets))
        return outs


def marked(n):
    imgs = []
    for i in range(n):
        a = drawing(i, size=(64, 48))
        a[0, 0] = i
        imgs.append(a)
    return imgs


def checker(require, *fakes, actions=None, out_actions=None):
    cfgs = [
        {"type": "nudenet", "thresholds": {"FACE_FEMALE": 0.5}, "action": a}
        for a in (actions or ["blank"] * len(fakes))
    ]
    cfg = OutputConfig.model_validate({"classifiers": cfgs, "require": require, **(out_actions or {})})
    return OutputChecker(cfg, classifiers=list(fakes))


def test_require_all_runs_later_classifiers_only_on_flagged_images():
    cheap, confirm = Counting("cheap", {1, 2, 4}), Counting("confirm", {2, 3, 4})
    verdicts = checker("all", cheap, confirm).check(marked(6))
    assert cheap.seen == [[0, 1, 2, 3, 4, 5]]
    assert confirm.seen == [[1, 2, 4]]  # the saving: 3 images, not 6
    assert [v.is_flagged for v in verdicts] == [False, False, True, False, True, False]
    assert verdicts[2].flagged == ["cheap:FACE_FEMALE 1.00>=0.50", "confirm:FACE_FEMALE 1.00>=0.50"]
    assert verdicts[2].action == "blank"
    assert verdicts[1].action == "none" and verdicts[1].unconfirmed == ["cheap:FACE_FEMALE 1.00>=0.50"]
    assert "confirm did not confirm cheap" in verdicts[1].action_reason
    assert verdicts[0].skipped == ["confirm"] and "confirm" not in verdicts[0].scores
    assert set(verdicts[1].scores) == {"cheap", "confirm"}


def test_require_all_with_nothing_flagged_never_calls_the_expensive_classifier():
    cheap, confirm = Counting("cheap", set()), Counting("confirm", {0, 1})
    verdicts = checker("all", cheap, confirm).check(marked(2))
    assert confirm.seen == [] and not any(v.is_flagged for v in verdicts)


def test_require_any_runs_everything_and_any_flag_counts():
    a, b = Counting("a", {1}), Counting("b", {2})
    verdicts = checker("any", a, b).check(marked(4))
    assert a.seen == b.seen == [[0, 1, 2, 3]]
    assert [v.is_flagged for v in verdicts] == [False, True, True, False]
    assert verdicts[1].flagged == ["a:FACE_FEMALE 1.00>=0.50"]


def test_three_stage_cascade_and_strongest_action_wins():
    s1, s2, s3 = Counting("s1", {0, 1, 2, 3}), Counting("s2", {1, 2, 3}), Counting("s3", {2, 3})
    v = checker("all", s1, s2, s3, actions=["flag", "pixelate", "blur"]).check(marked(5))
    assert [len(x) for x in (s1.seen[0], s2.seen[0], s3.seen[0])] == [5, 4, 3]
    assert [x.is_flagged for x in v] == [False, False, True, True, False]
    assert v[2].action == "pixelate" and v[2].action_reason.startswith("pixelate (action of s2)")
    assert v[4].skipped == ["s2", "s3"]


def test_per_label_thresholds_are_inclusive_and_independent():
    cfg = OutputConfig.model_validate(
        {"classifiers": [{"thresholds": {"FACE_FEMALE": 1.0, "FEET_EXPOSED": 0.31}, "action": "flag"}]}
    )
    fake = Counting("n", {1})
    v = OutputChecker(cfg, classifiers=[fake]).check(marked(2))
    assert v[0].flagged == [] and v[1].flagged == ["n:FACE_FEMALE 1.00>=1.00"]
    cfg2 = OutputConfig.model_validate({"classifiers": [{"thresholds": {"FEET_EXPOSED": 0.3}}]})
    v = OutputChecker(cfg2, classifiers=[Counting("n", set())]).check(marked(1))
    assert v[0].flagged == ["n:FEET_EXPOSED 0.30>=0.30"] and v[0].action == "blank"


def test_box_action_uses_boxes_or_falls_back_to_the_whole_image():
    withbox = checker("any", Counting("det", {1}, box=(10, 8, 20, 16)), actions=["blur_boxes"])
    v = withbox.check(marked(2))[1]
    assert v.action == "blur_boxes" and v.boxes == [(10, 8, 20, 16)]
    assert "1 box(es)" in v.action_reason and v.to_dict()["boxes"] == [[10, 8, 20, 16]]
    img = marked(2)[1]
    out = apply_action(img, v)
    assert np.array_equal(out[40:, :], img[40:, :]) and not np.array_equal(out[8:24, 10:30], img[8:24, 10:30])
    nobox = checker("any", Counting("det", {1}), actions=["pixelate_boxes"])
    v = nobox.check(marked(2))[1]
    assert v.action == "pixelate" and "whole image" in v.action_reason


def test_placeholder_action_loads_the_file_at_start(tmp_path):
    from PIL import Image

    Image.fromarray(np.full((4, 4, 3), 77, np.uint8)).save(tmp_path / "ph.png")
    with pytest.raises(GuardError, match="ph.png.*cannot be read"):  # relative to the cwd: not there
        checker("any", Counting("n", {0}), actions=["placeholder"], out_actions={"actions": {"placeholder": "ph.png"}})
    with pytest.raises(GuardError, match="none.png"):
        OutputChecker(
            OutputConfig.model_validate(
                {"classifiers": [{"action": "placeholder"}], "actions": {"placeholder": str(tmp_path / "none.png")}}
            ),
            classifiers=[Counting("n", {0})],
        )
    cfg = OutputConfig.model_validate(
        {
            "classifiers": [{"thresholds": {"FACE_FEMALE": 0.5}, "action": "placeholder"}],
            "actions": {"placeholder": "ph.png"},
        }
    )
    ok = OutputChecker(cfg, base_dir=tmp_path, classifiers=[Counting("n", {0})])
    v = ok.check(marked(1))[0]
    out = apply_action(marked(1)[0], v)
    assert v.action == "placeholder" and v.action in BLOCKING_ACTIONS and (out == 77).all()


def test_json_report_of_a_check_verdict():
    import json

    v = checker("all", Counting("a", {0}), Counting("b", set())).check(marked(1))[0]
    d = v.to_dict()
    json.dumps(d)
    assert d["flagged"] == [] and d["unconfirmed"] and d["action_reason"].startswith("not flagged")


# ----------------------------------------------------------------------------- policy schema


def test_existing_policies_still_load_with_the_same_defaults():
    p = load_policy("default")
    c = p.output.classifiers["nudenet"]  # the shipped policies use the per-category syntax
    assert isinstance(c, NudeNetConfig) and p.output.categories["sexual"].action == "blank"
    assert c.providers is None and c.batch_size == 8
    bare = load_policy({"name": "x", "output": {"classifiers": [{"thresholds": {"ANUS_EXPOSED": 0.5}}]}})
    assert isinstance(bare.output.classifiers[0], NudeNetConfig)
    assert load_policy({"name": "x"}).output.classifiers[0].thresholds["ANUS_EXPOSED"] == 0.45


def test_union_picks_the_model_by_type():
    o = OutputConfig.model_validate(
        {
            "require": "all",
            "classifiers": [
                {"type": "nudenet"},
                {"type": "safety_checker", "model_path": "/m", "sensitivity": -0.05, "flag_only": True},
                {
                    "type": "clip_zero_shot",
                    "model_path": "/c",
                    "concepts": {"mouse": ["a cartoon mouse"]},
                    "mode": "cosine",
                    "thresholds": {"mouse": 0.3},
                },
            ],
        }
    )
    _n, s, c = o.classifiers
    assert isinstance(s, SafetyCheckerConfig) and s.action == "flag"
    assert isinstance(c, ClipZeroShotConfig) and c.threshold == 0.25 and c.threshold_for("mouse") == 0.3
    assert OutputConfig.model_validate(o.model_dump()) == o  # round trip


@pytest.mark.parametrize(
    "output, needle",
    [
        (
            {"classifiers": [{"type": "nudenet", "thresholds": {"FACE_FEMAL": 0.2}}]},
            "output.classifiers[0].thresholds: unknown NudeNet label 'FACE_FEMAL'; did you mean 'FACE_FEMALE'",
        ),
        ({"classifiers": [{"type": "yolo"}]}, "output.classifiers[0].type: unknown classifier type"),
        ({"classifiers": [{"type": "safety_checker", "thresholds": {"nsfw_concept_17": 0}}]}, "nsfw_concept_17"),
        ({"classifiers": [{"type": "safety_checker", "sensitivity": 2}]}, "output.classifiers[0].sensitivity"),
        ({"classifiers": [{"type": "safety_checker", "flag_only": True, "action": "blur"}]}, "contradicts"),
        (
            {
                "classifiers": [
                    {},
                    {"type": "clip_zero_shot", "model_path": "m", "concepts": {"a": ["x"]}, "thresholds": {"b": 0.3}},
                ]
            },
            "'b' is not one of the concepts",
        ),
        (
            {
                "classifiers": [
                    {"type": "clip_zero_shot", "model_path": "m", "concepts": {"a": ["x"]}, "threshold": -0.5}
                ]
            },
            "within [0, 1] in softmax mode",
        ),
        (
            {"classifiers": [{"type": "clip_zero_shot", "concepts": {"a": ["x"]}}]},
            "output.classifiers[0].model_path: required key is missing",
        ),
        ({"classifiers": [{"action": "placeholder"}]}, "output.actions.placeholder"),
        ({"require": "most"}, "output.require"),
        ({"classifiers": [{"actoin": "flag"}]}, "output.classifiers[0].actoin: unknown key"),
    ],
)
def test_bad_output_settings_are_named(output, needle):
    with pytest.raises(PolicyError) as e:
        load_policy({"name": "x", "output": output})
    assert needle in str(e.value)


def test_policy_validation_does_not_import_torch():
    code = (
        "import sys; from guard.policy import load_policy; load_policy({'name': 'x', 'output': "
        "{'classifiers': [{'type': 'safety_checker'}, {'type': 'clip_zero_shot', 'model_path': 'm', "
        "'concepts': {'a': ['b']}}]}}); print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False", out.stderr


# ----------------------------------------------------------------------------- in a pipeline


def test_cascade_in_the_guarded_pipeline(tiny_pipe):
    import guard
    from conftest import FAST, make_policy

    flag_all = {"type": "nudenet", "thresholds": {"FACE_FEMALE": 0.0}, "action": "blank"}
    never = {"type": "nudenet", "thresholds": {"FACE_FEMALE": 1.0}, "action": "blank"}
    no_screen = {"enabled": False}  # no sentence model to load: this test is about the output check
    cascade = make_policy(screen=no_screen, output={"require": "all", "classifiers": [flag_all, never]})
    out = guard.protect(tiny_pipe, cascade)("a cat sleeping on a sofa", output_type="np", **FAST)
    assert out.nsfw_content_detected == [False] and out.images.max() > 0
    v = out.guard_report.images[0].output
    assert isinstance(v, CheckVerdict) and v.unconfirmed and v.action == "none"
    either = make_policy(screen=no_screen, output={"require": "any", "classifiers": [never, flag_all]})
    out = guard.protect(tiny_pipe, either)("a cat sleeping on a sofa", output_type="np", **FAST)
    assert out.nsfw_content_detected == [True] and out.images.max() == 0
