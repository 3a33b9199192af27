"""The lexical layer as a second signal in every language of the corpus: key terms match whatever the
script (spaces or none, marks or none), through inflections, clitics and particles, and benign words
that merely start alike do not match."""

from __future__ import annotations

import pytest

from guard.screen.lexical import LexicalMatcher, fold_letters
from guard.screen.normalize import normalize, variants

#: a few terms per language (the policy banks hold the real lists); one concept per language so that
#: a hit says which language's term matched
TERMS = {
    "en": ["naked", "nude", "porn", "blow job", "!naked mole rat"],
    "es": ["desnuda", "pornografia"],
    "de": ["nackt", "nackte"],
    "nl": ["naakt", "kinderporno"],
    "pl": ["nag*", "porno"],
    "ru": ["обнаженная", "голая", "секс", "труп"],
    "tr": ["çıplak", "porno"],
    "hi": ["नंगा", "नग्न", "पोर्न"],
    "ar": ["عارية", "الجنس", "كوكايين", "نازي"],
    "ko": ["알몸", "벌거벗은", "포르노"],
    "ja": ["ポルノ", "ヌード"],
    "zh": ["裸体", "色情", "裸", "!裸鼹鼠"],
    "th": ["โป๊"],
}
LANGS = list(TERMS)
DICT = {"nag", "nagging", "heroine", "head", "city", "naked", "house"}


@pytest.fixture(scope="module")
def matcher():
    return LexicalMatcher([TERMS[k] for k in LANGS], DICT)


def hits(matcher, prompt):
    n = normalize(prompt).text
    vs, _ = variants(n, matcher.words, matcher.dictionary)
    return {LANGS[ci]: (h.term, h.exact) for ci, h in matcher.match([t for _, t in vs]).items()}


@pytest.mark.parametrize(
    "lang,prompt,term,exact",
    [
        ("es", "una mujer desnuda en la playa", "desnuda", True),
        ("de", "eine NACKTE Frau", "nackte", True),
        ("nl", "naakt kind", "naakt", True),
        ("pl", "kobieta z nagimi piersiami", "nag*", True),  # a stem term
        ("pl", "nagie zdjęcie modelki", "nag*", True),
        ("ru", "женщина с обнажённой грудью", "обнаженная", True),  # ё and a case ending
        ("ru", "пара занимается сексом", "секс", True),
        ("ru", "груда трупов", "труп", True),
        ("tr", "YATAKTA ÇIPLAK BIR KADIN", "çıplak", True),  # Turkish capitals casefold to a dotted i
        ("tr", "çıplaklar", "çıplak", False),  # the term plus an ending: a misspelling-strength hit
        ("tr", "çocuk pornosu", "porno", False),
        ("hi", "नंगी छाती वाली महिला", "नंगा", True),  # the same word with another final vowel sign
        ("hi", "बिस्तर पर नग्न महिला", "नग्न", True),
        ("hi", "एक लड़की की पोर्न फोटो", "पोर्न", True),
        ("ar", "امرأة عارية في السرير", "عارية", True),
        ("ar", "امرأةٌ عَارِيَةٌ", "عارية", True),  # with tashkeel
        ("ar", "زوجان يمارسان الجنس", "الجنس", True),
        ("ar", "رجل يستنشق والكوكايين", "كوكايين", True),  # conjunction + article written onto the word
        ("ar", "تجمع للنازية", "نازي", True),
        ("ko", "알몸으로 서 있는 여자", "알몸", True),  # a particle attached to the noun
        ("ko", "침대 위의 벌거벗은 여자", "벌거벗은", True),
        ("ja", "ポルノ写真", "ポルノ", True),
        ("ja", "ヌードモデル", "ヌード", True),  # no spaces: a substring
        ("zh", "一个裸体女人", "裸体", True),
        ("zh", "裸女和裸鼹鼠", "裸", True),  # the benign expression is cut out, the rest still matches
        ("th", "ภาพโป๊ของผู้หญิง", "โป๊", True),
    ],
)
def test_terms_match_in_every_language(matcher, lang, prompt, term, exact):
    assert hits(matcher, prompt).get(lang) == (term, exact)


@pytest.mark.parametrize(
    "prompt",
    [
        "a naked mole rat in a zoo",  # a benign expression
        "голова кошки",  # "head" starts like голая
        "नगर का दृश्य",  # "city" starts like नग्न
        "the heroine of the story",
        "البيت الأبيض",  # "the White House"
        "ポスター",  # starts like ポルノ
        "벌레",  # starts like 벌거벗은
        "ein nacktmull im zoo",  # a German compound: nackt + a 4-letter word is no inflection
        "动物园里的裸鼹鼠",  # a benign expression in a script without spaces: the naked mole rat
    ],
)
def test_look_alikes_do_not_match(matcher, prompt):
    assert hits(matcher, prompt) == {}


def test_stem_terms_are_the_bank_authors_choice(matcher):
    # "nag*" matches every word that starts with it: an English "nagging" too, which is why a bank
    # picks stems no ordinary word starts with (the Polish bank would list naga, nagie, nagi* ...)
    assert hits(matcher, "a nagging horse") == {"pl": ("nag*", True)}


def test_fold_letters():
    assert fold_letters("ÇIPLAK".casefold()) == "ciplak"
    assert fold_letters("çıplak") == "ciplak"
    assert fold_letters("أحمد إلى آخر مكتبة") == "احمد الي اخر مكتبه"


def test_misspellings_still_need_a_non_dictionary_word():
    m = LexicalMatcher([["naked", "heroin", "nackt"]], {"baked", "heroine", "house"})
    assert m.match(["a nakd woman"])[0].exact is False
    assert m.match(["baked bread"]) == {}
    assert m.match(["the heroine"]) == {}
    assert m.match(["nackte frau"])[0].term == "nackt"
