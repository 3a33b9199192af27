"""Shared pieces of the ``guard`` commands: one-line errors, quiet libraries, reading prompt files.

Every command reports a problem the user can fix as ``error: ...`` on stderr and exits 2 (bad input) or
1 (a check failed); none lets a traceback through (:func:`guard.cli.main` catches what slips past).
"""

from __future__ import annotations

import contextlib
import csv
import io
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import typer

from guard.errors import GuardError

logger = logging.getLogger(__name__)

EXIT_FAILED = 1  # a check failed (policy validate), or guard itself failed
EXIT_BAD_INPUT = 2  # bad arguments or input files

#: bytes read before deciding that a prompt file is binary
_SNIFF_BYTES = 8192


def fail(msg: str, code: int = EXIT_BAD_INPUT) -> NoReturn:
    """Print ``error: msg`` to stderr and leave with ``code``."""
    typer.secho(f"error: {printable(msg)}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def printable(text: str) -> str:
    """``text`` with lone surrogates (undecodable bytes of argv or a file name) shown as ``\\udcXX``,
    so printing it can never raise UnicodeEncodeError."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def describe_os_error(e: OSError) -> str:
    """``PATH: reason`` for an OSError, without Python's ``[Errno N]`` noise."""
    name = e.filename if e.filename is not None else ""
    reason = e.strerror or str(e) or type(e).__name__
    return f"{os.fsdecode(name)}: {reason}" if name != "" else reason


@contextlib.contextmanager
def user_errors(code: int = EXIT_BAD_INPUT) -> Iterator[None]:
    """Turn guard's own errors and OS errors (missing, unreadable, full disk) into one ``error:`` line."""
    try:
        yield
    except GuardError as e:
        fail(str(e), code)
    except OSError as e:
        fail(describe_os_error(e), code)


def check_text(text: str, where: str) -> str:
    """``text`` unchanged, or a :class:`GuardError` when it holds a lone surrogate: an undecodable
    byte in a command-line argument (Python keeps those as U+DC80..U+DCFF) that no model can read."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        ch = ord(text[e.start])
        what = f"byte 0x{ch - 0xDC00:02x}" if 0xDC80 <= ch <= 0xDCFF else f"lone surrogate U+{ch:04X}"
        raise GuardError(f"{where} is not valid UTF-8 text ({what} at character {e.start})") from None
    return text


def quiet_libraries() -> None:
    """Offline by default, and only errors from the libraries under guard (their progress bars and
    advice are noise on a command line)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # transformers' loading bars follow this too
    import warnings

    warnings.filterwarnings("ignore", category=FutureWarning)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for name in ("transformers", "diffusers", "sentence_transformers", "huggingface_hub"):
        logging.getLogger(name).setLevel(logging.ERROR)
    if "transformers" in sys.modules:  # never import it just to quiet it: `guard screen` starts without it
        try:
            sys.modules["transformers"].logging.set_verbosity_error()
            sys.modules["transformers"].logging.disable_progress_bar()
        except AttributeError:
            pass


# ------------------------------------------------------------------------------------ prompt files


def _read_text_file(path: Path) -> str:
    """A prompt file's text (UTF-8, BOM dropped), or a GuardError saying why it cannot be used."""
    shown = printable(os.fspath(path))
    if not path.exists():
        raise GuardError(f"input file not found: {shown}")
    if path.is_dir():
        raise GuardError(f"{shown}: is a directory; give a .txt or .csv file")
    if not path.is_file():  # a FIFO or a device would block or never end
        raise GuardError(f"{shown}: not a regular file; give a .txt or .csv file")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise GuardError(f"{shown}: cannot read: {e.strerror or e}") from None
    nul = data.find(b"\x00", 0, _SNIFF_BYTES)
    if nul >= 0:
        raise GuardError(f"{shown}: binary file (NUL byte at offset {nul}); give UTF-8 text")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        col = e.start - (data.rfind(b"\n", 0, e.start) + 1) + 1
        raise GuardError(f"{shown}:{line}:{col}: not UTF-8 text ({e.reason}, byte 0x{data[e.start]:02x})") from None


def _csv_rows(text: str, shown: str) -> Iterator[tuple[int, list[str]]]:
    """(line number, fields) of each CSV record, with quoted newlines kept inside their field and no
    limit on a field's length below the file's own (the csv module's default is 131,072 characters)."""
    old = csv.field_size_limit()
    csv.field_size_limit(max(old, len(text) + 1))
    try:
        reader = csv.reader(io.StringIO(text, newline=""), strict=True)
        line = 1
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as e:
                raise GuardError(f"{shown}:{reader.line_num}: not valid CSV: {e}") from None
            yield line, row
            line = reader.line_num + 1
    finally:
        csv.field_size_limit(old)


def read_csv_column(path: Path, column: str | None = None, *, role: str = "prompt") -> tuple[str, list[str]]:
    """(column name, values) of one column of a CSV file with a header row: ``column``, or ``prompt``, or
    the only column. Every record must have as many fields as the header: a short or long row (often an
    unquoted comma) is an error naming its line, never a silently cut prompt."""
    shown = printable(os.fspath(path))
    rows = _csv_rows(_read_text_file(path), shown)
    header = next(rows, None)
    if header is None or not any(f.strip() for f in header[1]):
        raise GuardError(f"{shown}: empty CSV file (no header row)")
    fields = header[1]
    col = column
    if col is None:
        col = "prompt" if "prompt" in fields else (fields[0] if len(fields) == 1 else None)
        if col is None:
            raise GuardError(
                f"{shown}: several columns ({', '.join(map(repr, fields))}); choose the {role} column with --column"
            )
    if col not in fields:
        raise GuardError(f"{shown}: column {printable(col)!r} not found; columns are: {', '.join(fields)}")
    if fields.count(col) > 1:
        raise GuardError(f"{shown}:1: column {col!r} appears {fields.count(col)} times in the header")
    at = fields.index(col)
    values = []
    for line, row in rows:
        if not row:  # a blank line between records
            continue
        if len(row) != len(fields):
            raise GuardError(
                f"{shown}:{line}: {len(row)} field(s) where the header has {len(fields)} (an unquoted comma or quote?)"
            )
        values.append(row[at])
    return col, values


def read_prompts(path: Path, column: str | None = None) -> list[str]:
    """Prompts from a .txt file (one per line, blank lines skipped) or a .csv file (``column``, or
    'prompt', or the only column; quoted fields may hold newlines and commas).

    Lines are split at ``\\n`` (and ``\\r\\n``) only: U+2028 and form feeds stay inside their prompt, as a
    pipeline given the same string would see them."""
    path = Path(path)
    if path.suffix.lower() == ".csv":
        return read_csv_column(path, column)[1]
    if column is not None:
        raise GuardError(f"--column applies to .csv files, not {printable(path.name)}")
    text = _read_text_file(path)
    return [line.removesuffix("\r") for line in text.split("\n") if line.strip()]
