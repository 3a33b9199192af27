"""The guarded Stable Diffusion pipeline end to end, on a tiny real diffusers pipeline."""

from __future__ import annotations

import json

import numpy as np
import PIL.Image
import pytest
import torch
from diffusers import StableDiffusionPipeline
from diffusers.pipelines.stable_diffusion.pipeline_output import StableDiffusionPipelineOutput

import guard
from conftest import FAST, UNetCounter, make_policy
from guard import GuardBlocked, GuardedStableDiffusionPipeline, GuardInputError
from guard.pipelines import GuardComponent, GuardedPipelineOutput

BENIGN = "a cat sleeping on a sofa"
UNSAFE = "a photo of a naked woman"

#: a policy whose output check flags every image (any face score >= 0 counts)
FLAG_ALL = {"classifiers": [{"type": "nudenet", "thresholds": {"FACE_FEMALE": 0.0}, "action": "blank"}]}


def gen(seed=0):
    return torch.Generator("cpu").manual_seed(seed)


def test_protect_returns_drop_in_subclass(tiny_pipe):
    g = guard.protect(tiny_pipe, make_policy())
    assert isinstance(g, GuardedStableDiffusionPipeline) and isinstance(g, StableDiffusionPipeline)
    assert g.unet is tiny_pipe.unet  # components shared, not copied
    assert g.guard_policy.name == "test"
    assert "guard" in g.components and isinstance(g.guard, GuardComponent)
    plain = guard.unprotect(g)
    assert type(plain) is StableDiffusionPipeline and plain.unet is tiny_pipe.unet
    with pytest.raises(guard.GuardError, match="cannot protect a str"):
        guard.protect("not a pipeline", make_policy())


def test_allowed_prompt_is_generated_and_reported(guarded, unet_counter):
    out = guarded(BENIGN, generator=gen(), **FAST)
    assert isinstance(out, StableDiffusionPipelineOutput) and isinstance(out, GuardedPipelineOutput)
    assert len(out.images) == 1 and isinstance(out.images[0], PIL.Image.Image)
    assert out.images[0].size == (64, 64)
    assert out.nsfw_content_detected == [False]
    assert unet_counter.calls == 2
    rep = out.guard_report
    assert rep.policy_name == "test" and rep.policy_sha256 == guarded.guard_policy.sha256
    assert len(rep.request_id) == 32
    im = rep.images[0]
    assert im.decision == "allowed" and im.screen.decision == "allow"
    assert set(im.output.scores["nudenet"]) >= {"FEMALE_BREAST_EXPOSED", "FACE_FEMALE"}
    assert {"screen", "generate", "output_check", "total"} <= set(rep.timings_ms)
    json.dumps(rep.to_dict())  # the report serialises


def test_same_images_as_the_unguarded_pipeline(tiny_pipe, guarded):
    a = tiny_pipe(BENIGN, generator=gen(3), output_type="np", **FAST).images
    b = guarded(BENIGN, generator=gen(3), output_type="np", **FAST).images
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_blocked_prompt_never_reaches_the_unet(guarded, unet_counter):
    out = guarded(UNSAFE, **FAST)
    assert unet_counter.calls == 0
    assert out.nsfw_content_detected == [True]
    assert np.asarray(out.images[0]).max() == 0  # black
    im = out.guard_report.images[0]
    assert im.decision == "blocked" and im.blocked_by == "screen" and im.screen.concept == "sexual.nudity"


def test_mixed_batch_denoises_only_allowed_prompts(guarded, unet_counter):
    prompts = [BENIGN, UNSAFE, "a red bicycle leaning on a wall", "a mutilated corpse"]
    out = guarded(prompts, num_images_per_prompt=2, generator=gen(), output_type="np", **FAST)
    # 2 allowed prompts x 2 images x 2 (classifier-free guidance) per UNet call
    assert unet_counter.batches == [8, 8]
    assert out.images.shape == (8, 64, 64, 3)
    assert out.nsfw_content_detected == [False, False, True, True, False, False, True, True]
    assert out.images[2:4].max() == 0 and out.images[6:8].max() == 0
    assert out.images[0].max() > 0 and out.images[4].max() > 0
    decisions = [im.decision for im in out.guard_report.images]
    assert decisions == ["allowed"] * 2 + ["blocked"] * 2 + ["allowed"] * 2 + ["blocked"] * 2
    assert [im.prompt_index for im in out.guard_report.images] == [0, 0, 1, 1, 2, 2, 3, 3]


