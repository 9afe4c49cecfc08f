"""float32 GFLOP/s of fastmlp.kernels.matmul against numpy.matmul, measured in one run.

The shapes are the products one training step of a 784-256-10 MLP performs (batch B = 64
and 256), plus square ones:

    forward      X · W1        [B,784]·[784,256]   NN
    weight grad  Xᵀ · dZ1      [784,B]·[B,256]     TN   (X is (B, 784), read transposed)
    input grad   dZ2 · W2ᵀ     [B,10]·[10,256]     NT   (W2 is (256, 10), read transposed)
    output       H · W2        [B,256]·[256,10]    NN
    square       1024³ (and 2048³ with --big)

Both sides write into preallocated outputs (``out=``), use the same thread count, and are
timed alternately so that noise from other processes hits both alike; each result is
checked against a float64 product before timing. Prints a Markdown table and writes JSON
(default bench/results/kernels.json).

    python bench/bench_kernels.py [--threads N] [--repeats R] [--quick] [--big]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import threadpoolctl

from fastmlp import _core, _machine, kernels

HERE = Path(__file__).resolve().parent
PAUSE = 0.15  # seconds before each block of samples; see time_pair


def cases(quick, big):
    """(name, M, K, N, trans_a, trans_b) with op(A) (M, K) and op(B) (K, N)."""
    out = []
    for batch in (64,) if quick else (64, 256):
        out += [
            (f"B={batch} forward X·W1", batch, 784, 256, False, False),
            (f"B={batch} weight grad Xᵀ·dZ1", 784, batch, 256, True, False),
            (f"B={batch} input grad dZ2·W2ᵀ", batch, 10, 256, False, True),
            (f"B={batch} output H·W2", batch, 256, 10, False, False),
        ]
    out.append(("square 1024³", 1024, 1024, 1024, False, False))
    if big:
        out.append(("square 2048³", 2048, 2048, 2048, False, False))
    return out


def check(c, a_op, b_op, name):
    """|C - A@B| <= 1e-5 |A|@|B| elementwise, against float64."""
    a64, b64 = a_op.astype(np.float64), b_op.astype(np.float64)
    err = np.abs(c - a64 @ b64)
    bound = 1e-5 * (np.abs(a64) @ np.abs(b64)) + 1e-30
    if not np.all(err <= bound):
        raise SystemExit(f"{name}: result off by {np.max(err / bound):.3g} x the bound")


def time_pair(f_ours, f_numpy, repeats, rounds):
    """Median seconds per call of each side.

    The sides take turns in `rounds` blocks of samples (so slow drifts in machine load hit
    both), with a pause before each block: both libraries keep idle threads spinning for
    a while after a call (OpenBLAS up to ~0.1 s), which would otherwise steal a core from
    the other side. Calls shorter than 0.5 ms are timed in batches.
    """
    f_ours(), f_numpy()  # warm caches, threads, packing buffers
    t0 = time.perf_counter()
    f_numpy()
    once = max(time.perf_counter() - t0, 1e-7)
    inner = max(1, int(5e-4 / once))
    per_round = max(1, -(-repeats // rounds))
    samples = {"ours": [], "numpy": []}
    sides = [("ours", f_ours), ("numpy", f_numpy)]
    for rnd in range(rounds):
        for key, f in sides if rnd % 2 == 0 else sides[::-1]:
            time.sleep(PAUSE)
            f()
            for _ in range(per_round):
                t0 = time.perf_counter()
                for _ in range(inner):
                    f()
                samples[key].append((time.perf_counter() - t0) / inner)
    return ({k: float(np.median(v)) for k, v in samples.items()},
            {k: float(np.min(v)) for k, v in samples.items()}, inner)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=None,
                    help="threads for both sides (default: OpenMP's setting)")
    ap.add_argument("--repeats", type=int, default=None,
                    help="timed samples per case (default 60, 15 with --quick)")
    ap.add_argument("--quick", action="store_true", help="batch 64 and 1024³ only, fewer repeats")
    ap.add_argument("--big", action="store_true", help="also 2048³")
    ap.add_argument("--json", type=Path, default=HERE / "results" / "kernels.json",
                    help="where to write the results")
    args = ap.parse_args(argv)
    threads = args.threads or _core.max_threads()
    repeats = args.repeats or (15 if args.quick else 60)
    rng = np.random.default_rng(0)

    rows = []
    with threadpoolctl.threadpool_limits(limits=threads, user_api="blas"):
        # numpy's own BLAS (scipy's, also loaded, is another copy).
        blas = _machine.blas_libraries(numpy_only=True)
        for name, m, k, n, trans_a, trans_b in cases(args.quick, args.big):
            a = rng.standard_normal((k, m) if trans_a else (m, k), dtype=np.float32)
            b = rng.standard_normal((n, k) if trans_b else (k, n), dtype=np.float32)
            a_op, b_op = (a.T if trans_a else a), (b.T if trans_b else b)
            c_ours = np.full((m, n), np.nan, dtype=np.float32)
            c_np = np.empty((m, n), dtype=np.float32)
            kernels.matmul(a, b, trans_a, trans_b, out=c_ours, n_threads=threads)
            check(c_ours, a_op, b_op, name)

            def ours(a=a, b=b, ta=trans_a, tb=trans_b, c=c_ours):
                kernels.matmul(a, b, ta, tb, out=c, n_threads=threads)

            def numpy_(a=a_op, b=b_op, c=c_np):
                np.matmul(a, b, out=c)

            flops = 2.0 * m * n * k
            reps = max(5, repeats // 4) if m * n * k >= 2**30 else repeats
            t, best, inner = time_pair(ours, numpy_, reps, rounds=3 if args.quick else 8)
            rows.append({
                "case": name, "m": m, "k": k, "n": n,
                "op": ("T" if trans_a else "N") + ("T" if trans_b else "N"),
                "fastmlp_seconds": t["ours"], "numpy_seconds": t["numpy"],
                "fastmlp_gflops": flops / t["ours"] / 1e9,
                "numpy_gflops": flops / t["numpy"] / 1e9,
                "ratio": t["numpy"] / t["ours"],
                "fastmlp_best_gflops": flops / best["ours"] / 1e9,
                "numpy_best_gflops": flops / best["numpy"] / 1e9,
                "samples": reps, "calls_per_sample": inner,
            })
            r = rows[-1]
            print(f"  {name:28s} {r['fastmlp_gflops']:7.1f} vs {r['numpy_gflops']:7.1f} GFLOP/s",
                  file=sys.stderr, flush=True)

    meta = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "threads": threads,
        "active_isa": _core.active_isa(),
        "detected_isa": _core.detected_isa(),
        "numpy": np.__version__,
        "numpy_blas": blas,
        "machine": platform.machine(),
        "processor": _machine.cpu_model(),
        "cpu_features": _machine.cpu_features(),
        "cpu_count": os.cpu_count(),
        "repeats": repeats,
        "command": " ".join(["python", "bench/bench_kernels.py", *(argv or sys.argv[1:])]),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }
    blas_desc = ", ".join(f"{b_['internal_api']} {b_['version']}" for b_ in blas) or "BLAS ?"
    print(f"\nfastmlp.kernels.matmul vs numpy.matmul, float32, {threads} thread(s), "
          f"ISA {meta['active_isa']}, NumPy {np.__version__} ({blas_desc})\n")
    print("| case | shape (M×K×N) | op | fastmlp GFLOP/s | numpy GFLOP/s | ratio |")
    print("|---|---|---|---:|---:|---:|")
    for r in rows:
        print(f"| {r['case']} | {r['m']}×{r['k']}×{r['n']} | {r['op']} | "
              f"{r['fastmlp_gflops']:.1f} | {r['numpy_gflops']:.1f} | {r['ratio']:.2f} |")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"meta": meta, "results": rows}, indent=2) + "\n")
    print(f"\nwrote {args.json}", file=sys.stderr)


if __name__ == "__main__":
    main()
