"""guard's labelled screen corpus: in sync with its builder, split by group, every category in every
language, benign rows free of unsafe terms, banks disjoint from the corpus."""

from __future__ import annotations

import collections
import json
import unicodedata

import pytest
import yaml

from guard.paths import builtin_policy_dir
from guard.policy import load_policy
from guard.screen import corpus_i18n
from guard.screen.corpus_build import (
    CATEGORIES,
    CORPUS_PATH,
    I18N_FRAGMENTS,
    NAMED_BENIGN,
    UNSAFE_FRAGMENTS,
    build,
    load,
    split_of,
)
from guard.screen.lexical import LexicalMatcher

LANGS = ("es", "fr", "de", "it", "pt", "ru", "zh", "ja", "nl", "pl", "tr", "ko", "ar", "hi")
#: the script each language's rows must be written in (a letter of it in every row)
SCRIPTS = {
    "ru": ("CYRILLIC",),
    "zh": ("CJK",),
    "ja": ("HIRAGANA", "KATAKANA", "CJK"),
    "ko": ("HANGUL",),
    "ar": ("ARABIC",),
    "hi": ("DEVANAGARI",),
}


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    return load(CORPUS_PATH)


def test_shipped_corpus_is_what_the_builder_writes(rows):
    """``python -m guard.screen.corpus_build`` regenerates the shipped file byte for byte."""
    built = build(0)
    assert len(built) == len(rows)
    assert built == rows, "corpus.jsonl is stale: run python -m guard.screen.corpus_build"
    text = CORPUS_PATH.read_text(encoding="utf-8")
    assert text == "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in built)


def test_split_is_by_group_and_texts_are_unique(rows):
    texts = [r["text"] for r in rows]
    assert len(texts) == len(set(texts))
    groups: dict[str, set[str]] = collections.defaultdict(set)
    for r in rows:
        assert r["split"] == split_of(r["group"])
        groups[r["group"]].add(r["label"])
    assert all(len(labels) == 1 for labels in groups.values()), "a group holds more than one label"
    share = sum(r["split"] == "eval" for r in rows) / len(rows)
    assert 0.12 < share < 0.28


def test_every_category_in_every_language(rows):
    """Several distinct explicit prompts per category and language, with evaluation rows in every
    language."""
    n = collections.Counter((r["lang"], r["label"]) for r in rows if r["kind"] == "translated")
    groups = collections.defaultdict(set)
    for r in rows:
        if r["kind"] == "translated":
            groups[(r["lang"], r["label"])].add(r["group"])
    for lang in LANGS:
        for cat in CATEGORIES:
            assert n[(lang, cat)] >= 20, (lang, cat, n[(lang, cat)])
            assert len(groups[(lang, cat)]) >= 9, (lang, cat)
        ev = [r for r in rows if r["lang"] == lang and r["split"] == "eval" and r["label"] != "benign"]
        assert len(ev) >= 15, lang
        benign = [r for r in rows if r["lang"] == lang and r["label"] == "benign"]
        assert len(benign) >= 120, lang


@pytest.mark.parametrize("lang", sorted(SCRIPTS))
def test_rows_are_written_in_their_script(rows, lang):
    want = SCRIPTS[lang]
    for r in rows:
        if r["lang"] != lang:
            continue
        names = {unicodedata.name(ch, "").split(" ")[0] for ch in r["text"] if ch.isalpha()}
        assert names & set(want), (lang, r["text"])


def test_i18n_module_is_complete():
    for lang in LANGS:
        assert set(corpus_i18n.EXPLICIT[lang]) == set(CATEGORIES), lang
        assert all(len(v) >= 7 for v in corpus_i18n.EXPLICIT[lang].values()), lang
        assert len(corpus_i18n.BENIGN[lang]) >= 25, lang
        assert corpus_i18n.LOCAL_STYLES[lang], lang
        assert set(corpus_i18n.EXPLICIT_MORE[lang]) == {"self_harm", "illegal"}, lang
        assert len(corpus_i18n.EVERYDAY[lang]) >= 20 and len(corpus_i18n.SHORT[lang][0]) >= 30, lang
    assert set(I18N_FRAGMENTS) == set(UNSAFE_FRAGMENTS) == set(CATEGORIES)


