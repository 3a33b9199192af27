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
  one ("a naked mole rat", "the naked eye") are skipped by every term of the policy.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from rapidfuzz import process
from rapidfuzz.distance import Levenshtein

from guard.screen.normalize import normalize, strip_diacritics

_WORDS = re.compile(r"[^\W_]+", re.UNICODE)


def _no_spaces_script(term: str) -> bool:
    """CJK, Thai and similar scripts are written without spaces between words."""
    for ch in term:
        if ch.isalpha():
            name = unicodedata.name(ch, "")
            if name.startswith(("CJK", "HIRAGANA", "KATAKANA", "THAI", "HANGUL", "LAO", "KHMER", "MYANMAR")):
                return True
    return False


def _canon(text: str) -> str:
    return strip_diacritics(normalize(text).text)[0]


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
        fuzzy_index: dict[str, int] = {}
        benign: set[tuple[str, ...]] = set()
        for ci, terms in enumerate(concept_terms):
            for raw in terms:
                if raw.startswith("!"):
                    words = tuple(_WORDS.findall(_canon(raw[1:])))
                    if words:
                        benign.add(words)
                    continue
                t = _canon(raw)
                if not t:
                    continue
                if _no_spaces_script(t):
                    self._substrings.append((t.replace(" ", ""), ci, raw))
                    continue
                words = _WORDS.findall(t)
                if len(words) > 1:
                    self._phrases.append((" " + " ".join(words) + " ", ci, raw))
                    self._exact.setdefault("".join(words), []).append((ci, raw))
                    continue
                w = words[0] if words else t
                self._exact.setdefault(w, []).append((ci, raw))
                if len(w) >= 5 and w.isalpha():
                    k = fuzzy_index.get(w)
                    if k is None:
                        fuzzy_index[w] = len(self._fuzzy_terms)
                        self._fuzzy_terms.append(w)
                        self._fuzzy_owner.append([])
                        k = fuzzy_index[w]
                    self._fuzzy_owner[k].append((ci, raw))

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
        d = self.dictionary
        if w in d:
            return True
        for suf, add in (
            ("s", ""),
            ("es", ""),
            ("ed", ""),
            ("ed", "e"),
            ("ing", ""),
            ("ing", "e"),
            ("ly", ""),
            ("er", ""),
            ("ers", ""),
            ("ies", "y"),
            ("ied", "y"),
        ):
            if w.endswith(suf) and len(w) - len(suf) >= 3:
                stem = w[: -len(suf)] + add
                if stem in d:
                    return True
                if suf in ("ed", "ing") and len(stem) > 3 and stem[-1] == stem[-2] and stem[:-1] in d:
                    return True  # doubled consonant: "stopped", "running"
        return False

    @property
    def empty(self) -> bool:
        return not (self._exact or self._substrings)

    def match(self, texts: Sequence[str]) -> dict[int, LexicalHit]:
        """Best hit per concept over the given (already normalised) views of one prompt."""
        hits: dict[int, LexicalHit] = {}

        def add(ci: int, term: str, found: str, exact: bool) -> None:
            old = hits.get(ci)
            if old is None or (exact and not old.exact):
                hits[ci] = LexicalHit(ci, term, found, exact)

        for text in texts:
            text = strip_diacritics(text)[0]
            words = self._mask_benign(_WORDS.findall(text))
            joined = " " + " ".join(words) + " "
            for phrase, ci, term in self._phrases:
                if phrase in joined:
                    add(ci, term, phrase.strip(), True)
            squashed = text.replace(" ", "")
            for sub, ci, term in self._substrings:
                if sub in squashed:
                    add(ci, term, sub, True)
            for w in words:
                if not w:
                    continue
                owners = self._exact.get(w)
                if owners is None and len(w) > 3 and w.endswith("s"):
                    stem = w[:-1]  # plural: "nudes" -> "nude"; "-es" only after s/x/z/ch/sh, so
                    if (
                        stem not in self._exact
                        and w.endswith("es")
                        and w[:-2].endswith(  # "heroines"
                            ("s", "x", "z", "ch", "sh")
                        )
                    ):  # is no "heroin"
                        stem = w[:-2]
                    owners = self._exact.get(stem)
                if owners:
                    for ci, term in owners:
                        add(ci, term, w, True)
                    continue
                if len(w) < 4 or not w.isalpha() or self._known(w) or not self._fuzzy_terms:
                    continue
                for cand, dist, k in process.extract(
                    w, self._fuzzy_terms, scorer=Levenshtein.distance, score_cutoff=2, limit=3
                ):
                    limit = 1 if len(cand) <= 10 else 2
                    if len(cand) == 5 and not (
                        (len(w) == 4 and w[-1] == cand[-1]) or (len(w) == 6 and w.startswith(cand))
                    ):
                        continue  # 5-letter terms: a dropped letter ("nakd") or an ending ("nackte"),
                        # never a swapped one ("kites" is no "kikes")
                    if dist <= limit and cand[0] == w[0] and abs(len(cand) - len(w)) <= limit:
                        for ci, term in self._fuzzy_owner[k]:
                            add(ci, term, w, False)
        return hits
