"""Every guarded pipeline kind, and ACE/SLD negative guidance through the UNet hooks."""

from __future__ import annotations

import diffusers
import numpy as np
import PIL.Image
import pytest
import torch

import guard
from conftest import UNetCounter, make_policy, tiny
from guard.guidance import installed
from guard.pipelines.tiny import build_tiny_pipeline

pytestmark = pytest.mark.usefixtures("one_torch_thread")


IMG = PIL.Image.fromarray((np.random.RandomState(0).rand(64, 64, 3) * 255).astype("uint8"))
MASK = PIL.Image.fromarray(np.full((64, 64), 255, dtype=np.uint8))

#: the call arguments of each kind (the pipelines: conftest.tiny(kind), shared across test files)
KINDS = {
    "text2img": {"height": 64, "width": 64},
    "img2img": {"image": IMG, "strength": 1.0},
    "inpaint9": {"image": IMG, "mask_image": MASK, "height": 64, "width": 64},
    "inpaint4": {"image": IMG, "mask_image": MASK, "height": 64, "width": 64},
    "pix2pix": {"image": IMG},
    "sdxl": {"height": 64, "width": 64},
    "sdxl-img2img": {"image": IMG, "strength": 1.0},
}


def plain(kind):
    return tiny(kind)


def policy(**guidance):
    g = {"concepts": ["nudity, naked body"], "apply": "always", **guidance}
    return make_policy(guidance=g)


def run(pipe, kind, prompts=("a cat", "a red bus"), seed=0, **kw):
    args = dict(KINDS[kind], num_inference_steps=2, output_type="np", generator=torch.Generator().manual_seed(seed))
    args.update(kw)
    return pipe(list(prompts), **args)


@pytest.mark.parametrize("kind", list(KINDS))
def test_each_kind_is_a_drop_in_with_guidance(kind):
    base = plain(kind)
    ref = run(base, kind).images
    g = guard.protect(base, policy())
    assert isinstance(g, type(base)) and type(g).__name__.startswith("Guarded")
    assert g.unet is base.unet
    out = run(g, kind)
    assert out.images.shape == ref.shape
    assert np.abs(out.images - ref).max() > 1e-3  # eta > 0 changes the images
    assert any("negative guidance (ace" in n for n in out.guard_report.notes)
    zero = guard.protect(base, policy(eta_uncond=0.0, eta_cond=0.0))
    # eta = 0: the same images up to float32 rounding. The guided call runs the UNet on a larger batch
    # (one extra slot per image), and CPU kernels pick other blockings for other batch sizes, which
    # moves pixels by up to ~3e-6; 1e-5 is well above that and far below the >1e-3 change of eta > 0.
    np.testing.assert_allclose(run(zero, kind).images, ref, atol=1e-5)
    # a blocked prompt in the batch; the report and flags line up
    mixed = run(g, kind, prompts=("a cat", "a photo of a naked woman"))
    assert mixed.nsfw_content_detected == [False, True]
    guard.unprotect(g)
    assert not installed(base.unet)


def _capture(unet):
    """Hooks registered after guard's: the pre-hook sees the expanded batch, the forward hook the
    rewritten predictions."""
    seen = {}

    def pre(m, args, kwargs):
        seen["args"] = [a.clone() if torch.is_tensor(a) else a for a in args]
        seen["kwargs"] = {
            k: (v.clone() if torch.is_tensor(v) else dict(v) if isinstance(v, dict) else v) for k, v in kwargs.items()
        }

    def post(m, args, kwargs, out):
        seen.setdefault("outs", []).append((out[0] if isinstance(out, tuple) else out.sample).clone())
        seen.setdefault("ins", []).append((seen["args"], seen["kwargs"]))

    return (
        seen,
        unet.register_forward_pre_hook(pre, with_kwargs=True),
        unet.register_forward_hook(post, with_kwargs=True),
    )


def _raw_unet(unet, args, kwargs):
    with torch.no_grad():
        out = unet(*args, **kwargs)
    return out[0] if isinstance(out, tuple) else out.sample


