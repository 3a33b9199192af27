"""Conditioning the screen would not see, concurrent calls, and outputs that lost the report: each
test here failed on the code before the stage runner (issue 9, item 3)."""

from __future__ import annotations

import json
import threading

import numpy as np
import PIL.Image
import pytest
import torch

import guard
from conftest import FAST, UNetCounter, make_policy, tiny
from guard.pipelines.tiny import add_tiny_ip_adapter, build_tiny_pipeline
from guard.stages import decode_latents

pytestmark = pytest.mark.usefixtures("one_torch_thread")

IMG = PIL.Image.fromarray((np.random.RandomState(0).rand(64, 64, 3) * 255).astype("uint8"))
MASK = PIL.Image.fromarray(np.full((64, 64), 255, dtype=np.uint8))
BENIGN, UNSAFE = "a cat sleeping on a sofa", "a photo of a naked woman"
#: every input image is flagged (a face score >= 0 counts), and input images block
FLAG_INPUTS = make_policy(
    output={"classifiers": [{"type": "nudenet", "thresholds": {"FACE_FEMALE": 0.0}, "action": "flag"}]},
    input_images={"action": "block"},
)
_P: dict = {}


def cached(name, build):
    if name not in _P:
        _P[name] = build()
    return _P[name]


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def ip_pipe():
    return cached("ip", lambda: add_tiny_ip_adapter(build_tiny_pipeline()))


class CheckerSpy:
    """Records the pixel arrays the output classifiers are given (and runs them for real)."""

    def __init__(self, runner, monkeypatch):
        self.seen: list[np.ndarray] = []
        real = runner.checker.check

        def check(images, **kwargs):
            self.seen.extend(np.asarray(im) for im in images)
            return real(images, **kwargs)

        monkeypatch.setattr(runner.checker, "check", check)


# ----------------------------------------------------------------------------- IP-Adapter


def test_negative_guidance_works_with_an_ip_adapter():
    base = ip_pipe()
    kw = dict(
        ip_adapter_image=IMG, num_inference_steps=2, output_type="np", **{k: FAST[k] for k in ("height", "width")}
    )
    ref = base(["a cat", "a dog"], generator=gen(), **kw).images
    pol = make_policy(guidance={"concepts": ["sexual.nudity"], "apply": "always"})
    g = guard.protect(base, pol)
    out = g(["a cat", "a dog"], generator=gen(), **kw)  # used to crash: image_embeds lacked the extra slot
    assert any("negative guidance (ace" in n for n in out.guard_report.notes)
    assert np.abs(out.images - ref).max() > 1e-3
    zero = guard.protect(
        base,
        make_policy(guidance={"concepts": ["sexual.nudity"], "apply": "always", "eta_uncond": 0.0, "eta_cond": 0.0}),
    )
    # eta = 0 gives the unguarded images: the concept slots carried the right image embeddings.
    # (The extra batch rows change CPU float32 kernel blocking: differences up to ~3e-6.)
    np.testing.assert_allclose(zero(["a cat", "a dog"], generator=gen(), **kw).images, ref, atol=1e-5)
    guard.unprotect(g)


def test_ip_adapter_image_goes_through_the_input_stage(monkeypatch):
    g = guard.protect(ip_pipe(), FLAG_INPUTS)
    spy = CheckerSpy(g.guard_runner, monkeypatch)
    counter = UNetCounter(g.unet)
    try:
        out = g(BENIGN, ip_adapter_image=IMG, output_type="np", **FAST)
    finally:
        counter.remove()
    assert counter.calls == 0 and out.nsfw_content_detected == [True]
    assert "input `ip_adapter_image` image 0 flagged" in out.guard_report.images[0].reasons[0]
    assert spy.seen[0].shape == (64, 64, 3)
    guard.unprotect(g)


# ----------------------------------------------------------------------------- latents as image inputs


def _latents_of(pipe, image):
    x = pipe.image_processor.preprocess(image)
    with torch.no_grad():
        return pipe.vae.encode(x).latent_dist.mode() * pipe.vae.config.scaling_factor


