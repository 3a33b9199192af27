"""``guard eval-images``: the policy's image checks measured on a user's own labelled folders."""

from __future__ import annotations

from pathlib import Path

import typer

from guard.cli.common import quiet_libraries, user_errors


def eval_images_cmd(
    unsafe: Path = typer.Option(..., "--unsafe", help="Folder of images the policy must catch."),
    benign: Path = typer.Option(..., "--benign", help="Folder of images the policy must let through."),
    policy: str = typer.Option("default", "--policy", "-p", help="Policy file or built-in name."),
    json_out: Path | None = typer.Option(None, "--json", help="Write the full result (per image too) here."),
    target_fpr: float = typer.Option(0.01, "--target-fpr", help="False-positive rate the suggested thresholds aim at."),
) -> None:
    """TPR/FPR of the policy's output check per category, per classifier signal and per cascade."""
    quiet_libraries()
    with user_errors():
        from guard.output.eval_images import eval_images, format_table

        result = eval_images(unsafe, benign, policy, json_out, target_fpr)
    typer.echo(format_table(result))
