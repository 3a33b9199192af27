"""Normalisation and de-obfuscation (guard.screen.normalize): scripts other than Latin survive,
leetspeak and spaced letters are read back into words, numbers and codes are left alone, and the
de-obfuscated reading of a prompt comes first."""

from __future__ import annotations

import time
import unicodedata

import pytest

from guard.screen.normalize import (
    LETTERS,
    WORD,
    collapse_spacing,
    fold_leetspeak,
    is_known,
    normalize,
    odd_marks,
    strip_diacritics,
    variants,
)

#: a small English dictionary (the screen uses its model's WordPiece vocabulary)
DICT = {
    "a", "of", "on", "in", "to", "the", "with", "man", "woman", "photo", "bowl", "peach", "house", "wife",
    "housewife", "soldier", "beaten", "death", "hammer", "cinematic", "lighting", "illustration", "digital",
    "mass", "shooting", "floor", "art", "wear", "helmet", "next", "sharp", "focus", "motorcycle", "leather",
    "girl", "model", "water", "color", "for", "sale", "street", "realistic", "hot", "high", "detail",
}  # fmt: skip
LEX = {"naked", "nude", "topless", "sex", "porn", "anal", "heroin", "lewd", "bloody", "loli"}


# ----------------------------------------------------------------------------- scripts


@pytest.mark.parametrize(
    "text",
    [
        "लड़की नग्न छाती",  # Devanagari: vowel signs (Mc/Mn) and virama are letters of the word
        "ไม่มีรูปภาพ",  # Thai: vowel and tone marks
        "ポルノ写真 がぎぐ",  # Japanese voicing marks (dakuten, handakuten)
        "벌거벗은 여자, 알몸으로",  # Hangul syllables: NFD splits them into jamo, NFC puts them back
        "голая женщина",
    ],
)
def test_marks_that_are_letters_of_their_script_stay(text):
    out, fired = strip_diacritics(normalize(text).text)
    expected = normalize(text).text.replace("\u093c", "")  # (the Devanagari nukta is optional spelling)
    assert out == expected
    assert fired is (expected != normalize(text).text)


def test_decorations_are_stripped():
    assert strip_diacritics("nüdé wömán")[0] == "nude woman"
    assert strip_diacritics("ёлка")[0] == "елка"  # Cyrillic accents too
    assert strip_diacritics("n\u0301\u0302\u0303a\u0300\u0301k\u0308ed")[0] == "naked"  # zalgo on Latin
    assert strip_diacritics("ج\u0301\u0302نس")[0] == "جنس"  # generic marks on any script
    # Arabic with and without tashkeel (and with a tatweel) read alike
    assert strip_diacritics("عَارِيَة")[0] == "عارية"
    assert strip_diacritics("عـــارية")[0] == "عارية"
    # the Devanagari nukta: नाज़ी (precomposed or not) reads as नाजी
    assert strip_diacritics("ना\u095bी")[0] == strip_diacritics("नाज\u093cी")[0] == "नाजी"


def test_a_word_is_never_cut_at_a_combining_mark():
    assert WORD.findall("लड़की नग्न") == ["लड़की", "नग्न"]
    assert WORD.findall("نَازِي عارية") == ["نَازِي", "عارية"]
    assert WORD.findall("ไม่มี") == ["ไม่มี"]
    assert LETTERS.findall("n4k3d") == ["n", "k", "d"]


def test_hangul_compatibility_jamo_compose():
    assert normalize("\u3145\u3154\u3131\u3145\u3161").text == "섹스"  # ㅅㅔㄱㅅㅡ
    assert normalize("\u3131\u314f\u3142\u3145\u3163").text == "갑시"  # ㄱㅏㅂㅅㅣ: ㅂ final, ㅅ leads ㅣ
    assert normalize("섹스 ㅋㅋ").text == "섹스 ᄏᄏ"  # (loose consonants with no syllable before stay)


def test_odd_marks():
    assert odd_marks("a d\u0301og") and odd_marks("zalgo\u0300\u0301")  # no precomposed letter; stacked
    assert not odd_marks("a café in paris, ёлка")
    assert not odd_marks("عَارِيَة")  # tashkeel is how Arabic is written


# ----------------------------------------------------------------------------- leetspeak


@pytest.mark.parametrize(
    "raw,expected",
    [
        ("a n4k3d w0man", "a naked woman"),
        ("p0rn, $ex", "porn, sex"),
        ("70pl355 a h0u53w1f3", "topless a housewife"),  # more digits than letters
        ("a m455 shooting, d1g174l art", "a mass shooting, digital art"),
        ("h3r01n w17h a hammer", "heroin with a hammer"),
        ("b100dy", "bloody"),  # 1 read as l, not i: the reading that is a word wins
        ("1oli", "loli"),
        ("|-|ot |ewd", "hot lewd"),  # letters drawn with several symbols, | read as l
        ("53x", "sex"),  # a key term beats the "53x magnification" reading
        ("an 1llu57r4710n", "an illustration"),
    ],
)
def test_leetspeak_is_read_back(raw, expected):
    out, fired = fold_leetspeak(raw, LEX, DICT)
    assert out == expected and fired


@pytest.mark.parametrize(
    "text",
    [
        "a 1980s photo of 2 dogs, a 4x4 truck, 35mm, 8k, 1080p, 2nd place, 3d render",
        "an mp3 player, h264, ps5, covid-19, ak-47, t-800, r2d2, b52",
        "2girls, model3, 7175, $100, 50%, f/1.8, a+ grade, c++ code, @artist1",
        "<|endoftext|>",
    ],
)
def test_numbers_and_codes_are_not_leetspeak(text):
    out, fired = fold_leetspeak(text, LEX, DICT)
    assert (out, fired) == (text, False)


