"""``guard erase`` and ``guard erasure info``: typer command functions (registered by guard/cli.py)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import typer

from guard.errors import GuardError

BUILTIN_TINY = "builtin:tiny"

erasure_app = typer.Typer(help="Work with erasure artifacts.", no_args_is_help=True)


def _fail(msg: str, code: int = 2) -> None:
    typer.secho(f"error: {msg}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def _load_pipe(model: str, device: str):
    """A plain diffusers pipeline for ``model`` (``builtin:tiny``, a local path or a cached hub id)."""
    import torch

    if model == BUILTIN_TINY:
        from guard.pipelines.tiny import build_tiny_pipeline

        pipe = build_tiny_pipeline()
    else:
        from diffusers import DiffusionPipeline

        try:
            pipe = DiffusionPipeline.from_pretrained(model, torch_dtype=torch.float32, safety_checker=None)
        except Exception as e:  # diffusers raises OSError, ValueError, EnvironmentError...
            raise GuardError(f"cannot load model {model!r}: {e}") from None
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return pipe.to(device)


def erase_cmd(
    method: str = typer.Option("uce", "--method", help="uce | rece | esd-x | esd-u (guard.erase.methods.REGISTRY)"),
    model: str = typer.Option(..., "--model", help="Model id, local path, or builtin:tiny."),
    concept: list[str] = typer.Option(..., "--concept", help="Concept to erase (repeat for several)."),
    guide: list[str] = typer.Option(
        [], "--guide", help="Guide concept: one for all, or one per --concept (default: the empty prompt)."
    ),
    preserve: list[str] = typer.Option([], "--preserve", help="Concept to preserve (repeat; uce/rece)."),
    out: Path = typer.Option(..., "--out", "-o", help="Artifact file to write (.safetensors)."),
    lamb: float = typer.Option(0.1, "--lambda", help="UCE/RECE λ (anchor to the original weights)."),
    erase_scale: float = typer.Option(1.0, "--erase-scale", help="UCE/RECE s_e."),
    preserve_scale: float | None = typer.Option(
        None, "--preserve-scale", help="UCE/RECE s_p (default max(0.1, 1/#preserve))."
    ),
    epochs: int = typer.Option(3, "--epochs", help="RECE epochs."),
    iterations: int = typer.Option(1000, "--iterations", help="ESD iterations."),
    lr: float = typer.Option(1e-5, "--lr", help="ESD learning rate."),
    eta: float = typer.Option(1.0, "--eta", help="ESD negative guidance η."),
    seed: int = typer.Option(0, "--seed", help="ESD seed."),
    checkpoint: Path | None = typer.Option(None, "--checkpoint", help="ESD checkpoint file (resumes)."),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda"),
) -> None:
    """Erase concepts from a model's weights and write a fingerprinted erasure artifact."""
    from guard.cli.common import quiet_libraries as _quiet_libraries

    _quiet_libraries()
    try:
        from guard.erase.api import erase
        from guard.erase.methods import REGISTRY, get_method

        if method.lower() not in REGISTRY:
            raise GuardError(f"unknown --method {method!r}; choose one of {', '.join(REGISTRY)}")
        options = dict(
            lamb=lamb,
            erase_scale=erase_scale,
            preserve_scale=preserve_scale,
            epochs=epochs,
            iterations=iterations,
            lr=lr,
            eta=eta,
            seed=seed,
            checkpoint=os.fspath(checkpoint) if checkpoint else None,
        )
        spec = get_method(method).params
        pipe = _load_pipe(model, device)
        e = erase(
            pipe,
            list(concept),
            method=method,
            guides=list(guide) or None,
            preserve=list(preserve),
            out=out,
            progress=True,
            model_id=model,
            **{k: v for k, v in options.items() if k in spec},
        )
    except GuardError as e:
        _fail(str(e))
        return
    typer.echo(
        f"wrote {out}: {e.method} erasing {', '.join(map(repr, e.metadata['concepts']))}; "
        f"{len(e.params)} tensor(s), base fingerprint {e.base_fingerprint[:16]}, "
        f"{e.metadata['elapsed_s']:.2f}s"
    )


def erasure_info_cmd(
    file: Path = typer.Argument(..., help="Erasure artifact (.safetensors)."),
    as_json: bool = typer.Option(False, "--json", help="Print the full metadata as JSON."),
) -> None:
    """Show what an erasure artifact erases, how, and which base model it belongs to."""
    try:
        from guard.erase.artifact import erasure_info

        info = erasure_info(file)
    except GuardError as e:
        _fail(str(e))
        return
    if as_json:
        typer.echo(json.dumps(info, indent=2, sort_keys=True))
        return
    st = info["stored"]
    lines = [
        f"{file}",
        f"  method           {info['method']}",
        f"  concepts         {', '.join(map(repr, info['concepts']))}",
        f"  guides           {', '.join(map(repr, info.get('guides', [])))}",
        f"  preserved        {', '.join(map(repr, info.get('preserved', []))) or '-'}",
        f"  model            {info.get('model') or '-'}",
        f"  base fingerprint {info['base_fingerprint']}",
        f"  tensors          {len(info['params'])} edited ({st['full']} whole, {st['low_rank']} low-rank), "
        f"{st['bytes'] / 1e6:.2f} MB",
        f"  hyperparameters  {json.dumps(info.get('hyperparameters', {}), sort_keys=True)}",
        f"  created          {info.get('created', '-')} in {info.get('elapsed_s', 0):.2f}s",
        "  versions         " + ", ".join(f"{k} {v}" for k, v in sorted(info.get("versions", {}).items())),
    ]
    typer.echo("\n".join(lines))


erasure_app.command("info")(erasure_info_cmd)