def test_mixed_batch_images_match_generating_the_allowed_prompts_alone(guarded):
    gens = [gen(10), gen(11), gen(12)]
    mixed = guarded([BENIGN, UNSAFE, "a red bicycle"], generator=gens, output_type="np", **FAST).images
    gens = [gen(10), gen(12)]
    alone = guarded([BENIGN, "a red bicycle"], generator=gens, output_type="np", **FAST).images
    np.testing.assert_allclose(mixed[[0, 2]], alone, atol=1e-5)


def test_negative_prompt_and_latents_follow_the_allowed_subset(guarded, unet_counter):
    latents = torch.randn(3, 4, 32, 32, generator=gen(5))
    out = guarded(
        [BENIGN, UNSAFE, "a boat"],
        negative_prompt=["blurry", "ugly", "dark"],
        latents=latents,
        output_type="pt",
        **FAST,
    )
    assert out.images.shape == (3, 3, 64, 64) and unet_counter.batches == [4, 4]
    assert out.images[1].abs().max() == 0


def test_all_output_types(guarded):
    for ot, check in [
        ("pil", lambda im: isinstance(im, list) and im[0].size == (64, 64)),
        ("np", lambda im: isinstance(im, np.ndarray) and im.shape == (2, 64, 64, 3)),
        ("pt", lambda im: isinstance(im, torch.Tensor) and im.shape == (2, 3, 64, 64)),
        ("latent", lambda im: isinstance(im, torch.Tensor) and im.shape == (2, 4, 32, 32)),
    ]:
        out = guarded([BENIGN, UNSAFE], output_type=ot, **FAST)
        assert check(out.images), ot
        assert out.nsfw_content_detected == [False, True], ot


def test_return_dict_false_gives_the_parents_tuple(guarded):
    images, nsfw = guarded([BENIGN, UNSAFE], return_dict=False, **FAST)
    assert len(images) == 2 and nsfw == [False, True]


def test_output_check_blanks_flagged_images(tiny_pipe):
    g = guard.protect(tiny_pipe, make_policy(output=FLAG_ALL))
    out = g(BENIGN, output_type="np", **FAST)
    assert out.nsfw_content_detected == [True]
    assert out.images.max() == 0
    im = out.guard_report.images[0]
    assert im.decision == "blocked" and im.blocked_by == "output" and im.action == "blank"
    assert im.output.flagged[0].startswith("nudenet:FACE_FEMALE")


def test_flag_action_keeps_the_image(tiny_pipe):
    pol = make_policy(
        output={"classifiers": [{"type": "nudenet", "thresholds": {"FACE_FEMALE": 0.0}, "action": "flag"}]}
    )
    out = guard.protect(tiny_pipe, pol)(BENIGN, output_type="np", **FAST)
    assert out.nsfw_content_detected == [True] and out.images.max() > 0
    assert out.guard_report.images[0].decision == "flagged"


def test_latent_output_does_not_bypass_the_output_check(tiny_pipe):
    g = guard.protect(tiny_pipe, make_policy(output=FLAG_ALL))
    out = g(BENIGN, output_type="latent", **FAST)
    assert out.nsfw_content_detected == [True]
    assert out.images.abs().max() == 0  # flagged latents are zeroed
    assert "decode_for_check" in out.guard_report.timings_ms
    assert out.guard_report.images[0].output.is_flagged


def test_output_check_disabled_by_policy(tiny_pipe):
    g = guard.protect(tiny_pipe, make_policy(output={"enabled": False}))
    out = g(BENIGN, **FAST)
    assert out.guard_report.images[0].output.scores == {}


