"""``Guard``: one policy's defences bundled — prompt screen, output check, audit log — with the
fail-closed rule applied in one place. Pipelines use it; so can a server that has no pipeline.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from typing import Any, Sequence

from guard.audit import AuditLog, utc_now
from guard.errors import GuardInputError
from guard.policy import PolicySource, load_policy
from guard.report import GuardReport, OutputVerdict
from guard.screen.screen import ScreenResult, validate_prompts

logger = logging.getLogger("guard")


def _short_error(e: BaseException) -> str:
    frame = traceback.extract_tb(e.__traceback__)[-1] if e.__traceback__ else None
    where = f" at {frame.filename.rsplit('/', 1)[-1]}:{frame.lineno}" if frame else ""
    return f"{type(e).__name__}: {e}{where}"


class Guard:
    """The defences of one policy. Heavy parts (sentence model, FAISS index, ONNX sessions) load on
    first use and are shared process-wide between guards with the same policy."""

    def __init__(self, policy: PolicySource = "default"):
        self.policy = load_policy(policy)
        self.policy_sha256 = self.policy.sha256
        self._screen = None
        self._checker = None
        self._lock = threading.Lock()
        a = self.policy.audit
        self.audit = AuditLog(a.path, a.store_prompts) if a.path else None

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

                    from pathlib import Path

                    base = Path(self.policy.source).parent if self.policy.source else None
                    self._checker = OutputChecker(self.policy.output, base_dir=base)
        return self._checker

    @property
    def output_check_enabled(self) -> bool:
        o = self.policy.output
        return bool(o.enabled and o.classifiers)

    def warmup(self) -> "Guard":
        """Load the screen model, build the index and the classifiers now rather than on first call."""
        if self.policy.screen.enabled:
            _ = self.screen
        if self.output_check_enabled:
            _ = self.checker
        return self

    # ------------------------------------------------------------------ stages

    def new_report(self, pipeline: str) -> GuardReport:
        import uuid

        return GuardReport(request_id=uuid.uuid4().hex, policy_name=self.policy.name,
                           policy_sha256=self.policy_sha256, pipeline=pipeline)

    def screen_prompts(self, prompts: Sequence[str], report: GuardReport | None = None) -> list[ScreenResult]:
        """Screen prompts. If the screen fails, every prompt is blocked (or allowed when the policy
        says ``fail_open: true``), and the error is put in the report."""
        prompts = validate_prompts(prompts)  # bad input is the caller's error: raised, never failed open
        if not self.policy.screen.enabled:
            return [ScreenResult(i, "allow", None, None, None, 0.0, None, reasons=["screen disabled by policy"])
                    for i in range(len(prompts))]
        t0 = time.perf_counter()
        try:
            results = self.screen.screen_batch(prompts)
        except GuardInputError:
            raise
        except Exception as e:  # a defence failed: fail closed unless the policy says otherwise
            msg = f"prompt screen failed: {_short_error(e)}"
            logger.error(msg)
            decision = "allow" if self.policy.fail_open else "block"
            rule = "fail_open: true" if self.policy.fail_open else "fail closed"
            if report is not None:
                report.errors.append(msg)
            results = [ScreenResult(i, decision, None, None, None, 0.0, None,
                                    reasons=[f"{msg} ({rule})"]) for i in range(len(prompts))]
        if report is not None:
            report.timings_ms["screen"] = (time.perf_counter() - t0) * 1000
        return results

    def check_images(self, images: Sequence[Any], report: GuardReport | None = None) -> list[OutputVerdict]:
        """Run the output classifiers. If they fail, every image is blanked (or passed with a note
        when the policy says ``fail_open: true``)."""
        if not self.output_check_enabled or not images:
            return [OutputVerdict() for _ in images]
        t0 = time.perf_counter()
        try:
            verdicts = self.checker.check(images)
        except Exception as e:
            msg = f"output check failed: {_short_error(e)}"
            logger.error(msg)
            if report is not None:
                report.errors.append(msg)
            if self.policy.fail_open:
                verdicts = [OutputVerdict(action="none") for _ in images]
            else:
                verdicts = [OutputVerdict(flagged=[f"error: {msg} (fail closed)"], action="blank")
                            for _ in images]
        if report is not None:
            report.timings_ms["output_check"] = report.timings_ms.get("output_check", 0.0) + (
                time.perf_counter() - t0) * 1000
        return verdicts

    def write_audit(self, report: GuardReport, prompts: Sequence[str | None]) -> None:
        """One JSON line per image of the report. Raises if the log cannot be written and the
        policy is fail-closed (an unaudited request must not go out)."""
        if self.audit is None:
            return
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
                ev["erasers"] = [{k: er[k] for k in ("path", "method", "concepts", "strength", "fingerprint")}
                                 for er in report.erasers]
            ev.update(self.audit.prompt_field(prompt))
            ev["decision"] = im.decision
            ev["blocked_by"] = im.blocked_by
            ev["action"] = im.action
            s = im.screen
            ev["screen"] = None if s is None else {
                "decision": s.decision, "category": s.category, "concept": s.concept,
                "score": round(float(s.score), 4),
                "threshold": None if s.threshold is None else round(float(s.threshold), 4),
                "transforms": s.transforms,
            }
            o = im.output
            ev["output"] = None if o is None else {
                "flagged": o.flagged, "action": o.action,
                "scores": {k: {lab: round(float(v), 4) for lab, v in d.items() if v >= 0.01}
                           for k, d in o.scores.items()},
            }
            ev["timings_ms"] = {k: round(v, 3) for k, v in report.timings_ms.items()}
            if report.errors:
                ev["errors"] = report.errors
            events.append(ev)
        try:
            self.audit.write(events)
        except Exception as e:
            if not self.policy.fail_open:
                raise
            logger.error("audit log not written (fail_open): %s", e)
            report.errors.append(f"audit log not written: {e}")
