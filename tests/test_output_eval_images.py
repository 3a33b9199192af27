"""``guard eval-images``: TPR / FPR per category, signal and policy on folders the test makes. Benign:
real photographs shipped with scikit-image. "Unsafe": the same kind of photographs under a policy whose
gore threshold sits between the two folders' measured scores, so the classifier really separates them."""

from __future__ import annotations

import json

import pytest

skdata = pytest.importorskip("skimage.data", reason="scikit-image (dev extra) ships the sample photos")

from guard.errors import GuardInputError  # noqa: E402
from guard.output.eval_images import eval_images, format_table, main  # noqa: E402


def nudenet_only(threshold: float, face: float = 1.0):
    """NudeNet ships with guard, so this runs everywhere: a category on FACE_FEMALE (the astronaut's)."""
    return {
        "name": "eval",
        "screen": {"enabled": False},
        "output": {
            "classifiers": {"nudenet": {"providers": ["CPUExecutionProvider"]}},
            "categories": {
                "faces": {"signals": {"nudenet": {"FACE_FEMALE": threshold}}},
                "never": {"signals": {"nudenet": {"ANUS_EXPOSED": face}}},
            },
        },
    }


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    from PIL import Image

    root = tmp_path_factory.mktemp("eval")
    unsafe, benign = root / "unsafe", root / "benign"
    (unsafe / "sub").mkdir(parents=True)
    benign.mkdir()
    Image.fromarray(skdata.astronaut()).save(unsafe / "astronaut.png")
    Image.fromarray(skdata.astronaut()[:, ::-1]).save(unsafe / "sub" / "astronaut_mirrored.jpg")
    for name in ("coffee", "rocket", "chelsea"):
        Image.fromarray(getattr(skdata, name)()).save(benign / f"{name}.png")
    (benign / "broken.png").write_bytes(b"not a png")
    (benign / "notes.txt").write_text("ignored: not an image")
    return unsafe, benign


def test_rates_per_category_signal_and_policy(folders, tmp_path):
    from guard.output.eval_images import _read, list_images
    from guard.output.nudenet import NudeNetClassifier

    unsafe, benign = folders
    clf = NudeNetClassifier(providers=["CPUExecutionProvider"])
    u = [o.scores["FACE_FEMALE"] for o in clf.classify([_read(f) for f in list_images(unsafe, "u")])]
    b = [
        o.scores["FACE_FEMALE"]
        for o in clf.classify([_read(f) for f in list_images(benign, "b") if f.name != "broken.png"])
    ]
    assert min(u) > max(b)  # the astronaut's face is a face; a cup, a rocket and a cat are not
    thr = float((min(u) + max(b)) / 2)
    out = tmp_path / "res.json"
    r = eval_images(unsafe, benign, nudenet_only(thr), out)
    assert r["counts"] == {"unsafe": 2, "benign": 3, "unreadable": 1} and "broken.png" in r["unreadable"][0]
    assert r["categories"]["faces"] == {"tp": 2, "fn": 0, "fp": 0, "tn": 3, "tpr": 1.0, "fpr": 0.0}
    assert r["categories"]["never"]["tpr"] == 0.0 and r["categories"]["never"]["fpr"] == 0.0
    assert r["signals"]["faces/nudenet"]["tpr"] == 1.0 and r["signals"]["faces/nudenet"]["thresholds"]
    assert r["policy_level"]["tpr"] == 1.0 and r["policy_level"]["fpr"] == 0.0
    assert json.loads(out.read_text())["categories"] == r["categories"]
    # every image flagged: FPR 1
    r0 = eval_images(unsafe, benign, nudenet_only(0.0))
    assert r0["categories"]["faces"]["fpr"] == 1.0 and r0["policy_level"]["tp"] == 2
    assert "category faces" in format_table(r0)


def test_a_cascade_is_measured_as_a_whole_and_per_signal(folders):
    unsafe, benign = folders
    pol = nudenet_only(0.0)
    pol["output"]["categories"] = {"both": {"signals": {"nudenet": {"FACE_FEMALE": 0.0}}, "require": "all"}}
    pol["output"]["classifiers"]["n2"] = {"type": "nudenet", "batch_size": 2}
    pol["output"]["categories"]["both"]["signals"]["n2"] = {"ANUS_EXPOSED": 1.0}
    r = eval_images(unsafe, benign, pol)
    assert r["signals"]["both/nudenet"]["tpr"] == 1.0 and r["signals"]["both/n2"]["tpr"] == 0.0
    assert r["categories"]["both"]["tp"] == 0  # the second stage never confirms