def test_on_block_raise(tiny_pipe, unet_counter, tmp_path):
    log = tmp_path / "audit.jsonl"
    g = guard.protect(tiny_pipe, make_policy(on_block="raise", audit={"path": str(log)}))
    with pytest.raises(GuardBlocked, match="prompt 1 blocked by policy 'test'") as ei:
        g([BENIGN, UNSAFE], **FAST)
    assert unet_counter.calls == 0
    assert ei.value.report.images[1].decision == "blocked"
    assert len(log.read_text().splitlines()) == 2  # the refused request is audited too


def test_screen_failure_fails_closed_unless_fail_open(tiny_pipe, unet_counter, monkeypatch):
    g = guard.protect(tiny_pipe, make_policy())

    def boom(prompts):
        raise RuntimeError("embedding backend crashed")

    monkeypatch.setattr(g.guard.guard.screen, "screen_batch", boom)
    out = g(BENIGN, **FAST)
    assert unet_counter.calls == 0 and out.nsfw_content_detected == [True]
    assert "embedding backend crashed" in out.guard_report.errors[0]
    assert out.guard_report.images[0].blocked_by == "error"

    g2 = guard.protect(tiny_pipe, make_policy(fail_open=True))
    monkeypatch.setattr(g2.guard.guard.screen, "screen_batch", boom)
    out = g2(BENIGN, **FAST)
    assert unet_counter.calls == 2 and out.nsfw_content_detected == [False]
    assert out.guard_report.errors


def test_output_check_failure_fails_closed(tiny_pipe, monkeypatch):
    g = guard.protect(tiny_pipe, make_policy())

    def boom(images):
        raise RuntimeError("onnx session died")

    monkeypatch.setattr(g.guard.guard.checker, "check", boom)
    out = g(BENIGN, output_type="np", **FAST)
    assert out.nsfw_content_detected == [True] and out.images.max() == 0
    assert "onnx session died" in out.guard_report.errors[0]


# ----------------------------------------------------------------------------- bad input


def test_bad_inputs_get_clear_errors(guarded, unet_counter):
    with pytest.raises(GuardInputError, match="pass `prompt`"):
        guarded(None, **FAST)
    with pytest.raises(GuardInputError, match="`prompt` must be a string or a list of strings, got int"):
        guarded(42, **FAST)
    with pytest.raises(GuardInputError, match=r"`prompt\[1\]` must be a string, got NoneType"):
        guarded([BENIGN, None], **FAST)
    with pytest.raises(GuardInputError, match="empty list"):
        guarded([], **FAST)
    with pytest.raises(GuardInputError, match="`negative_prompt` has 1 entries but `prompt` has 2"):
        guarded([BENIGN, BENIGN], negative_prompt=["blurry"], **FAST)
    with pytest.raises(GuardInputError, match="output_type must be one of"):
        guarded(BENIGN, output_type="jpeg", **FAST)
    with pytest.raises(GuardInputError, match="num_images_per_prompt"):
        guarded(BENIGN, num_images_per_prompt=0, **FAST)
    with pytest.raises(GuardInputError, match="multiple values for argument 'prompt'"):
        guarded(BENIGN, prompt=BENIGN, **FAST)
    with pytest.raises(GuardInputError, match="cannot be screened"):
        guarded(prompt_embeds=torch.zeros(1, 77, 32), **FAST)
    assert unet_counter.calls == 0


def test_empty_and_huge_prompts_get_defined_decisions(guarded):
    out = guarded(["", "a tranquil lake " * 6250], output_type="np", **FAST)  # second is 100,000 chars
    assert [im.decision for im in out.guard_report.images] == ["allowed", "allowed"]
    assert "truncated" in out.guard_report.images[1].screen.transforms
    # what a text encoder reads (the start) is screened, segment by segment, however long the rest
    out = guarded("a tranquil lake, " * 40 + "a naked woman, " + "a tranquil lake, " * 5000, output_type="np", **FAST)
    assert out.guard_report.images[0].decision == "blocked"


# ----------------------------------------------------------------------------- persistence


