"""Request and response bodies of the HTTP API (they make the OpenAPI schema at ``/docs``).

The images endpoints follow the OpenAI images API shape (``model`` = deployment name) so existing
clients work; each image also carries a ``guard`` field with the decision and its reasons.
"""

from __future__ import annotations

from typing import Literal, Optional

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
    concept: Optional[str]
    category: Optional[str]
    decision: str
    score: float
    threshold: Optional[float]
    phrase: Optional[str] = None
    source: Optional[str] = None


class ScreenVerdict(BaseModel):
    index: int
    decision: Literal["allow", "escalate", "block"]
    category: Optional[str] = None
    concept: Optional[str] = Field(default=None, description="the matched concept (the decisive one)")
    phrase: Optional[str] = Field(default=None, description="the bank phrase it matched")
    score: float
    threshold: Optional[float] = None
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
    size: Optional[str] = Field(default=None, description="'WIDTHxHEIGHT', e.g. '512x512'; default: the deployment's")
    response_format: Literal["b64_json"] = Field(default="b64_json", description="only b64_json (no URLs are hosted)")
    user: Optional[str] = Field(default=None, description="accepted for compatibility; not stored")
    quality: Optional[str] = Field(default=None, description="accepted for compatibility; ignored")
    style: Optional[str] = Field(default=None, description="accepted for compatibility; ignored")
    negative_prompt: Optional[str] = Field(default=None, description="extension: the pipeline's negative prompt")
    seed: Optional[int] = Field(default=None, description="extension: a fixed seed for reproducible images")


class ImageGuard(BaseModel):
    decision: Literal["allowed", "blocked", "flagged"]
    stage: Optional[str] = Field(description="the stage that decided: screen, input, output, error; none if allowed")
    category: Optional[str] = None
    concept: Optional[str] = None
    score: Optional[float] = None
    threshold: Optional[float] = None
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
    code: Optional[str] = None
    param: Optional[str] = Field(default=None, description="the request field at fault")
    request_id: Optional[str] = None
    policy_sha256: Optional[str] = None
    guard: Optional[list[ImageGuard]] = None


class ErrorResponse(BaseModel):
    error: ErrorBody


class DeploymentInfo(BaseModel):
    name: str
    description: str
    kind: Literal["screen", "text2img", "img2img", "inpaint"]
    endpoints: list[str]
    ready: bool
    policy: Optional[PolicyRef]
    pool: int
    queue: int
    queue_depth: int
    running: int
    on_block: str
    default_size: Optional[str]


class DeploymentsResponse(BaseModel):
    data: list[DeploymentInfo]


class PolicyInfo(BaseModel):
    deployment: str
    tenant: Optional[str]
    name: Optional[str]
    sha256: Optional[str]
    source: Optional[str]
    loaded_at: Optional[str]
    last_reload_at: Optional[str]
    error: Optional[str] = Field(description="why the file on disk was refused (file:line); the old policy serves")
    error_at: Optional[str]
    concepts: Optional[int] = None
    fail_open: Optional[bool] = None


class ReloadItem(BaseModel):
    deployment: str
    tenant: Optional[str]
    result: Literal["ok", "unchanged", "failed"]
    sha256: Optional[str]
    previous_sha256: Optional[str]
    error: Optional[str]


class ReloadResponse(BaseModel):
    ok: bool
    results: list[ReloadItem]
