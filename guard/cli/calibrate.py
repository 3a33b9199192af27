"""``guard calibrate``: per-model thresholds for the generator-space screen.

Registered in :mod:`guard.cli` as ``app.command("calibrate")(calibrate)``. Nothing here imports
:mod:`guard.cli` at module level (it imports this module).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import typer

from guard.errors import GuardError

TINY_MODEL = "builtin:tiny"

_TEXT_COMPONENTS = ("text_encoder", "tokenizer", "text_encoder_2", "tokenizer_2")


def _err(msg: str) -> None:
    typer.secho(f"error: {msg}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


def _split_benign(spec: str) -> tuple[Path, str | None]:
    """``FILE`` or ``FILE:COLUMN`` (the column only when FILE itself is not an existing file)."""
    if not spec or not spec.strip():
        raise GuardError("--benign is empty; give FILE or FILE:COLUMN (.txt or .csv)")
    p = Path(os.path.expanduser(spec))
    if p.is_file() or ":" not in spec:
        return p, None
    head, col = spec.rsplit(":", 1)
    if not col:
        return Path(os.path.expanduser(head)), None
    return Path(os.path.expanduser(head)), col


def _load_text_encoders(model: str, device: str | None) -> Any:
    """An object with the pipeline's text encoders and tokenizers as attributes. For a diffusers
    directory or id, only the text components named in ``model_index.json`` are loaded (the UNet and
    VAE are never read); when it names none, the whole pipeline is loaded with
    ``DiffusionPipeline.from_pretrained``."""
    import types

    if model == TINY_MODEL:
        from guard.pipelines.tiny import build_tiny_pipeline

        pipe = build_tiny_pipeline()
    else:
        local = Path(os.path.expanduser(model))
        if not local.exists() and (
            model.startswith((".", "~", os.sep)) or model.count("/") > 1 or (os.altsep and os.altsep in model)
        ):
            raise GuardError(f"cannot load model {model!r}: no such directory")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                pipe = _load_text_components(os.fspath(local) if local.exists() else model)
        except Exception as e:  # noqa: BLE001 - the user gets one line, not a traceback
            raise GuardError(f"cannot load model {model!r} offline: {_first_line(e)}") from None
        if pipe is None:  # no text components listed: let diffusers work out the pipeline
            try:
                from diffusers import DiffusionPipeline

                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    pipe = DiffusionPipeline.from_pretrained(model)
            except Exception as e:  # noqa: BLE001
                raise GuardError(f"cannot load model {model!r} offline: {_first_line(e)}") from None
    if device:
        for name in ("text_encoder", "text_encoder_2"):
            te = getattr(pipe, name, None)
            if te is not None:
                te.to(device)
    return pipe if not isinstance(pipe, dict) else types.SimpleNamespace(**pipe)


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _load_text_components(model: str) -> dict | None:
    """The text encoders and tokenizers named in ``model_index.json``, loaded with their own
    classes; None when the model has no such index."""
    import importlib

    from diffusers import DiffusionPipeline

    index = DiffusionPipeline.load_config(model)
    out: dict[str, Any] = {}
    for name in _TEXT_COMPONENTS:
        entry = index.get(name)
        if not (isinstance(entry, (list, tuple)) and len(entry) == 2 and all(entry)):
            continue
        library, cls_name = entry
        cls = getattr(importlib.import_module(library), cls_name)
        out[name] = cls.from_pretrained(model, subfolder=name)
        if hasattr(out[name], "eval"):
            out[name].eval()
    if "text_encoder" not in out and "text_encoder_2" not in out:
        return None
    return out


def calibrate(
    model: str = typer.Option(
        ..., "--model", "-m", help="diffusers pipeline directory or id (offline), or 'builtin:tiny'."
    ),
    benign: str = typer.Option(
        ..., "--benign", "-b", help="benign prompts: FILE or FILE:COLUMN (.txt one a line, or .csv)."
    ),
    policy: str = typer.Option("default", "--policy", "-p", help="Policy file or built-in name."),
    quantile: float = typer.Option(
        0.999, "--quantile", "-q", min=0.0, max=1.0, help="quantile of benign scores used as each concept's threshold."
    ),
    out: Path | None = typer.Option(
        None,
        "--out",
        "-o",
        help="calibration file (default: <policy stem>.<fingerprint>.calibration.json beside the policy, "
        "or in the current directory for built-in policies).",
    ),
    limit: int | None = typer.Option(None, "--limit", min=1, help="use only the first N benign prompts."),
    margin: float = typer.Option(0.0, "--margin", help="added to every threshold (at most 1 after)."),
    batch_size: int = typer.Option(32, "--batch-size", min=1, help="prompts per encoder pass."),
    device: str | None = typer.Option(None, "--device", help="run the text encoder(s) here, e.g. cuda."),
) -> None:
    """Calibrate the generator-space screen for one model: thresholds per concept from benign prompts.

    Each concept's threshold is the --quantile of the benign prompts' similarity to it in the model's own text space.

    Name the file written in the policy: screen.generator_space.calibration."""
    from guard.cli.common import quiet_libraries as _quiet_libraries, read_prompts

    _quiet_libraries()
    if not 0.0 < quantile <= 1.0:
        _err(f"--quantile must be within (0, 1], got {quantile}")
    try:
        from guard.policy import load_policy
        from guard.screen.generator_space import (
            GeneratorSpaceScreen,
            calibrate as run_calibration,
            default_calibration_path,
            is_builtin_policy,
            save_calibration,
        )
        from guard.textenc import pipeline_encoders

        path, column = _split_benign(benign)
        prompts = read_prompts(path, column)
        if limit is not None:
            prompts = prompts[:limit]
        if not any(p.strip() for p in prompts):
            raise GuardError(f"{path}: no benign prompts found")
        pol = load_policy(policy)
        if not any(c.action != "allow" for c in pol.concepts):
            raise GuardError(f"policy {pol.name!r} has no concepts to calibrate (only 'allow' ones or none)")
        pipe = _load_text_encoders(model, device)
        encoders = pipeline_encoders(pipe)
        typer.echo(
            f"calibrating {model} ({len(encoders)} text encoder(s)) on {len(prompts)} benign prompt(s), "
            f"policy {pol.name!r}, quantile {quantile}",
            err=True,
        )
        calib = run_calibration(encoders, pol, prompts, quantile=quantile, margin=margin, batch_size=batch_size)
        target = out if out is not None else default_calibration_path(pol, calib["model_fingerprint"])
        calib["model"] = model
        written = save_calibration(calib, target)
        # proves the file reads back and matches these encoders before anyone relies on it
        GeneratorSpaceScreen(encoders, pol, calib, calibration_path=written, batch_size=batch_size)
    except GuardError as e:
        _err(str(e))
        return
    except OSError as e:
        _err(f"{getattr(e, 'filename', None) or ''}: {e.strerror or e}".lstrip(": "))
        return

    typer.echo(
        f"model fingerprint {calib['model_fingerprint']}, {calib['n_benign']} benign prompt(s), "
        f"quantile {calib['quantile']}" + (f", margin {margin}" if margin else "")
    )
    width = max([len("concept")] + [len(cid) for cid in calib["thresholds"]])
    typer.echo(f"{'concept':{width}}  {'category':12}  {'threshold':>9}  {'benign max':>10}  {'mean':>6}  above")
    for cid, thr in calib["thresholds"].items():
        m = calib["concepts"][cid]
        typer.echo(
            f"{cid:{width}}  {m['category'][:12]:12}  {thr:9.4f}  {m['benign_max']:10.4f}  "
            f"{m['benign_mean']:6.3f}  {m['n_above']}"
        )
    typer.echo(f"wrote {written}")
    ref = os.fspath(written.resolve())
    builtin = is_builtin_policy(pol)
    if pol.source and not builtin:
        try:  # beside or below the policy file: relative to it, as the policy resolves it
            ref = written.resolve().relative_to(Path(pol.source).resolve().parent).as_posix()
        except ValueError:
            pass
    line = f"screen: {{generator_space: {{enabled: true, calibration: {ref}}}}}"
    if builtin or not pol.source:
        typer.echo(
            f"{pol.name!r} is not a policy file you edit; put this in a policy file "
            f"(e.g. one with `extends: {pol.name}`):"
        )
    else:
        typer.echo(f"add to {pol.source}:")
    typer.echo(f"  {line}")
