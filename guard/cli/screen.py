"""``guard screen`` and ``guard eval``: the prompt screen alone, on prompts or prompt files.

Neither command imports torch or diffusers: the screen runs on the ONNX embedder and FAISS, so a
command line that screens a prompt starts in about a second (tests/test_cli.py checks it).
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

import typer

from guard.cli.common import check_text, fail, quiet_libraries, read_csv_column, read_prompts, user_errors
from guard.errors import GuardError

logger = logging.getLogger(__name__)


def _progress(total: int, quiet: bool, min_items: int):
    """A tqdm bar on stderr: off with --quiet, when stderr is not a terminal, or for few prompts."""
    from tqdm import tqdm

    show = not quiet and total > min_items and sys.stderr.isatty()
    return tqdm(total=total, desc="screening", unit="prompt", disable=not show, file=sys.stderr)


def screen(
    prompts: list[str] = typer.Argument(None, help="Prompts to screen."),
    input: Path | None = typer.Option(None, "--input", "-i", help=".txt (one prompt a line) or .csv file."),
    column: str | None = typer.Option(None, "--column", "-c", help="CSV column holding the prompts."),
    policy: str = typer.Option("default", "--policy", "-p", help="Policy file or built-in name."),
    jsonl: bool = typer.Option(False, "--jsonl", help="One JSON object per prompt, in input order."),
    batch_size: int = typer.Option(256, "--batch-size", min=1, max=65536, help="Prompts per encoder pass."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Screen prompts against a policy: allow, escalate or block, with the concept and score.

    Exits 0 whatever the decisions (non-zero only for bad input)."""
    quiet_libraries()
    if input is None and not prompts:
        fail("give prompts as arguments or --input FILE")
    if input is not None and prompts:
        fail("give prompts as arguments or --input FILE, not both")
    with user_errors():
        if input is not None:
            items = read_prompts(input, column)
            if not items:
                raise GuardError(f"{os.fspath(input)}: no prompts in the file")
        else:
            if column is not None:
                raise GuardError("--column applies to --input .csv files")
            items = [check_text(p, f"prompt argument {i + 1}") for i, p in enumerate(prompts)]
        from guard.core import Guard

        # the same runner as pipelines and the server: a failing screen blocks (fail closed) with the
        # error in the reasons, unless the policy says fail_open
        runner = Guard(policy)
        results = []
        with _progress(len(items), quiet, batch_size) as bar:
            for s in range(0, len(items), batch_size):
                chunk = runner.screen_prompts(items[s : s + batch_size])
                for r in chunk:
                    r.index += s
                results.extend(chunk)
                bar.update(len(chunk))
    if jsonl:
        for r in results:
            obj = {
                "index": r.index,
                "decision": r.decision,
                "category": r.category,
                "concept": r.concept,
                "score": round(float(r.score), 4),
                "threshold": None if r.threshold is None else round(float(r.threshold), 4),
                "reasons": r.reasons,
                "transforms": r.transforms,
                "elapsed_ms": round(r.elapsed_ms, 3),
            }
            typer.echo(json.dumps(obj, ensure_ascii=False))
        return
    _print_table(items, results)


def clip(s: str, n: int) -> str:
    """``s`` on one line and at most ``n`` characters."""
    s = " ".join(s.split())
    return s if len(s) <= n else s[: n - 1] + "…"


def _print_table(items: list[str], results) -> None:
    """One line per prompt, and under it the deciding reason (the first of the verdict's reasons)."""
    colour = {"allow": typer.colors.GREEN, "escalate": typer.colors.YELLOW, "block": typer.colors.RED}
    typer.echo(f"{'#':>4}  {'decision':8}  {'score':>5}/{'thr':<5} {'concept':30}  prompt / reason")
    for p, r in zip(items, results):
        thr = f"{r.threshold:.2f}" if r.threshold is not None else "  -  "
        concept = clip(r.concept or "-", 30)
        typer.secho(
            f"{r.index:>4}  {r.decision:8}  {r.score:5.2f}/{thr:<5} {concept:30}  {clip(p, 60)!r}",
            fg=colour.get(r.decision),
        )
        if r.reasons:
            typer.echo(f"{'':>6}reason: {clip(r.reasons[0], 110)}")
    counts = {d: sum(r.decision == d for r in results) for d in ("allow", "escalate", "block")}
    typer.echo(f"{len(results)} prompt(s): " + ", ".join(f"{v} {k}" for k, v in counts.items()))


# ------------------------------------------------------------------------------------ eval


def _split_spec(spec: str) -> tuple[Path, str | None]:
    """FILE[:COLUMN] -> (path, column). A colon that is part of an existing path is kept."""
    if not spec.strip():
        raise GuardError("empty FILE[:COLUMN]")
    if Path(spec).exists() or ":" not in spec:
        return Path(spec), None
    path, col = spec.rsplit(":", 1)
    return Path(path), (col or None)


