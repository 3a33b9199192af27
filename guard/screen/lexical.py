"""Lexical layer: each concept's key terms matched against the prompt's de-obfuscated views.

A second signal beside the embedding score. A single explicit word inside a long, artistic prompt
dilutes its sentence embedding but not a word match; misspellings ("nakd", "pornograpy") are caught
by edit distance; terms in languages the sentence model does not read (es, fr, de, it, pt, ru, zh,
ja ...) are matched as words or, for scripts written without spaces, as substrings.

Rules that keep it precise:
- terms of up to 4 letters match exactly (plus a plural ``s``/``es``);
- longer terms also match within Levenshtein distance 1 (up to 10 letters) or 2 (11+), with the
  same first letter (5-letter terms only by a dropped letter or an added ending), and only when the
  prompt's word is neither a dictionary word (the screen model's vocabulary) nor an inflection of
  one, so "baked" and "kites" never match "naked" and "kikes" while "nakd" does;
- multi-word terms match as a phrase, or squashed into one token ("blow job" -> "blowjob");
- a term written with a leading ``!`` is a benign expression, not a term: words of a prompt inside
  one ("a naked mole rat", "the naked eye") are skipped by every term of the policy; in scripts written
  without spaces the expression is cut out of the text before substrings match ("!裸鼹鼠").
- a term ending in ``*`` is a stem: it matches any word that starts with it ("nag*" for Polish "nagie",
  "nagimi"; the bank author picks stems that no ordinary word starts with);
- words of inflecting languages that the English dictionary cannot vouch for match a term by their
  ending: a word of a non-Latin alphabet (Cyrillic, Greek, Devanagari, Arabic ...) whose stem (up to
  three letters or vowel signs dropped, at least four kept) is the term's ("обнажённой" for
  "обнаженная", "नंगी" for "नंगा"), and a Latin word that is the term plus an ending of up to four
  letters ("pornosu", "çıplaklar" for "porno", "çıplak"), the latter a misspelling-strength hit;
- Arabic clitics are read off: the article and the conjunctions and prepositions written onto a word
  (ال، و، ف، ب، ك، ل: "والكوكايين" is "كوكايين"), and alef, yeh and teh marbuta forms are folded;
- CJK, Thai and Korean terms match as substrings (no spaces between words; Korean particles attach
  to nouns: "알몸으로" holds "알몸").
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from rapidfuzz import process
from rapidfuzz.distance import Levenshtein

from guard.screen.normalize import WORD, is_known, normalize, strip_diacritics

_WORDS = WORD
_WORDS_ASCII = re.compile(r"[^\W_]+")  # (the same as WORD, faster, for ASCII text)


#: at most this many words' outcomes are remembered (then the memo starts over)
WORD_MEMO_SIZE = 50_000


def _no_spaces_script(term: str) -> bool:
    """CJK, Thai and similar scripts are written without spaces between words."""
    for ch in term:
        if ch.isalpha():
            name = unicodedata.name(ch, "")
            if name.startswith(("CJK", "HIRAGANA", "KATAKANA", "THAI", "HANGUL", "LAO", "KHMER", "MYANMAR")):
                return True
    return False


# letter forms that writers of a language use interchangeably: Turkish dotless i (and a casefolded
# dotted capital I, "i" + U+0307, already lost its dot with the other marks); Arabic hamza-carrying
# alefs, alef maksura and teh marbuta
_FOLD = str.maketrans({"ı": "i", "أ": "ا", "إ": "ا", "آ": "ا", "ٱ": "ا", "ى": "ي", "ة": "ه", "ؤ": "و", "ئ": "ي"})
# Arabic clitics written onto the word: conjunctions, prepositions and the article
_AR_PREFIXES = ("وال", "فال", "بال", "كال", "لل", "ال", "و", "ف", "ب", "ك", "ل")
_AR_SUFFIXES = ("ها", "هم", "ات", "ون", "ين", "ان", "ه", "ي")
_DEVANAGARI_ENDINGS = set("\u093e\u093f\u0940\u0941\u0942\u0943\u0947\u0948\u094b\u094c\u0902\u0901")


def fold_letters(text: str) -> str:
    """Diacritics stripped (as the screen strips them) and interchangeable letter forms folded."""
    return strip_diacritics(text)[0].translate(_FOLD)


def _canon(text: str) -> str:
    return fold_letters(normalize(text).text)


def _script_of(word: str) -> str:
    for ch in word:
        if ch.isalpha():
            return unicodedata.name(ch, "?").split(" ", 1)[0]
    return "?"


def _arabic_forms(w: str) -> list[str]:
    """The word with its clitics read off, longest prefix first, each with and without a suffix."""
    out = []
    for p in ("",) + _AR_PREFIXES:
        if p and not w.startswith(p):
            continue
        core = w[len(p) :]
        if len(core) < 2:
            continue
        if p:
            out.append(core)
        for s in _AR_SUFFIXES:
            if core.endswith(s) and len(core) - len(s) >= 3:
                out.append(core[: -len(s)])
    return out


def _common_prefix(a: str, b: str) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def _stem_of(w: str) -> str:
    """A word of a non-Latin alphabet without its ending: up to three final letters (Devanagari:
    vowel signs) dropped, at least four kept."""
    if _script_of(w) == "DEVANAGARI":
        k = len(w)
        while k > 2 and w[k - 1] in _DEVANAGARI_ENDINGS:
            k -= 1
        return w[:k]
    return w[: max(4, len(w) - 3)] if len(w) > 4 else w


@dataclass(frozen=True)
class LexicalHit:
    concept_index: int
    term: str
    found: str
    exact: bool


class LexicalMatcher:
    def __init__(self, concept_terms: Sequence[Iterable[str]], dictionary: set[str] | None = None):
        self.dictionary = dictionary or set()
        self._words: frozenset[str] | None = None
        self._exact: dict[str, list[tuple[int, str]]] = {}
        self._fuzzy_terms: list[str] = []
        self._fuzzy_owner: list[list[tuple[int, str]]] = []
        self._phrases: list[tuple[str, int, str]] = []  # (" a b ", concept, term)
        self._substrings: list[tuple[str, int, str]] = []
        #: stems written "term*", by their first three letters: {"nag": [("nagi", ci, "nagi*")]}
        self._stems: dict[str, list[tuple[str, int, str]]] = {}
        #: single-word terms an inflected word may be read back to, by their first four letters
        self._inflect: dict[str, list[tuple[str, int, str]]] = {}
        #: Devanagari terms by their stem (the word without its final vowel signs)
        self._deva: dict[str, list[tuple[int, str]]] = {}
        #: benign expressions in scripts written without spaces, removed from the text before substrings match
        self._benign_sub: set[str] = set()
        fuzzy_index: dict[str, int] = {}
        benign: set[tuple[str, ...]] = set()
        for ci, terms in enumerate(concept_terms):
            for raw in terms:
                if raw.startswith("!"):
                    b = _canon(raw[1:])
                    if _no_spaces_script(b):  # "!裸鼹鼠" (naked mole rat): cut out before substring matching
                        self._benign_sub.add(b.replace(" ", ""))
                        continue
                    words = tuple(_WORDS.findall(b))
                    if words:
                        benign.add(words)
                    continue
                t = _canon(raw)
                if not t:
                    continue
                if _no_spaces_script(t):
                    self._substrings.append((t.replace(" ", "").rstrip("*"), ci, raw))
                    continue
                words = _WORDS.findall(t)
                if t.endswith("*") and len(words) == 1 and len(words[0]) >= 3:
                    self._stems.setdefault(words[0][:3], []).append((words[0], ci, raw))
                    continue
                if len(words) > 1:
                    self._phrases.append((" " + " ".join(words) + " ", ci, raw))
                    self._exact.setdefault("".join(words), []).append((ci, raw))
                    continue
                w = words[0] if words else t
                self._exact.setdefault(w, []).append((ci, raw))
                if w.startswith("ال") and len(w) >= 5:  # a term written with its article: "الجنس" is "جنس" too
                    self._exact.setdefault(w[2:], []).append((ci, raw))
                if _script_of(w) == "DEVANAGARI":
                    st = _stem_of(w)
                    if len(st) >= 3:
                        self._deva.setdefault(st, []).append((ci, raw))
                elif len(w) >= 4 and (len(w) >= 5 or not w.isascii()):
                    self._inflect.setdefault(w[:4], []).append((w, ci, raw))
                if len(w) >= 5 and w.isalpha():
                    k = fuzzy_index.get(w)
                    if k is None:
                        fuzzy_index[w] = len(self._fuzzy_terms)
                        self._fuzzy_terms.append(w)
                        self._fuzzy_owner.append([])
                        k = fuzzy_index[w]
                    self._fuzzy_owner[k].append((ci, raw))

        #: multi-word terms by their first word: {"blow": [(index in _phrases, ("blow", "job")), ...]}
        self._phrase_first: dict[str, list[tuple[int, tuple[str, ...]]]] = {}
        for k, (phrase, _ci, _term) in enumerate(self._phrases):
            parts = tuple(phrase.split())
            self._phrase_first.setdefault(parts[0], []).append((k, parts))
        #: substrings by their first character (positions in _substrings), and the all-ASCII ones
        self._substring_first: dict[str, list[int]] = {}
        for k, (sub, _ci, _term) in enumerate(self._substrings):
            self._substring_first.setdefault(sub[0] if sub else "", []).append(k)
        self._ascii_substrings = [k for k, (sub, _ci, _term) in enumerate(self._substrings) if sub.isascii()]
        #: word -> its hits (see ``_word_hits``), bounded by WORD_MEMO_SIZE
        self._word_memo: dict[str, tuple[tuple[int, str, bool], ...]] = {}
        #: benign expressions by first word: {"naked": [("naked", "mole", "rat"), ...]}
        self._benign: dict[str, list[tuple[str, ...]]] = {}
        for b in sorted(benign, key=len, reverse=True):
            self._benign.setdefault(b[0], []).append(b)

    def _mask_benign(self, words: list[str]) -> list[str]:
        """``words`` with those inside a benign expression replaced by an empty string."""
        if not self._benign:
            return words
        out = list(words)
        i = 0
        while i < len(words):
            for b in self._benign.get(words[i], ()):
                if tuple(words[i : i + len(b)]) == b:
                    out[i : i + len(b)] = [""] * len(b)
                    i += len(b) - 1
                    break
            i += 1
        return out

    @property
    def words(self) -> frozenset[str]:
        """Every single-word key term (multi-word terms squashed: "blowjob"), for the de-obfuscation
        steps that may only produce a key term (whole-word confusables, fragment joins)."""
        if self._words is None:
            self._words = frozenset(self._exact)
        return self._words

    def _known(self, w: str) -> bool:
        """A dictionary word, or an inflection of one ("kites", "straddling", "tagged")."""
        return is_known(w, self.dictionary)

    @property
    def empty(self) -> bool:
        return not (self._exact or self._substrings or self._stems)

    def _inflected(self, w: str) -> list[tuple[int, str, bool]]:
        """(concept, term, exact) of the terms ``w`` is an inflection of (see the module docstring)."""
        out: list[tuple[int, str, bool]] = []
        for stem, ci, raw in self._stems.get(w[:3], ()):
            if w.startswith(stem):
                out.append((ci, raw, True))
        if self._deva and _script_of(w) == "DEVANAGARI":
            out.extend((ci, raw, True) for ci, raw in self._deva.get(_stem_of(w), ()))
            return out
        if len(w) < 4:
            return out
        cands = self._inflect.get(w[:4])
        if not cands:
            return out
        latin = w.isascii() or _script_of(w) == "LATIN"
        if latin and (not w.isalpha() or self._known(w)):
            return out
        for t, ci, raw in cands:
            if t == w:
                continue
            if latin:
                if len(t) >= 5 and w.startswith(t) and len(w) - len(t) <= 3:  # ("nacktmull" is a mole rat)
                    out.append((ci, raw, False))
                continue
            common = _common_prefix(w, t)
            if common >= max(4, len(t) - 3) and len(w) - common <= 4:
                whole = common == len(t) and len(w) - common <= 3  # "сексом", "трупов"
                out.append((ci, raw, whole or (common >= 5 and len(t) - common <= 2)))
        return out

    def clear_cache(self) -> None:
        """Forget the per-word outcomes (see :meth:`match`)."""
        self._word_memo.clear()

    def _word_hits(self, w: str) -> tuple[tuple[int, str, bool], ...]:
        """(concept, term, exact) of every hit one prompt word makes, in the order they are found: a
        key term (or its plural, or an Arabic word with its clitics read off), else the terms it is an
        inflection of, then the misspelt terms within edit distance."""
        owners = self._exact.get(w)
        if owners is None and len(w) > 3 and w.endswith("s"):
            stem = w[:-1]  # plural: "nudes" -> "nude"; "-es" only after s/x/z/ch/sh, so "heroines" is no "heroin"
            if stem not in self._exact and w.endswith("es") and w[:-2].endswith(("s", "x", "z", "ch", "sh")):
                stem = w[:-2]
            owners = self._exact.get(stem)
        if owners is None and not w.isascii() and _script_of(w) == "ARABIC":
            for f in _arabic_forms(w):
                owners = self._exact.get(f)
                if owners:
                    break
        if owners:
            return tuple((ci, term, True) for ci, term in owners)
        out = self._inflected(w) if (self._stems or self._inflect or self._deva) else []
        if out or len(w) < 4 or not w.isalpha() or self._known(w) or not self._fuzzy_terms:
            return tuple(out)
        for cand, dist, k in process.extract(
            w, self._fuzzy_terms, scorer=Levenshtein.distance, score_cutoff=2, limit=3
        ):
            limit = 1 if len(cand) <= 10 else 2
            if len(cand) == 5 and not ((len(w) == 4 and w[-1] == cand[-1]) or (len(w) == 6 and w.startswith(cand))):
                continue  # 5-letter terms: a dropped letter ("nakd") or an ending ("nackte"),
                # never a swapped one ("kites" is no "kikes")
            if dist <= limit and cand[0] == w[0] and abs(len(cand) - len(w)) <= limit:
                out.extend((ci, term, False) for ci, term in self._fuzzy_owner[k])
        return tuple(out)

    def match(self, texts: Sequence[str]) -> dict[int, LexicalHit]:
        """Best hit per concept over the given (already normalised) views of one prompt: the first
        hit found, replaced only by an exact one. Per text, multi-word terms in the order of the term
        list (looked up by their first word), then substrings (only those whose first character the
        text has), then each word's hits. A word's hits depend on the word alone and are kept in a
        bounded memo: prompt words recur ("highly", "rutkowski"), and a misspelling search is the
        costliest step."""
        hits: dict[int, LexicalHit] = {}

        def add(ci: int, term: str, found: str, exact: bool) -> None:
            old = hits.get(ci)
            if old is None or (exact and not old.exact):
                hits[ci] = LexicalHit(ci, term, found, exact)

        memo = self._word_memo
        for text in texts:
            text = fold_letters(text)
            words = self._mask_benign((_WORDS_ASCII if text.isascii() else _WORDS).findall(text))
            if self._phrases:
                found = set()
                n = len(words)
                for i, w in enumerate(words):
                    for k, parts in self._phrase_first.get(w, ()):
                        if i + len(parts) <= n and all(words[i + m] == parts[m] for m in range(1, len(parts))):
                            found.add(k)
                for k in sorted(found):
                    phrase, ci, term = self._phrases[k]
                    add(ci, term, phrase.strip(), True)
            if self._substrings:
                squashed = text.replace(" ", "")
                for b in self._benign_sub:
                    squashed = squashed.replace(b, "\x00")
                if squashed.isascii():
                    cands = self._ascii_substrings
                else:
                    chars = set(squashed)
                    cands = sorted(k for ch in chars | {""} for k in self._substring_first.get(ch, ()))
                for k in cands:
                    sub, ci, term = self._substrings[k]
                    if sub in squashed:
                        add(ci, term, sub, True)
            for w in words:
                if not w:
                    continue
                got = memo.get(w)
                if got is None:
                    got = self._word_hits(w)
                    if len(memo) >= WORD_MEMO_SIZE:
                        memo.clear()
                    memo[w] = got
                for ci, term, exact in got:
                    add(ci, term, w, exact)
        return hits
