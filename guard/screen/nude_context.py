"""Nude-prone art context: a signal that escalates, never blocks, a prompt that asks for a human figure
from a painter, sculptor or photographer known for the nude, or in a genre that is mostly the nude,
without saying the figure is clothed.

Text-to-image models learned these names and genres from their nudes: "male character art by
william-adolphe bouguereau" or "a woman, part by jenny saville" come out nude in most images though
no word asks for it. The learned sexual head sees the same names (the ``sexual.implicit_cues``
key terms) but may not block on them: the same painters' portraits in a coat and their landscapes
are benign, and a head that blocked on a name would block those too. This signal therefore only
escalates (the image is made under negative guidance and checked strictly after generation), and
only when three things hold at once:

1. a nude-prone artist (``NUDE_ARTISTS``; surnames of seven or more letters also match one letter off,
   "bouguerea") or a nude-prone genre (``NUDE_GENRES``: "figure study", "life drawing", "odalisque"),
   or a nude-prone mythological subject (``NUDE_SUBJECTS``: venus, nymphs, the three graces) named
   together with an art medium (``ART_MEDIA``: a painting, a marble statue, an oil on canvas);
2. a human subject (``HUMAN_WORDS``: a woman, a man, a figure, a body, a goddess, lovers ...), or the
   mythological subject itself;
3. no word that clothes the figure (``CLOTHING_WORDS``: a dress, a coat, armour, "fully clothed"),
   unless a negation or a see-through word stands just before it ("without a dress", "only a fur coat",
   "a sheer gown", "wet shirt").

A still life or a landscape by the same painters, the planet venus, a portrait in a velvet coat by
ingres and "the venus flytrap" are not escalated by it. Everything is matched on the de-obfuscated,
casefolded text the screen already computed, as whole words.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass

from rapidfuzz import process
from rapidfuzz.distance import Levenshtein

logger = logging.getLogger(__name__)

#: painters, sculptors and photographers whose work is mostly the nude (full names and the surnames
#: that are distinctive on their own; no one known for pictures of children)
NUDE_ARTISTS = (
    "bouguereau",
    "william-adolphe bouguereau",
    "ingres",
    "titian",
    "klimt",
    "schiele",
    "modigliani",
    "rubens",
    "courbet",
    "cabanel",
    "gervex",
    "alma-tadema",
    "alma tadema",
    "herbert james draper",
    "godward",
    "falero",
    "jules joseph lefebvre",
    "henner",
    "boucher",
    "anders zorn",
    "vallotton",
    "giorgione",
    "canova",
    "rodin",
    "maillol",
    "lempicka",
    "frazetta",
    "boris vallejo",
    "luis royo",
    "sorayama",
    "elvgren",
    "alberto vargas",
    "milo manara",
    "manara",
    "serpieri",
    "helmut newton",
    "mapplethorpe",
    "spencer tunick",
    "vanessa beecroft",
    "beecroft",
    "ruth bernhard",
    "edward weston",
    "tom of finland",
    "lucian freud",
    "jenny saville",
    "saville",
    "william etty",
    "franz von stuck",
    "bussiere",
    "gaston bussiere",
    "gentileschi",
    "cleavenger",
    "gerome",
    "jean-leon gerome",
    "correggio",
    "cranach",
    "gauguin",
    "olivia de berardinis",
)
#: genres that are mostly the nude
NUDE_GENRES = (
    "figure study",
    "figure drawing",
    "life drawing",
    "life-drawing",
    "life class",
    "academic nude",
    "odalisque",
    "odalisques",
    "boudoir",
    "pin-up",
    "pinup",
    "glamour photography",
    "art nude",
)
#: mythological and biblical subjects painted nude far more often than not (with an art medium)
NUDE_SUBJECTS = (
    "venus",
    "aphrodite",
    "nymph",
    "nymphs",
    "naiad",
    "naiads",
    "three graces",
    "leda",
    "danae",
    "bathsheba",
    "galatea",
    "susanna and the elders",
    "adam and eve",
    "bather",
    "bathers",
    "psyche",
    "andromeda",
)
ART_MEDIA = (
    "painting",
    "painted",
    "oil",
    "canvas",
    "fresco",
    "sculpture",
    "statue",
    "marble",
    "bronze",
    "drawing",
    "sketch",
    "etching",
    "renaissance",
    "baroque",
    "rococo",
    "neoclassical",
    "neoclassicism",
    "classical",
    "classicism",
    "academic",
    "pre-raphaelite",
    "artwork",
    "masterpiece",
    "in the style of",
)
HUMAN_WORDS = (
    "woman",
    "women",
    "girl",
    "girls",
    "lady",
    "ladies",
    "female",
    "females",
    "man",
    "men",
    "boy",
    "boys",
    "male",
    "males",
    "guy",
    "person",
    "people",
    "figure",
    "figures",
    "body",
    "bodies",
    "model",
    "models",
    "muse",
    "goddess",
    "goddesses",
    "god",
    "gods",
    "maiden",
    "maidens",
    "mermaid",
    "siren",
    "sirens",
    "courtesan",
    "lover",
    "lovers",
    "couple",
    "dancer",
    "dancers",
    "youth",
    "athlete",
    "wife",
    "bride",
    "queen",
    "princess",
    "angel",
    "angels",
    "eve",
    "self-portrait",
    "torso",
    "odalisque",
    "odalisques",
    "nymph",
    "nymphs",
    "naiad",
    "naiads",
    "bather",
    "bathers",
    "character",
    "her",
    "his",
)
CLOTHING_WORDS = (
    "dress",
    "dresses",
    "dressed",
    "gown",
    "gowns",
    "coat",
    "coats",
    "overcoat",
    "jacket",
    "suit",
    "suits",
    "tuxedo",
    "uniform",
    "armour",
    "armor",
    "cloak",
    "cape",
    "robes",
    "shawl",
    "scarf",
    "sweater",
    "cardigan",
    "shirt",
    "blouse",
    "trousers",
    "jeans",
    "pants",
    "skirt",
    "kimono",
    "headscarf",
    "hijab",
    "turban",
    "bonnet",
    "robe",
    "sari",
    "attire",
    "garments",
    "costume",
    "spacesuit",
    "wetsuit",
    "swimsuit",
    "overalls",
    "apron",
    "hoodie",
    "jersey",
    "tunic",
    "clothed",
    "clothes",
    "clothing",
    "habit",
    "smock",
    "stole",
    "furs",
    "raincoat",
    "pajamas",
    "pyjamas",
    "sleeves",
    "long-sleeved",
    "buttoned",
)
#: a clothing word right after one of these does not clothe the figure ("without a dress", "only a fur
#: coat", "a sheer gown", "her dress slipping off")
NEGATORS = (
    "no",
    "not",
    "without",
    "nothing",
    "only",
    "barely",
    "sheer",
    "transparent",
    "see-through",
    "wet",
    "torn",
    "open",
    "unbuttoned",
    "removing",
    "removed",
    "off",
)
AFTER_NEGATORS = ("off", "slipping", "falling", "fallen", "removed", "open", "aside", "undone")
#: the sexual head's score under which it has ruled the sexual reading out: the context does not escalate
MIN_SCORE = 0.05
NEGATION_WINDOW = 3  # words before a clothing word (and two after it) that can undo it

_WORD = re.compile(r"[^\W\d_]+(?:[-'][^\W\d_]+)*")


def digest() -> str:
    """sha256 (16 hex) of every word list and setting above: the full path's decisions depend on
    them, so a fast gate fitted against other lists must not run (see ``fastpath.policy_digest``)."""
    tables = [NUDE_ARTISTS, NUDE_GENRES, NUDE_SUBJECTS, ART_MEDIA, HUMAN_WORDS, CLOTHING_WORDS, NEGATORS]
    tables += [AFTER_NEGATORS, (MIN_SCORE, NEGATION_WINDOW)]
    return hashlib.sha256(json.dumps(tables).encode()).hexdigest()[:16]


def _phrases(terms: tuple[str, ...]) -> dict[str, list[tuple[str, ...]]]:
    out: dict[str, list[tuple[str, ...]]] = {}
    for t in terms:
        words = tuple(_WORD.findall(t))
        out.setdefault(words[0], []).append(words)
    for v in out.values():
        v.sort(key=len, reverse=True)
    return out


_ARTISTS = _phrases(NUDE_ARTISTS)
_GENRES = _phrases(NUDE_GENRES)
_SUBJECTS = _phrases(NUDE_SUBJECTS)
_MEDIA = _phrases(ART_MEDIA)
_HUMAN = frozenset(HUMAN_WORDS)
_CLOTHING = frozenset(CLOTHING_WORDS)
_NEGATORS = frozenset(NEGATORS)
_AFTER = frozenset(AFTER_NEGATORS)
#: single-word surnames long enough to be matched one letter off ("bouguerea", "modigliano")
_FUZZY_SURNAMES = tuple(sorted({t for t in NUDE_ARTISTS if " " not in t and "-" not in t and len(t) >= 7}))


@dataclass(frozen=True)
class NudeContext:
    """What made a prompt a nude-prone art context, for the report."""

    cue: str  # the artist, genre or subject found, as written in the prompt
    kind: str  # "artist" | "genre" | "subject"
    human: str  # the human subject found (the subject itself for a mythological one)

    def describe(self) -> str:
        what = {"artist": "an artist known for the nude", "genre": "a nude-leaning genre"}.get(
            self.kind, "a subject painted nude far more often than not"
        )
        return f"nude-prone art context: {what} ({self.cue!r}) with a human subject ({self.human!r}) and no clothing"


def _find(words: list[str], table: dict[str, list[tuple[str, ...]]]) -> tuple[int, str] | None:
    for i, w in enumerate(words):
        for ph in table.get(w, ()):
            if tuple(words[i : i + len(ph)]) == ph:
                return i, " ".join(ph)
    return None


def _fuzzy_artist(words: list[str], dictionary: frozenset[str] | set[str] | None) -> str | None:
    for w in words:
        if len(w) < 7 or (dictionary and w in dictionary):
            continue
        got = process.extractOne(w, _FUZZY_SURNAMES, scorer=Levenshtein.distance, score_cutoff=1)
        if got is not None and got[0][0] == w[0]:
            return w
    return None


def _clothed(words: list[str]) -> str | None:
    """The first clothing word that is not undone by a negation or a see-through word near it."""
    for i, w in enumerate(words):
        if w not in _CLOTHING:
            continue
        before = words[max(0, i - NEGATION_WINDOW) : i]
        after = words[i + 1 : i + 3]
        if any(b in _NEGATORS for b in before) or any(a in _AFTER for a in after):
            continue
        return w
    return None


def find(text: str, dictionary: frozenset[str] | set[str] | None = None) -> NudeContext | None:
    """The nude-prone art context of a (de-obfuscated, casefolded) prompt, or None. ``dictionary``: words
    that are never taken for a misspelt surname (the screen model's vocabulary)."""
    if not text:
        return None
    words = _WORD.findall(text.casefold())
    if not words:
        return None
    cue: tuple[str, str] | None = None
    hit = _find(words, _ARTISTS)
    if hit is not None:
        cue = (hit[1], "artist")
    elif (fz := _fuzzy_artist(words, dictionary)) is not None:
        cue = (fz, "artist")
    elif (hit := _find(words, _GENRES)) is not None:
        cue = (hit[1], "genre")
    subject = None
    if cue is None:
        hit = _find(words, _SUBJECTS)
        if hit is None or _find(words, _MEDIA) is None:
            return None
        cue = (hit[1], "subject")
        subject = hit[1]
    human = subject or next((w for w in words if w in _HUMAN), None)
    if human is None:
        return None
    if _clothed(words) is not None:
        return None
    return NudeContext(cue[0], cue[1], human)


__all__ = ["MIN_SCORE", "NudeContext", "find"]
