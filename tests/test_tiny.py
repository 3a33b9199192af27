"""Tests for guard.pipelines.tiny: offline, deterministic tiny Stable Diffusion pipelines."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler, StableDiffusionPipeline

from guard.pipelines.tiny import (
    MAX_LENGTH,
    build_tiny_components,
    build_tiny_pipeline,
    build_tiny_tokenizer,
    save_tiny_pipeline,
)

WEIRD_PROMPT = "naked 🍑 𝓷𝓾𝓭𝓮 \u200b"


@pytest.fixture(scope="module", autouse=True)
def _single_thread() -> Iterator[None]:
    """Tiny models run fastest (and least flakily on busy CPUs) on one thread; restore afterwards."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def pipe() -> StableDiffusionPipeline:
    return build_tiny_pipeline()


def _generate(pipeline: StableDiffusionPipeline, prompt: str = "a cat") -> np.ndarray:
    out = pipeline(
        prompt,
        num_inference_steps=2,
        height=64,
        width=64,
        generator=torch.Generator().manual_seed(0),
        output_type="np",
    )
    return out.images


def _weights(components: dict) -> dict[str, torch.Tensor]:
    return {
        f"{name}.{key}": tensor
        for name in ("unet", "vae", "text_encoder")
        for key, tensor in components[name].state_dict().items()
    }


def test_same_seed_gives_identical_weights() -> None:
    first, second = _weights(build_tiny_components(0)), _weights(build_tiny_components(0))
    assert first.keys() == second.keys()
    for key in first:
        assert torch.equal(first[key], second[key]), key
    other = _weights(build_tiny_components(1))
    assert any(not torch.equal(first[k], other[k]) for k in first)


def test_building_leaves_global_rng_unchanged() -> None:
    torch.manual_seed(1234)
    state = torch.random.get_rng_state()
    build_tiny_components(0)
    assert torch.equal(state, torch.random.get_rng_state())


def test_components_match_pipeline_signature(pipe: StableDiffusionPipeline) -> None:
    components = build_tiny_components(0, in_channels=9)
    assert components["unet"].config.in_channels == 9
    assert components["safety_checker"] is None and components["feature_extractor"] is None
    assert isinstance(components["scheduler"], DDIMScheduler)
    assert pipe.vae_scale_factor == 2
    assert pipe.text_encoder.config.vocab_size == len(pipe.tokenizer)


def test_tokenizer_handles_arbitrary_unicode() -> None:
    tokenizer = build_tiny_tokenizer()
    assert tokenizer.convert_ids_to_tokens([len(tokenizer) - 2, len(tokenizer) - 1]) == [
        "<|startoftext|>",
        "<|endoftext|>",
    ]
    ids = tokenizer(WEIRD_PROMPT).input_ids
    # unk == eos for CLIP: the end-of-text id must appear only once, at the end.
    assert ids[0] == tokenizer.bos_token_id and ids[-1] == tokenizer.eos_token_id
    assert tokenizer.eos_token_id not in ids[1:-1]
    assert tokenizer.decode(ids, skip_special_tokens=True) == WEIRD_PROMPT.strip()
    padded = tokenizer(WEIRD_PROMPT, padding="max_length", max_length=MAX_LENGTH, truncation=True)
    assert len(padded.input_ids) == MAX_LENGTH
    assert len(tokenizer("a photo of a cat").input_ids) < len("a photo of a cat")  # merges apply


def test_two_step_generation(pipe: StableDiffusionPipeline) -> None:
    images = _generate(pipe, WEIRD_PROMPT)
    assert images.shape == (1, 64, 64, 3)
    assert np.isfinite(images).all()
    assert images.min() >= 0.0 and images.max() <= 1.0
    assert np.array_equal(images, _generate(pipe, WEIRD_PROMPT))


def test_save_load_round_trip(pipe: StableDiffusionPipeline, tmp_path: Path) -> None:
    pipe.save_pretrained(tmp_path)
    loaded = StableDiffusionPipeline.from_pretrained(tmp_path)
    loaded.set_progress_bar_config(disable=True)
    assert type(loaded.scheduler) is type(pipe.scheduler)
    assert loaded.tokenizer(WEIRD_PROMPT).input_ids == pipe.tokenizer(WEIRD_PROMPT).input_ids
    assert np.array_equal(_generate(loaded), _generate(pipe))


def test_save_tiny_pipeline(tmp_path: Path) -> None:
    saved = save_tiny_pipeline(tmp_path / "tiny", seed=0)
    assert (tmp_path / "tiny" / "model_index.json").is_file()
    assert isinstance(saved, StableDiffusionPipeline)
