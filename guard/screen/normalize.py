"""Text normalisation for the prompt screen.

``normalize``: marks that would casefold into letters dropped, invisible characters stripped
(zero-width, Unicode tags, bidi controls, soft hyphen, variation selectors), NFKC, casefold,
whitespace collapsed, and words that mix scripts read as the Latin word they imitate. ``variants``
then undoes deliberate obfuscation (diacritics, symbols inside words, whole-word look-alikes,
letter spacing, leetspeak, stretched letters, split syllables) as extra views, the most de-obfuscated reading first
(it is the one the screen embeds as "the prompt"). The transforms that changed the text are
recorded: obfuscation is evidence, but only beside a risky match (a benign caption with accents or
fullwidth letters must read as the caption). Every step is linear in the text's length.

Scripts other than Latin are left as their writers wrote them: only decorations are stripped
(accents on Latin, Greek and Cyrillic letters, Arabic and Hebrew vowel points, the Arabic tatweel,
the Devanagari nukta, and the generic combining marks that "zalgo" text stacks on any letter).
Devanagari vowel signs and viramas, Thai vowel and tone marks and the Japanese voicing marks are
letters of their words and stay; Hangul syllables decomposed by NFD are recomposed. A "word" is a
run of letters, digits and combining marks, so a Hindi or Thai word is never cut at a vowel sign.
"""

from __future__ import annotations

import itertools
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


def _ranges(pred) -> str:
    """A regex character-class body of every code point for which ``pred`` holds."""
    out, start, prev = [], None, None
    for cp in itertools.chain(range(0x20000), range(0xE0000, 0xE0200)):  # (nothing else assigned is a mark)
        if 0xD800 <= cp <= 0xDFFF:
            continue
        if pred(chr(cp)):
            if start is None:
                start = cp
            prev = cp
        elif start is not None:
            out.append(re.escape(chr(start)) + ("" if prev == start else "-" + re.escape(chr(prev))))
            start = None
    if start is not None:
        out.append(re.escape(chr(start)) + ("" if prev == start else "-" + re.escape(chr(prev))))
    return "".join(out)


#: every combining mark (Unicode categories Mn, Mc, Me), as a character-class body
MARKS = _ranges(lambda ch: unicodedata.category(ch)[0] == "M")
#: a word: letters (and digits) with the combining marks that belong to them. ``\w`` alone cuts
#: "लड़की" at its vowel signs and "نَازِي" at its vowel points
WORD = re.compile(rf"(?:[^\W_]|[{MARKS}])+")
#: letters only (no digits), with their marks
LETTERS = re.compile(rf"(?:[^\W\d_]|[{MARKS}])+")


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


# Korean typed as loose letters ("ㅅㅔㄱㅅㅡ" for 섹스): NFKC turns compatibility jamo into leading
# consonants and vowels, and composes each consonant-vowel pair, but a final consonant stays a loose
# leading one ("세ᄀ"). A leading consonant after a syllable without a final, and not before a vowel,
# is that syllable's final.
_JAMO_L = re.compile("[\u1100-\u1112]")
_L_TO_T = dict(
    zip(
        "\u1100\u1101\u1102\u1103\u1105\u1106\u1107\u1109\u110a\u110b\u110c\u110e\u110f\u1110\u1111\u1112",
        (1, 2, 4, 7, 8, 16, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27),
    )
)


def _compose_finals(text: str) -> str:
    out: list[str] = []
    n = len(text)
    for i, ch in enumerate(text):
        t = _L_TO_T.get(ch)
        if (
            t is not None
            and out
            and "\uac00" <= out[-1] <= "\ud7a3"
            and (ord(out[-1]) - 0xAC00) % 28 == 0
            and not (i + 1 < n and "\u1161" <= text[i + 1] <= "\u1175")
        ):
            out[-1] = chr(ord(out[-1]) + t)
            continue
        out.append(ch)
    return "".join(out)