def test_img2img_latents_are_decoded_before_they_are_classified(monkeypatch):
    base = tiny("img2img")
    g = guard.protect(base, FLAG_INPUTS)
    spy = CheckerSpy(g.guard_runner, monkeypatch)
    lat = _latents_of(base, IMG)  # (1, 4, 32, 32): diffusers takes a 4-channel `image` as latents
    out = g(BENIGN, image=lat, strength=1.0, num_inference_steps=2, output_type="np")
    assert out.nsfw_content_detected == [True]
    (seen,) = spy.seen
    # the classifier saw the decoded picture (64x64 RGB), not the 32x32 latent values as colours
    assert seen.shape == (64, 64, 3)
    expected = (decode_latents(base, lat)[0] * 255).round().astype(np.uint8)
    assert np.abs(seen.astype(int) - expected.astype(int)).max() <= 1
    guard.unprotect(g)


def test_inpaint_masked_image_latents_are_checked(monkeypatch):
    base = tiny("inpaint9")
    g = guard.protect(base, FLAG_INPUTS)
    spy = CheckerSpy(g.guard_runner, monkeypatch)
    lat = _latents_of(base, IMG)
    out = g(BENIGN, image=IMG, mask_image=MASK, masked_image_latents=lat, output_type="np", **FAST)
    assert out.nsfw_content_detected == [True]
    reasons = " ".join(out.guard_report.images[0].screen.reasons)
    assert "input `masked_image_latents` image 0 flagged" in reasons
    assert [s.shape for s in spy.seen] == [(64, 64, 3), (64, 64, 3)]  # image, then decoded latents
    guard.unprotect(g)


# ----------------------------------------------------------------------------- step callbacks


def test_a_step_callback_that_rewrites_prompt_embeds_is_refused(tiny_pipe, tmp_path):
    log = tmp_path / "audit.jsonl"
    g = guard.protect(tiny_pipe, make_policy(audit={"path": str(log)}))
    forbidden = g.encode_prompt(UNSAFE, "cpu", 1, True)

    def swap(pipe, step, t, kw):
        return {"prompt_embeds": torch.cat([forbidden[1], forbidden[0]])}

    with pytest.raises(guard.GuardError, match="callback_on_step_end changed `prompt_embeds` at step 0"):
        g(BENIGN, callback_on_step_end=swap, callback_on_step_end_tensor_inputs=["latents", "prompt_embeds"], **FAST)
    (event,) = [json.loads(x) for x in log.read_text().splitlines()]
    assert event["decision"] == "blocked" and "callback_on_step_end changed" in event["error"]

    def in_place(pipe, step, t, kw):
        kw["prompt_embeds"].mul_(0.5)
        return kw

    with pytest.raises(guard.GuardError, match="changed `prompt_embeds`"):
        g(BENIGN, callback_on_step_end=in_place, callback_on_step_end_tensor_inputs=["prompt_embeds"], **FAST)
    # reading them, or steering the latents, is fine
    steps = []

    def reader(pipe, step, t, kw):
        steps.append(float(kw["prompt_embeds"].abs().sum()))
        return {"latents": kw["latents"] * 1.0}

    out = g(
        BENIGN, callback_on_step_end=reader, callback_on_step_end_tensor_inputs=["latents", "prompt_embeds"], **FAST
    )
    assert len(steps) == 2 and out.nsfw_content_detected == [False]


# ----------------------------------------------------------------------------- prompt + prompt_embeds