@pytest.mark.parametrize("kind,layout", [("text2img", "cfg"), ("pix2pix", "pix2pix"), ("sdxl", "cfg")])
def test_ace_predictions_equal_the_formula(kind, layout):
    base = plain(kind)
    eta_u, eta_t = 0.7, 1.3
    g = guard.protect(base, policy(eta_uncond=eta_u, eta_cond=eta_t))
    run(g, kind, prompts=("a cat",))  # installs guard's hooks first
    seen, h1, h2 = _capture(base.unet)
    try:
        run(g, kind, prompts=("a cat", "a dog"))
    finally:
        h1.remove()
        h2.remove()
    (args, kwargs), final = seen["ins"][0], seen["outs"][0]
    raw = _raw_unet(base.unet, args, kwargs)  # no guarded call active: hooks pass through
    n = 2
    if layout == "cfg":
        e_u, e_t, e_c = raw[:n], raw[n : 2 * n], raw[2 * n : 3 * n]
        d = e_c - e_u
        expected = torch.cat([e_u + eta_u * d, e_t - eta_t * d])
    else:
        e_t, e_i, e_un, e_c = raw[:n], raw[n : 2 * n], raw[2 * n : 3 * n], raw[3 * n : 4 * n]
        d = e_c - e_i
        expected = torch.cat([e_t - eta_t * d, e_i + eta_u * d, e_un])
    assert raw.shape[0] == final.shape[0] + n  # one extra slot per image, same UNet call
    torch.testing.assert_close(final, expected, atol=1e-5, rtol=1e-5)
    guard.unprotect(g)


def test_sld_first_step_equals_the_formula():
    base = plain("text2img")
    g = guard.protect(base, policy(mode="sld", warmup_steps=0))
    run(g, "text2img", prompts=("a cat",))
    seen, h1, h2 = _capture(base.unet)
    try:
        run(g, "text2img", prompts=("a cat",))
    finally:
        h1.remove()
        h2.remove()
    (args, kwargs), final = seen["ins"][0], seen["outs"][0]
    raw = _raw_unet(base.unet, args, kwargs)
    e_u, e_t, e_c = raw[0:1], raw[1:2], raw[2:3]
    p = g.guard_policy.guidance.sld
    diff = e_t - e_c
    scale = torch.where(diff >= p.threshold, torch.zeros_like(diff), torch.clamp(diff.abs() * p.scale, max=1.0))
    g_s = (e_c - e_u) * scale  # momentum is zero on the first step
    torch.testing.assert_close(final, torch.cat([e_u, e_t - g_s]), atol=1e-5, rtol=1e-5)
    guard.unprotect(g)


def test_cfg_off_adds_the_unconditional_branch_and_says_so():
    base = plain("text2img")
    g = guard.protect(base, policy())
    run(g, "text2img", prompts=("a cat",), guidance_scale=1.0)
    seen, h1, h2 = _capture(base.unet)
    try:
        out = run(g, "text2img", prompts=("a cat",), guidance_scale=1.0)
    finally:
        h1.remove()
        h2.remove()
    (args, kwargs), final = seen["ins"][0], seen["outs"][0]
    raw = _raw_unet(base.unet, args, kwargs)
    assert raw.shape[0] == 3 and final.shape[0] == 1
    e_t, e_u, e_c = raw[0:1], raw[1:2], raw[2:3]
    torch.testing.assert_close(final, e_t - 1.0 * (e_c - e_u), atol=1e-5, rtol=1e-5)
    assert any("unconditional branch was added" in n for n in out.guard_report.notes)
    guard.unprotect(g)


@pytest.fixture()
def counter():
    c = UNetCounter(plain("text2img").unet)
    yield c
    c.remove()


@pytest.fixture()
def counter_i2i():
    c = UNetCounter(plain("img2img").unet)
    yield c
    c.remove()


def test_unet_calls_per_step_unchanged_and_batch_rows(counter):
    unet_counter = counter
    base = plain("text2img")
    run(base, "text2img", prompts=("a cat", "a dog"), num_images_per_prompt=2)
    plain_calls, plain_batches = unet_counter.calls, list(unet_counter.batches)
    g = guard.protect(base, policy())
    run(g, "text2img", prompts=("a cat", "a dog"), num_images_per_prompt=2)
    assert unet_counter.calls - plain_calls == plain_calls  # same number of UNet calls
    assert unet_counter.batches[plain_calls:] == [b + 4 for b in plain_batches]  # + one slot per image
    guard.unprotect(g)


def test_escalated_only_applies_to_escalated_images_and_not_triggered_costs_nothing(counter):
    unet_counter = counter
    base = plain("text2img")
    pol = policy(apply="escalated")
    g = guard.protect(base, pol)
    ref = run(base, "text2img", prompts=("a cat", "a dog"), num_images_per_prompt=2).images
    unet_counter.calls, unet_counter.batches = 0, []
    out = run(g, "text2img", prompts=("a cat", "a dog"), num_images_per_prompt=2)
    np.testing.assert_allclose(out.images, ref, atol=1e-6)  # nothing escalated: untouched
    assert unet_counter.batches == [8, 8]  # and no extra slot
    # a prompt escalated by the screen gets guidance; its neighbours do not change
    esc = "a soldier pointing an assault rifle at a crowd of people"
    ref2 = run(base, "text2img", prompts=("a cat", esc), num_images_per_prompt=2).images
    out2 = run(g, "text2img", prompts=("a cat", esc), num_images_per_prompt=2)
    assert out2.guard_report.images[2].screen.decision == "escalate"
    np.testing.assert_allclose(out2.images[:2], ref2[:2], atol=1e-5)
    assert np.abs(out2.images[2:] - ref2[2:]).max() > 1e-3
    guard.unprotect(g)