def test_bad_folders_are_named(folders, tmp_path, capsys):
    unsafe, _ = folders
    with pytest.raises(GuardInputError, match="does not exist"):
        eval_images(tmp_path / "nope", unsafe, nudenet_only(0.5))
    (tmp_path / "empty").mkdir()
    with pytest.raises(GuardInputError, match="holds no image"):
        eval_images(unsafe, tmp_path / "empty", nudenet_only(0.5))
    assert main(["--unsafe", str(tmp_path / "nope"), "--benign", str(unsafe)]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_main_prints_the_table(folders, tmp_path, capsys):
    import yaml

    unsafe, benign = folders
    pfile = tmp_path / "p.yaml"
    pfile.write_text(yaml.safe_dump(nudenet_only(0.0)))
    assert (
        main(
            [
                "--unsafe",
                str(unsafe),
                "--benign",
                str(benign),
                "--policy",
                str(pfile),
                "--json",
                str(tmp_path / "o.json"),
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    assert "policy (any category)" in text and "signal faces/nudenet" in text
    assert (tmp_path / "o.json").exists()


def test_the_cli_command_prints_the_table_and_names_bad_folders(folders, tmp_path, capsys):
    import yaml

    from guard.cli import main as cli_main

    unsafe, benign = folders[0], folders[1]
    pol = tmp_path / "p.yaml"
    pol.write_text(yaml.safe_dump({"version": 1, **nudenet_only(0.3)}), encoding="utf-8")
    out = tmp_path / "r.json"
    assert (
        cli_main(
            ["eval-images", "--unsafe", str(unsafe), "--benign", str(benign), "--policy", str(pol), "--json", str(out)]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "category faces" in printed and json.loads(out.read_text())["categories"]["faces"]
    assert cli_main(["eval-images", "--unsafe", str(tmp_path / "absent"), "--benign", str(benign)]) == 2
    assert "unsafe folder" in capsys.readouterr().err


def test_calibration_picks_the_lowest_threshold_within_the_target_fpr():
    from guard.output.eval_images import calibrate

    benign = [0.1, 0.2, 0.35, 0.5, 0.05] * 20  # 100 scores, 20 at 0.5
    unsafe = [0.4, 0.6, 0.9, 0.95]
    c = calibrate(unsafe, benign, 0.0)
    assert c["threshold"] == 0.5001 and c["fpr"] == 0.0 and c["tpr"] == 0.75 and c["benign_max"] == 0.5
    c = calibrate(unsafe, benign, 0.2)  # 20 benign images may hit: the twenty at 0.5
    assert c["threshold"] == 0.3501 and c["fpr"] == 0.2 and c["tpr"] == 1.0
    # classifiers that flag strictly above the threshold may sit on the benign score itself
    assert calibrate(unsafe, benign, 0.0, strictly_above=True)["threshold"] == 0.5
    assert calibrate(unsafe, [1.0], 0.0)["threshold"] == 1.0  # within the classifier's range
    assert calibrate(unsafe, [], 0.01)["threshold"] is None
    with pytest.raises(GuardInputError, match="target_fpr"):
        eval_images(".", ".", nudenet_only(0.5), target_fpr=1.5)


def test_the_result_suggests_a_threshold_per_signal_label(folders, capsys):
    unsafe, benign = folders
    r = eval_images(unsafe, benign, nudenet_only(0.99))
    c = r["calibration"]["faces/nudenet:FACE_FEMALE"]
    assert c["current"] == 0.99 and c["target_fpr"] == 0.01
    assert c["benign_max"] < c["threshold"] <= c["unsafe_min"] and c["tpr"] == 1.0 and c["fpr"] == 0.0
    # the suggestion, put in the policy, separates the folders as it says
    again = eval_images(unsafe, benign, nudenet_only(c["threshold"]))
    assert again["categories"]["faces"]["tpr"] == 1.0 and again["categories"]["faces"]["fpr"] == 0.0
    assert main(["--unsafe", str(unsafe), "--benign", str(benign), "--target-fpr", "0"]) == 0
    out = capsys.readouterr().out
    assert "calibration (threshold for FPR <= 0" in out and "sexual/nudenet:FEMALE_BREAST_EXPOSED" in out


def test_the_cli_passes_the_target_fpr(folders, capsys):
    from guard.cli import main as cli_main

    unsafe, benign = folders
    assert cli_main(["eval-images", "--unsafe", str(unsafe), "--benign", str(benign), "--target-fpr", "0.5"]) == 0
    assert "threshold for FPR <= 0.5" in capsys.readouterr().out
    assert cli_main(["eval-images", "--unsafe", str(unsafe), "--benign", str(benign), "--target-fpr", "2"]) == 2
    assert "target_fpr must be a number in [0, 1)" in capsys.readouterr().err