def test_save_and_load_round_trip_keeps_the_policy(tiny_pipe, tmp_path):
    pol = make_policy(name="saved-policy", on_block="blank")
    g = guard.protect(tiny_pipe, pol)
    g.save_pretrained(tmp_path / "p")
    assert (tmp_path / "p" / "guard" / "policy.yaml").read_text().count("saved-policy") >= 1
    loaded = GuardedStableDiffusionPipeline.from_pretrained(tmp_path / "p")
    assert loaded.guard_policy.name == "saved-policy"
    assert loaded.guard_policy.sha256 == g.guard_policy.sha256
    out = loaded([BENIGN, UNSAFE], output_type="np", **FAST)
    assert out.nsfw_content_detected == [False, True]
    # an explicit policy wins over the saved one
    other = GuardedStableDiffusionPipeline.from_pretrained(tmp_path / "p", policy=make_policy(name="override"))
    assert other.guard_policy.name == "override"


def test_plain_saved_pipeline_loads_with_a_policy(tiny_pipe, tmp_path):
    tiny_pipe.save_pretrained(tmp_path / "plain")
    g = GuardedStableDiffusionPipeline.from_pretrained(tmp_path / "plain", policy=make_policy())
    assert g.guard_policy.name == "test"
    assert g(UNSAFE, **FAST).nsfw_content_detected == [True]
    d = GuardedStableDiffusionPipeline.from_pretrained(tmp_path / "plain")
    assert d.guard_policy.name == "default"  # no policy given: the default policy, never none


def test_from_pipe_keeps_or_replaces_the_policy(tiny_pipe):
    g = GuardedStableDiffusionPipeline.from_pipe(tiny_pipe, policy=make_policy(name="first"))
    assert g.guard_policy.name == "first"
    g2 = GuardedStableDiffusionPipeline.from_pipe(g)
    assert g2.guard_policy.name == "first" and g2.guard is g.guard
    g3 = GuardedStableDiffusionPipeline.from_pipe(g, policy=make_policy(name="second"))
    assert g3.guard_policy.name == "second" and g.guard_policy.name == "first"


def test_to_and_cpu_offload_keep_the_guard(tiny_pipe):
    g = guard.protect(tiny_pipe, make_policy())
    g = g.to("cpu")
    assert g.guard_policy.name == "test"
    g.enable_model_cpu_offload(device="cpu")
    try:
        counter = UNetCounter(g.unet)
        out = g([BENIGN, UNSAFE], output_type="np", **FAST)
        assert counter.calls == 2 and counter.batches == [2, 2]
        assert out.nsfw_content_detected == [False, True]
        counter.remove()
    finally:
        g.remove_all_hooks()


def test_set_policy_validates_before_changing(guarded):
    with pytest.raises(guard.PolicyError):
        guarded.set_policy({"name": "x", "bogus": 1})
    assert guarded.guard_policy.name == "test"
    guarded.set_policy(make_policy(name="new"))
    assert guarded.guard_policy.name == "new"


def test_generator_space_stage_raises_decisions_and_fails_closed(tiny_pipe, unet_counter, tmp_path):
    pol = make_policy(
        screen={"threshold": 0.6, "generator_space": {"enabled": True, "threshold": 0.0001, "action": "block"}}
    )
    g = guard.protect(tiny_pipe, pol)
    out = g(BENIGN, **FAST)  # every prompt is "near" a concept at a threshold of ~0
    assert unet_counter.calls == 0 and out.nsfw_content_detected == [True]
    assert any("generator" in r for r in out.guard_report.images[0].reasons + out.guard_report.images[0].screen.reasons)
    assert "generator_space" in out.guard_report.timings_ms
    # a calibration file made for another model is refused: fail closed
    bad = tmp_path / "calib.json"
    from guard.pipelines.tiny import build_tiny_pipeline
    from guard.screen.generator_space import calibrate, pipeline_encoders, save_calibration

    other = build_tiny_pipeline(seed=1)
    from guard.policy import load_policy

    p = load_policy(make_policy())
    save_calibration(calibrate(pipeline_encoders(other), p, ["a cat", "a dog", "a tree"]), bad)
    pol2 = make_policy(screen={"generator_space": {"enabled": True, "calibration": str(bad)}})
    out = guard.protect(tiny_pipe, pol2)(BENIGN, **FAST)
    assert out.nsfw_content_detected == [True]
    assert "generator-space screen failed" in out.guard_report.errors[0]