#: letters NFKC leaves alone that are read as plain letters: the small capitals ("ɴᴀᴋᴇᴅ") and the
#: regional indicator symbols ("🇳🇦🇰🇪🇩", which also draw flags: "🇺🇸" reads "us"). Both are styled
#: letters: nothing a prompt needs them for is lost when they read as the letters they show.
_SMALL_CAPITALS = dict(
    zip(
        "ᴀʙᴄᴅᴇꜰɢʜɪᴊᴋʟᴍɴᴏᴘǫʀꜱᴛᴜᴠᴡʏᴢ",
        "abcdefghijklmnopqrstuvwyz",
        strict=True,
    )
)
_LETTER_STYLES = str.maketrans({**_SMALL_CAPITALS, **{chr(0x1F1E6 + i): chr(ord("a") + i) for i in range(26)}})
_LETTER_STYLE_RE = re.compile("[" + "".join(_SMALL_CAPITALS) + "\U0001f1e6-\U0001f1ff]")
#: text turned upside down: each letter by the one that looks like it rotated half a turn, in
#: reverse order ("uɐɯoʍ pǝʞɐu" is "naked woman"). ``_FLIPPED_ONLY`` are the turned letters no
#: plain Latin letter looks like; a text is read as upside down when they make up enough of it.
_UPSIDE_DOWN = dict(
    zip(
        "ɐqɔpǝɟƃɥᴉɾʞlɯuodbɹsʇnʌʍxʎz",
        "abcdefghijklmnopqrstuvwxyz",
        strict=True,
    )
)
_FLIPPED_ONLY = frozenset("ɐɔǝɟƃɥᴉɾʞɯɹʇʌʍʎ")
_FLIP = str.maketrans({**_UPSIDE_DOWN, "˙": ".", "¡": "!", "¿": "?", "‾": "_", "'": ",", ",": "'"})


def _upside_down(text: str) -> bool:
    """Whether ``text`` is written upside down: at least three distinct turned letters (all of them
    lowercase), and turned letters at least a quarter of its letters (IPA in a prompt has a few, among many
    plain letters)."""
    turned = [c for c in text if c in _FLIPPED_ONLY]
    if len(set(turned)) < 3:
        return False
    letters = sum(1 for c in text if c.isalpha())
    return len(turned) >= 0.25 * max(1, letters)


@dataclass
class Normalized:
    text: str
    transforms: list[str] = field(default_factory=list)


#: an extra-network tag of the Stable Diffusion web UIs: ``<lora:NAME:0.8>``, ``<lyco:NAME>``,
#: ``<hypernet:NAME:1>``, ``<embedding:NAME>`` (ComfyUI also writes ``embedding:NAME``); its NAME is
#: written for people ("nsfwXL", "add_detail") and says what the network adds
_NETWORK_TAG = re.compile(
    r"<\s*(?:lora|lyco|lycoris|locon|loha|hypernet|hypernetwork|embedding|ti)\s*:\s*([^:<>]{1,200})(?::[^<>]{0,50})?>",
    re.IGNORECASE,
)
#: where a tag's name is cut into words: separators, a lower-to-upper change, a letter-digit change
_NAME_CUT = re.compile(r"[_\-.\s]+|(?<=[a-z])(?=[A-Z])|(?<=[A-Za-z])(?=\d)|(?<=\d)(?=[A-Za-z])")


