"""``guard serve``: an HTTP service for per-deployment guarded pipelines and prompt screening.

``create_app(config)`` builds the FastAPI app; ``load_config(path)`` reads a serve.yaml. Needs the
``serve`` extra (FastAPI, uvicorn, prometheus-client, python-multipart). See docs/serve.md.
"""

from guard.serve.config import ServeConfig, default_config, hash_key, load_config


def create_app(config: "ServeConfig | None" = None):
    from guard.serve.app import create_app as _create

    return _create(config)


__all__ = ["ServeConfig", "create_app", "default_config", "hash_key", "load_config"]
