"""The drop-in contract, run on every guarded pipeline class (like diffusers' PipelineTesterMixin):
a class per kind says how to build the tiny pipeline and what to pass; :class:`GuardedContract` holds
the tests every kind must pass."""

from __future__ import annotations

import inspect

import diffusers
import numpy as np
import PIL.Image
import pytest
import torch

import guard
from conftest import UNetCounter, make_policy, tiny
from guard.guidance import installed
from guard.pipelines import GuardedPipelineMixin
from guard.pipelines.tiny import build_tiny_pipeline, build_tiny_sdxl_pipeline

pytestmark = pytest.mark.usefixtures("one_torch_thread")

IMG = PIL.Image.fromarray((np.random.RandomState(0).rand(64, 64, 3) * 255).astype("uint8"))
MASK = PIL.Image.fromarray(np.full((64, 64), 255, dtype=np.uint8))
BENIGN, UNSAFE = "a cat sleeping on a sofa", "a photo of a naked woman"
FLAG_ALL = make_policy(
    output={"classifiers": [{"type": "nudenet", "thresholds": {"FACE_FEMALE": 0.0}, "action": "flag"}]},
    input_images={"enabled": False},
)


class GuardedContract:
    """Mixed into one test class per pipeline kind. Subclasses set ``kind``, ``build`` and ``kwargs``."""

    kind = ""
    kwargs: dict = {}

    @staticmethod
    def build():  # pragma: no cover - set by subclasses
        raise NotImplementedError

    # helpers
    def plain(self):
        return tiny(self.kind)

    def guarded(self, policy=None):
        return guard.protect(self.plain(), policy or make_policy())

    def call(self, pipe, prompts, **kw):
        args = dict(self.kwargs, num_inference_steps=2, generator=torch.Generator().manual_seed(0))
        args.update(kw)
        return pipe(prompts, **args)

    # the contract
    def test_class_is_a_drop_in_subclass_with_the_parents_signature_and_doc(self):
        g = self.guarded()
        parent = type(self.plain())
        assert isinstance(g, parent) and isinstance(g, GuardedPipelineMixin)
        assert inspect.signature(type(g).__call__) == inspect.signature(parent.__call__)
        assert (
            inspect.signature(g.__call__).parameters.keys()
            == inspect.signature(self.plain().__call__).parameters.keys()
        )
        assert type(g).__call__.__doc__.startswith(inspect.getdoc(parent.__call__)[:200])
        assert "Guarded by ``guard``" in type(g).__call__.__doc__
        assert g.guard_policy.name == "test" and g.guard_runner.policy is g.guard_policy

    def test_blocked_prompt_is_never_denoised(self):
        g = self.guarded()
        counter = UNetCounter(g.unet)
        try:
            out = self.call(g, [UNSAFE], output_type="np")
        finally:
            counter.remove()
        assert counter.calls == 0 and out.nsfw_content_detected == [True]
        assert out.images.max() == 0 and out.guard_report.images[0].blocked_by == "screen"

    def test_mixed_batch_denoises_only_the_allowed_prompt(self):
        g = self.guarded()
        counter = UNetCounter(g.unet)
        try:
            out = self.call(g, [BENIGN, UNSAFE], output_type="np")
        finally:
            counter.remove()
        ref = UNetCounter(self.plain().unet)
        try:
            self.call(self.plain(), [BENIGN], output_type="np")
        finally:
            ref.remove()
        assert counter.batches == ref.batches  # the same UNet work as the benign prompt alone
        assert out.nsfw_content_detected == [False, True]
        assert out.images[1].max() == 0 and out.images[0].max() > 0
        assert [im.decision for im in out.guard_report.images] == ["allowed", "blocked"]

    def test_output_flag_path_keeps_the_image_and_flags_it(self):
        out = self.call(self.guarded(FLAG_ALL), [BENIGN], output_type="np")
        assert out.nsfw_content_detected == [True] and out.images.max() > 0
        assert out.guard_report.images[0].decision == "flagged"

    @pytest.mark.parametrize("output_type", ["pil", "np", "pt", "latent"])
    def test_every_output_type(self, output_type):
        out = self.call(self.guarded(), [BENIGN, UNSAFE], output_type=output_type)
        im = out.images
        if output_type == "pil":
            assert isinstance(im, list) and all(isinstance(x, PIL.Image.Image) and x.size == (64, 64) for x in im)
        elif output_type == "np":
            assert isinstance(im, np.ndarray) and im.shape == (2, 64, 64, 3)
        elif output_type == "pt":
            assert isinstance(im, torch.Tensor) and im.shape == (2, 3, 64, 64)
        else:
            assert isinstance(im, torch.Tensor) and im.shape == (2, 4, 32, 32) and im[1].abs().max() == 0
        assert out.nsfw_content_detected == [False, True]

    def test_return_dict_false_unpacks_like_the_parent(self):
        g = self.guarded()
        plain_tuple = self.call(self.plain(), [BENIGN], output_type="np", return_dict=False)
        out = self.call(g, [BENIGN, UNSAFE], output_type="np", return_dict=False)
        assert isinstance(out, guard.GuardedTuple) and len(out) == len(plain_tuple)
        assert out[0].shape == (2, 64, 64, 3)
        assert out.nsfw_content_detected == [False, True] and len(out.guard_report.images) == 2

    def test_save_and_load_keep_the_policy(self, tmp_path):
        g = self.guarded(make_policy(name="saved"))
        g.save_pretrained(tmp_path / "p")
        loaded = type(g).from_pretrained(tmp_path / "p")
        loaded.set_progress_bar_config(disable=True)
        assert loaded.guard_policy.sha256 == g.guard_policy.sha256
        assert self.call(loaded, [UNSAFE], output_type="np").nsfw_content_detected == [True]

    def test_from_pipe_keeps_the_policy(self):
        g = self.guarded(make_policy(name="kept"))
        again = type(g).from_pipe(g)
        assert again.guard_policy.sha256 == g.guard_policy.sha256 and again.unet is g.unet
        assert self.call(again, [UNSAFE], output_type="np").nsfw_content_detected == [True]

    def test_cpu_offload_keeps_the_guard(self):
        g = guard.protect(self.build(), make_policy())
        g.set_progress_bar_config(disable=True)
        g.enable_model_cpu_offload(device="cpu")
        try:
            out = self.call(g, [BENIGN, UNSAFE], output_type="np")
        finally:
            g.remove_all_hooks()
        assert out.nsfw_content_detected == [False, True]

    def test_unprotect_gives_the_plain_class_back(self):
        g = self.guarded(make_policy(guidance={"concepts": ["sexual.nudity"], "apply": "always"}))
        self.call(g, [BENIGN], output_type="np")
        plain = guard.unprotect(g)
        assert type(plain) is type(self.plain()) and plain.unet is g.unet
        assert not installed(plain.unet)


