"""Lexical-layer coverage per language: does a key term of the policy match each translated row of the corpus?

    python benchmarks/lexical_coverage.py [--policy default] [--lang ko,ar,hi] [--misses]
                                          [--extra benchmarks/proposed_lexicon_terms.yaml]

For every translated (and English explicit) corpus row the prompt is normalised and de-obfuscated as the
screen does it, and matched by the lexical layer alone (no sentence model). A row without a hit of its own
category is a miss, and each miss is put in one of three classes, so that a bank gap is told apart from a
matching or normalisation failure:

- ``normalisation``: some key term of the row's category occurs in the raw text (casefolded, NFC) but not
  after normalisation: the normaliser damaged the text (stripped marks that carry letters, broke a script);
- ``inflection``: a key term of the category is a prefix or stem of a word of the row (or the other way round),
  but the word was not matched: the matcher does not read this language's endings or clitics;
- ``no term``: nothing in the banks comes near: a bank term is missing.

``--extra`` adds the terms of a YAML file in the lexicon's ``amend:`` format to the policy's concepts (to
measure proposed bank terms before they are added). Rates are printed for all rows and for the evaluation
split alone. The last line is ``RESULT key=value ...`` with the lexical hit rate per language.
"""

from __future__ import annotations

import argparse
import re
import unicodedata
from collections import defaultdict

import yaml

from guard.policy import load_policy
from guard.screen.corpus_build import load as load_corpus
from guard.screen.embedder import resolve_model_path
from guard.screen.lexical import LexicalMatcher, _canon
from guard.screen.normalize import normalize, variants

_WORDS = re.compile(r"[^\W_]+", re.UNICODE)


def _vocab() -> set[str]:
    try:
        f = resolve_model_path("all-MiniLM-L6-v2") / "vocab.txt"
        return {w for w in f.read_text(encoding="utf-8").splitlines() if w.isalpha() and not w.startswith("##")}
    except Exception:  # no model here: fuzzy matching is then less strict, coverage still meaningful
        return set()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--policy", default="default")
    ap.add_argument("--lang", default=None, help="comma-separated languages (default: all)")
    ap.add_argument("--misses", action="store_true", help="print every missed row with its class")
    ap.add_argument("--extra", default=None, help="YAML file with an amend: list of extra terms per concept id")
    args = ap.parse_args(argv)
    policy = load_policy(args.policy)
    concepts = [c for c in policy.concepts if c.action != "allow"]
    extra: dict[str, list[str]] = defaultdict(list)
    if args.extra:
        with open(args.extra, encoding="utf-8") as f:
            for e in yaml.safe_load(f).get("amend", []):
                extra[e["id"]].extend(str(t) for t in e.get("terms", []))
        unknown = set(extra) - {c.id for c in concepts}
        if unknown:
            raise SystemExit(f"{args.extra}: no such concept in policy {args.policy}: {', '.join(sorted(unknown))}")
    matcher = LexicalMatcher([list(c.terms) + extra[c.id] for c in concepts], _vocab())
    cat_terms: dict[str, set[str]] = defaultdict(set)
    for c in concepts:
        for t in list(c.terms) + extra[c.id]:
            if not t.startswith("!"):
                cat_terms[c.category].add(_canon(t))
    langs = set(args.lang.split(",")) if args.lang else None
    rows = [
        r
        for r in load_corpus()
        if r["kind"] in ("translated", "explicit") and r["label"] != "benign" and (langs is None or r["lang"] in langs)
    ]
    per: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0, 0, 0, 0, 0])
    # n, hit, norm, infl, none, any blocking hit, eval n, eval hit
    missed: list[tuple[str, str, str, str]] = []
    for r in rows:
        raw = unicodedata.normalize("NFC", r["text"]).casefold()
        n = normalize(r["text"])
        vs, _ = variants(n.text, matcher.words, matcher.dictionary)
        hits = matcher.match([t for _, t in vs])
        cats = {concepts[ci].category for ci in hits}
        s = per[r["lang"]]
        s[0] += 1
        s[5] += any(concepts[ci].action == "block" and hits[ci].exact for ci in hits)
        s[6] += r["split"] == "eval"
        if r["label"] in cats:
            s[1] += 1
            s[7] += r["split"] == "eval"
            continue
        terms = cat_terms[r["label"]]
        words = _WORDS.findall(_canon(r["text"]))
        why = "no term"
        if any(t in raw and t not in n.text and len(t) >= 2 for t in terms):
            why = "normalisation"
            s[2] += 1
        elif any(
            len(t) >= 3
            and " " not in t
            and (w.startswith(t[: max(3, len(t) - 2)]) or t.startswith(w[: max(3, len(w) - 2)]))
            for w in words
            if len(w) >= 3
            for t in terms
        ):
            why = "inflection"
            s[3] += 1
        else:
            s[4] += 1
        missed.append((r["lang"], r["label"], why, r["text"]))
    print(
        f"{'lang':6s} {'rows':>5s} {'hit %':>7s} {'eval hit %':>11s} {'any block-term %':>17s} "
        f"{'norm':>5s} {'infl':>5s} {'no term':>8s}"
    )
    for lang in sorted(per):
        n, h, a, b, c, anyb, en, eh = per[lang]
        ev = f"{100 * eh / en:11.1f}" if en else f"{'-':>11s}"
        print(f"{lang:6s} {n:5d} {100 * h / n:7.1f} {ev} {100 * anyb / n:17.1f} {a:5d} {b:5d} {c:8d}")
    if args.misses:
        seen = set()
        for lang, label, why, text in missed:
            base = text.split(",")[0]
            if (lang, base) in seen:
                continue
            seen.add((lang, base))
            print(f"  {lang} {label:9s} {why:13s} {base}")
    print("\nRESULT " + " ".join(f"lex_hit_{lang}={100 * per[lang][1] / per[lang][0]:.1f}" for lang in sorted(per)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
