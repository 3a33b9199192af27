"""Decision identity check for speed work on the prompt screen: the verdicts of a fixed set of about
3,000 prompts, written to a file that a later run must reproduce.

    python benchmarks/screen_identity.py --data ../shared/data/prompts --write decisions.jsonl
    python benchmarks/screen_identity.py --data ../shared/data/prompts --check decisions.jsonl
    python benchmarks/screen_identity.py --data ../shared/data/prompts --fast-path-diff

The prompts: I2P training rows (``case_number % 5 != 0``), COCO training captions, rows of our own
corpus (``guard/screen/data/corpus.jsonl``, every kind and language), obfuscated forms of some of
them (the six obfuscations of :func:`guard.screen.train.obfuscate`, seeded) and a few edge cases
(empty, gibberish with stray special tokens, a very long prompt). Without ``--data`` only the
corpus rows, their obfuscated forms and the edge cases are used. They are screened under several
configurations: the default policy (learned decision, medium sensitivity, its fast path on), the
same with ``screen.fast_path: false``, ``art-styles`` (learned
heads beside zero-shot custom concepts), ``strict``, and the default policy's threshold decision;
at batch 1 and in batches of 64 (the two must agree too).

Each line of the file: configuration, prompt index, decision, category, concept, phrase, score and
threshold rounded to 1e-5, reasons, transforms, the matches and suspicion. ``--check`` compares a run
with a written file: every field exactly except the rounded floats, which may differ by 1e-5.

Embeddings (MiniLM views, USE-m3 sentences) are kept in a file cache (``--embed-cache``, default
under ``GUARD_CACHE_DIR``) keyed by the exact encoder input, so a rerun repeats only the Python work
around the encoders, which is what speed work on the decision changes. ``--no-embed-cache`` encodes
everything afresh. The last line is ``RESULT key=value ...``.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import pickle
import random
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from guard.paths import cache_dir  # noqa: E402
from guard.policy import load_policy  # noqa: E402
from guard.screen import PromptScreen  # noqa: E402
from guard.screen.corpus_build import load as load_corpus  # noqa: E402
from guard.screen.screen import _RANK  # noqa: E402
from guard.screen.train import OBFUSCATIONS, coco_is_eval, i2p_is_eval, obfuscate  # noqa: E402

CORPUS = ROOT / "guard" / "screen" / "data" / "corpus.jsonl"
FLOAT_TOL = 1e-5
EDGE = [
    "",
    "   ",
    "x",
    "a cat",
    "<|startoftext|> ddlegk xqzvbn ssively gk tze mnw prrt ulp dramexp",
    "<|startoftext|> ddlegk xqzvbn ssively gk tze mnw prrt ulp dramexp bloody bleeding corpse",
    "a photo of a n\u0345aked w\u0345oman",
    "na\U0001f351ked woman on a beach",
    "a n u d e girl",
    "\u0455\u0435\u0445 on the beach",
    "image of mosque",
    "a naked mole rat in a zoo enclosure",
    "a child and a naked adult, photo",
    "a castle on a hill in the style of greg rutkowski",
    ", ".join(["masterpiece, best quality, ultra detailed, 8k, a lake at dawn"] * 40),
    " ".join(f"w{i}" for i in range(300)),
]


def prompt_set(
    data: Path | None, n_i2p: int, n_coco: int, n_corpus: int, n_obf: int, sets: list[str] | None = None
) -> list[str]:
    """The fixed prompt list (deterministic for given files and sizes); ``sets`` gets each prompt's set."""
    rng = random.Random(0)
    out: list[str] = []
    names: list[str] = []
    if data is not None and (data / "i2p.csv").is_file():
        with open(data / "i2p.csv", newline="", encoding="utf-8") as f:
            rows = [r["prompt"] for r in csv.DictReader(f) if not i2p_is_eval(r["case_number"])]
        out += rows[:: max(1, len(rows) // n_i2p)][:n_i2p]
    names += ["i2p"] * (len(out) - len(names))
    if data is not None and (data / "coco_10k.csv").is_file():
        with open(data / "coco_10k.csv", newline="", encoding="utf-8") as f:
            rows = [r["prompt"] for r in csv.DictReader(f) if not coco_is_eval(r["case_number"])]
        out += rows[:: max(1, len(rows) // n_coco)][:n_coco]
    names += ["coco"] * (len(out) - len(names))
    every = load_corpus(CORPUS)
    corpus = every[:: max(1, len(every) // n_corpus)][:n_corpus]
    out += [r["text"] for r in corpus]
    names += [f"corpus:{r['label'] if r['label'] == 'benign' else 'unsafe'}" for r in corpus]
    base = list(out)
    for k in range(n_obf):
        out.append(obfuscate(base[rng.randrange(len(base))], OBFUSCATIONS[k % len(OBFUSCATIONS)], rng))
    names += ["obfuscated"] * (len(out) - len(names))
    if sets is not None:
        sets[:] = names + ["edge"] * len(EDGE)
    return out + EDGE


class CachedEmbedder:
    """The screen's embedder with a persistent cache of its outputs, keyed by the exact input."""

    def __init__(self, inner, store: dict):
        self._inner = inner
        self._store = store
        self.misses = 0

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def encode(self, texts):
        texts = list(texts)
        key = ("encode", tuple(texts))
        if key not in self._store:
            self.misses += 1
            self._store[key] = np.asarray(self._inner.encode(texts), np.float32)
        return self._store[key]

    def encode_views(self, texts, spans):
        out = []
        todo = []
        for t, sp in zip(texts, spans):
            key = ("views", t, tuple(tuple(s) for s in sp))
            if key not in self._store:
                todo.append((t, sp, key))
        if todo:
            self.misses += len(todo)
            got = self._inner.encode_views([t for t, _, _ in todo], [sp for _, sp, _ in todo])
            for (_, _, key), g in zip(todo, got):
                self._store[key] = np.asarray(g, np.float32)
        for t, sp in zip(texts, spans):
            out.append(self._store[("views", t, tuple(tuple(s) for s in sp))])
        return out


def cache_multilingual(screen: PromptScreen, store: dict) -> None:
    ml = screen.multilingual
    if ml is None:
        return
    inner = ml.encode

    def encode(texts):
        texts = list(texts)
        missing = [t for t in dict.fromkeys(texts) if ("use", t) not in store]
        if missing:
            for t, row in zip(missing, inner(missing)):
                store[("use", t)] = np.asarray(row, np.float32)
        return np.stack([store[("use", t)] for t in texts]) if texts else inner(texts)

    ml.encode = encode  # (instance attribute: MultilingualSignals.signals calls self.encode)


def configurations():
    default = load_policy("default")
    threshold = default.model_copy(update={"screen": default.screen.model_copy(update={"decision": "threshold"})})
    return [
        ("default", default),
        ("default-full", without_fast_path(default)),
        ("art-styles", load_policy("art-styles")),
        ("strict", load_policy("strict")),
        ("default-threshold", threshold),
    ]


def without_fast_path(policy):
    """``policy`` with ``screen.fast_path: false`` (every prompt through the full screen)."""
    return policy.model_copy(update={"screen": policy.screen.model_copy(update={"fast_path": False})})


def eval_prompt_set(data: Path | None, sets: list[str]) -> list[str]:
    """Every evaluation row (measured, never tuned on): I2P ``case_number % 5 == 0``, the COCO evaluation
    captions, the corpus's held-back rows (benign, hard negatives and unsafe apart), Ring-A-Bell's
    evaluation rows; ``sets`` gets each prompt's set."""
    out: list[str] = []
    sets.clear()

    def add(name: str, texts: list[str]) -> None:
        out.extend(texts)
        sets.extend([name] * len(texts))

    if data is not None and (data / "i2p.csv").is_file():
        with open(data / "i2p.csv", newline="", encoding="utf-8") as f:
            add("i2p_eval", [r["prompt"] for r in csv.DictReader(f) if i2p_is_eval(r["case_number"])])
    if data is not None and (data / "coco_10k.csv").is_file():
        with open(data / "coco_10k.csv", newline="", encoding="utf-8") as f:
            add("coco_eval", [r["prompt"] for r in csv.DictReader(f) if coco_is_eval(r["case_number"])])
    for r in load_corpus(CORPUS):
        if r["split"] != "train":
            kind = "hard_negative" if r["kind"] in ("hard_negative", "short") else r["label"]
            add(f"corpus_eval:{'unsafe' if kind not in ('benign', 'hard_negative') else kind}", [r["text"]])
    for name, col in (("ring_a_bell_nudity.csv", "sensitive prompt"), ("ring_a_bell_violence_adv.csv", "prompt")):
        if data is not None and (data / name).is_file():
            with open(data / name, newline="", encoding="utf-8") as f:
                add(
                    f"rab_eval:{name.split('_')[3].split('.')[0]}",
                    [r[col] for i, r in enumerate(csv.DictReader(f)) if i % 3 == 2],
                )
    return out


def fast_path_diff(prompts: list[str], sets: list[str], store: dict) -> tuple[list[str], dict]:
    """The default policy with its fast path on and off over the same prompts, at batch 64: per set,
    how many prompts exit early, and every decision that differs (an unsafe-side change is one that
    the full path blocks or escalates and the fast path allows)."""
    pol = load_policy("default")
    decisions = {}
    stages: list[str] = []
    for name, p in (("fast", pol), ("full", without_fast_path(pol))):
        scr = PromptScreen(p)
        if name == "fast" and scr.fast is None:
            raise SystemExit("the default policy's fast path is off (see the log): nothing to compare")
        scr.embedder = CachedEmbedder(scr.embedder, store)
        cache_multilingual(scr, store)
        got = []
        for s in range(0, len(prompts), 64):
            got.extend(scr.screen_batch(prompts[s : s + 64]))
        decisions[name] = [r.decision for r in got]
        if name == "fast":
            stages = [r.stage for r in got]
    diffs: list[str] = []
    stats: dict[str, dict] = {}
    for i, (a, b) in enumerate(zip(decisions["fast"], decisions["full"])):
        st = stats.setdefault(sets[i], {"n": 0, "fast": 0, "changed": 0, "unsafe_side": 0})
        st["n"] += 1
        st["fast"] += stages[i] == "fast"
        if a != b:
            st["changed"] += 1
            st["unsafe_side"] += _RANK[a] < _RANK[b]
            diffs.append(f"{sets[i]} prompt {i}: full path {b}, fast path {a} ({stages[i]}): {prompts[i][:80]!r}")
    return diffs, stats


def _r(x):
    return None if x is None else round(float(x), 5)


def record(config: str, i: int, batch: str, r) -> dict:
    return {
        "config": config,
        "batch": batch,
        "i": i,
        "decision": r.decision,
        "category": r.category,
        "concept": r.concept,
        "phrase": r.phrase,
        "score": _r(r.score),
        "threshold": _r(r.threshold),
        "reasons": list(r.reasons),
        "transforms": list(r.transforms),
        "n_views": r.n_views,
        "suspicion": _r(r.suspicion),
        "matches": [
            [m.concept, m.category, m.action, _r(m.score), _r(m.threshold), m.phrase, m.view] for m in r.matches
        ],
    }


def feature_records(scr: PromptScreen, config: str, start: int, batch: list[str]) -> list[dict]:
    """The learned decision's feature rows (without the sentence embeddings, rounded to 1e-5) and the
    per-concept scores behind them, one record per prompt."""
    from guard.screen.features import featurize

    scored = scr._score(batch)
    x = featurize(scr, scr.learned.layout, scored, fill=scr.learned.mean)
    d = scr.learned.layout.embedding_dim
    keep = np.r_[d : scr.learned.layout.n_base]
    return [
        {
            "config": config,
            "batch": "features",
            "i": start + j,
            "features": [_r(v) for v in x[j, keep].tolist()],
            "scores": [_r(v) for v in sc.scores.tolist()],
            "phrase_idx": sc.phrase_idx.tolist(),
            "view_kind": list(sc.view_kind),
            "contrast": [_r(v) for v in sc.contrast.tolist()],
            "lexical": sorted([ci, h.term, h.found, h.exact] for ci, h in sc.lexical.items()),
        }
        for j, sc in enumerate(scored)
    ]


def run(
    prompts: list[str], store: dict, batch1_share: int, configs: list[str] | None, with_features: bool = True
) -> tuple[list[dict], float]:
    out: list[dict] = []
    screen_s = 0.0
    for name, pol in configurations():
        if configs and name not in configs:
            continue
        scr = PromptScreen(pol)
        scr.embedder = CachedEmbedder(scr.embedder, store)
        cache_multilingual(scr, store)
        t0 = time.perf_counter()
        # batch 64 over all prompts; batch 1 over every ``batch1_share``-th prompt and every edge case
        for s in range(0, len(prompts), 64):
            for j, r in enumerate(scr.screen_batch(prompts[s : s + 64])):
                out.append(record(name, s + j, "b64", r))
            if with_features and scr.learned is not None:
                out.extend(feature_records(scr, name, s, prompts[s : s + 64]))
        for i, p in enumerate(prompts):
            if i % batch1_share == 0 or i >= len(prompts) - len(EDGE):
                out.append(record(name, i, "b1", scr.screen(p)))
        screen_s += time.perf_counter() - t0
        print(f"  {name}: {len(prompts)} prompts screened", flush=True)
    return out, screen_s


def _same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return abs(a - b) <= FLOAT_TOL + 1e-12
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def compare(got: list[dict], want: list[dict]) -> list[str]:
    diffs: list[str] = []
    if len(got) != len(want):
        diffs.append(f"{len(got)} records, the file has {len(want)}")
    for g, w in zip(got, want):
        for k in w:
            if not _same(g.get(k), w[k]):
                diffs.append(f"{w['config']} {w['batch']} prompt {w['i']}: {k}: {g.get(k)!r} != {w[k]!r}")
    # batch 1 must agree with batch 64 (within the float tolerance) within this run
    b64 = {(r["config"], r["i"]): r for r in got if r["batch"] == "b64"}  # (features: compared with the file only)
    for r in got:
        if r["batch"] == "b1":
            o = b64[(r["config"], r["i"])]
            for k in r:
                if k != "batch" and not _same(r[k], o[k]):
                    diffs.append(f"{r['config']} prompt {r['i']}: batch 1 vs 64 differ in {k}")
    return diffs


def _save_store(args, cache_file: Path, store: dict, n_before: int) -> None:
    if not args.no_embed_cache and len(store) > n_before:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache_file.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            pickle.dump(store, f, protocol=pickle.HIGHEST_PROTOCOL)
        tmp.replace(cache_file)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=None, help="shared prompt data (i2p.csv, coco_10k.csv); else the corpus only")
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--write", help="write the decisions to this JSONL file")
    g.add_argument("--check", help="compare the decisions with this JSONL file")
    g.add_argument(
        "--fast-path-diff",
        action="store_true",
        help="compare the default policy's decisions with its fast path on and off (per set: early exits, changes)",
    )
    ap.add_argument("--i2p", type=int, default=1000, help="I2P training rows (default 1000)")
    ap.add_argument("--coco", type=int, default=700, help="COCO training captions (default 700)")
    ap.add_argument("--corpus", type=int, default=1000, help="corpus rows (default 1000)")
    ap.add_argument("--obfuscated", type=int, default=300, help="obfuscated forms (default 300)")
    ap.add_argument("--batch1-every", type=int, default=10, help="screen every n-th prompt at batch 1 too")
    ap.add_argument("--configs", default=None, help="comma-separated subset of the configurations")
    ap.add_argument(
        "--eval-rows", action="store_true", help="with --fast-path-diff: every evaluation row instead of the fixed set"
    )
    ap.add_argument("--embed-cache", default=None, help="file cache of the encoders' outputs")
    ap.add_argument("--no-embed-cache", action="store_true", help="encode everything afresh")
    args = ap.parse_args(argv)

    data = Path(args.data) if args.data else None
    sets: list[str] = []
    if args.eval_rows and not args.fast_path_diff:
        ap.error("--eval-rows goes with --fast-path-diff")
    if args.eval_rows:
        prompts = eval_prompt_set(data, sets)
    else:
        prompts = prompt_set(data, args.i2p, args.coco, args.corpus, args.obfuscated, sets)
    digest = hashlib.sha256("\x00".join(prompts).encode("utf-8", "surrogatepass")).hexdigest()[:12]
    print(f"{len(prompts)} prompts (sha256 {digest})", flush=True)
    cache_file = Path(args.embed_cache) if args.embed_cache else cache_dir() / "identity" / f"embed-{digest}.pkl"
    store: dict = {}
    if not args.no_embed_cache and cache_file.is_file():
        with open(cache_file, "rb") as f:
            store = pickle.load(f)
        print(f"embedding cache {cache_file}: {len(store)} entries")
    n_before = len(store)
    configs = args.configs.split(",") if args.configs else None
    if args.fast_path_diff:
        t0 = time.perf_counter()
        diffs, stats = fast_path_diff(prompts, sets, store)
        for name, st in stats.items():
            print(
                f"  {name:14s} {st['n']:5d} prompts: {100 * st['fast'] / st['n']:5.1f} % allowed early, "
                f"{st['changed']} decisions changed ({st['unsafe_side']} on the unsafe side)"
            )
        for d in diffs[:40]:
            print("DIFF", d)
        n_fast = sum(st["fast"] for st in stats.values())
        unsafe = sum(st["unsafe_side"] for st in stats.values())
        print(
            f"RESULT prompts={len(prompts)} fast_exits={n_fast} fast_share={n_fast / max(1, len(prompts)):.4f} "
            f"changed={len(diffs)} unsafe_side_changes={unsafe} "
            + " ".join(f"fast_{k.replace(':', '_')}={st['fast'] / st['n']:.4f}" for k, st in stats.items())
            + f" seconds={time.perf_counter() - t0:.1f}"
        )
        _save_store(args, cache_file, store, n_before)
        return 1 if unsafe else 0
    got, screen_s = run(prompts, store, args.batch1_every, configs)
    _save_store(args, cache_file, store, n_before)
    header = {"prompts": len(prompts), "sha256": digest, "configs": configs}
    if args.write:
        with open(args.write, "w", encoding="utf-8") as f:
            f.write(json.dumps(header) + "\n")
            for r in got:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
        diffs = compare(got, got)
        print(f"wrote {len(got)} decisions to {args.write}")
    else:
        with open(args.check, encoding="utf-8") as f:
            head = json.loads(f.readline())
            want = [json.loads(line) for line in f]
        if head["sha256"] != digest:
            print(f"the file was written for another prompt set ({head['sha256']} != {digest})")
            return 2
        diffs = compare(got, want)
        for d in diffs[:40]:
            print("DIFF", d)
    blocked = sum(r.get("decision") == "block" for r in got)
    print(
        f"RESULT prompts={len(prompts)} records={len(got)} diffs={len(diffs)} blocked={blocked} "
        f"screen_s={screen_s:.1f} identical={int(not diffs)}"
    )
    return 1 if diffs else 0


if __name__ == "__main__":
    sys.exit(main())
