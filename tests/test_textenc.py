"""guard.textenc: the one place prompts are encoded with a pipeline's own tokenizer(s) and text encoder(s)."""

from __future__ import annotations

import pytest
import torch

from guard.errors import GuardError, GuardInputError
from guard.textenc import (
    added_tokens,
    base_vocab_size,
    encode_conditioning,
    encode_hidden,
    expand_multi_vector,
    pipeline_encoders,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def sd():
    from guard.pipelines.tiny import build_tiny_pipeline

    return build_tiny_pipeline()


@pytest.fixture(scope="module")
def sdxl():
    from guard.pipelines.tiny import build_tiny_sdxl_pipeline

    return build_tiny_sdxl_pipeline()


@pytest.mark.parametrize("kind", ["sd", "sdxl"])
def test_conditioning_is_the_pipelines_own(kind, request):
    """What guidance steers with: equal to the pipeline's encode_prompt, and for SD to the plain
    tokenizer + text encoder pass guidance used before."""
    pipe = request.getfixturevalue(kind)
    texts = ["a naked woman", "blood and gore"]
    embeds, pooled = encode_conditioning(pipe, texts)
    assert embeds.shape[:2] == (2, 77)
    if kind == "sd":
        enc = pipe.tokenizer(texts, padding="max_length", max_length=77, truncation=True, return_tensors="pt")
        assert pooled is None and torch.equal(embeds, pipe.text_encoder(enc.input_ids)[0])
        hidden, lengths = encode_hidden(pipeline_encoders(pipe), texts)
        assert torch.allclose(hidden.float(), embeds, atol=1e-6)
        assert lengths == enc.attention_mask.sum(1).tolist()  # start and end tokens included
    else:
        ref = pipe.encode_prompt(prompt=texts, device="cpu", num_images_per_prompt=1, do_classifier_free_guidance=False)
        assert torch.equal(embeds, ref[0]) and torch.equal(pooled, ref[2])
        assert embeds.shape[2] == 64  # both encoders, concatenated


def test_added_tokens_and_expansion(sd):
    from guard.pipelines.tiny import build_tiny_pipeline

    pipe = build_tiny_pipeline()
    base = base_vocab_size(pipe.tokenizer)
    assert added_tokens(pipe.tokenizer) == {} and expand_multi_vector(["a <t>"], pipe.tokenizer) == ["a <t>"]
    pipe.load_textual_inversion({"<t>": torch.zeros(3, 32)})
    assert added_tokens(pipe.tokenizer) == {"<t>": base, "<t>_1": base + 1, "<t>_2": base + 2}
    assert base_vocab_size(pipe.tokenizer) == base
    assert expand_multi_vector(["a <t> photo"], pipe.tokenizer) == ["a <t> <t>_1 <t>_2 photo"]


def test_bad_inputs(sd):
    with pytest.raises(GuardInputError, match="single string"):
        encode_hidden(pipeline_encoders(sd), "a cat")
    with pytest.raises(GuardInputError, match="text 1 must be a string"):
        encode_conditioning(sd, ["ok", 3])
    with pytest.raises(GuardInputError, match="hidden_state"):
        encode_hidden(pipeline_encoders(sd), ["a"], "middle")
    with pytest.raises(GuardError, match="no text encoder"):
        pipeline_encoders(object())
