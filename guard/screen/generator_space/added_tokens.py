"""Tokens loaded after the model (textual inversion): what each one stands for, in the encoder's own space.

A textual-inversion token is a word the sentence-model screen has never seen: ``<x>`` reads as
nothing, yet its vector may be exactly that of a forbidden word. For each added token this module
finds the base-vocabulary token whose input embedding is nearest (cosine); at or above
:data:`ALIAS_COSINE` the added token is an *alias* of that word. The generator-space screen then

* acts on an alias of a concept's own word (a word of its phrases, function words aside) with the
  concept's action, and
* screens, besides the prompt itself, the prompt with every alias spelled out as its word.

:func:`needs_generator_space` tells a pipeline to run the generator-space screen even when its policy
did not enable it: it is the only screen that can see what such tokens mean.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from guard.errors import GuardError
from guard.textenc import Encoder, added_tokens, base_vocab_size, pipeline_encoders

logger = logging.getLogger(__name__)

__all__ = ["ALIAS_COSINE", "AddedToken", "AddedTokenIndex", "needs_generator_space"]

#: an added token whose input embedding has at least this cosine with a base-vocabulary token's is
#: treated as that token (random directions in a CLIP embedding space are near 0; a copied or lightly
#: perturbed vector is above 0.95)
ALIAS_COSINE = 0.9

#: words of concept phrases that say nothing about the concept
_FUNCTION_WORDS = frozenset(
    "a an the of and or in on at to with for from by is are was were be been it its this that these those as "
    "no not his her hers their them they he she him we us our you your my me i who whom which what while into "
    "onto over under up down out off very some any all each few more most other such only own same so than too "
    "can will just".split()
)


@dataclass(frozen=True)
class AddedToken:
    """One added token of one tokenizer, and the base-vocabulary token it is nearest to."""

    token: str
    id: int
    encoder: int  # index in the screen's encoders
    nearest: str  # the nearest base token as text (e.g. 'naked')
    nearest_id: int
    cosine: float

    @property
    def alias(self) -> str | None:
        return self.nearest if self.cosine >= ALIAS_COSINE else None


def needs_generator_space(pipe: Any) -> bool:
    """True when a tokenizer of ``pipe`` holds tokens added after loading (textual inversion): the
    generator-space screen must then run whatever the policy says (in its added-token mode)."""
    try:
        encoders = pipeline_encoders(pipe)
    except GuardError:
        return False
    return any(added_tokens(tok) for _, tok in encoders)


def _words(text: str) -> list[str]:
    return re.findall(r"[^\W_]+(?:'[^\W_]+)?", text.casefold())


class AddedTokenIndex:
    """The added tokens of ``encoders`` with their nearest base tokens, and which concept words they
    alias. Built once per tokenizer state (see :func:`~.fingerprint.encoders_state`)."""

    def __init__(self, encoders: Sequence[Encoder], concept_phrases: Sequence[Sequence[str]]):
        import torch

        self.tokens: dict[str, list[AddedToken]] = {}
        self._concept_words: list[dict[int, dict[int, str]]] = []  # encoder -> {token id: {concept: word}}
        for e, (te, tok) in enumerate(encoders):
            added = added_tokens(tok)
            words: dict[int, dict[int, str]] = {}
            if added:
                weight = te.get_input_embeddings().weight.detach().to("cpu", torch.float32)
                base = base_vocab_size(tok)
                unit = torch.nn.functional.normalize(weight[:base], dim=1)
                for token, tid in added.items():
                    if tid >= weight.shape[0]:
                        raise GuardError(
                            f"added token {token!r} has id {tid} but the text encoder has only "
                            f"{weight.shape[0]} embedding rows (load_textual_inversion was not "
                            "given this pipeline's text encoder?)"
                        )
                    v = torch.nn.functional.normalize(weight[tid : tid + 1], dim=1)[0]
                    cos = unit @ v
                    j = int(torch.argmax(cos))
                    text = tok.convert_tokens_to_string([tok.convert_ids_to_tokens(j)]).strip()
                    self.tokens.setdefault(token, []).append(AddedToken(token, tid, e, text, j, float(cos[j])))
                for ci, phrases in enumerate(concept_phrases):
                    for phrase in phrases:
                        for w in _words(phrase):
                            if w in _FUNCTION_WORDS:
                                continue
                            ids = tok(w, add_special_tokens=False).input_ids
                            if len(ids) == 1:
                                words.setdefault(int(ids[0]), {}).setdefault(ci, w)
            self._concept_words.append(words)
        self._by_fold = {t.casefold(): t for t in self.tokens}
        self._pattern = (
            re.compile("|".join(re.escape(t) for t in sorted(self.tokens, key=len, reverse=True)), re.IGNORECASE)
            if self.tokens
            else None
        )

    def __bool__(self) -> bool:
        return bool(self.tokens)

    def found_in(self, text: str) -> list[str]:
        """The added tokens that occur in ``text`` (longest match first, each once, in order)."""
        if self._pattern is None:
            return []
        seen: dict[str, None] = {}
        for m in self._pattern.finditer(text):
            seen.setdefault(self._by_fold[m.group(0).casefold()])
        return list(seen)

    def alias_view(self, text: str) -> str | None:
        """``text`` with every added token that aliases a base token spelled as that token's text;
        None when no token in it is an alias."""
        if self._pattern is None:
            return None
        changed = False

        def sub(m: re.Match) -> str:
            nonlocal changed
            alias = next((a.alias for a in self.tokens[self._by_fold[m.group(0).casefold()]] if a.alias), None)
            if alias is None:
                return m.group(0)
            changed = True
            return f" {alias} "

        out = " ".join(self._pattern.sub(sub, text).split())
        return out if changed else None

    def concept_hits(self, tokens: Sequence[str]) -> list[tuple[int, AddedToken, str]]:
        """``(concept index, added token, word)`` for each of ``tokens`` that aliases a word of a
        concept's phrases; once per (token, concept), whichever encoders see it (the closest one)."""
        best: dict[tuple[str, int], tuple[int, AddedToken, str]] = {}
        for t in tokens:
            for a in self.tokens.get(t, []):
                if a.alias is None:
                    continue
                for ci, word in self._concept_words[a.encoder].get(a.nearest_id, {}).items():
                    key = (t, ci)
                    if key not in best or a.cosine > best[key][1].cosine:
                        best[key] = (ci, a, word)
        return list(best.values())