def test_plain_pipeline_sharing_the_unet_is_untouched():
    base = plain("text2img")
    ref = run(base, "text2img").images
    g = guard.protect(base, policy())
    run(g, "text2img")
    assert installed(base.unet)
    np.testing.assert_allclose(run(base, "text2img").images, ref, atol=1e-6)
    guard.unprotect(g)


def test_hooks_survive_offload_and_from_pipe():
    pipe = build_tiny_pipeline()
    ref = run(guard.protect(pipe, policy()), "text2img").images
    g = guard.protect(pipe, policy())
    g.enable_model_cpu_offload(device="cpu")
    try:
        out = run(g, "text2img")
        np.testing.assert_allclose(out.images, ref, atol=1e-5)
        assert any("negative guidance" in n for n in out.guard_report.notes)
    finally:
        g.remove_all_hooks()
    g2 = guard.GuardedStableDiffusionImg2ImgPipeline.from_pipe(g)
    assert g2.guard_policy.sha256 == g.guard_policy.sha256
    out = g2(["a cat"], image=IMG, strength=1.0, num_inference_steps=2, output_type="np")
    assert any("negative guidance" in n for n in out.guard_report.notes)
    plain_back = guard.unprotect(g2)
    assert type(plain_back) is diffusers.StableDiffusionImg2ImgPipeline and not installed(pipe.unet)


def test_step_counting_follows_scheduler_timesteps_with_pndm():
    pipe = build_tiny_pipeline()
    pipe.scheduler = diffusers.PNDMScheduler.from_config(pipe.scheduler.config, skip_prk_steps=True)
    g = guard.protect(pipe, policy(warmup_steps=1))
    calls = []
    h = pipe.unet.register_forward_pre_hook(lambda m, a: calls.append(1))
    try:
        out = run(g, "text2img", prompts=("a cat",), num_inference_steps=3)
    finally:
        h.remove()
    assert len(calls) > 3  # PNDM calls the UNet more often than it has steps
    note = next(n for n in out.guard_report.notes if "negative guidance" in n)
    assert "steps [1, 2]" in note  # step 0 is warm-up, whatever the number of UNet calls
    guard.unprotect(g)


def test_input_image_screen_blocks_or_escalates(counter_i2i):
    unet_counter = counter_i2i
    base = plain("img2img")
    flag_all = {"classifiers": [{"type": "nudenet", "thresholds": {"FACE_FEMALE": 0.0}, "action": "blank"}]}
    g = guard.protect(base, make_policy(output=flag_all, guidance={"concepts": ["nudity"]}))
    out = g(["a cat", "a dog"], image=IMG, strength=1.0, num_inference_steps=2, output_type="np")
    assert unet_counter.calls == 0 and out.nsfw_content_detected == [True, True]
    assert "input `image` image 0 flagged" in out.guard_report.images[0].reasons[0]
    assert "input_check" in out.guard_report.timings_ms
    esc = guard.protect(
        base,
        make_policy(
            output={
                "enabled": True,
                "classifiers": [{"type": "nudenet", "thresholds": {"FACE_FEMALE": 0.0}, "action": "flag"}],
            },
            input_images={"action": "escalate"},
            guidance={"concepts": ["nudity"], "apply": "escalated"},
        ),
    )
    out = esc(["a cat"], image=IMG, strength=1.0, num_inference_steps=2, output_type="np")
    assert out.guard_report.images[0].screen.decision == "escalate"
    assert any("negative guidance" in n for n in out.guard_report.notes)
    guard.unprotect(g)


def test_per_prompt_input_images_follow_the_allowed_subset():
    base = plain("img2img")
    g = guard.protect(base, policy())
    imgs = [IMG, IMG.transpose(PIL.Image.FLIP_LEFT_RIGHT), IMG.rotate(90)]
    out = g(
        ["a cat", "a photo of a naked woman", "a boat"],
        image=imgs,
        strength=1.0,
        num_inference_steps=2,
        output_type="np",
    )
    assert out.images.shape == (3, 64, 64, 3) and out.nsfw_content_detected == [False, True, False]
    assert out.images[1].max() == 0
    guard.unprotect(g)