def test_leetspeak_without_a_dictionary_still_folds_alternating_tokens():
    assert fold_leetspeak("a n4k3d w0man")[0] == "a naked woman"
    assert fold_leetspeak("8k 1920s 50mm")[1] is False


def test_leetspeak_is_linear():
    tok = "1|0" * 2000
    t0 = time.perf_counter()
    fold_leetspeak(" ".join([tok] * 20), LEX, DICT)
    assert time.perf_counter() - t0 < 2.0


# ----------------------------------------------------------------------------- spacing


def test_spaced_words_that_run_together_are_cut_back():
    out, fired = collapse_spacing(
        "a s o l d i e r b e a t e n to d e a t h w i t h a hammer", lexicon=LEX, dictionary=DICT
    )
    assert fired and out == "a soldier beaten to death with a hammer"
    assert collapse_spacing("m o t o r c y c l e l e a t h e r s", lexicon=LEX, dictionary=DICT)[0] == (
        "motorcycle leathers"
    )
    assert collapse_spacing("a n u d e girl", lexicon=LEX, dictionary=DICT)[0] == "a nude girl"
    assert collapse_spacing("a n a l", lexicon=LEX, dictionary=DICT)[0] == "anal"
    # a name the dictionary does not know is joined whole, never cut into abbreviations
    assert collapse_spacing("the k a a b a in mecca", lexicon=LEX, dictionary=DICT | {"ka", "aba"})[0] == (
        "the kaaba in mecca"
    )
    # without a dictionary: the old reading (a leading article kept)
    assert collapse_spacing("a n u d e girl")[0] == "a nude girl"


def test_a_real_word_beside_a_function_word_is_never_joined():
    from guard.screen.normalize import join_fragments

    assert join_fragments("a hero in the city", {"heroin"}, {"hero", "city"})[1] is False  # was read as heroin
    assert join_fragments("a na ked woman", {"naked"}, {"woman"})[0] == "a naked woman"


def test_is_known():
    assert is_known("stopped", {"stop"}) and is_known("kites", {"kite"}) and is_known("tagged", {"tag"})
    assert not is_known("nakd", {"naked"}) and not is_known("x", None)


# ----------------------------------------------------------------------------- variants


def test_the_deobfuscated_reading_comes_first():
    vs, fired = variants(normalize("a b0wl of p34ch35").text, LEX, DICT)
    assert vs == [("leetspeak", "a bowl of peaches")]  # the leetspeak itself is noise: not kept as a view
    assert fired == ["leetspeak"]
    # a split-syllable join keeps the reading before it (a join may be wrong), and joins alone keep the plain text
    vs, fired = variants(normalize("a n4k3d na ked woman").text, LEX, DICT)
    assert vs == [("fragments", "a naked naked woman"), ("leetspeak", "a naked na ked woman")]
    vs, fired = variants(normalize("a na ked woman").text, LEX, DICT)
    assert vs == [("fragments", "a naked woman"), ("plain", "a na ked woman")]
    vs, _ = variants(normalize("a p h o t o of a w o m a n").text, LEX, DICT)
    assert vs[0][1] == "a photo of a woman"
    # odd marks are obfuscation: stripped in the first reading
    vs, _ = variants(normalize("a d\u0301étáíléd́ photo").text, LEX, DICT)
    assert vs[0][1] == "a detailed photo"


def test_accents_on_english_words_are_obfuscation():
    d = DICT | {"lies", "eating", "snacks", "bench", "little", "wooden", "from", "bag", "girl"}
    vs, _ = variants(normalize("a little girl ĺíeś on a bench, éátíńǵ śńackś").text, LEX, d)
    assert vs[0][1] == "a little girl lies on a bench, eating snacks"


def test_ordinary_accents_keep_the_plain_text_first():
    text = normalize("une femme à la plage, café").text
    vs, fired = variants(text, LEX, DICT)
    assert vs[0] == ("plain", text) and fired == ["diacritics"]
    hindi = normalize("एक लड़की की तस्वीर").text
    vs, _ = variants(hindi, LEX, DICT)
    assert vs[0] == ("plain", hindi)


@pytest.mark.parametrize(
    "benign",
    ["a 1920s photo, 8k, 50mm, f/1.8", "hello world", "I.D. card", "cafe", "a 4x4 truck and 2 dogs in the 1980s"],
)
def test_ordinary_text_is_left_alone(benign):
    assert variants(normalize(benign).text, LEX, DICT)[1] == []


def test_nfc_and_nfd_input_read_alike():
    for s in ["nüdé", "벌거벗은", "लड़की", "عَارِيَة"]:
        a = variants(normalize(unicodedata.normalize("NFD", s)).text, LEX, DICT)[0][0][1]
        b = variants(normalize(unicodedata.normalize("NFC", s)).text, LEX, DICT)[0][0][1]
        assert a == b


def test_windows_run_over_the_whole_text_only_when_it_is_one_piece():
    """Several short comma pieces are their own views (no window mixes two pieces); a long text
    without separators, and a long piece, get 32-word windows overlapping by half."""
    from guard.screen.normalize import segments

    pieces = [f"piece number {i} with five words" for i in range(10)]  # 60 words, 10 pieces
    views = segments(", ".join(pieces))
    assert views == pieces
    one = " ".join(f"w{i}" for i in range(60))
    wins = segments(one)
    assert wins == [" ".join(f"w{i}" for i in range(a, min(a + 32, 60))) for a in (0, 16, 32)]
    long_piece = segments("a short piece, " + one)
    assert long_piece == ["a short piece"] + wins
