"""Prometheus metrics of one ``guard serve`` app (its own registry, so several apps in one process,
as in tests, do not share counters). Served as text at ``GET /metrics``.

Labels are bounded: deployment names come from the config, decisions/stages/categories from the
policy; tenant names and keys are never labels.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.requests = Counter(
            "guard_serve_requests",
            "HTTP requests by route and status",
            ["deployment", "endpoint", "status"],
            registry=r,
        )
        self.prompts = Counter(
            "guard_serve_prompts",
            "Prompts screened by /v1/screen, by verdict",
            ["deployment", "decision", "stage", "category"],
            registry=r,
        )
        self.images = Counter(
            "guard_serve_images",
            "Image slots answered by the images endpoints, by verdict",
            ["deployment", "decision", "stage", "category"],
            registry=r,
        )
        self.stage_seconds = Histogram(
            "guard_serve_stage_seconds",
            "Time spent per stage",
            ["deployment", "stage"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.request_seconds = Histogram(
            "guard_serve_request_seconds",
            "Request latency inside the app",
            ["deployment", "endpoint"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "guard_serve_screen_batch_prompts",
            "Prompts per micro-batched encoder pass",
            ["deployment"],
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
            registry=r,
        )
        self.queue_depth = Gauge("guard_serve_queue_depth", "Requests waiting for a worker", ["deployment"], registry=r)
        self.busy_workers = Gauge(
            "guard_serve_busy_workers", "Workers running a pipeline call", ["deployment"], registry=r
        )
        self.rejected = Counter(
            "guard_serve_rejected",
            "Requests refused before running (429 queue full, 504 timeout, 503 not ready)",
            ["deployment", "reason"],
            registry=r,
        )
        self.reloads = Counter(
            "guard_serve_policy_reloads",
            "Policy reload attempts by result (ok, unchanged, failed)",
            ["deployment", "result"],
            registry=r,
        )
        self.reload_failures = Counter(
            "guard_serve_policy_reload_failures",
            "Policy reloads refused (the old policy stayed)",
            ["deployment"],
            registry=r,
        )
        self.policy_error = Gauge(
            "guard_serve_policy_error",
            "1 while the policy file on disk is invalid (the last good policy serves)",
            ["deployment"],
            registry=r,
        )
        self.fail_closed = Counter(
            "guard_serve_fail_closed",
            "A defence failed and the request was blocked (or allowed, under fail_open)",
            ["deployment", "stage", "rule"],
            registry=r,
        )
        self.auth_failures = Counter("guard_serve_auth_failures", "Refused credentials", ["reason"], registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)