def test_prompt_with_prompt_embeds_is_screened_and_runs(tiny_pipe):
    g = guard.protect(tiny_pipe, make_policy())
    with pytest.raises(guard.GuardInputError, match="pass the prompt text too as `prompt=`"):
        g(prompt_embeds=torch.zeros(1, 77, 32), **FAST)
    pe, ne = g.encode_prompt(BENIGN, "cpu", 1, True)
    out = g(BENIGN, prompt_embeds=pe, negative_prompt_embeds=ne, output_type="np", generator=gen(2), **FAST)
    ref = g(BENIGN, output_type="np", generator=gen(2), **FAST)  # the guard's advice now works
    np.testing.assert_allclose(out.images, ref.images, atol=1e-5)
    assert any("only the embeddings" in n for n in out.guard_report.notes)
    counter = UNetCounter(g.unet)
    try:
        bad = g(
            [BENIGN, UNSAFE],
            prompt_embeds=torch.cat([pe, pe]),
            negative_prompt_embeds=torch.cat([ne, ne]),
            output_type="np",
            **FAST,
        )
    finally:
        counter.remove()
    assert bad.nsfw_content_detected == [False, True] and counter.batches == [2, 2]


# ----------------------------------------------------------------------------- threads


def test_concurrent_calls_on_one_pipeline_are_refused_at_once(tiny_pipe):
    g = guard.protect(tiny_pipe, make_policy())
    inside, release = threading.Event(), threading.Event()
    result = {}

    def hold(pipe, step, t, kw):
        inside.set()
        release.wait(30)
        return kw

    def first():
        result["out"] = g(BENIGN, callback_on_step_end=hold, **FAST)

    th = threading.Thread(target=first)
    th.start()
    try:
        assert inside.wait(30)
        with pytest.raises(guard.GuardError, match=r"one pipeline per thread: `pipe.for_thread\(\)`"):
            g(BENIGN, **FAST)
        other = g.for_thread()  # its own scheduler: runs while the first call is still going
        assert other(BENIGN, **FAST).nsfw_content_detected == [False]
    finally:
        release.set()
        th.join()
    assert result["out"].nsfw_content_detected == [False]
    assert g(BENIGN, **FAST).nsfw_content_detected == [False]  # free again afterwards


def test_thread_copies_keep_their_own_steps_and_guidance_scale():
    base = build_tiny_pipeline()
    g = guard.protect(base, make_policy(guidance={"concepts": ["sexual.nudity"], "apply": "always"}))
    settings = [dict(num_inference_steps=2, guidance_scale=7.5), dict(num_inference_steps=3, guidance_scale=1.0)]

    def call(p, s):
        return p(BENIGN, generator=gen(1), output_type="np", height=64, width=64, **s)

    serial = [call(g, s) for s in settings]
    copies = [g.for_thread(), g.for_thread()]
    outs: dict = {}
    barrier = threading.Barrier(2)

    def worker(i):
        barrier.wait()
        outs[i] = call(copies[i], settings[i])

    ths = [threading.Thread(target=worker, args=(i,)) for i in range(2)]
    for th in ths:
        th.start()
    for th in ths:
        th.join()
    for i in range(2):
        np.testing.assert_allclose(outs[i].images, serial[i].images, atol=1e-5)
        assert [n for n in outs[i].guard_report.notes if "negative guidance" in n] == [
            n for n in serial[i].guard_report.notes if "negative guidance" in n
        ]
    guard.unprotect(g)


# ----------------------------------------------------------------------------- return_dict=False


def test_return_dict_false_keeps_the_report_and_flags(tiny_pipe):
    g = guard.protect(tiny_pipe, make_policy())
    out = g([BENIGN, UNSAFE], return_dict=False, **FAST)
    _images, nsfw = out  # unpacks like the parent's tuple
    assert nsfw == [False, True] and isinstance(out, tuple) and isinstance(out, guard.GuardedTuple)
    assert out.guard_report.images[1].decision == "blocked" and out.nsfw_content_detected == nsfw


def test_sdxl_return_dict_false_keeps_the_flags():
    g = guard.protect(tiny("sdxl"), make_policy())
    out = g([BENIGN, UNSAFE], return_dict=False, num_inference_steps=2, height=64, width=64, output_type="np")
    (images,) = out  # SDXL's own tuple has one element
    assert images.shape == (2, 64, 64, 3)
    assert out.nsfw_content_detected == [False, True] and out.guard_report.images[1].blocked_by == "screen"
    guard.unprotect(g)
