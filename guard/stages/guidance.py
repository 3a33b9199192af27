"""Guidance planning: which generated images get negative guidance (ACE / SLD) and the per-call
state the UNet hooks read. A failure here fails closed like any other defence: without it the
editing paths would run unsteered."""

from __future__ import annotations

from guard.stages.base import Request, Stage, Verdict, register_stage


@register_stage
class GuidancePlanStage(Stage):
    """``guidance``: one verdict per prompt (``action`` ``guide`` where its images are steered); the
    state for the denoising loop goes to ``request.guidance``."""

    name = "guidance"

    def enabled(self, request: Request) -> bool:
        return bool(self.policy.guidance.enabled and request.pipe is not None and request.allowed)

    def run(self, request: Request) -> list[Verdict]:
        from guard.guidance import prepare, rows_to_guide

        esc = [request.screened[i].decision == "escalate" or request.input_escalated[i] for i in request.allowed]
        rows = rows_to_guide(self.policy, request.kind, esc, request.images_per_prompt)
        request.guidance = prepare(request.pipe, self.policy, request.kind, rows, request.params)
        verdicts = [Verdict(self.name, i) for i in range(len(request.prompts))]
        if request.guidance is not None:
            k = request.images_per_prompt
            for pos, pi in enumerate(request.allowed):
                if any(rows[pos * k : (pos + 1) * k]):
                    verdicts[pi].action = "guide"
                    verdicts[pi].reasons.append(f"negative guidance ({request.guidance.mode})")
                    verdicts[pi].detail = request.guidance
        return verdicts