def read_network_tags(text: str) -> tuple[str, bool]:
    """``text`` with each web-UI extra-network tag (``<lora:nsfwXL:0.8>``) replaced by the words of its
    name ("nsfw XL"), so that the lexical layer and the sentence model read what the tag asks for; and
    whether there was one. Ordinary prompt text is left as it is."""
    if "<" not in text:
        return text, False
    out = _NETWORK_TAG.sub(lambda m: " " + " ".join(w for w in _NAME_CUT.split(m.group(1)) if w) + " ", text)
    return out, out != text


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
    t, had_tags = read_network_tags(t)  # (before casefolding: a tag's name is cut at its capitals)
    if had_tags:
        transforms.append("network_tags")
    # marks that would casefold/NFKC into letters go BEFORE casefolding (strip_diacritics, which
    # runs later on the folded text, can no longer see them as marks)
    if _LETTER_MARK_RE is not None and not t.isascii():  # (no mark is ASCII)
        t2 = _LETTER_MARK_RE.sub("", t)
        if t2 != t:
            transforms.append("letter_marks")
            t = t2
    styled = False
    if not t.isascii() and _LETTER_STYLE_RE.search(t):
        t = t.translate(_LETTER_STYLES)
        styled = True
    if not t.isascii() and _upside_down(t):  # (before NFKC, which turns the turned dot "˙" into a mark)
        t = t.translate(_FLIP)[::-1]
        styled = True
    nfkc = unicodedata.normalize("NFKC", t)
    if nfkc != t:
        transforms.append("nfkc")
        styled = styled or bool(_STYLED.search(t))
    if styled:
        transforms.append("styled_letters")
    folded = nfkc.casefold()
    # NFKC after casefold: casefolding can produce sequences that compose differently.
    folded = unicodedata.normalize("NFKC", folded)
    if not folded.isascii() and "\u1100" <= max(folded) and _JAMO_L.search(folded):
        folded = _compose_finals(folded)
    # Remove control characters (C0/C1 other than whitespace) that survive NFKC.
    cleaned = (
        folded if folded.isprintable() else "".join(ch if (ch.isprintable() or ch.isspace()) else " " for ch in folded)
    )
    if cleaned != folded:
        transforms.append("control_chars")
    collapsed = " ".join(cleaned.split())  # (str.split's whitespace is the pattern's \s: the same)
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
    """Comma/semicolon separated pieces of a prompt, and sliding word windows over long pieces (over
    the whole text when it is one piece), so a single phrase inside a long prompt is screened on its
    own and is not averaged away. At most
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
    # (words are counted by str.split, whose whitespace is the pattern's \s; their positions are
    # found only for a piece that gets windows)
    if len(pieces) > 1:
        for a, b in pieces:
            if len(text[a:b].split()) <= window_words:
                add(a, b)
            else:
                windows(list(_WORDS_RE.finditer(text, a, b)))
            if len(out) >= max_views:
                break
    if len(pieces) <= 1:
        # one piece: windows over the whole text (several pieces: each long piece has its own windows)
        if len(text.split()) > window_words:
            windows(list(_WORDS_RE.finditer(text)))
    out = out[:max_views]
    return out if spans else [text[a:b] for a, b in out]


_WORDS_RE = re.compile(r"\S+")


# ------------------------------------------------------------------------------------------
# Obfuscation-undoing views. Each returns (text, fired); the screen scores every distinct view
# and keeps the riskiest, and the transforms that fired are reported.
# ------------------------------------------------------------------------------------------

# combining marks stripped whatever letter carries them: the generic diacritics blocks (what zalgo
# text stacks on any script), Arabic vowel points and Quranic marks, Hebrew points, the Devanagari
# nukta (Hindi writes loanwords with or without it: नाज़ी / नाजी)
_DECORATION = re.compile(
    "[\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f"
    "\u0610-\u061a\u064b-\u065f\u0670\u06d6-\u06dc\u06df-\u06e4\u06e7\u06e8\u06ea-\u06ed\u0591-\u05c7\u093c]"
)
_TATWEEL = "\u0640"  # Arabic elongation: decoration inside a word, never a letter
#: scripts whose letters carry accents as decoration (any of their marks is stripped)
_ACCENTED_SCRIPTS = ("LATIN", "GREEK", "CYRILLIC")
_SCRIPT_CACHE: dict[str, str] = {}


def _script(ch: str) -> str:
    s = _SCRIPT_CACHE.get(ch)
    if s is None:
        try:
            s = unicodedata.name(ch).split(" ", 1)[0]
        except ValueError:
            s = "UNKNOWN"
        if len(_SCRIPT_CACHE) < 100_000:
            _SCRIPT_CACHE[ch] = s
    return s


def strip_diacritics(text: str) -> tuple[str, bool]:
    """NFD, drop the marks that decorate letters ("nüdé" -> "nude"; stacked zalgo marks too; Arabic
    with or without tashkeel reads alike), NFC. Marks that are letters of their script stay: Devanagari
    vowel signs ("लड़की" -> "लडकी", nukta only), Thai vowels and tones, Japanese voicing ("ポルノ")."""
    if text.isascii():
        return text, False
    decomposed = unicodedata.normalize("NFD", text)
    out = []
    base = " "
    for ch in decomposed:
        if ch == _TATWEEL:
            continue
        if unicodedata.category(ch)[0] != "M":
            base = ch
            out.append(ch)
        elif _DECORATION.match(ch) or (unicodedata.combining(ch) and _script(base) in _ACCENTED_SCRIPTS):
            continue
        else:
            out.append(ch)
    res = unicodedata.normalize("NFC", "".join(out))
    return res, res != unicodedata.normalize("NFC", text)


def odd_marks(text: str) -> bool:
    """Marks no writer of a language puts there: after NFC, a Latin/Greek/Cyrillic letter still
    carries a combining mark ("d́", no precomposed letter exists) or a letter carries two or more
    generic marks (zalgo). Ordinary accents ("é", "ñ", "ё") compose and are not odd."""
    if text.isascii():
        return False
    base, n = " ", 0
    for ch in unicodedata.normalize("NFC", text):
        if unicodedata.category(ch)[0] != "M":
            base, n = ch, 0
            continue
        n += 1
        if _script(base) in _ACCENTED_SCRIPTS or n >= 2:
            return True
    return False


def _odd_accents(text: str, dictionary: Collection[str] | None) -> bool:
    """Accents as obfuscation: odd marks, a word carrying three or more, or accented words that are
    English words once stripped ("ĺíeś", "éátíńǵ": at least two, and most of the accented words)."""
    if odd_marks(text):
        return True
    accented = [w for w in text.split() if not w.isascii()]
    if not accented:
        return False
    english = 0
    for w in accented:
        bare, _ = strip_diacritics(w)
        n_marks = sum(1 for c in unicodedata.normalize("NFD", w) if unicodedata.category(c)[0] == "M")
        if n_marks >= 3 and bare.isascii():
            return True
        core = bare.strip(".,;:!?'\"()")
        english += len(core) >= 3 and core.isascii() and is_known(core, dictionary)
    return english >= 2 and 2 * english >= len(accented)


_INFLECTIONS = (
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
)


#: words of text-to-image prompts that the screen model's WordPiece vocabulary lacks as whole words
#: (styles, renderers, sites, compounds): spaced-out or leetspeak prompts are read back into them
#: ("p h o t o r e a l i s t i c" is "photorealistic", not "photo realistic")
PROMPT_WORDS = frozenset(
    """photorealistic hyperrealistic hyperrealism photorealism hyperdetailed ultradetailed artstation deviantart
    unreal octane closeup headshot watercolor watercolour bodybuilder lifelike fullbody bokeh lowpoly steampunk
    cyberpunk synthwave vaporwave scifi volumetric chibi kawaii rutkowski artgerm mucha beksinski giger wlop
    selfie instagram photoshoot cityscape seascape skateboard snowboard surfboard eggplant cupcake toddler
    smartphone laptop sunlit moonlit backlit""".split()
)


def is_known(w: str, dictionary: Collection[str] | None) -> bool:
    """``w`` is a word of ``dictionary`` (or of the prompt words) or an English inflection of one
    ("kites", "straddling", "tagged", "stopped")."""
    if not dictionary:
        return False
    d = dictionary
    if w in d or w in PROMPT_WORDS:
        return True
    for suf, add in _INFLECTIONS:
        if w.endswith(suf) and len(w) - len(suf) >= 3:
            stem = w[: -len(suf)] + add
            if stem in d or stem in PROMPT_WORDS:
                return True
            if suf in ("ed", "ing") and len(stem) > 3 and stem[-1] == stem[-2] and stem[:-1] in d:
                return True  # doubled consonant: "stopped", "running"
    return False


def _in_lexicon(w: str, lexicon: Collection[str] | None) -> bool:
    return bool(lexicon) and (w in lexicon or (w.endswith("s") and w[:-1] in lexicon))


#: the short words a spaced-out run may be cut into, and that are words of their own beside a
#: fragment (other one- and two-letter dictionary entries are mostly abbreviations: "k a a b a" is
#: no "ka aba")
_SHORT_WORDS = frozenset("a i am an as at be by do go he if in is it me my no of oh ok on or so to up us we".split())

_CONFUSABLE_CACHE: dict[str, str | None] = {}
#: look-alikes the Unicode confusables data gives only as other non-ASCII Latin letters (Greek ε as
#: "ꞓ", κ as "ĸ", τ as a small capital T; the small capitals themselves are read in :func:`normalize`)
_LOOK_ALIKE_EXTRA = {
    "ε": "e",
    "κ": "k",
    "τ": "t",
    "χ": "x",
    "η": "n",
    "ς": "c",
    "ϲ": "c",
    "ɑ": "a",
    "ɡ": "g",
    "ɩ": "i",
}


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
    if found is None:
        found = _LOOK_ALIKE_EXTRA.get(ch)
    _CONFUSABLE_CACHE[ch] = found
    return found


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
    if text.isascii():
        return text, False
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
            if look is None or look == w or not _in_lexicon(look, lexicon):
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

    out = WORD.sub(fix, text)
    return out, changed


# symbols and emoji between two letters of one word ("na🍑ked", "se✱x", "p*rn" is leetspeak's):
# any run of symbol characters (Unicode categories S*) and the separators * ~ ^ | • ·
_INNER_RUN = re.compile(r"(?<=[^\W\d_])[^\w\s'\-.,;:!?()\[\]{}\"]+(?=[^\W\d_])")
_INNER_OK = set("*~^|•·")


#: a word with letters censored by stars ("n*k*d", "p**n"): letters and stars, a star inside
_CENSORED = re.compile(r"(?<![\w*])[^\W\d_]+(?:\*+[^\W\d_]*)+(?![\w*])")
_CENSOR_FILL = "aeiouy"
_MAX_CENSORED = 3


def _uncensor(word: str, lexicon: Collection[str] | None, dictionary: Collection[str] | None) -> str | None:
    """What ``word`` spells with each star read as one vowel (at most three stars): a key term of
    ``lexicon`` first, else a word of ``dictionary`` ("ph*t*" -> "photo"); None when neither."""
    stars = word.count("*")
    if not 1 <= stars <= _MAX_CENSORED:
        return None
    parts = word.split("*")
    fills = [
        parts[0] + "".join(f + p for f, p in zip(fill, parts[1:], strict=True))
        for fill in itertools.product(_CENSOR_FILL, repeat=stars)
    ]
    for cand in fills:
        if _in_lexicon(cand, lexicon):
            return cand
    for cand in fills:
        if is_known(cand, dictionary):
            return cand
    return None


def strip_inner_symbols(
    text: str, lexicon: Collection[str] | None = None, dictionary: Collection[str] | None = None
) -> tuple[str, bool]:
    """Drop emoji and symbols written inside a word ("na🍑ked" -> "naked", "s✱x" -> "sx").
    Apostrophes, hyphens and sentence punctuation are never touched ("don't", "well-known"). A word
    censored with stars that spells, each star a vowel, a key term of ``lexicon`` (the policy's) reads
    as that term ("n*k*d" -> "naked"), else a word of ``dictionary`` as that word ("ph*t*" -> "photo")."""
    changed = False
    if (lexicon or dictionary) and "*" in text:

        def uncensor(m: re.Match) -> str:
            nonlocal changed
            found = _uncensor(m.group(0), lexicon, dictionary)
            if found is None:
                return m.group(0)
            changed = True
            return found

        text = _CENSORED.sub(uncensor, text)

    def fix(m: re.Match) -> str:
        nonlocal changed
        run = m.group(0)
        if all(c in _INNER_OK or unicodedata.category(c).startswith("S") for c in run):
            changed = True
            return ""
        return run

    out = _INNER_RUN.sub(fix, text)
    return out, changed


_FRAGMENTS = re.compile(rf"(?<![^\W\d_])(?:[^\W\d_]|[{MARKS}])+(?:[ \-](?:[^\W\d_]|[{MARKS}])+)+")
_FRAGMENTS_ASCII = re.compile(r"(?<![^\W\d_])[^\W\d_]+(?:[ \-][^\W\d_]+)+")  # (the same, faster, for ASCII text)
_FRAGMENT_SEP = re.compile(r"([ \-])")
_LETTER_RUN = re.compile(r"[^\W\d_]+")


_JOIN_STARTS: dict[frozenset, frozenset] = {}


def _join_starts(lexicon: Collection[str]) -> frozenset | None:
    """Every proper prefix of a key term or of its plural: the first fragment of any join
    ``join_fragments`` makes is one (remembered per lexicon; None for a lexicon that is no frozenset)."""
    if not isinstance(lexicon, frozenset):
        return None
    got = _JOIN_STARTS.get(lexicon)
    if got is None:
        got = frozenset(w[:i] for t in lexicon for w in (t, t + "s") for i in range(1, len(w)))
        if len(_JOIN_STARTS) >= 8:
            _JOIN_STARTS.clear()
        _JOIN_STARTS[lexicon] = got
    return got


#: the most pieces one fragment join reads as one word ("n u d-e" is spaced letters, see ``collapse_spacing``)
_MAX_PIECES = 4


def join_fragments(
    text: str, lexicon: Collection[str] | None, dictionary: Collection[str] | None = None
) -> tuple[str, bool]:
    """Join adjacent word fragments split by a space or hyphen (a newline is a space by now) when
    together they spell a key term of ``lexicon`` ("na ked", "na-ked" -> "naked"; three or four
    pieces too: "n a ked", "nu-d-i-ty"). Only joins of 5+ letters are made where every piece but
    the longest is at most 3 letters long and not every piece is a real word (3+ letters and in
    ``dictionary``, or a short function word): "his panic" and "a hero in the city" stay as they
    are, and a short join ("an al") is never read into a prompt."""
    dictionary = dictionary or ()
    if not lexicon:
        return text, False
    changed = False

    starts = _join_starts(lexicon)
    # (in ASCII text every word of a run below is a whole letter run of the text: when none of them
    # starts a key term, nothing is joined)
    if starts is not None and text.isascii() and starts.isdisjoint(_LETTER_RUN.findall(text)):
        return text, False

    def fix(m: re.Match) -> str:
        nonlocal changed
        parts = _FRAGMENT_SEP.split(m.group(0))
        words, seps = parts[0::2], parts[1::2]
        if starts is not None and not any(w in starts for w in words[:-1]):
            return m.group(0)  # no word starts a key term: nothing to join
        out: list[str] = []
        k = 0
        while k < len(words):
            if out:
                out.append(seps[k - 1])
            # the longest run of 2-4 pieces from here that spells a key term (the cheap tests first:
            # most pairs are two long words)
            for n in range(min(_MAX_PIECES, len(words) - k), 1, -1):
                pieces = words[k : k + n]
                lengths = sorted(len(x) for x in pieces)
                # (outside ASCII the dictionary knows no word: "सिर में गोली", three whole Hindi words
                # of 3-4 characters, is a phrase, not a split word; a split there leaves 1-2 character pieces)
                if lengths[-2] > (3 if m.group(0).isascii() else 2) or sum(lengths) < 5:
                    continue
                j = "".join(pieces)
                if not _in_lexicon(j, lexicon):
                    continue
                real = sum((len(x) >= 3 and x in dictionary) or x in _SHORT_WORDS for x in pieces)
                if real < n:
                    out.append(j)
                    changed = True
                    k += n
                    break
            else:
                out.append(words[k])
                k += 1
        return "".join(out)

    out = (_FRAGMENTS_ASCII if text.isascii() else _FRAGMENTS).sub(fix, text)
    return out, changed


# ---------------------------------------------------------------- leetspeak

#: the letter each digit or symbol most often stands for
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
#: the other reading of an ambiguous one ("b100dy" is "bloody", "|ewd" is "lewd", "1ngerie" "ingerie")
_LEET_ALT = {"1": "l", "!": "l", "|": "i", "6": "b", "9": "q", "0": "u"}
#: letters drawn with several symbols ("|-|" h, "|\/|" m, "\/\/" w); longest first
_LEET_SEQ = (
    ("|\\/|", "m"),
    ("/\\/\\", "m"),
    ("\\/\\/", "w"),
    ("|-|", "h"),
    ("|\\|", "n"),
    ("/\\/", "n"),
    ("\\/", "v"),
    ("|<", "k"),
    ("|)", "d"),
    ("[)", "d"),
    ("()", "o"),
    ("><", "x"),
)
_LEET_SEQ_RE = re.compile("|".join(re.escape(s) for s, _ in _LEET_SEQ))
_LEET_SEQ_MAP = dict(_LEET_SEQ)
# a token holding at least one character leetspeak uses (the others are left alone without a look)
_LEET_TOKEN = re.compile(r"(?<![^\s,;:])[^\s,;:]*[" + re.escape("".join(_LEET) + "\\/<>[") + r"][^\s,;:]*")
_LEET_CHAR = re.compile(r"[" + re.escape("".join(_LEET) + "\\/<>[") + r"]")
_SPECIAL_TOKEN = re.compile(r"<\|[a-z]+\|>")
# numbers, never leetspeak: "1920s", "35mm", "8k", "4x4", "1080p", "2nd", "f/1.8" (the letter alone), "$100"
_NUMBER = re.compile(
    r"[#~+\-$€£¥]?\d+(?:[.,:/x×\-]\d+)*"
    r"(?:st|nd|rd|th|s|k|m|mm|cm|km|px|p|i|fps|hz|khz|mhz|ghz|kg|g|mg|ml|l|gb|tb|mb|kb|mp|am|pm|yo|mph|kph|ft|in"
    r"|yr|yrs|h|hr|hrs|min|x|d|v|w|kw|hp|cc|bit|%)?"
)
# codes: "mp3", "h264", "ps5", "gpt4", "covid19", "covid-19", "ak-47", "b52", "4x4x4", "r2d2"
_CODE = re.compile(r"[a-z]{1,4}-?\d+[a-z]?|[a-z]+-\d+|\d+[a-z]{1,2}(?:\d+[a-z]?)*|[a-z]\d[a-z]\d")
_DIGIT_WORD = re.compile(r"(\d+)([a-z]{3,})|([a-z]{3,})(\d+)")  # "2girls", "model3"
_LEET_CHARS = "".join(re.escape(c) for c in _LEET)
_LEET_ANY = re.compile(f"[{_LEET_CHARS}]")
_INTERLEAVED = re.compile(rf"[^\W\d_][{_LEET_CHARS}]+[^\W\d_]|[{_LEET_CHARS}][^\W\d_]+[{_LEET_CHARS}]")
#: a longer token is no word in disguise (and is left to the optimised-prompt check)
_MAX_LEET_WORD = 40
#: at most this many readings of one token are tried against the dictionary
_MAX_READINGS = 32


def _readings(core: str) -> list[str]:
    """Letter readings of a leetspeak token, the most likely first: multi-symbol letters folded, then
    every digit/symbol read as its usual letter and, where ambiguous, as its other one."""
    core = _LEET_SEQ_RE.sub(lambda m: _LEET_SEQ_MAP[m.group(0)], core)
    choices = [[_LEET[c], _LEET_ALT[c]] if c in _LEET_ALT else [_LEET.get(c, c)] for c in core]
    n_amb = sum(len(c) > 1 for c in choices)
    if n_amb > 5:  # too many combinations: the usual reading and the all-other reading
        return ["".join(c[0] for c in choices), "".join(c[-1] for c in choices)]
    return ["".join(p) for p in itertools.islice(itertools.product(*choices), _MAX_READINGS)]


def fold_leetspeak(
    text: str, lexicon: Collection[str] | None = None, dictionary: Collection[str] | None = None
) -> tuple[str, bool]:
    """Digits and symbols inside words become the letters they stand for ("n4k3d" -> "naked",
    "p0rn" -> "porn", "$ex" -> "sex", "70pl355" -> "topless", "b100dy" -> "bloody", "|-|ot" -> "hot").

    A token is read as a word when one of its readings is a word of ``dictionary`` (or an inflection)
    or a key term of ``lexicon``; failing that, when letters and digits alternate in it ("d3741l3d")
    or it holds more letters than digits. Numbers and codes are never folded: "1920s", "35mm", "8k",
    "4x4", "2nd", "mp3", "h264", "2girls" (a number and a word), "7175" (no letter at all)."""
    changed = False

    def fix(m: re.Match) -> str:
        nonlocal changed
        tok = m.group(0)
        if _SPECIAL_TOKEN.search(tok):  # "<|endoftext|>" is a (suspicious) token, not leetspeak
            return tok
        core = tok.strip(".!?'\"()[]")
        if not core or len(core) > _MAX_LEET_WORD or (not _LEET_ANY.search(core) and not _LEET_SEQ_RE.search(core)):
            return tok
        letters = sum(c.isalpha() for c in core)
        if letters == 0 or (core[0] == "@" and len(core) > 2):  # no letter at all; an "@handle"
            return tok
        readings = _readings(core)
        # a key term first ("53x" is no magnification), then numbers, then ordinary words
        new_core = next((r for r in readings if _in_lexicon(r, lexicon)), None)
        if new_core is None and _NUMBER.fullmatch(core):
            return tok
        if new_core is None and len(core) >= 3:  # ("a+" is a grade, not "at")
            new_core = next((r for r in readings if is_known(r, dictionary)), None)
        if new_core is None:
            dw = _DIGIT_WORD.fullmatch(core)
            if _CODE.fullmatch(core) or (dw and is_known(dw.group(2) or dw.group(3), dictionary)):
                return tok
            leet = sum(not c.isalpha() for c in core)
            if letters < 2 or not (_INTERLEAVED.search(core) or letters > leet):
                return tok
            new_core = readings[0]
        new = tok.replace(core, new_core)
        if new != tok:
            changed = True
        return new

    if not _LEET_CHAR.search(text):  # (a token the pattern below matches holds one of these)
        return text, False
    out = _LEET_TOKEN.sub(fix, text)
    return out, changed


# ---------------------------------------------------------------- letter spacing

# three or more single letters separated by spaces, dots, dashes, underscores, asterisks or
# middle dots: "n u d e", "n.u.d.e", "n-u-d-e", "n_u_d_e", "n*u*d*e"
_SPACED = re.compile(r"(?<![\w])(?:[^\W\d_][ \t.\-_*·•/\\]{1,3}){2,}[^\W\d_](?![\w])")
_MAX_SEGMENT = 24
_MAX_RUN = 240


def _segment(letters: str, lexicon: Collection[str] | None, dictionary: Collection[str] | None) -> list[str] | None:
    """``letters`` cut into the fewest known words ("asoldierbeaten" -> a soldier beaten), or None when
    no cut into words of ``dictionary``/``lexicon`` (3+ letters) and short function words exists.
    Linear in the run's length (words are at most ``_MAX_SEGMENT`` letters)."""
    n = len(letters)
    if n > _MAX_RUN:
        return None
    best: list[tuple[int, int, int] | None] = [None] * (n + 1)  # (words, -sum of squared lengths, start)
    best[0] = (0, 0, -1)
    for i in range(n):
        if best[i] is None:
            continue
        cw, cs, _ = best[i]
        for j in range(i + 1, min(n, i + _MAX_SEGMENT) + 1):
            w = letters[i:j]
            ok = w in _SHORT_WORDS if len(w) <= 2 else (_in_lexicon(w, lexicon) or is_known(w, dictionary))
            if not ok:
                continue
            cand = (cw + 1, cs - len(w) * len(w), i)
            if best[j] is None or cand < best[j]:
                best[j] = cand
    if best[n] is None:
        return None
    out, j = [], n
    while j > 0:
        i = best[j][2]
        out.append(letters[i:j])
        j = i
    return out[::-1]


def collapse_spacing(
    text: str,
    keep_articles: bool = True,
    lexicon: Collection[str] | None = None,
    dictionary: Collection[str] | None = None,
) -> tuple[str, bool]:
    """Join letters that were spaced or separated to dodge word matching ("n u d e" -> "nude").
    Adjacent spaced words run together ("a s o l d i e r b e a t e n"): with a ``dictionary`` or
    ``lexicon`` the run is cut back into the fewest known words ("a soldier beaten"). Otherwise, with
    ``keep_articles``, a leading "a" or "i" followed by a space stays a word ("a n u d e girl" ->
    "a nude girl"); the screen also tries the other reading ("a n a l" -> "anal")."""
    changed = False

    def fix(m: re.Match) -> str:
        nonlocal changed
        changed = True
        run = m.group(0)
        letters = "".join(c for c in run if c.isalpha())
        if keep_articles and (lexicon or dictionary):
            seg = _segment(letters, lexicon, dictionary)
            if seg is not None:
                return " ".join(seg)
        if keep_articles and run[0] in "ai" and run[1] == " " and len(letters) >= 4:
            return run[0] + " " + letters[1:]
        return letters

    out = _SPACED.sub(fix, text)
    return out, changed


_REPEAT_RUN = re.compile(r"([^\W\d_])\1{2,}")
_REPEAT_WORD = re.compile(r"[^\W\d_]*([^\W\d_])\1{2,}[^\W\d_]*")
_MAX_REPEAT_RUNS = 3


def collapse_repeats(text: str, lexicon: Collection[str] | None) -> tuple[str, bool]:
    """Letters stretched to dodge word matching read back ("naaaked", "nuuuude", "boooobs"): in a word
    with a run of three or more of one letter, each run is read as one or as two of that letter, and
    the word is replaced by the first reading that is a key term of ``lexicon``. Nothing else changes
    ("sooo cute", "zzz" and "brrr" stay), so ordinary elongated words cost nothing."""
    if not lexicon or not _REPEAT_RUN.search(text):
        return text, False
    changed = False

    def fix(m: re.Match) -> str:
        nonlocal changed
        word = m.group(0)
        runs = list(_REPEAT_RUN.finditer(word))
        if len(runs) > _MAX_REPEAT_RUNS:
            return word
        for widths in itertools.product((1, 2), repeat=len(runs)):
            parts, pos = [], 0
            for r, w in zip(runs, widths):
                parts.append(word[pos : r.start()] + r.group(1) * w)
                pos = r.end()
            reading = "".join(parts) + word[pos:]
            if _in_lexicon(reading, lexicon):
                changed = True
                return reading
        return word

    out = _REPEAT_WORD.sub(fix, text)
    return out, changed


#: transforms that undo deliberate obfuscation (as opposed to ordinary normalisation)
OBFUSCATION_TRANSFORMS = (
    "repeats",
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
    """Distinct de-obfuscated variants of an already normalised text, as (name, text) pairs, and the
    list of transforms that fired. ``lexicon``: the policy's single-word key terms, which whole-word
    confusables and fragment joins must spell to be applied; ``dictionary``: ordinary words, never
    joined to each other, and what leetspeak and spaced-out letters are read back into.

    The first pair is the reading of the prompt as a whole (the screen embeds it as "the prompt"): the
    most de-obfuscated text when some obfuscation was undone, so that "a b0wl of p34ch35" is read as
    the bowl of peaches it is, not as gibberish; the plain text when only ordinary accents were
    stripped (a French prompt stays French). The plain text follows, then the other steps; after
    leetspeak, spaced letters or symbols inside words only the de-obfuscated readings are kept (the plain
    text is noise to the sentence model: "pills in a p h a r m a c y" came out near self-harm)."""
    out: list[tuple[str, str]] = [("plain", text)]
    fired: list[str] = []
    seen = {text}
    t = text
    steps = (
        ("diacritics", strip_diacritics),
        ("inner_symbols", lambda x: strip_inner_symbols(x, lexicon, dictionary)),
        ("confusables", lambda x: fold_confusables(x, lexicon)),
        ("spacing", lambda x: collapse_spacing(x, True, lexicon, dictionary)),
        ("leetspeak", lambda x: fold_leetspeak(x, lexicon, dictionary)),
        ("repeats", lambda x: collapse_repeats(x, lexicon)),
        ("fragments", lambda x: join_fragments(x, lexicon, dictionary)),
    )
    before_join = text
    before_spacing = text
    for name, fn in steps:
        if name == "fragments":
            before_join = t
        elif name == "spacing":
            before_spacing = t
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
    joined = None
    if "spacing" in fired:
        # a syllable split the spaced-letter step read as letters ("n a ked" -> "an a ked"): the
        # pieces are joined as they stood too, and when that spells a key term it is the reading
        j, did = join_fragments(before_spacing, lexicon, dictionary)
        if did and j not in seen:
            seen.add(j)
            joined = j
            if "fragments" not in fired:
                fired.append("fragments")
    if len(out) > 1 and out[-1][1] == t and (any(f != "diacritics" for f in fired) or _odd_accents(text, dictionary)):
        out.insert(0, out.pop())
    if _NOISY & set(fired):
        # the obfuscated text itself is noise to a sentence model ("p h a r m a c y", "w34r1ng", "na🍑ked"
        # sit near nothing in particular and near everything a little): only readings without it are
        # kept, and the reading before a split-syllable join (a join may be wrong). Accents alone and joins
        # alone keep the plain text
        out = [out[0]] + (
            [("leetspeak" if "leetspeak" in fired else "spacing", before_join)] if before_join != t else []
        )
    if joined is not None:
        out.insert(0, ("fragments", joined))
    return out, fired


#: transforms whose input is unreadable as text: the plain text is not kept as a view beside them
_NOISY = frozenset({"spacing", "leetspeak", "inner_symbols"})
