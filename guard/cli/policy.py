"""``guard policy validate`` and ``guard policy show``: check and print policy files."""

from __future__ import annotations

import logging
import os

import typer

from guard.cli.common import EXIT_FAILED, fail, printable, user_errors
from guard.errors import GuardError

logger = logging.getLogger(__name__)

policy_app = typer.Typer(help="Work with policy files.", no_args_is_help=True)


@policy_app.command("validate")
def policy_validate(files: list[str] = typer.Argument(..., help="Policy files or built-in names.")) -> None:
    """Validate policy files: prints OK or every problem with file:line, key path and expectation.

    Every file is checked, whatever the ones before it held; exits 1 if any is invalid."""
    from guard.policy import load_policy

    bad = 0
    for f in files:
        shown = printable(f)
        try:
            p = load_policy(f)
            n_phr = sum(len(c.phrases) for c in p.concepts)
            line = (
                f"OK {shown}: policy {printable(p.name)!r}, {len(p.concepts)} concepts, {n_phr} phrases, "
                f"sha256 {p.sha256[:12]}"
            )
        except GuardError as e:
            bad += 1
            msg = printable(str(e))
            typer.secho(f"error: {msg if shown in msg else f'{shown}: {msg}'}", fg=typer.colors.RED, err=True)
            continue
        except (OSError, RecursionError, ValueError, TypeError) as e:  # a loader gap: report it, go on
            bad += 1
            logger.debug("validating %s", f, exc_info=True)
            typer.secho(
                f"error: {shown}: cannot load: {printable(str(e)) or type(e).__name__}", fg=typer.colors.RED, err=True
            )
            continue
        typer.secho(line, fg=typer.colors.GREEN)
    if bad:
        typer.secho(
            f"{bad} of {len(files)} polic{'y' if len(files) == 1 else 'ies'} invalid", fg=typer.colors.RED, err=True
        )
        raise typer.Exit(EXIT_FAILED)


@policy_app.command("show")
def policy_show(
    file: str = typer.Argument(..., help="Policy file or built-in name."),
    resolved: bool = typer.Option(
        True,
        "--resolved/--as-written",
        help="The policy that applies (extends and includes merged, the default), or the file as written.",
    ),
) -> None:
    """Print a policy as YAML: resolved (extends and includes applied, with the sha256 that reports and
    audit lines carry), or the file as written."""
    from guard.policy import load_policy, policy_to_yaml, resolve_policy_path

    with user_errors(EXIT_FAILED):
        if not resolved:
            path = resolve_policy_path(file)
            try:
                text = path.read_text(encoding="utf-8-sig")
            except UnicodeDecodeError as e:
                fail(f"{os.fspath(path)}: not UTF-8 text ({e.reason} at byte {e.start})", EXIT_FAILED)
            typer.echo(text, nl=not text.endswith("\n"))
            return
        # load_policy applies extends and include; policy_to_yaml writes the merged result without them
        typer.echo(printable(policy_to_yaml(load_policy(file))), nl=False)