def test_soups_carry_the_label_of_their_words(rows):
    """Every adversarial row holds an unsafe fragment (in any casing); no benign soup holds one."""

    def fold(t: str) -> str:  # Turkish dotless i upper-cases to I, which folds to a dotted i
        return t.casefold().replace("ı", "i")

    frags = {cat: [fold(f) for f in UNSAFE_FRAGMENTS[cat] + I18N_FRAGMENTS[cat]] for cat in CATEGORIES}
    unsafe_words = {w for fs in frags.values() for f in fs for w in f.split()}
    for r in rows:
        low = fold(r["text"])
        if r["kind"] == "adversarial":
            assert any(f in low for f in frags[r["label"]]), r["text"]
        elif r["kind"] == "gibberish":
            assert not any(w in unsafe_words for w in low.split()), r["text"]
    kinds = collections.Counter(r["kind"] for r in rows if r["label"] == "benign")
    assert kinds["gibberish"] >= 300
    special = [r for r in rows if r["kind"] == "gibberish" and any(t in r["text"] for t in ("[SEP]", "<|endoftext|>"))]
    assert special


def test_implicit_prompts_and_their_look_alikes(rows):
    implicit = [r for r in rows if r["kind"] == "implicit"]
    assert len(implicit) >= 60 and {r["label"] for r in implicit} == {"sexual", "self_harm", "minors"}
    for label in ("sexual", "self_harm", "minors"):  # every implicit label has evaluation rows
        assert any(r["split"] == "eval" for r in implicit if r["label"] == label), label
    look = [r for r in rows if r["group"].startswith(("benign/lookalike/", "benign/lookalike_scene/"))]
    assert len(look) >= 100 and {r["label"] for r in look} == {"benign"}


def test_implicit_harm_says_none_of_its_words(rows):
    # implicit: the act shown, never named; the look-alikes share its objects and are benign
    words = ("suicide", "self-harm", "self harm", "kill", "sex", "nude", "naked", "porn")
    for r in rows:
        if r["group"].startswith(("self_harm/implicit/", "minors/implicit/")):
            assert r["kind"] == "implicit" and not any(w in r["text"] for w in words), r
    look = [r for r in rows if r["group"].startswith(("benign/implicit_harm/", "benign/implicit_minors/"))]
    assert len(look) >= 200 and {r["label"] for r in look} == {"benign"}


def test_children_said_plainly_are_benign_and_every_child_word_stands_bare(rows):
    from guard.screen.corpus_build import AGED_CHILDREN, PLAIN_CHILDREN

    plain = [r for r in rows if r["group"].startswith("benign/children_")]
    assert len(plain) >= 500 and {r["label"] for r in plain} == {"benign"}
    texts = {r["text"] for r in plain}
    for c in PLAIN_CHILDREN + AGED_CHILDREN:
        assert c in texts, c
    assert "an underage girl" not in texts and "a young teen girl" not in texts


def test_named_benign_prompts_are_the_issues():
    assert NAMED_BENIGN[:3] == [
        "image of mosque",
        "a naked mole rat in a zoo enclosure",
        "a dragon breathing fire over a castle",
    ]
    assert len(NAMED_BENIGN) == 15 and len(set(NAMED_BENIGN)) == 15


def test_hard_negatives_and_short_prompts_are_many(rows):
    hard = [r for r in rows if r["label"] == "benign" and r["kind"] in ("hard_negative", "short")]
    assert len(hard) >= 5000
    short = [r for r in rows if r["kind"] == "short" and r["text"].startswith("image of ")]
    assert len({r["text"] for r in short}) >= 400


def test_no_bank_phrase_is_an_evaluation_row(rows):
    """A concept phrase equal to an evaluation row would score it at cosine 1.0."""
    texts = {r["text"].casefold() for r in rows if r["split"] == "eval"}
    for path in sorted((builtin_policy_dir() / "banks").glob("*.yaml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        for c in data.get("concepts", []):
            for p in c.get("phrases", []):
                assert p.casefold() not in texts, (path.name, c["id"], p)


def test_translated_key_terms_find_positives_and_spare_benign_words(rows):
    """The default policy's key terms hit a share of the explicit prompts in every language and
    category, and no benign prompt in a spaced script exactly (benign senses: a naked mole rat, a
    bloody mary, a vaccine). Scripts without spaces (zh, ja) match terms as substrings, where a
    benign expression cannot yet mask one ("裸鼹鼠", "血腥玛丽"): those are left to the learned screen."""
    pol = load_policy("default")
    concepts = list(pol.concepts)
    m = LexicalMatcher([c.terms for c in concepts])
    hit = collections.Counter()
    total = collections.Counter()
    for r in rows:
        if r["lang"] == "en" or r["kind"] not in ("translated", "hard_negative"):
            continue
        hits = m.match([r["text"]])
        cats = {concepts[ci].category for ci, h in hits.items() if h.exact and concepts[ci].action == "block"}
        if r["label"] == "benign":
            if r["lang"] not in ("zh", "ja"):
                assert not cats, (r["text"], cats)
        else:
            total[r["lang"]] += 1
            hit[r["lang"]] += r["label"] in cats or (r["label"] == "minors" and "sexual" in cats)
    for lang in LANGS:
        assert hit[lang] / total[lang] >= 0.3, (lang, hit[lang], total[lang])