class TestText2Img(GuardedContract):
    kind = "text2img"
    kwargs = {"height": 64, "width": 64}
    build = staticmethod(build_tiny_pipeline)


class TestImg2Img(GuardedContract):
    kind = "img2img"
    kwargs = {"image": IMG, "strength": 1.0}
    build = staticmethod(lambda: build_tiny_pipeline(diffusers.StableDiffusionImg2ImgPipeline))


class TestInpaint(GuardedContract):
    kind = "inpaint9"
    kwargs = {"image": IMG, "mask_image": MASK, "height": 64, "width": 64}
    build = staticmethod(lambda: build_tiny_pipeline(diffusers.StableDiffusionInpaintPipeline, in_channels=9))


class TestInpaintLegacy(GuardedContract):
    kind = "inpaint4"
    kwargs = {"image": IMG, "mask_image": MASK, "height": 64, "width": 64}
    build = staticmethod(lambda: build_tiny_pipeline(diffusers.StableDiffusionInpaintPipeline))


class TestInstructPix2Pix(GuardedContract):
    kind = "pix2pix"
    kwargs = {"image": IMG}
    build = staticmethod(lambda: build_tiny_pipeline(diffusers.StableDiffusionInstructPix2PixPipeline, in_channels=8))


class TestSDXL(GuardedContract):
    kind = "sdxl"
    kwargs = {"height": 64, "width": 64}
    build = staticmethod(build_tiny_sdxl_pipeline)


class TestSDXLImg2Img(GuardedContract):
    kind = "sdxl-img2img"
    kwargs = {"image": IMG, "strength": 1.0}
    build = staticmethod(lambda: build_tiny_sdxl_pipeline(diffusers.StableDiffusionXLImg2ImgPipeline))
