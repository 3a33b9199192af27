"""``python -m guard.serve [--config serve.yaml] [--host H] [--port P]`` (same as ``guard serve``)."""

from guard.serve.cli import serve_app

if __name__ == "__main__":
    serve_app(prog_name="python -m guard.serve")
