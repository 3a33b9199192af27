"""Text normalisation for the prompt screen.

``normalize``: marks that would casefold into letters dropped, invisible characters stripped
(zero-width, Unicode tags, bidi controls, soft hyphen, variation selectors), NFKC, casefold,
whitespace collapsed, and words that mix scripts read as the Latin word they imitate. ``variants``
then undoes deliberate obfuscation (diacritics, symbols inside words, whole-word look-alikes,
letter spacing, leetspeak, split syllables) as extra views. The transforms that changed the text are
recorded: obfuscation is evidence, but only beside a risky match (a benign caption with accents or
fullwidth letters must read as the caption). Every step is linear in the text's length.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Collection
from dataclasses import dataclass, field

# zero-width and joiners, word joiner & invisible operators, BOM, soft hyphen, Mongolian vowel
# separator, combining grapheme joiner, Hangul fillers, bidi embeddings/overrides/isolates and marks,
# variation selectors, Unicode tag characters.
_INVISIBLE = re.compile(
    "[\u00ad\u034f\u061c\u115f\u1160\u180b-\u180e\u200b-\u200f\u202a-\u202e\u2060-\u206f"
    "\u3164\ufe00-\ufe0f\ufeff\uffa0\U000e0000-\U000e007f\U000e0100-\U000e01ef]"
)
_WS = re.compile(r"\s+")
# letters dressed up to dodge word matching: mathematical alphanumerics (𝓷𝓾𝓭𝓮), fullwidth forms
# (ＮＵＤＥ), circled/parenthesised and squared/negative letters (ⓝⓤⓓⓔ, 🅽🆄🅳🅴)
_STYLED = re.compile("[\U0001d400-\U0001d7ff\uff01-\uff5e\u2460-\u24ff\U0001f110-\U0001f189]")


def _letter_making_marks() -> str:
    """Combining marks that casefolding or NFKC turns into something that is not a mark: U+0345
    COMBINING GREEK YPOGEGRAMMENI casefolds to a Greek iota, so "n\u0345aked" would become "nιaked"
    and no longer read as "naked" once marks are stripped. Computed from the Unicode data in use."""
    out = []
    for cp in range(0x300, 0x20000):
        ch = chr(cp)
        if not unicodedata.combining(ch):
            continue
        for form in (ch.casefold(), unicodedata.normalize("NFKC", ch), unicodedata.normalize("NFKC", ch).casefold()):
            if any(not unicodedata.combining(c) for c in form):
                out.append(ch)
                break
    return "".join(out)


_LETTER_MARKS = _letter_making_marks()
_LETTER_MARK_RE = re.compile("[" + re.escape(_LETTER_MARKS) + "]") if _LETTER_MARKS else None


@dataclass
class Normalized:
    text: str
    transforms: list[str] = field(default_factory=list)


def strip_invisible(text: str) -> tuple[str, bool]:
    out = _INVISIBLE.sub("", text)
    return out, out != text


def normalize(text: str) -> Normalized:
    """NFKC + casefold + invisible characters stripped + whitespace collapsed."""
    transforms: list[str] = []
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates: not text any tokenizer accepts
        text = text.encode("utf-8", "replace").decode("utf-8")
        transforms.append("invalid_unicode")
    t, had_invisible = strip_invisible(text)
    if had_invisible:
        transforms.append("invisible_chars")
    # marks that would casefold/NFKC into letters go BEFORE casefolding (strip_diacritics, which
    # runs later on the folded text, can no longer see them as marks)
    if _LETTER_MARK_RE is not None:
        t2 = _LETTER_MARK_RE.sub("", t)
        if t2 != t:
            transforms.append("letter_marks")
            t = t2
    nfkc = unicodedata.normalize("NFKC", t)
    if nfkc != t:
        transforms.append("nfkc")
        if _STYLED.search(t):
            transforms.append("styled_letters")
    folded = nfkc.casefold()
    # NFKC after casefold: casefolding can produce sequences that compose differently.
    folded = unicodedata.normalize("NFKC", folded)
    # Remove control characters (C0/C1 other than whitespace) that survive NFKC.
    cleaned = "".join(ch if (ch.isprintable() or ch.isspace()) else " " for ch in folded)
    if cleaned != folded:
        transforms.append("control_chars")
    collapsed = _WS.sub(" ", cleaned).strip()
    # a word that mixes scripts ("реoрlе" with Cyrillic р, е) is no word of any language: it is read
    # as the Latin word it imitates. Done here, not as a variant, so that the unreadable original is
    # never embedded (it sits near the Russian bank phrases: 4.5 % of such COCO captions flagged)
    folded_words, mixed = fold_confusables(collapsed)
    if mixed:
        transforms.append("confusables")
        collapsed = folded_words
    return Normalized(collapsed, transforms)


_SEG_SPLIT = re.compile(r"[,;|\n\r\t()\[\]{}]+|(?<=[a-z])\.\s+|\s[-–—:]\s")


#: enough views to cover a prompt of the default ``screen.max_prompt_chars`` (20,000 characters,
#: about 3,500 words: ~220 windows plus its comma pieces) to its end; linear in the text either way
MAX_VIEWS = 1024


def segments(
    text: str,
    *,
    window_words: int = 32,
    stride_words: int = 16,
    max_views: int = MAX_VIEWS,
    spans: bool = False,
) -> list:
    """Comma/semicolon separated pieces of a prompt, and sliding word windows over long pieces, so a
    single phrase inside a long prompt is screened on its own and is not averaged away. At most
    ``max_views`` pieces; identical pieces once. With ``spans``, each piece as its ``(start, end)``
    character range in ``text`` instead (``text[start:end]`` is the piece), for late chunking."""
    out: list[tuple[int, int]] = []
    seen: set[str] = set()
    strip = " .!?'\""

    def add(a: int, b: int) -> None:
        while a < b and text[a] in strip:
            a += 1
        while b > a and text[b - 1] in strip:
            b -= 1
        s = text[a:b]
        # (one-word segments are kept; the screen lets them escalate at most: "photo" or "35mm"
        # alone embed as noise, and single explicit words are the lexical layer's job)
        if len(s) >= 3 and s not in seen:
            seen.add(s)
            out.append((a, b))

    def windows(words: list) -> None:  # words: matches of _WORDS_RE (absolute positions)
        for i in range(0, len(words) - window_words + stride_words, stride_words):
            if len(out) >= max_views:
                return
            add(words[i].start(), words[min(i + window_words, len(words)) - 1].end())

    pieces: list[tuple[int, int]] = []
    at = 0
    for m in _SEG_SPLIT.finditer(text):  # (every separator is at least one character)
        pieces.append((at, m.start()))
        at = m.end()
    pieces.append((at, len(text)))
    pieces = [(a, b) for a, b in pieces if b > a and text[a:b].strip()]
    if len(pieces) > 1:
        for a, b in pieces:
            words = list(_WORDS_RE.finditer(text, a, b))
            if len(words) <= window_words:
                add(a, b)
            else:
                windows(words)
            if len(out) >= max_views:
                break
    words = list(_WORDS_RE.finditer(text))
    if len(words) > window_words:
        windows(words)
    out = out[:max_views]
    return out if spans else [text[a:b] for a, b in out]


_WORDS_RE = re.compile(r"\S+")


# ------------------------------------------------------------------------------------------
# Obfuscation-undoing views. Each returns (text, fired); the screen scores every distinct view
# and keeps the riskiest, and the transforms that fired are reported.
# ------------------------------------------------------------------------------------------


def strip_diacritics(text: str) -> tuple[str, bool]:
    """NFD, drop combining marks ("nüdé" -> "nude"; stacked zalgo marks too)."""
    decomposed = unicodedata.normalize("NFD", text)
    out = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    out = unicodedata.normalize("NFC", out)
    return out, out != unicodedata.normalize("NFC", text)


_WORD = re.compile(r"\w+", re.UNICODE)
_CONFUSABLE_CACHE: dict[str, str | None] = {}


def _latin_homoglyph(ch: str) -> str | None:
    if ch in _CONFUSABLE_CACHE:
        return _CONFUSABLE_CACHE[ch]
    from confusable_homoglyphs import confusables

    found = None
    for item in confusables.is_confusable(ch, greedy=True, preferred_aliases=["latin"]) or []:
        for h in item.get("homoglyphs", []):
            if h.get("n", "").startswith("LATIN") and h["c"].isascii():
                found = h["c"].lower()
                break
        if found:
            break
    _CONFUSABLE_CACHE[ch] = found
    return found


def _script(ch: str) -> str:
    try:
        name = unicodedata.name(ch)
    except ValueError:
        return "UNKNOWN"
    return name.split(" ", 1)[0]


def _latin_look_alike(word: str) -> str | None:
    """The all-Latin word that ``word`` (written in another script) looks like, letter by letter,
    or None when some letter has no Latin look-alike ("ѕех" -> "sex"; "кошка" -> None)."""
    out = []
    for c in word:
        if c.isascii():
            out.append(c)
            continue
        h = _latin_homoglyph(c)
        if not h:
            return None
        out.append(h)
    return "".join(out)


def fold_confusables(text: str, lexicon: Collection[str] | None = None) -> tuple[str, bool]:
    """In words that mix scripts (Latin with Cyrillic/Greek/...), map letters that look like Latin
    letters to them, from the Unicode confusables data ("nаkеd" with Cyrillic а/е -> "naked").

    A word written wholly in another script is mapped only when its look-alike is a word of
    ``lexicon`` (the policy's key terms): the all-Cyrillic "ѕех" becomes "sex", while Russian text
    ("мех", fur, looks like "mex") is left alone."""
    changed = False

    def fix(m: re.Match) -> str:
        nonlocal changed
        w = m.group(0)
        if w.isascii():
            return w
        scripts = {_script(c) for c in w if c.isalpha()}
        if "LATIN" not in scripts:
            if not lexicon or not scripts or not w.isalpha():
                return w
            look = _latin_look_alike(w)
            if look is None or look == w or not (look in lexicon or (look.endswith("s") and look[:-1] in lexicon)):
                return w
            changed = True
            return look
        if len(scripts) < 2:
            return w
        out = []
        for c in w:
            if c.isalpha() and _script(c) != "LATIN":
                h = _latin_homoglyph(c)
                out.append(h if h else c)
            else:
                out.append(c)
        new = "".join(out)
        changed = changed or new != w
        return new

    out = _WORD.sub(fix, text)
    return out, changed


# symbols and emoji between two letters of one word ("na🍑ked", "se✱x", "p*rn" is leetspeak's):
# any run of symbol characters (Unicode categories S*) and the separators * ~ ^ | • ·
_INNER_RUN = re.compile(r"(?<=[^\W\d_])[^\w\s'\-.,;:!?()\[\]{}\"]+(?=[^\W\d_])")
_INNER_OK = set("*~^|•·")


def strip_inner_symbols(text: str) -> tuple[str, bool]:
    """Drop emoji and symbols written inside a word ("na🍑ked" -> "naked", "s✱x" -> "sx").
    Apostrophes, hyphens and sentence punctuation are never touched ("don't", "well-known")."""
    changed = False

    def fix(m: re.Match) -> str:
        nonlocal changed
        run = m.group(0)
        if all(c in _INNER_OK or unicodedata.category(c).startswith("S") for c in run):
            changed = True
            return ""
        return run

    out = _INNER_RUN.sub(fix, text)
    return out, changed


_FRAGMENTS = re.compile(r"(?<![^\W\d_])[^\W\d_]+(?:[ \-][^\W\d_]+)+")


def join_fragments(
    text: str, lexicon: Collection[str] | None, dictionary: Collection[str] | None = None
) -> tuple[str, bool]:
    """Join two adjacent word fragments split by a space or hyphen (a newline is a space by now)
    when together they spell a key term of ``lexicon`` ("na ked", "na-ked" -> "naked"). Only joins
    of 5+ letters where one fragment is at most 3 letters long and not both are real words (3+
    letters and in ``dictionary``) are made: "his panic" stays two words, and a short join
    ("an al") is never read into a prompt."""
    dictionary = dictionary or ()
    if not lexicon:
        return text, False
    changed = False

    def fix(m: re.Match) -> str:
        nonlocal changed
        parts = re.split(r"([ \-])", m.group(0))
        words, seps = parts[0::2], parts[1::2]
        out = [words[0]]
        k = 1
        while k < len(words):
            a, b = out[-1], words[k]
            j = a + b
            real = sum(len(x) >= 3 and x in dictionary for x in (a, b))
            if (
                len(j) >= 5
                and min(len(a), len(b)) <= 3
                and real < 2
                and (j in lexicon or (j.endswith("s") and j[:-1] in lexicon))
            ):
                out[-1] = j
                changed = True
            else:
                out.append(seps[k - 1])
                out.append(b)
            k += 1
        return "".join(out)

    out = _FRAGMENTS.sub(fix, text)
    return out, changed


_LEET = {
    "0": "o",
    "1": "i",
    "2": "z",
    "3": "e",
    "4": "a",
    "5": "s",
    "6": "g",
    "7": "t",
    "8": "b",
    "9": "g",
    "@": "a",
    "$": "s",
    "!": "i",
    "|": "l",
    "+": "t",
    "€": "e",
    "£": "l",
    "¥": "y",
    "(": "c",
}
_LEET_TOKEN = re.compile(r"[^\s,;:]+")


_SPECIAL_TOKEN = re.compile(r"<\|[a-z]+\|>")


def fold_leetspeak(text: str) -> tuple[str, bool]:
    """Digits and symbols inside words become the letters they stand for ("n4k3d" -> "naked",
    "p0rn" -> "porn", "$ex" -> "sex"). Only tokens that hold at least two letters are touched,
    so "8k", "1920s" and "50mm" stay as they are."""
    changed = False

    def fix(m: re.Match) -> str:
        nonlocal changed
        tok = m.group(0)
        if _SPECIAL_TOKEN.search(tok):  # "<|endoftext|>" is a (suspicious) token, not leetspeak
            return tok
        letters = sum(c.isalpha() for c in tok)
        if letters < 2 or not any(c in _LEET for c in tok):
            return tok
        core = tok.strip(".!?'\"()")
        if not core or core.isdigit():
            return tok
        digits = sum(c.isdigit() for c in core)
        if digits and digits >= letters:  # "1920s", "35mm"-like tokens are numbers, not words
            return tok
        new = tok.replace(core, "".join(_LEET.get(c, c) for c in core))
        if new != tok:
            changed = True
        return new

    out = _LEET_TOKEN.sub(fix, text)
    return out, changed


# three or more single letters separated by spaces, dots, dashes, underscores, asterisks or
# middle dots: "n u d e", "n.u.d.e", "n-u-d-e", "n_u_d_e", "n*u*d*e"
_SPACED = re.compile(r"(?<![\w])(?:[^\W\d_][ \t.\-_*·•/\\]{1,3}){2,}[^\W\d_](?![\w])")


def collapse_spacing(text: str, keep_articles: bool = True) -> tuple[str, bool]:
    """Join letters that were spaced or separated to dodge word matching ("n u d e" -> "nude").
    With ``keep_articles``, a leading "a" or "i" followed by a space stays a word ("a n u d e girl"
    -> "a nude girl"); the screen also tries the other reading ("a n a l" -> "anal")."""
    changed = False

    def fix(m: re.Match) -> str:
        nonlocal changed
        changed = True
        run = m.group(0)
        letters = "".join(c for c in run if c.isalpha())
        if keep_articles and run[0] in "ai" and run[1] == " " and len(letters) >= 4:
            return run[0] + " " + letters[1:]
        return letters

    out = _SPACED.sub(fix, text)
    return out, changed


#: transforms that undo deliberate obfuscation (as opposed to ordinary normalisation)
OBFUSCATION_TRANSFORMS = (
    "invisible_chars",
    "styled_letters",
    "confusables",
    "leetspeak",
    "spacing",
    "control_chars",
    "letter_marks",
    "inner_symbols",
    "fragments",
)


def variants(
    text: str, lexicon: Collection[str] | None = None, dictionary: Collection[str] | None = None
) -> tuple[list[tuple[str, str]], list[str]]:
    """Distinct de-obfuscated variants of an already normalised text, as (name, text) pairs with the
    plain text first, and the list of transforms that fired. ``lexicon``: the policy's single-word
    key terms, which whole-word confusables and fragment joins must spell to be applied;
    ``dictionary``: ordinary words, never joined to each other."""
    out: list[tuple[str, str]] = [("plain", text)]
    fired: list[str] = []
    seen = {text}
    t = text
    steps = (
        ("diacritics", strip_diacritics),
        ("inner_symbols", strip_inner_symbols),
        ("confusables", lambda x: fold_confusables(x, lexicon)),
        ("spacing", collapse_spacing),
        ("leetspeak", fold_leetspeak),
        ("fragments", lambda x: join_fragments(x, lexicon, dictionary)),
    )
    for name, fn in steps:
        t2, did = fn(t)
        if did:
            fired.append(name)
            if name == "spacing":
                other, _ = collapse_spacing(t, keep_articles=False)
                if other != t2 and other not in seen:
                    seen.add(other)
                    out.append((name, other))
            t = t2
            if t not in seen:
                seen.add(t)
                out.append((name, t))
    return out, fired
