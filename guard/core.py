"""``Guard``: one policy's defences bundled, and the one runner that applies them to a request.

:meth:`Guard.run` runs the stages of :mod:`guard.stages` over a :class:`~guard.stages.Request` —
prompt screen, generator-space screen, input-image check, then (when the caller generates) guidance
planning, the caller's generation, the output check — and

* applies the fail-closed rule once, in :meth:`Guard.run_stage`: a stage that raises blocks what it
  covers (or lets it through with the error in the report under ``fail_open: true``);
* writes exactly one audit line per image whatever fails — a stage, the audit sink, or the generation
  itself (whose error is re-raised after the lines are written).

Guarded pipelines, the CLI and the HTTP server all call it, so each gets the same defences.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from guard.audit import AuditLog, redact, utc_now
from guard.errors import GuardBlocked, GuardError, GuardInputError
from guard.policy import PolicySource, load_policy
from guard.report import GuardReport, ImageReport, OutputVerdict
from guard.stages import PRE_STAGES, Request, Stage, Verdict, get_stage

logger = logging.getLogger(__name__)

#: the report's ``timings_ms`` key of each built-in stage (kept from earlier reports)
_TIMING = {"prompt_screen": "screen", "input_images": "input_check"}
#: how a failed stage is named in errors
_LABEL = {
    "prompt_screen": "prompt screen",
    "generator_space": "generator-space screen",
    "input_images": "input-image check",
    "guidance": "negative guidance planning",
    "output_check": "output check",
}
_RANK = {"allow": 0, "escalate": 1, "block": 2}


def _short_error(e: BaseException) -> str:
    frame = traceback.extract_tb(e.__traceback__)[-1] if e.__traceback__ else None
    where = f" at {frame.filename.rsplit('/', 1)[-1]}:{frame.lineno}" if frame else ""
    return f"{type(e).__name__}: {e}{where}"


def default_audit_path() -> Path:
    """Where audit lines go when the policy names no path: ``$GUARD_AUDIT_LOG``, else
    ``$XDG_STATE_HOME/guard/audit.jsonl`` (``~/.local/state/guard/audit.jsonl``)."""
    env = os.environ.get("GUARD_AUDIT_LOG")
    if env:
        return Path(os.path.expanduser(env))
    state = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(state) / "guard" / "audit.jsonl"


def _check_prompts(prompts: Any, where: str) -> list[str]:
    from guard.screen.screen import validate_prompts

    try:
        return validate_prompts(prompts)
    except GuardInputError as e:
        raise GuardInputError(f"{where}: {e}") from None


def _blank_screen(i: int, reason: str, decision: str = "allow"):
    from guard.screen.screen import ScreenResult

    return ScreenResult(i, decision, None, None, None, 0.0, None, reasons=[reason])


class Guard:
    """The defences of one policy. Heavy parts (sentence model, FAISS index, ONNX sessions) load on
    first use and are shared process-wide between guards with the same policy."""

    def __init__(self, policy: PolicySource = "default"):
        self.policy = load_policy(policy)
        self.policy_sha256 = self.policy.sha256
        self._screen = None
        self._checker = None
        self._stages: dict[str, Stage] = {}
        #: the stages run before denoising, in order (see :meth:`add_stage`)
        self.pre_stages: list[str] = list(PRE_STAGES)
        self._lock = threading.Lock()
        a = self.policy.audit
        if getattr(a, "enabled", True):
            self.audit: AuditLog | None = AuditLog(a.path or default_audit_path(), a.store_prompts)
        else:
            self.audit = None

    # ------------------------------------------------------------------ parts

    @property
    def screen(self):
        if self._screen is None:
            with self._lock:
                if self._screen is None:
                    from guard.screen.screen import get_screen

                    self._screen = get_screen(self.policy)
        return self._screen

    @property
    def checker(self):
        if self._checker is None:
            with self._lock:
                if self._checker is None:
                    from guard.output.check import OutputChecker

                    base = self.policy.base_path if (self.policy.source or self.policy.base_dir) else None
                    self._checker = OutputChecker(
                        self.policy.output, base_dir=base, input_action=self.policy.input_images.action
                    )
        return self._checker

    @property
    def output_check_enabled(self) -> bool:
        o = self.policy.output
        return bool(o.enabled and o.classifiers)

    def warmup(self) -> Guard:
        """Load the screen model, build the index and the classifiers now rather than on first call; the
        multilingual encoder of non-English prompts starts loading in the background."""
        if self.policy.screen.enabled:
            ml = getattr(self.screen, "multilingual", None)
            if ml is not None and not ml.loaded:  # (else the first non-English prompt would load it)
                ml.warm_in_background()
        if self.output_check_enabled:
            _ = self.checker
        return self

    def stage(self, name: str) -> Stage:
        """This guard's instance of the stage registered as ``name``."""
        st = self._stages.get(name)
        if st is None:
            st = self._stages[name] = get_stage(name)(self)
        return st

    def add_stage(self, name: str, *, before: str | None = None) -> Guard:
        """Run the registered stage ``name`` before denoising on every request of this guard (after the
        built-in ones, or before the stage ``before``). Its verdicts may raise a prompt's decision, never
        lower it; its failures fail closed like every other stage's."""
        cls = get_stage(name)
        if cls.over != "prompts":
            raise GuardError(
                f"add_stage: stage {name!r} is over {cls.over}; only prompt stages run before "
                "denoising (image classifiers belong in the output check's classifier registry)"
            )
        if before is not None and before not in self.pre_stages:
            raise GuardError(f"add_stage: no stage {before!r} to insert before; have {', '.join(self.pre_stages)}")
        if name in self.pre_stages:
            self.pre_stages.remove(name)
        at = self.pre_stages.index(before) if before is not None else len(self.pre_stages)
        self.pre_stages.insert(at, name)
        return self

    # ------------------------------------------------------------------ one stage, fail-closed once

    def new_report(self, pipeline: str) -> GuardReport:
        return GuardReport(
            request_id=uuid.uuid4().hex,
            policy_name=self.policy.name,
            policy_sha256=self.policy_sha256,
            pipeline=pipeline,
        )

    def run_stage(self, name: str, request: Request) -> list[Verdict] | None:
        """Run one stage on ``request`` (None when the stage is not enabled for it). A stage that
        raises is replaced by its fail-closed verdicts (fail-open under ``fail_open: true``), the error
        goes into the report; :class:`GuardInputError` about the caller's own inputs propagates."""
        st = self.stage(name)
        if not st.enabled(request):
            return None
        report = request.report
        t0 = time.perf_counter()
        try:
            verdicts = st.run(request)
            if len(verdicts) != st.size(request):
                raise GuardError(f"stage {name!r} returned {len(verdicts)} verdicts for {st.size(request)} items")
        except GuardInputError:
            if st.over == "prompts":
                raise
            verdicts = self._stage_failed(st, request, *_exc_info())
        except Exception:
            verdicts = self._stage_failed(st, request, *_exc_info())
        request.verdicts[name] = verdicts
        if report is not None:
            key = _TIMING.get(name, name)
            report.timings_ms[key] = report.timings_ms.get(key, 0.0) + (time.perf_counter() - t0) * 1000
        return verdicts

    def _stage_failed(self, st: Stage, request: Request, e: BaseException) -> list[Verdict]:
        msg = f"{_LABEL.get(st.name, st.name)} failed: {_short_error(e)}"
        # the application log gets the prompts as digests (the report, for the caller, keeps the text)
        logger.error(msg if self.audit is not None and self.audit.store_prompts else redact(msg, request.prompts))
        if request.report is not None:
            request.report.errors.append(msg)
        return st.on_error(request, msg, bool(self.policy.fail_open))

    # ------------------------------------------------------------------ kept entry points

    def screen_prompts(self, prompts: Sequence[str], report: GuardReport | None = None) -> list[Any]:
        """Screen prompts (a :class:`~guard.screen.screen.ScreenResult` each). If the screen fails,
        every prompt is blocked (or allowed under ``fail_open: true``), and the error is in the report."""
        prompts = _check_prompts(prompts, "Guard.screen_prompts")
        req = Request(prompts=prompts, report=report)
        verdicts = self.run_stage("prompt_screen", req)
        if verdicts is None:
            return [_blank_screen(i, "screen disabled by policy") for i in range(len(prompts))]
        return [
            v.detail if v.detail is not None else _blank_screen(v.index, v.reasons[0], v.decision) for v in verdicts
        ]

    def check_images(self, images: Sequence[Any], report: GuardReport | None = None) -> list[OutputVerdict]:
        """Run the output classifiers on images (PIL, HWC arrays, CHW tensors). If they fail, every
        image is blanked (or passed with a note under ``fail_open: true``)."""
        if isinstance(images, (str, bytes)) or not isinstance(images, Sequence):
            raise GuardInputError(f"Guard.check_images: images must be a list, got {type(images).__name__}")
        req = Request(prompts=[], report=report, generated=list(images))
        verdicts = self.run_stage("output_check", req)
        if verdicts is None:
            return [OutputVerdict() for _ in images]
        return [v.detail for v in verdicts]

    # ------------------------------------------------------------------ the runner

    def run(self, request: Request, generate: Callable[[Request], None] | None = None) -> Request:
        """Run every stage on ``request``; ``generate(request)`` (optional) must fill
        ``request.generated`` (one image per allowed prompt and image, prompt-major) and may fill
        ``request.parent_nsfw``. Afterwards ``request.report`` holds one ImageReport per image and the
        audit log one line per image. Raises :class:`GuardBlocked` under ``on_block: raise``, and
        re-raises the generation's own errors (after auditing them)."""
        if not isinstance(request, Request):
            raise GuardInputError(f"Guard.run expects a guard.stages.Request, got {type(request).__name__}")
        if not request.prompts:
            raise GuardInputError("Guard.run: the request has no prompts")
        for i, p in enumerate(request.prompts):
            if p is not None and not isinstance(p, str):
                raise GuardInputError(f"Guard.run: prompts[{i}] must be a string or None, got {type(p).__name__}")
        t_start = time.perf_counter()
        if request.report is None:
            request.report = self.new_report(request.pipeline)
        report = request.report
        if request.pipe is not None and not report.erasers:
            from guard.erase.wiring import report_entries

            report.erasers = report_entries(request.pipe)
        try:
            self._run(request, generate)
        except GuardBlocked:
            raise
        except BaseException as e:
            msg = f"request failed: {_short_error(e)}"
            if not any(_short_error(e) in x for x in report.errors):
                report.errors.append(msg)
            self._finish_report(request, error=msg)
            raise
        finally:
            report.timings_ms["total"] = (time.perf_counter() - t_start) * 1000
            self.write_audit(report, request.prompts)
        return request

    def _run(self, req: Request, generate) -> None:
        report = req.report
        n = len(req.prompts)
        req.screened = [_blank_screen(i, "screen disabled by policy") for i in range(n)]
        req.input_escalated = [False] * n
        errors = req.prompt_errors
        for name in self.pre_stages:
            verdicts = self.run_stage(name, req)
            if verdicts is not None:
                self._fold(req, name, verdicts, errors)
        req.allowed = [i for i, s in enumerate(req.screened) if s.decision != "block"]
        blocked = [i for i, s in enumerate(req.screened) if s.decision == "block"]
        if blocked and self.policy.on_block == "raise":
            self._finish_report(req)
            first = req.screened[blocked[0]]
            raise GuardBlocked(
                f"prompt {blocked[0]} blocked by policy {self.policy.name!r}: "
                + (first.reasons[0] if first.reasons else "blocked"),
                report,
            )
        if generate is None or not req.allowed:
            self._finish_report(req)
            return
        plan = self.run_stage("guidance", req)
        if plan is not None:
            failed = [v for v in plan if v.error]
            if failed and not self.policy.fail_open:  # unsteered generation would drop a defence
                for i in req.allowed:
                    s = req.screened[i]
                    s.decision = "block"
                    s.reasons.insert(0, failed[0].reasons[0])
                    errors[i] = failed[0].error
                req.allowed = []
                req.guidance = None
            elif failed:
                req.guidance = None
                for i in req.allowed:
                    errors.setdefault(i, failed[0].error)
        if not req.allowed:
            self._finish_report(req)
            return
        from guard.guidance import guidance_active

        t0 = time.perf_counter()
        try:
            with guidance_active(req.guidance):
                generate(req)
        except BaseException as e:
            report.errors.append(f"generation failed: {_short_error(e)}")
            raise
        report.timings_ms["generate"] = (time.perf_counter() - t0) * 1000
        expected = len(req.allowed) * req.images_per_prompt
        if len(req.generated) != expected:
            raise GuardError(f"generation returned {len(req.generated)} images for {expected}")
        if not req.parent_nsfw:
            req.parent_nsfw = [False] * expected
        outs = self.run_stage("output_check", req)
        st = req.guidance
        if st is not None and getattr(st, "error", None):  # a guidance hook failed during denoising
            outs = self._guidance_failed(req, st.error, outs)
        if outs is not None:
            from guard.output.check import apply_action

            for k, v in enumerate(outs):
                req.generated[k] = apply_action(req.generated[k], v.detail, latent=req.output_latent)
                v.action = v.detail.action
        self._finish_report(req)

    def _guidance_failed(self, req: Request, msg: str, outs: list[Verdict] | None) -> list[Verdict]:
        """The images were denoised without (some of) their guidance: blank them all (fail closed) or
        keep them with the error in the report (``fail_open: true``)."""
        logger.error(msg)
        req.report.errors.append(msg)
        for i in req.allowed:
            req.prompt_errors.setdefault(i, msg)
        if self.policy.fail_open:
            return outs if outs is not None else []
        stage = self.stage("output_check")
        failed = stage.on_error(req, msg, False)
        req.verdicts["output_check"] = failed
        return failed

    def _fold(self, req: Request, name: str, verdicts: list[Verdict], errors: dict[int, str]) -> None:
        """Combine a prompt stage's verdicts into the per-prompt ScreenResults (a later stage may raise a
        decision, never lower it)."""
        from guard.screen.screen import ConceptScore

        for v in verdicts:
            i = v.index
            if v.error:
                errors.setdefault(i, v.error)
            if name == "prompt_screen":
                req.screened[i] = v.detail if v.detail is not None else _blank_screen(i, v.reasons[0], v.decision)
                continue
            s = req.screened[i]
            if name == "input_images":
                if v.decision == "escalate" and not v.error:
                    req.input_escalated[i] = True
                if v.decision == "block":
                    s.reasons[:0] = v.reasons
                else:
                    s.reasons.extend(v.reasons)
            elif v.decision != "allow":
                d = v.detail
                if d is not None and v.concept is not None and v.error is None:
                    s.matches.append(
                        ConceptScore(
                            v.concept, v.category, v.decision, v.score, v.threshold, getattr(d, "phrase", None), name
                        )
                    )
                if v.decision == "block" and v.error:
                    s.reasons[:0] = v.reasons[:1]
                else:
                    s.reasons.extend(v.reasons[:1])
            if _RANK.get(v.decision, 0) > _RANK.get(s.decision, 0):
                s.decision = v.decision
                if v.concept is not None:
                    s.concept, s.category, s.score, s.threshold = v.concept, v.category, v.score, v.threshold
                    s.phrase = getattr(v.detail, "phrase", s.phrase)

    def _finish_report(self, req: Request, error: str | None = None) -> None:
        """One ImageReport per image (prompt-major), from what the stages decided."""
        from guard.output.labels import BLOCKING_ACTIONS

        report = req.report
        report.images = []
        nipp = req.images_per_prompt
        pos = {p: k for k, p in enumerate(req.allowed)} if req.generated else {}
        outs = req.verdicts.get("output_check") if req.generated else None
        plan = req.verdicts.get("guidance")
        errors = req.prompt_errors
        idx = 0
        for pi in range(len(req.prompts)):
            s = req.screened[pi] if pi < len(req.screened) else _blank_screen(pi, "not screened")
            for _ in range(nipp):
                err = error or errors.get(pi)
                if error is not None:
                    im = ImageReport(idx, pi, s, None, "blocked", "error", "blank", [error], error=error)
                elif pi not in req.allowed:
                    by = "error" if err is not None and s.decision == "block" else "screen"
                    im = ImageReport(idx, pi, s, None, "blocked", by, "blank", list(s.reasons[:1]), error=err)
                elif pi not in pos:  # screened only (no generation in this request): the screen's word
                    reasons = (
                        ["prompt escalated: " + (s.reasons[0] if s.reasons else "")] if s.decision == "escalate" else []
                    )
                    im = ImageReport(idx, pi, s, None, "allowed", None, "none", reasons, error=err)
                else:
                    k = pos[pi] * nipp + (idx - pi * nipp)
                    ov = outs[k] if outs is not None else None
                    v: OutputVerdict = ov.detail if ov is not None else OutputVerdict()  # not run: no scores
                    if ov is not None and ov.error:
                        err = err or ov.error
                    reasons = []
                    if s.decision == "escalate":
                        reasons.append("prompt escalated: " + (s.reasons[0] if s.reasons else ""))
                    if plan is not None and plan[pi].action == "guide":
                        reasons.append(plan[pi].reasons[0])
                    nsfw = bool(req.parent_nsfw[k]) if k < len(req.parent_nsfw) else False
                    if nsfw:
                        reasons.append("the pipeline's own safety checker flagged the image")
                    if v is not None and v.is_flagged:
                        reasons.extend(v.flagged)
                        blocked = v.action in BLOCKING_ACTIONS
                        by = ("error" if ov.error else "output") if blocked else None
                        im = ImageReport(
                            idx,
                            pi,
                            s,
                            v,
                            "blocked" if blocked else "flagged",
                            by if blocked else "output",
                            v.action,
                            reasons,
                            error=err,
                        )
                    else:
                        im = ImageReport(
                            idx, pi, s, v, "flagged" if nsfw else "allowed", None, "none", reasons, error=err
                        )
                report.images.append(im)
                idx += 1

    # ------------------------------------------------------------------ audit

    def write_audit(self, report: GuardReport, prompts: Sequence[str | None]) -> None:
        """One JSON line per image of the report. If the log cannot be written and the policy is
        fail-closed, raises :class:`GuardError` (an unaudited request must not go out); the lines that
        could not be written are logged at ERROR level so they are not lost."""
        if self.audit is None:
            return
        store = self.audit.store_prompts
        now = utc_now()
        events = []
        for im in report.images:
            prompt = prompts[im.prompt_index] if 0 <= im.prompt_index < len(prompts) else None
            ev: dict[str, Any] = {
                "time": now,
                "request_id": report.request_id,
                "image_index": im.index,
                "prompt_index": im.prompt_index,
                "policy": {"name": report.policy_name, "sha256": report.policy_sha256},
                "pipeline": report.pipeline,
            }
            if report.erasers:
                ev["erasers"] = [
                    {k: er[k] for k in ("path", "method", "concepts", "strength", "fingerprint")}
                    for er in report.erasers
                ]
            ev.update(self.audit.prompt_field(prompt))
            ev["decision"] = im.decision
            ev["blocked_by"] = im.blocked_by
            ev["action"] = im.action
            s = im.screen
            ev["screen"] = (
                None
                if s is None
                else {
                    "decision": s.decision,
                    "category": s.category,
                    "concept": s.concept,
                    "score": round(float(s.score), 4),
                    "threshold": None if s.threshold is None else round(float(s.threshold), 4),
                    "transforms": s.transforms,
                }
            )
            o = im.output
            ev["output"] = (
                None
                if o is None
                else {
                    "flagged": o.flagged,
                    "action": o.action,
                    "categories": getattr(o, "categories", None) or {},  # category -> classifier, label, score
                    "scores": {
                        k: {lab: round(float(v), 4) for lab, v in d.items() if v >= 0.01} for k, d in o.scores.items()
                    },
                }
            )
            ev["timings_ms"] = {k: round(v, 3) for k, v in report.timings_ms.items()}
            if im.error:
                ev["error"] = im.error if store else redact(im.error, prompts)
            if report.errors:
                ev["errors"] = list(report.errors) if store else [redact(e, prompts) for e in report.errors]
            events.append(ev)
        try:
            self.audit.write(events)
        except Exception as e:
            logger.error("audit log %s not written (%s); the lines: %s", self.audit.path, e, events)
            if not self.policy.fail_open:
                raise GuardError(f"the request was refused because its audit lines were not written: {e}") from e
            report.errors.append(f"audit log not written: {e}")


def _exc_info() -> tuple[BaseException]:
    import sys

    return (sys.exc_info()[1],)
