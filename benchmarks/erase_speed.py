"""Speed of the weight-level erasers on a randomly initialised UNet of Stable Diffusion 1.5's shape.

UNet: block_out_channels 320/640/1280/1280, cross_attention_dim 768, 16 cross-attention layers (32 K/V
projections), random weights; concept, guide and preserved embeddings are random 77×768 matrices (the
text encoder is not timed). Token rows are selected as for real prompts (a concept of a few tokens keeps
its last token through the end of the sequence: ~74 rows).

Timed:
  * UCE, 10 concepts + 100 preserved: the closed-form solve AND every edited weight (or its exact
    low-rank factors) materialised — i.e. everything ``guard.erase.erase`` does after encoding.
    Target ≤ 2 s on 2 CPU cores (the RECE paper quotes ~3 s for its editing on a GPU).
  * RECE, 3 epochs, same sets.
  * one ESD-x step: one classifier-free-guided UNet call of the partial denoising (an ESD step makes
    k of them, k uniform in [0, ddim_steps)), and the training part (frozen ε(∅), ε(c), trainable ε(c),
    backward, Adam) at the given latent size; the expected step time is k̄·denoise + train.

Usage:  python benchmarks/erase_speed.py [--threads 2] [--latent 32] [--ddim-steps 50] [--no-esd]
The last line is ``RESULT key=value ...``. ``*_s`` are wall-clock seconds; ``*_cpu_s`` the process's
CPU seconds, and ``uce_cpu_per_thread_s`` = CPU-s / threads, which approximates the wall time on an idle
machine when the wall time is inflated by other load (``load_avg`` is printed too).
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import time
import warnings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
warnings.filterwarnings("ignore")
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))


def sd15_unet():
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=64,
        in_channels=4,
        out_channels=4,
        layers_per_block=2,
        block_out_channels=(320, 640, 1280, 1280),
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=768,
        attention_head_dim=8,
    ).eval()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--concepts", type=int, default=10)
    ap.add_argument("--preserved", type=int, default=100)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--latent", type=int, default=32, help="ESD latent side (64 = 512 px)")
    ap.add_argument("--ddim-steps", type=int, default=50)
    ap.add_argument("--repeats", type=int, default=3, help="UCE/RECE timings: best of N")
    ap.add_argument("--no-esd", action="store_true")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from guard.erase.api import _ParamView
    from guard.erase.artifact import build_erasure as _build
    from guard.erase.esd import _scheduler, esd_objective, sample_xt, trainable_names
    from guard.erase.rece import gram, rece_factors
    from guard.erase.uce import aligned_rows, cross_attention_projections, factor_edit, uce_factors

    t0 = time.perf_counter()
    torch.manual_seed(0)
    unet = sd15_unet()
    proj = cross_attention_projections(unet)
    n_attn = len([n for n in proj if n.endswith("to_k")])
    print(
        f"SD-1.5-shaped random UNet: {sum(p.numel() for p in unet.parameters()) / 1e6:.0f}M parameters, "
        f"{n_attn} cross-attention layers, {len(proj)} K/V projections; built in "
        f"{time.perf_counter() - t0:.1f}s; torch threads {torch.get_num_threads()}"
    )

    g = torch.Generator().manual_seed(1)

    def emb():
        return torch.randn(77, 768, generator=g, dtype=torch.float64)

    def n_tokens():
        return int(torch.randint(3, 9, (1,), generator=g))  # start + 1..6 words + end

    guide, guide_len = emb(), 2  # the empty prompt: start and end tokens
    pairs = [aligned_rows(emb(), n_tokens(), guide, guide_len) for _ in range(args.concepts)]
    pres = []
    for _ in range(args.preserved):
        e, n = emb(), n_tokens()
        pres.append(aligned_rows(e, n, e, n)[0])
    rows_e = sum(c.shape[0] for c, _ in pairs)
    rows_p = sum(p.shape[0] for p in pres)
    originals = _ParamView(unet)
    meta = {
        "concepts": [f"c{i}" for i in range(args.concepts)],
        "guides": [""] * args.concepts,
        "preserved": [f"p{j}" for j in range(args.preserved)],
        "model": "random-sd15",
        "hyperparameters": {},
    }

    s_p = max(0.1, 1 / args.preserved)

    def uce_once():
        """The edit itself: the float64 solve and all new K/V weights materialised."""
        lr = uce_factors(pairs, pres, lamb=0.1, erase_scale=1.0, preserve_scale=s_p)
        fe = factor_edit(proj, lr)
        low = [n for n in fe.weights if fe.lowrank_is_smaller(n)]
        news = {n: fe.up(n) for n in low}
        news.update(fe.new_all([n for n in fe.weights if n not in low]))
        return fe, news

    def rece_once():
        lr, errs = rece_factors(
            pairs,
            pres,
            gram(proj),
            epochs=args.epochs,
            lamb=0.1,
            erase_scale=1.0,
            preserve_scale=s_p,
            embedding_lamb=1e-3,
        )
        return factor_edit(proj, lr).new_all(), errs

    uce_once()  # warm up (allocator, BLAS threads)
    uce_t, uce_cpu = [], []
    for _ in range(args.repeats):
        t, c = time.perf_counter(), time.process_time()
        fe, _ = uce_once()
        uce_t.append(time.perf_counter() - t)
        uce_cpu.append(time.process_time() - c)
    t = time.perf_counter()
    e = _build("uce", originals, factor=fe, meta=meta)
    art_t = time.perf_counter() - t
    print(
        f"UCE  {args.concepts} concepts ({rows_e} rows) + {args.preserved} preserved ({rows_p} rows): "
        f"best {min(uce_t):.3f}s wall of {args.repeats} ({', '.join(f'{x:.3f}' for x in uce_t)}), "
        f"{min(uce_cpu):.3f} CPU-s; "
        f"building the artifact from it (incl. 3 base fingerprints, {len(e.full)} full + {len(e.up)} "
        f"low-rank tensors): {art_t:.3f}s"
    )
    rece_t, rece_cpu = [], []
    for _ in range(max(1, args.repeats - 1)):
        t, c = time.perf_counter(), time.process_time()
        _, errs = rece_once()
        rece_t.append(time.perf_counter() - t)
        rece_cpu.append(time.process_time() - c)
    print(
        f"RECE {args.epochs} epochs: best {min(rece_t):.3f}s wall, {min(rece_cpu):.3f} CPU-s; "
        "regeneration error by epoch " + ", ".join(f"{x:.4f}" for x in errs)
    )
    result = {
        "uce_s": round(min(uce_t), 3),
        "uce_target_s": 2.0,
        "uce_ok": min(uce_t) <= 2.0,
        "uce_cpu_s": round(min(uce_cpu), 3),
        "uce_cpu_per_thread_s": round(min(uce_cpu) / args.threads, 3),
        "uce_artifact_s": round(art_t, 3),
        "rece_cpu_s": round(min(rece_cpu), 3),
        "rece_s": round(min(rece_t), 3),
        "rece_epochs": args.epochs,
        "concepts": args.concepts,
        "preserved": args.preserved,
        "threads": torch.get_num_threads(),
    }

    if not args.no_esd:
        trained = copy.deepcopy(unet).train()
        names = set(trainable_names(unet, "esd-x"))
        for n, p in trained.named_parameters():
            p.requires_grad_(n in names)
        opt = torch.optim.Adam([p for n, p in trained.named_parameters() if n in names], lr=1e-5)
        sched = _scheduler(
            {
                "num_train_timesteps": 1000,
                "beta_start": 0.00085,
                "beta_end": 0.012,
                "beta_schedule": "scaled_linear",
                "clip_sample": False,
                "set_alpha_to_one": False,
                "steps_offset": 1,
            },
            args.ddim_steps,
        )
        c = torch.randn(1, 77, 768, generator=g)
        u = torch.randn(1, 77, 768, generator=g)
        shape = (1, 4, args.latent, args.latent)
        t = time.perf_counter()
        x, ts = sample_xt(unet, sched, c, u, 1, 3.0, shape, torch.Generator().manual_seed(0), "cpu", torch.float32)
        denoise = time.perf_counter() - t
        t = time.perf_counter()
        opt.zero_grad()
        loss = esd_objective(trained, unet, x, ts, c, u, 1.0)
        loss.backward()
        opt.step()
        train = time.perf_counter() - t
        kbar = (args.ddim_steps - 1) / 2
        print(
            f"ESD-x step at latent {args.latent}x{args.latent} ({len(names)} trainable tensors): one guided "
            f"denoising call {denoise:.2f}s, training part {train:.2f}s; expected step "
            f"{kbar:.1f}*{denoise:.2f}+{train:.2f} = {kbar * denoise + train:.1f}s"
        )
        result.update(
            esd_latent=args.latent,
            esd_denoise_call_s=round(denoise, 3),
            esd_train_s=round(train, 3),
            esd_step_expected_s=round(kbar * denoise + train, 2),
        )
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else -1
    result.update(load_avg=round(load, 2), cpus=os.cpu_count())
    print("RESULT " + " ".join(f"{k}={v}" for k, v in result.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