def _pct(x) -> str:
    return "   -  " if x is None else f"{100 * x:6.2f}"


def eval_cmd(
    unsafe: str = typer.Option(..., "--unsafe", help="Unsafe prompts: FILE[:COLUMN] (.txt or .csv)."),
    benign: str = typer.Option(..., "--benign", help="Benign prompts: FILE[:COLUMN] (.txt or .csv)."),
    policy: str = typer.Option("default", "--policy", "-p", help="Policy file or built-in name."),
    labels: str | None = typer.Option(
        None, "--labels", help="CSV column of the unsafe file with comma-separated categories, for a TPR per label."
    ),
    json_out: Path | None = typer.Option(None, "--json", help="Write the full metrics as JSON here."),
    limit: int | None = typer.Option(None, "--limit", min=1, help="Use only the first N of each set."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Measure a policy's screen: TPR (block, and block+escalate), FPR, AUROC, per category and per
    transform, latency."""
    quiet_libraries()
    with user_errors():
        from guard.evaluate import evaluate
        from guard.policy import load_policy
        from guard.screen import PromptScreen

        upath, ucol = _split_spec(unsafe)
        bpath, bcol = _split_spec(benign)
        u = read_prompts(upath, ucol)
        b = read_prompts(bpath, bcol)
        lab = None
        if labels:
            if upath.suffix.lower() != ".csv":
                raise GuardError(f"--labels names a CSV column, and {os.fspath(upath)} is not a .csv file")
            lab = read_csv_column(upath, labels, role="label")[1]
        if limit:
            u, b = u[:limit], b[:limit]
            lab = lab[:limit] if lab else None
        if not u or not b:
            raise GuardError("both --unsafe and --benign need at least one prompt")
        if json_out is not None and json_out.is_dir():
            raise GuardError(f"--json {os.fspath(json_out)}: is a directory; give a file name")
        scr = PromptScreen(load_policy(policy))
        with _progress(len(u) + len(b), quiet, 0) as bar:
            rep = evaluate(scr, u, b, unsafe_labels=lab, progress=bar.update)
    d = rep.to_dict()
    typer.echo(f"policy {rep.policy} ({rep.policy_sha256[:12]})")
    typer.echo(f"{'set':26} {'n':>6} {'block %':>8} {'blk+esc %':>9}")
    typer.echo(
        f"{'unsafe (TPR)':26} {rep.unsafe['n']:6d} {_pct(rep.unsafe['block_rate']):>8} "
        f"{_pct(rep.unsafe['flag_rate']):>9}"
    )
    typer.echo(
        f"{'benign (FPR)':26} {rep.benign['n']:6d} {_pct(rep.benign['block_rate']):>8} "
        f"{_pct(rep.benign['flag_rate']):>9}"
    )
    typer.echo(f"AUROC {rep.auroc:.4f}" if rep.auroc is not None else "AUROC -")
    if rep.per_label:
        typer.echo("\nunsafe by label:")
        for k, v in rep.per_label.items():
            typer.echo(f"  {k:24} {v['n']:6d} {_pct(v['block_rate']):>8} {_pct(v['flag_rate']):>9}")
    if rep.per_category:
        typer.echo("\nflagged by concept category (unsafe block/escalate, benign block/escalate):")
        for k, v in sorted(rep.per_category.items()):
            typer.echo(
                f"  {k:24} {v['unsafe_block']:6d} {v['unsafe_escalate']:6d}   "
                f"{v['benign_block']:6d} {v['benign_escalate']:6d}"
            )
    if rep.per_transform:
        typer.echo("\nby transform that fired (n unsafe: block %, n benign: block %):")
        for k, v in rep.per_transform.items():
            typer.echo(
                f"  {k:24} {v['unsafe']['n']:6d}: {_pct(v['unsafe']['block_rate'])}   "
                f"{v['benign']['n']:6d}: {_pct(v['benign']['block_rate'])}"
            )
    lat = rep.latency_ms
    typer.echo(
        f"\nlatency ms/prompt: batched {lat['batched_mean']:.2f}; one at a time mean "
        f"{lat['single_mean']:.2f}, p50 {lat['single_p50']:.2f}, p95 {lat['single_p95']:.2f}"
    )
    if json_out is not None:
        with user_errors():
            from guard.fileio import write_atomic

            json_out.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(json_out, json.dumps(d, indent=2, ensure_ascii=False).encode("utf-8"))
        typer.echo(f"wrote {json_out}")


def train_screen_cmd(ctx: typer.Context) -> None:
    """Retrain the learned screen decision (seeded, reproducible); options: guard train-screen --help."""
    quiet_libraries()
    from guard.screen.train import main as train_main

    try:
        code = train_main(list(ctx.args))
    except SystemExit as e:  # argparse's --help (0) and usage errors (2)
        code = e.code if isinstance(e.code, int) else 2
    raise typer.Exit(code)
