"""``guard serve`` and ``guard serve hash-key`` as plain functions, plus a typer sub-app.

Register in the main CLI with ``app.add_typer(serve_app, name="serve")`` (FastAPI and uvicorn are
imported only when the server starts, so the ``serve`` extra is needed only then).
"""

from __future__ import annotations

import logging
import os
import sys

import typer

from guard.errors import GuardError

logger = logging.getLogger(__name__)

_MISSING_EXTRA = (
    "guard serve needs the serve extra: pip install 'diffusers-guard[serve]' (fastapi, uvicorn, prometheus-client)"
)


def _quiet() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import warnings

    warnings.filterwarnings("ignore", category=FutureWarning)
    for name in ("transformers", "diffusers", "sentence_transformers", "huggingface_hub"):
        logging.getLogger(name).setLevel(logging.ERROR)
    logging.getLogger("faiss").setLevel(logging.WARNING)  # its loader reports every CPU-feature probe


def serve_command(
    config: str | None = None,
    host: str = "127.0.0.1",
    port: int = 8000,
    log_level: str = "info",
    access_log: bool = True,
    graceful_timeout_s: float = 60.0,
) -> int:
    """Run the server until SIGINT/SIGTERM (then drain the queues and flush the audit log).
    Returns the exit status: 2 for a config or policy error (printed with file:line)."""
    _quiet()
    logging.basicConfig(
        level=getattr(logging, log_level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        import uvicorn

        from guard.serve.app import create_app
        from guard.serve.config import default_config, load_config
    except ImportError as e:
        print(f"error: {_MISSING_EXTRA} ({e})", file=sys.stderr)
        return 2
    try:
        cfg = load_config(config) if config else default_config()
        app = create_app(cfg)
    except GuardError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    names = ", ".join(f"{d.name} ({'screen' if d.screen_only else d.kind or 'pipeline'})" for d in cfg.deployments)
    logger.info(
        "guard serve on http://%s:%d  deployments: %s  auth: %s",
        host,
        port,
        names,
        "on" if cfg.auth_enabled else "off (no tenants in the config)",
    )
    if not cfg.auth_enabled and host not in ("127.0.0.1", "localhost", "::1"):
        logger.warning("authentication is off and the server listens on %s: add tenants to the config", host)
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level=log_level.lower(),
        access_log=access_log,
        timeout_graceful_shutdown=graceful_timeout_s,
    )
    return 0


def hash_key_command(key: str | None = None, generate: bool = False) -> tuple[str | None, str]:
    """``(key, 'sha256:<hex>')``: hash ``key``, or a new random key with ``generate``. The key is
    returned so the caller can show it once; only the hash goes in the config."""
    from guard.serve.auth import new_key
    from guard.serve.config import hash_key

    if generate:
        key = new_key()
    if not key:
        raise GuardError("give a key to hash (argument or stdin), or --generate for a new one")
    if key != key.strip():
        raise GuardError("the key has leading or trailing whitespace; strip it first")
    return key, hash_key(key)


serve_app = typer.Typer(
    help="Run the HTTP service (screening, OpenAI-shaped images API, metrics).",
    invoke_without_command=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@serve_app.callback()
def _serve(
    ctx: typer.Context,
    config: str | None = typer.Option(None, "--config", "-c", help="serve.yaml (default: demo + screen)"),
    host: str = typer.Option("127.0.0.1", help="address to listen on"),
    port: int = typer.Option(8000, help="TCP port"),
    log_level: str = typer.Option("info", help="debug | info | warning | error"),
) -> None:
    """Serve deployments over HTTP; without --config, the embedded demo pipeline and a screen-only
    deployment for the default policy."""
    if ctx.invoked_subcommand is not None:
        return
    raise typer.Exit(serve_command(config, host, port, log_level))


@serve_app.command("hash-key")
def _hash_key(
    key: str | None = typer.Argument(None, help="the key (default: read from stdin)"),
    generate: bool = typer.Option(False, "--generate", help="make a new random key"),
) -> None:
    """Print the sha256 form of an API key for the serve config (keys are never stored in clear)."""
    if key is None and not generate and not sys.stdin.isatty():
        key = sys.stdin.readline().rstrip("\n")
    try:
        k, h = hash_key_command(key, generate)
    except GuardError as e:
        typer.secho(f"error: {e}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from None
    if generate:
        typer.echo(f"key:    {k}", err=True)
        typer.echo("        (shown once; give it to the tenant, keep only the hash)", err=True)
    typer.echo(h)
