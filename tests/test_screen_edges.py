"""Screen edge cases that fuzzing found (issue 9 item 8) and evasions it must see through (issue 10
item 6), each pinned by a test with the real MiniLM, FAISS and onnxruntime, most of them as a
hypothesis property so that the cause, not one input, is covered."""

from __future__ import annotations

import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from conftest import make_policy
from guard.errors import GuardInputError
from guard.policy import load_policy
from guard.screen import PromptScreen, get_embedder, normalize
from guard.screen.embedder import resolve_model_path
from guard.screen.normalize import fold_confusables, join_fragments, segments, strip_inner_symbols, variants
from guard.screen.suspicion import SuspicionScorer

FUZZ = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture], derandomize=True
)


def lex_policy(**screen):
    """The test policy with key terms, so the lexical layer and its lexicon are in play."""
    p = make_policy(screen={"threshold": 0.6, "escalate_margin": 0.05, **screen})
    p["concepts"][0]["terms"] = ["naked", "nude", "sex", "porn", "nipple"]
    return load_policy(p)


@pytest.fixture(scope="module")
def screen():
    return PromptScreen(lex_policy())


@pytest.fixture(scope="module")
def scorer():
    return SuspicionScorer(resolve_model_path("default"))


# ----------------------------------------------------------------------------- linear and bounded


def test_fifty_thousand_letters_score_in_well_under_a_second(scorer, screen):
    word = "qwertyuiopasdfghjklzxcvbnm" * 1924  # 50,024 letters, no space
    t0 = time.perf_counter()
    scorer.score(word)
    assert time.perf_counter() - t0 < 0.2  # was: 8k letters 11-21 s, 20k never finished (cubic split)
    t0 = time.perf_counter()
    r = screen.screen(word)
    assert time.perf_counter() - t0 < 2.0 and r.decision == "allow"  # the whole screen, every stage


@FUZZ
@given(
    st.text(alphabet=st.characters(codec="utf-8", categories=["Ll", "Lu", "Mn", "So", "Pd"]), min_size=20, max_size=400)
)
def test_suspicion_is_linear_on_any_run(scorer, text):
    t0 = time.perf_counter()
    s = scorer.score(text * 50)  # up to 20k characters, mostly without spaces
    assert time.perf_counter() - t0 < 0.5 and 0.0 <= s.score <= 1.0


@FUZZ
@given(st.text(alphabet=st.sampled_from("abcdefgh -\u200b🍑ѕех\u0345"), min_size=20, max_size=400))
def test_normalisation_and_variants_are_linear(screen, text):
    text = text * 50
    t0 = time.perf_counter()
    n = normalize(text)
    variants(n.text, screen.lexical.words, screen.lexical.dictionary)
    segments(n.text)
    assert time.perf_counter() - t0 < 1.0


# ----------------------------------------------------------------------------- input types


@pytest.mark.parametrize(
    "bad,kind",
    [
        (None, "NoneType"),
        (5, "int"),
        (object(), "object"),
        (b"abc", "bytes"),
        ({"a naked woman": 1}, "dict"),
        ({"a", "b"}, "set"),
        (iter(["a"]), "list_iterator"),
    ],
)
def test_screen_batch_refuses_what_is_not_a_list_of_str(screen, bad, kind):
    with pytest.raises(GuardInputError, match=f"expected a list of prompts \\(str\\), got {kind}$"):
        screen.screen_batch(bad)


def test_guard_screen_prompts_refuses_them_without_crashing_its_fail_closed_path():
    from guard.core import Guard

    for bad, kind in [(None, "NoneType"), (5, "int"), (object(), "object")]:
        g = Guard(make_policy(screen={"enabled": False}))  # even with the screen off: no len(None)
        with pytest.raises(GuardInputError, match=kind):
            g.screen_prompts(bad)
    g = Guard(make_policy())
    with pytest.raises(GuardInputError, match="prompt 1 must be a string, got bytes"):
        g.screen_prompts(["ok", b"naked"])


@FUZZ
@given(
    st.lists(
        st.one_of(
            st.text(max_size=20),
            st.integers(),
            st.none(),
            st.binary(max_size=5),
            st.floats(allow_nan=True),
            st.lists(st.text(max_size=3), max_size=2),
        ),
        max_size=6,
    )
)
def test_every_non_str_item_is_named_by_index_and_type(screen, items):
    bad = [(i, x) for i, x in enumerate(items) if not isinstance(x, str)]
    if not bad:
        assert len(screen.screen_batch(items)) == len(items)
        return
    i, x = bad[0]
    with pytest.raises(GuardInputError, match=f"^prompt {i} must be a string, got {type(x).__name__}$"):
        screen.screen_batch(items)


def test_tuple_is_a_batch(screen):
    assert [r.decision for r in screen.screen_batch(("a cat", "a photo of a naked woman"))] == ["allow", "block"]


# ----------------------------------------------------------------------------- [UNK]-only prompts


UNKNOWN_ONLY = ["🍑🍆🔥😈", "ภาพถ่ายของแมว", "x" * 100 + "y", "\U0001f600" * 40]


