"""The ``guard`` command line: screen prompts, generate, validate policies, calibrate, erase, run the demo.

One module per command group (``screen``, ``policy``, ``generate``, ``calibrate``; ``guard erase`` lives in
:mod:`guard.erase.cli`). :func:`main` is the console script: it turns every failure into one ``error:`` line
on stderr and an exit status (2 bad input or usage, 1 a failed check or an internal error, 130 interrupted),
never a traceback (``GUARD_DEBUG=1`` prints one for a bug report).
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import traceback

import typer

from guard.cli import calibrate, generate, images, policy, screen  # the command modules
from guard.cli.common import EXIT_BAD_INPUT, EXIT_FAILED, printable, quiet_libraries, read_prompts
from guard.erase.cli import erase_cmd, erasure_app
from guard.serve.cli import serve_app

logger = logging.getLogger(__name__)

#: the distribution's name on PyPI (``guard`` there is an unrelated package); the import name is ``guard``
DISTRIBUTION = "diffusers-guard"

__all__ = ["DISTRIBUTION", "app", "main", "quiet_libraries", "read_prompts", "version"]

# typer raises click's exception classes, from click itself or (typer >= 0.20) from its own copy of click
_click = importlib.import_module(typer.BadParameter.__module__)
_NoArgsIsHelp = getattr(_click, "NoArgsIsHelpError", ())

app = typer.Typer(
    help="guard: guardrail middleware for Hugging Face diffusers.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def version() -> str:
    """The installed distribution's version, or the package's own when running from a checkout."""
    from importlib import metadata

    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        from guard import __version__

        return __version__


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"guard {version()}")
        raise typer.Exit(0)


@app.callback()
def _root(
    show_version: bool = typer.Option(
        False, "--version", help="Print the version and exit.", callback=_print_version, is_eager=True
    ),
) -> None:
    """guard: guardrail middleware for Hugging Face diffusers."""


app.command("screen")(screen.screen)
app.command("eval")(screen.eval_cmd)
app.command(  # its options are the training module's own (argparse): passed through as they are
    "train-screen",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []},
)(screen.train_screen_cmd)
app.command("generate")(generate.generate)
app.command("demo")(generate.demo)
app.command("calibrate")(calibrate.calibrate)
app.command("eval-images")(images.eval_images_cmd)
app.command("erase")(erase_cmd)
app.add_typer(policy.policy_app, name="policy")
app.add_typer(erasure_app, name="erasure")
app.add_typer(serve_app, name="serve")


def _usage_line(e) -> str:
    hint = ""
    if e.ctx is not None:
        hint = f" (see '{e.ctx.command_path} --help')"
    return f"error: {printable(e.format_message())}{hint}"


def main(argv: list[str] | None = None) -> int:
    """Run the command line on ``argv`` (default ``sys.argv[1:]``) and return the exit status."""
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        rv = app(args=args, prog_name="guard", standalone_mode=False)
    except _NoArgsIsHelp as e:  # `guard` or `guard policy` alone: the help text
        typer.echo(e.ctx.get_help() if e.ctx is not None else e.format_message(), err=True)
        return EXIT_BAD_INPUT
    except _click.UsageError as e:
        typer.secho(_usage_line(e), fg=typer.colors.RED, err=True)
        return EXIT_BAD_INPUT
    except (typer.Exit, getattr(_click, "Exit", typer.Exit)) as e:
        return e.exit_code
    except (typer.Abort, getattr(_click, "Abort", typer.Abort), KeyboardInterrupt):
        typer.secho("error: interrupted", fg=typer.colors.RED, err=True)
        return 130
    except _click.ClickException as e:
        typer.secho(f"error: {printable(e.format_message())}", fg=typer.colors.RED, err=True)
        return e.exit_code
    except BrokenPipeError:  # `guard screen ... | head`: the reader left; say nothing more
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return EXIT_FAILED
    except Exception as e:  # a bug: one line for the user, the traceback on request
        if os.environ.get("GUARD_DEBUG"):
            traceback.print_exc()
        logger.debug("unhandled error", exc_info=True)
        msg = printable(str(e).strip().splitlines()[0]) if str(e).strip() else ""
        typer.secho(
            f"error: internal error: {type(e).__name__}"
            + (f": {msg}" if msg else "")
            + " (please report it; GUARD_DEBUG=1 prints the traceback)",
            fg=typer.colors.RED,
            err=True,
        )
        return EXIT_FAILED
    return rv if isinstance(rv, int) else 0
