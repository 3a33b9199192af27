"""Prompt stages: the text screen (sentence embeddings + FAISS over the policy's concept banks) and
the generator-space screen (the pipeline's own text encoder, a second opinion that may only raise a
decision)."""

from __future__ import annotations

from guard.stages.base import Request, Stage, Verdict, register_stage


def _verdict_from(stage: str, i: int, r) -> Verdict:
    """A Verdict over a screen result object (decision/concept/category/score/threshold/reasons)."""
    return Verdict(
        stage,
        i,
        r.decision,
        category=r.category,
        concept=r.concept,
        score=None if r.score is None else float(r.score),
        threshold=r.threshold,
        reasons=list(r.reasons),
        detail=r,
    )


@register_stage
class PromptScreenStage(Stage):
    """``screen``: every prompt against the policy's concepts; ``detail`` is the ScreenResult."""

    name = "prompt_screen"

    def enabled(self, request: Request) -> bool:
        return bool(self.policy.screen.enabled) and any(p is not None for p in request.prompts)

    def run(self, request: Request) -> list[Verdict]:
        results = self.guard.screen.screen_batch(request.texts)
        return [_verdict_from(self.name, i, r) for i, r in enumerate(results)]


@register_stage
class GeneratorSpaceStage(Stage):
    """``screen.generator_space``: the prompt scored in the generator's text-encoder space (needs the
    pipeline). Its ``detail`` is the generator-space result (with ``phrase``)."""

    name = "generator_space"

    def enabled(self, request: Request) -> bool:
        s = self.policy.screen
        if not (s.enabled and request.pipe is not None and any(p is not None for p in request.prompts)):
            return False
        if s.generator_space.enabled:
            return True
        # tokens added after loading (textual inversion) are invisible to the text screen: their vectors
        # are only seen in the generator's own space, so this stage runs by default then
        from guard.screen.generator_space import needs_generator_space

        return needs_generator_space(request.pipe)

    def run(self, request: Request) -> list[Verdict]:
        from guard.screen.generator_space import get_generator_space_screen

        results = get_generator_space_screen(request.pipe, self.policy).screen_batch(request.texts)
        return [_verdict_from(self.name, i, r) for i, r in enumerate(results)]
