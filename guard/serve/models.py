"""Request and response bodies of the HTTP API (they make the OpenAPI schema at ``/docs``).

The images endpoints follow the OpenAI images API shape (``model`` = deployment name) so existing
clients work; each image also carries a ``guard`` field with the decision and its reasons.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _Body(BaseModel):
    # strict: `n: true` or `"n": "2"` is an error, not 1 or 2
    model_config = ConfigDict(extra="forbid", strict=True)


class PolicyRef(BaseModel):
    name: str
    sha256: str = Field(description="sha256 of the resolved policy the request ran under")


class ScreenRequest(_Body):
    deployment: str = Field(description="deployment whose policy screens the prompts")
    prompts: list[str] = Field(min_length=1, description="prompts to screen, in order")


class ConceptMatch(BaseModel):
    concept: str | None
    category: str | None
    decision: str
    score: float
    threshold: float | None
    phrase: str | None = None
    source: str | None = None


class ScreenVerdict(BaseModel):
    index: int
    decision: Literal["allow", "escalate", "block"]
    category: str | None = None
    concept: str | None = Field(default=None, description="the matched concept (the decisive one)")
    phrase: str | None = Field(default=None, description="the bank phrase it matched")
    score: float
    threshold: float | None = None
    reasons: list[str] = Field(description="why, in words")
    transforms: list[str] = Field(default_factory=list, description="de-obfuscations that fired")
    matches: list[ConceptMatch] = Field(default_factory=list)


class ScreenResponse(BaseModel):
    request_id: str
    deployment: str
    policy: PolicyRef
    results: list[ScreenVerdict]
    errors: list[str] = Field(default_factory=list, description="defence failures (the request failed closed)")
    batch_prompts: int = Field(description="prompts in the encoder pass this request shared")
    timings_ms: dict[str, float]


class ImageGenerationRequest(_Body):
    model: str = Field(description="deployment name")
    prompt: str
    n: int = Field(default=1, description="images to generate")
    size: str | None = Field(default=None, description="'WIDTHxHEIGHT', e.g. '512x512'; default: the deployment's")
    response_format: Literal["b64_json"] = Field(default="b64_json", description="only b64_json (no URLs are hosted)")
    user: str | None = Field(default=None, description="accepted for compatibility; not stored")
    quality: str | None = Field(default=None, description="accepted for compatibility; ignored")
    style: str | None = Field(default=None, description="accepted for compatibility; ignored")
    negative_prompt: str | None = Field(default=None, description="extension: the pipeline's negative prompt")
    seed: int | None = Field(default=None, description="extension: a fixed seed for reproducible images")


class ImageGuard(BaseModel):
    decision: Literal["allowed", "blocked", "flagged"]
    stage: str | None = Field(description="the stage that decided: screen, input, output, error; none if allowed")
    category: str | None = None
    concept: str | None = None
    score: float | None = None
    threshold: float | None = None
    reasons: list[str]
    request_id: str
    policy_sha256: str


class ImageData(BaseModel):
    b64_json: str = Field(description="PNG, base64")
    guard: ImageGuard


class GuardSummary(BaseModel):
    request_id: str
    deployment: str
    policy: PolicyRef
    errors: list[str] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)
    timings_ms: dict[str, float] = Field(default_factory=dict)


class ImagesResponse(BaseModel):
    created: int
    data: list[ImageData]
    guard: GuardSummary


class ErrorBody(BaseModel):
    message: str
    type: str
    code: str | None = None
    param: str | None = Field(default=None, description="the request field at fault")
    request_id: str | None = None
    policy_sha256: str | None = None
    guard: list[ImageGuard] | None = None


class ErrorResponse(BaseModel):
    error: ErrorBody


class DeploymentInfo(BaseModel):
    name: str
    description: str
    kind: Literal["screen", "text2img", "img2img", "inpaint"]
    endpoints: list[str]
    ready: bool
    policy: PolicyRef | None
    pool: int
    queue: int
    queue_depth: int
    running: int
    on_block: str
    default_size: str | None


class DeploymentsResponse(BaseModel):
    data: list[DeploymentInfo]


class PolicyInfo(BaseModel):
    deployment: str
    tenant: str | None
    name: str | None
    sha256: str | None
    source: str | None
    loaded_at: str | None
    last_reload_at: str | None
    error: str | None = Field(description="why the file on disk was refused (file:line); the old policy serves")
    error_at: str | None
    concepts: int | None = None
    fail_open: bool | None = None


class ReloadItem(BaseModel):
    deployment: str
    tenant: str | None
    result: Literal["ok", "unchanged", "failed"]
    sha256: str | None
    previous_sha256: str | None
    error: str | None


class ReloadResponse(BaseModel):
    ok: bool
    results: list[ReloadItem]
