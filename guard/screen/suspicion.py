"""Optimised-prompt suspicion: how much a prompt looks like the output of an adversarial optimiser.

Prompts optimised in the generator's CLIP space (MMA-Diffusion, Ring-A-Bell's token search, ...)
read as gibberish to a sentence model: words broken into many sub-word pieces, words no vocabulary
knows, stray ``<|startoftext|>``/``<|endoftext|>``/``</w>`` tokens, symbols inside words, runs of
punctuation. Each signal is measured with the screen model's own WordPiece vocabulary and combined
into a score in [0, 1]; the screen escalates (or blocks) a suspicious prompt that is anywhere near
a concept.

Obfuscation is not gibberish: the form is judged on the prompt with loose combining marks dropped and its
leetspeak read back into words ("a b0wl of p34ch35" is three known words, and the marks of "ḱáab́á" are
no symbols inside a word), so that a benign caption in leetspeak or with odd marks is not scored as an
optimised prompt (obfuscation counts only together with risk).
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from pathlib import Path

from guard.screen.normalize import MARKS, fold_leetspeak, normalize

_SPECIAL = re.compile(r"<\|?\s*(?:startoftext|endoftext)\s*\|?>|</w>|\[(?:cls|sep|mask|unk|pad)\]", re.IGNORECASE)
_ALPHA_WORD = re.compile(r"[^\W\d_]{2,}")
_CONSONANT_RUN = re.compile(r"[bcdfghjklmnpqrstvwxz]{4,}")
# English spells one consonant sound with these pairs, and doubles letters: "eggplant", "lengths",
# "handshake", "lightning" are words, not consonant pile-ups
_DIGRAPHS = re.compile(r"(?:ch|ck|gh|ng|ph|sh|th|wh)|([bcdfghjklmnpqrstvwxz])\1")
_SYMBOL_IN_WORD = re.compile(r"[^\W\d_]+[^\w\s,.;:!?'\"()\-][^\W\d_]+")
_SYMBOL = re.compile(r"[^\w\s,.;:!?'\"()\-]")  # (the middle of the above: without one, it cannot match)
_PUNCT_RUN = re.compile(r"[^\w\s]{3,}")
# combining marks left after NFKC composed what it could: odd ones ("b\u0301") and the vowel signs of
# Indic scripts are letters' marks, not symbols inside a word; accented words stay non-ASCII (and are not
# scored: the vocabulary is English)
_MARK = re.compile(f"[{MARKS}]")
#: only this many characters of a word are split into pieces (the rest is extrapolated); WordPiece
#: itself gives up on words over 100 characters ([UNK])
MAX_WORD_CHARS = 100
_LONG_TOKEN = re.compile(rf"\S{{{MAX_WORD_CHARS + 1},}}")


@dataclass
class Suspicion:
    score: float
    unknown_share: float
    fragmentation: float
    special_tokens: int
    symbols_in_words: int
    punct_runs: int
    signals: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "score": round(self.score, 3),
            "unknown_share": round(self.unknown_share, 3),
            "fragmentation": round(self.fragmentation, 3),
            "special_tokens": self.special_tokens,
            "symbols_in_words": self.symbols_in_words,
            "punct_runs": self.punct_runs,
            "signals": list(self.signals),
        }


class SuspicionScorer:
    """Scores prompts with a WordPiece vocabulary (``vocab.txt`` of the screen model)."""

    def __init__(self, model_dir: str | Path):
        vocab_file = Path(model_dir) / "vocab.txt"
        words: set[str] = set()
        if vocab_file.is_file():
            for line in vocab_file.read_text(encoding="utf-8").splitlines():
                if line and not line.startswith("##") and not line.startswith("["):
                    words.add(line)
        self.vocab = words
        self._pieces = (
            {w[2:] for w in vocab_file.read_text(encoding="utf-8").splitlines() if w.startswith("##")}
            if vocab_file.is_file()
            else set()
        )
        self._max_piece = max((len(w) for w in self.vocab | self._pieces), default=1)
        self._lock = threading.Lock()
        self._cache: dict[str, int] = {}

    def clear_cache(self) -> None:
        """Forget the remembered WordPiece counts."""
        self._cache.clear()

    def _n_pieces(self, word: str) -> int:
        """Greedy longest-match WordPiece count of a lowercase word (as BERT's tokenizer splits it).

        Linear in the word's length: a candidate piece is at most ``_max_piece`` characters long (the
        longest entry of the vocabulary), and only the first ``MAX_WORD_CHARS`` characters are split;
        the rest is counted at the average rate of the split part. A 50,000-letter run is scored in
        microseconds rather than never (the old scan tried every end position: cubic)."""
        n = self._cache.get(word)
        if n is not None:
            return n
        head = word[:MAX_WORD_CHARS]
        i, n = 0, 0
        longest = self._max_piece
        while i < len(head):
            j = min(len(head), i + longest)
            table = self.vocab if i == 0 else self._pieces
            while j > i and head[i:j] not in table:
                j -= 1
            if j == i:  # unknown character: count it as its own piece
                j = i + 1
            n += 1
            i = j
        if len(word) > len(head):
            n = round(n * len(word) / len(head))
        if len(self._cache) < 200_000:
            self._cache[word] = n
        return n

    def score(self, text: str) -> Suspicion:
        # scored on the normalised text: invisible characters, fullwidth or styled letters are the
        # obfuscation signal's business, not gibberish ("pass\u200benger" is one known word here).
        # Every token is then cut to MAX_WORD_CHARS: the patterns below backtrack within a token, so
        # a 50,000-letter run would cost them quadratic time; this keeps the scorer linear in the text
        # (each pattern runs only where it can match: a token longer than the limit, a non-ASCII
        # character for a mark, "<" or "[" for a special token, a symbol for a symbol inside a word)
        t = normalize(text).text
        if len(t) > MAX_WORD_CHARS:
            t = _LONG_TOKEN.sub(lambda m: m.group(0)[:MAX_WORD_CHARS], t)
        t = fold_leetspeak(t if t.isascii() else _MARK.sub("", t), None, self.vocab)[0]  # (no mark is ASCII)
        if "<" in t or "[" in t:
            special = len(_SPECIAL.findall(t))
            t_clean = _SPECIAL.sub(" ", t)
        else:
            special, t_clean = 0, t
        words = [w for w in _ALPHA_WORD.findall(t_clean) if w.isascii()]
        unknown = 0
        frag_sum = 0.0
        for w in words:
            if w in self.vocab or (w.endswith("s") and w[:-1] in self.vocab):
                continue
            pieces = self._n_pieces(w)
            # a proper name ("rutkowski") splits into a few healthy pieces; optimiser output has
            # short non-words, consonant pile-ups and many tiny pieces
            avg = len(w) / pieces
            if len(w) <= 3 or _CONSONANT_RUN.search(_DIGRAPHS.sub("c", w)) or (pieces >= 4 and avg < 2.6):
                unknown += 1
                frag_sum += min(1.0, (pieces - 1) / max(1, len(w) / 2))
        n = max(1, len(words))
        unknown_share = unknown / n
        fragmentation = frag_sum / n
        sym = len(_SYMBOL_IN_WORD.findall(t_clean)) if _SYMBOL.search(t_clean) else 0
        runs = len(_PUNCT_RUN.findall(t_clean))
        signals = []
        s = 0.0
        if len(words) >= 3:
            s += min(1.0, 1.6 * unknown_share)
            if unknown_share >= 0.2:
                signals.append(f"{unknown} of {len(words)} words are unknown sub-word fragments")
        if special:
            s += 0.6
            signals.append(f"{special} stray special token(s)")
        if sym:
            s += min(0.4, 0.15 * sym)
            signals.append(f"{sym} symbol(s) inside words")
        if runs:
            s += min(0.3, 0.1 * runs)
            signals.append(f"{runs} run(s) of punctuation")
        return Suspicion(min(1.0, s), unknown_share, fragmentation, special, sym, runs, signals)