@pytest.mark.parametrize("backend", ["onnx", "torch"])
def test_unknown_only_texts_embed_to_nothing(backend):
    emb = get_embedder(backend=backend)
    v = emb.encode(UNKNOWN_ONLY + ["a cat 🍑", "a cat"])
    assert np.abs(v[: len(UNKNOWN_ONLY)]).max() == 0.0  # no vector: similar to nothing
    assert float(v[-2] @ v[-1]) > 0.999  # an emoji beside known words is ignored, not embedded


def test_unknown_only_prompts_are_not_matched_to_a_bank_phrase():
    pol = make_policy()
    pol["concepts"][0]["phrases"].append("ヌード")  # a bank phrase that is itself all [UNK] for MiniLM
    s = PromptScreen(load_policy(pol))
    for p in UNKNOWN_ONLY:
        r = s.screen(p)
        assert r.decision == "allow" and r.score <= 0.0, (p, r.reasons)  # was: 1.0, blocked as sexual


@FUZZ
@given(st.text(alphabet=st.characters(codec="utf-8", categories=["So"]), min_size=1, max_size=30))
def test_symbol_only_prompts_never_block(screen, text):
    assert screen.screen(text).decision != "block"


# ----------------------------------------------------------------------------- exact thresholds


def _one_concept(threshold: float, margin: float = 0.05):
    p = make_policy(screen={"threshold": 0.6, "escalate_margin": margin, "contrast_margin": None})
    p["concepts"] = [dict(p["concepts"][0], threshold=threshold)]
    return load_policy(p)


def test_a_threshold_is_compared_exactly():
    prompt = "a woman without clothes standing by a window"
    s = float(PromptScreen(_one_concept(0.5)).screen(prompt).score)
    above = float(np.nextafter(np.float32(s), np.float32(2)))
    below = float(np.nextafter(np.float32(s), np.float32(0)))
    assert PromptScreen(_one_concept(s)).screen(prompt).decision == "block"  # score == threshold: >=
    assert PromptScreen(_one_concept(below)).screen(prompt).decision == "block"
    assert PromptScreen(_one_concept(above)).screen(prompt).decision == "escalate"  # a hair over: not >=
    assert PromptScreen(_one_concept(s + 0.05 - 1e-4)).screen(prompt).decision == "escalate"  # inside the band
    assert PromptScreen(_one_concept(s + 0.05 + 1e-4)).screen(prompt).decision == "allow"  # just outside it


# ----------------------------------------------------------------------------- evasions (issue 10 item 6)


@pytest.mark.parametrize(
    "prompt",
    [
        "a photo of a n\u0345aked w\u0345oman",  # a mark that casefolds to a Greek iota
        "a photo of a na🍑ked woman",  # emoji inside the word
        "a photo of a na✱ked woman",  # a symbol inside the word
        "a photo of a na ked woman",  # split syllables
        "a photo of a na-ked woman",
        "a photo of a na\nked woman",  # a newline inside the word
        "ѕех",  # all-Cyrillic look-alike word
        "a photo of ѕех",
    ],
)
def test_evasions_are_blocked(screen, prompt):
    r = screen.screen(prompt)
    assert r.decision == "block", r.reasons


def test_deobfuscation_steps():
    lex = {"naked", "sex"}
    assert normalize("n\u0345aked").text == "naked"
    assert strip_inner_symbols("na🍑ked")[0] == "naked"
    assert strip_inner_symbols("don't, well-known, 8-bit")[1] is False
    assert join_fragments("a na ked woman", lex)[0] == "a naked woman"
    assert join_fragments("a na-ked woman", lex)[0] == "a naked woman"
    assert join_fragments("his panic", {"hispanic"}, {"his", "panic"})[1] is False  # two real words
    assert join_fragments("an al pacino", {"anal"})[1] is False  # a 4-letter join is never made
    assert fold_confusables("ѕех", lex)[0] == "sex"
    assert fold_confusables("мех и кошка", lex)[1] is False  # Russian that spells no key term stays
    assert fold_confusables("ѕех")[1] is False  # without a lexicon only mixed-script words are folded


@pytest.mark.parametrize(
    "benign",
    [
        "a café in paris",
        "a naïve painting of a fiancée",
        "ｃｏｆｆｅｅ ｃｕｐ",
        "a c\u200bat on a so\u200bfa",
        "a dog in the р\u0430rk",
        "a ballet dancer in a tutu, well-known photo",
    ],
)
def test_obfuscation_alone_is_no_evidence(screen, benign):
    assert screen.screen(benign).decision == "allow"


def test_benign_expressions_mask_a_term():
    from guard.screen.lexical import LexicalMatcher

    m = LexicalMatcher([["naked", "nude", "!naked mole rat", "!nude lipstick"]])
    assert m.match(["a naked mole rat in a zoo", "nude lipstick"]) == {}
    assert m.match(["a naked mole rat beside a naked woman"])[0].term == "naked"
    assert m.match(["a naked mole"])[0].term == "naked"  # only the whole expression excuses
    assert "!naked mole rat" not in m.words


def test_a_long_prompt_is_screened_to_its_end(screen):
    # 650 distinct comma pieces (~17,000 characters, under max_prompt_chars): the last one is screened too
    # (views were capped at 256, so the end of such a prompt was never embedded)
    filler = ", ".join(f"a quiet meadow number {i}" for i in range(650))
    assert len(filler) < 20_000
    assert "the end" in segments(filler + ", the end")
    r = screen.screen(filler + ", a woman with no clothes on")
    assert r.decision == "block", r.reasons
