"""Shared fixtures: offline mode, a small test policy, a tiny real diffusers pipeline."""

from __future__ import annotations

import os
import warnings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# every guarded call writes audit lines by default: keep the suite's out of the user's state directory
import tempfile

AUDIT_DIR = tempfile.mkdtemp(prefix="guard-test-audit-")
os.environ["GUARD_AUDIT_LOG"] = os.path.join(AUDIT_DIR, "audit.jsonl")
warnings.filterwarnings("ignore", category=FutureWarning)

import pytest  # noqa: E402


def pytest_configure(config):
    # registered here (not in pyproject) so that `-m "not slow"` works and --strict-markers accepts it
    config.addinivalue_line(
        "markers", 'slow: a test that takes more than a few seconds on 2 cores; deselect with -m "not slow"'
    )


#: a small policy so that tests build their FAISS index in a moment
TEST_POLICY = {
    "version": 1,
    "name": "test",
    "concepts": [
        {
            "id": "sexual.nudity",
            "category": "sexual",
            "action": "block",
            "threshold": 0.6,
            "phrases": [
                "a naked woman",
                "a nude man",
                "full frontal nudity",
                "exposed breasts",
                "a woman with no clothes on",
                "explicit sex scene",
            ],
        },
        {
            "id": "violence.gore",
            "category": "violence",
            "action": "block",
            "threshold": 0.6,
            "phrases": ["a mutilated corpse", "blood and gore everywhere", "a decapitated head"],
        },
        {
            "id": "weapons.guns",
            "category": "illegal",
            "action": "escalate",
            "threshold": 0.6,
            "phrases": ["a man pointing an assault rifle at people"],
        },
    ],
    "screen": {"threshold": 0.6, "escalate_margin": 0.05},
    "output": {"classifiers": [{"type": "nudenet"}]},
}


def make_policy(**overrides):
    """TEST_POLICY with top-level keys replaced (deep copies, safe to mutate)."""
    import copy

    p = copy.deepcopy(TEST_POLICY)
    for k, v in overrides.items():
        p[k] = v
    return p


def block_terms(screen, text: str) -> dict[str, str]:
    """The exact key term each blocking concept matches in ``text``'s normalised readings, by concept id."""
    hits = screen.lexical.match(screen._views(text)[2])
    return {
        screen._concepts[ci].id: h.term for ci, h in hits.items() if h.exact and screen._concepts[ci].action == "block"
    }


@pytest.fixture(scope="session")
def test_policy():
    from guard.policy import load_policy

    return load_policy(make_policy())


_TINY: dict = {}


def _tiny_builders():
    import diffusers

    from guard.pipelines.tiny import build_tiny_pipeline, build_tiny_sdxl_pipeline

    return {
        "text2img": build_tiny_pipeline,
        "img2img": lambda: build_tiny_pipeline(diffusers.StableDiffusionImg2ImgPipeline),
        "inpaint9": lambda: build_tiny_pipeline(diffusers.StableDiffusionInpaintPipeline, in_channels=9),
        "inpaint4": lambda: build_tiny_pipeline(diffusers.StableDiffusionInpaintPipeline),
        "pix2pix": lambda: build_tiny_pipeline(diffusers.StableDiffusionInstructPix2PixPipeline, in_channels=8),
        "sdxl": build_tiny_sdxl_pipeline,
        "sdxl-img2img": lambda: build_tiny_sdxl_pipeline(diffusers.StableDiffusionXLImg2ImgPipeline),
    }


def tiny(kind: str):
    """A plain tiny pipeline of ``kind`` (text2img, img2img, inpaint9, inpaint4, pix2pix, sdxl, sdxl-img2img),
    built once per test session and shared between test files (tests that change it build their own)."""
    if kind not in _TINY:
        _TINY[kind] = _tiny_builders()[kind]()
    return _TINY[kind]


@pytest.fixture(scope="session")
def tiny_pipe():
    """A plain tiny StableDiffusionPipeline (random weights, CPU)."""
    from guard.pipelines.tiny import build_tiny_pipeline

    return build_tiny_pipeline()


@pytest.fixture()
def guarded(tiny_pipe):
    """A guarded tiny pipeline under the test policy (fresh guard, shared weights)."""
    import guard

    return guard.protect(tiny_pipe, make_policy())


class UNetCounter:
    """Counts UNet forward calls and the batch sizes they ran with (a forward hook: it sees the inputs
    after every pre-hook, guard's included)."""

    def __init__(self, unet):
        self.calls = 0
        self.batches: list[int] = []
        self._h = unet.register_forward_hook(self._hook, with_kwargs=True)

    def _hook(self, module, args, kwargs, output):
        sample = args[0] if args else kwargs["sample"]
        self.calls += 1
        self.batches.append(int(sample.shape[0]))

    def remove(self):
        self._h.remove()


@pytest.fixture()
def unet_counter(tiny_pipe):
    c = UNetCounter(tiny_pipe.unet)
    yield c
    c.remove()


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models run faster on one thread (no spin-waiting when the machine is busy); restored after.
    Use with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


FAST = {"num_inference_steps": 2, "height": 64, "width": 64}
