"""Training benchmark: fastmlp against NumPy, scikit-learn, PyTorch, JAX and ONNX Runtime
on Fashion-MNIST.

The reference run -- 784-256(ReLU)-10, pixels scaled to [-1, 1] with
``PixelScaler(mode="symmetric")``, plain SGD with learning rate 0.01, batches of 64, shuffled
every epoch -- trained by every system in turn (bench/training_systems.py has one runner per
row):

* ``fastmlp-1t`` and ``fastmlp-<cores>t``: :class:`fastmlp.MLPImageClassifier` with
  ``n_threads`` 1 and all cores; epoch times from its ``history_``; ``fastmlp-bf16-1t`` and
  ``fastmlp-bf16-<cores>t`` the same with ``precision="bfloat16"`` (skipped on a CPU
  without bfloat16 instructions); ``fastmlp-u8-<cores>t`` and ``fastmlp-bf16-u8-<cores>t``
  the same from the 8-bit images, scaled by the classifier's ``input_scaler`` as the core
  reads them (bitwise the same model: the rows are those pixels' scaling);
* ``numpy``: bench/numpy_mlp.py, the same network, initialization and batches in plain
  NumPy, with the BLAS threads NumPy has by default;
* ``sklearn``: ``sklearn.neural_network.MLPClassifier``, one epoch per ``partial_fit``;
* when torch is installed, ``torch-dataloader`` (the usual loop over a ``DataLoader``),
  ``torch-preloaded`` (pre-loaded tensors indexed with a ``torch.randperm`` permutation),
  ``torch-bf16`` (that loop with the forward pass and loss under bfloat16 autocast) and
  ``torch-compile`` (that loop with ``torch.compile(model)``);
* ``jax`` when installed: an epoch as one jitted ``lax.scan`` over the batches;
* ``onnxruntime`` (inference only) when installed: fastmlp's model exported with
  ``fastmlp.export.to_onnx``.

Each run of a system is a process of its own (``--worker NAME``: its result as JSON on
stdout), so no two systems' thread pools share a process, and it also times ``predict`` on
the test images after training. Repeats are interleaved (repeat 1 of every system, then
repeat 2, ...) so a slow spell of a shared machine hits all systems alike, and each ratio to
fastmlp is taken within a repeat. Results are checked before they are reported: fastmlp and
the NumPy baseline must agree after one epoch from the same seed, and every system's test
accuracy must pass a sanity bound; a run that fails either is flagged (exit status 2).

Run ``python bench/bench_training.py --help`` for the options; ``--quick`` is a smoke run.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import importlib.metadata
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from fastmlp._machine import machine_info as fastmlp_machine_info
from fastmlp._machine import n_cores

HERE = Path(__file__).resolve().parent
DEFAULT_OUTPUT = HERE / "results" / "training.json"

CEILING_N = 2048  # numpy.matmul of two CEILING_N^2 float32 matrices measures the ceiling
INFERENCE_CALLS = 5  # timed predict calls per worker, after one warm-up call
LATENCY_CALLS = 300  # timed one-image predict calls per worker, after one warm-up call
ONNX_AGREEMENT = 0.995  # ONNX Runtime's labels against fastmlp's own, same model
BF16_FLAGS = ("avx512_bf16", "amx_bf16", "amx_tile")
PEER_PACKAGES = ("torch", "jax", "jaxlib", "onnxruntime", "onnx")


def _load_sibling(name):
    """A module of bench/ (not a package), loaded by path so any caller can use it."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, HERE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules[name] = module
    return module


systems = _load_sibling("training_systems")
HIDDEN, BATCH_SIZE, LEARNING_RATE = systems.HIDDEN, systems.BATCH_SIZE, systems.LEARNING_RATE
FastmlpRunner, NumpyRunner = systems.FastmlpRunner, systems.NumpyRunner


def flops_per_sample(sizes):
    """Training FLOPs of one sample: forward, weight gradients, input gradients.

    Every layer costs 2*fan_in*fan_out forward and as much for its weight gradient; every
    layer but the first also propagates the gradient to its input (2*fan_in*fan_out). For
    784-256-10 that is 818,176 FLOPs, 49.1 GFLOP per epoch of 60000 samples.
    """
    layers = list(zip(sizes[:-1], sizes[1:]))
    gemm = [2 * a * b for a, b in layers]
    return 2 * sum(gemm) + sum(gemm[1:])


def inference_flops_per_sample(sizes):
    return sum(2 * a * b for a, b in zip(sizes[:-1], sizes[1:]))


# ----------------------------------------------------------------------------------------
# Systems: the runners are in training_systems.py; each run of one is a worker process
# ----------------------------------------------------------------------------------------


def make_runners(selection):
    """Runners by name, in the order they run; ``selection`` is a list of names, families
    or name prefixes (``fastmlp``, ``fastmlp-bf16``, ``torch``)."""
    runners = systems.make_runners()
    if not selection:
        return runners
    chosen = set()
    for name in selection:
        hits = {k for k, r in runners.items()
                if name in (k, r.family) or k.startswith(name + "-")}
        if not hits:
            raise SystemExit(f"bench_training: unknown system {name!r}; choose from "
                             f"{', '.join(runners)} or a family (fastmlp, fastmlp-bf16, "
                             "torch)")
        chosen |= hits
    return {k: r for k, r in runners.items() if k in chosen}


def reference_name(names):
    """float32 fastmlp with all cores when it runs, else another float32 fastmlp row;
    ratios are against it."""
    fast = [k for k in names if k.startswith("fastmlp-") and not k.startswith("fastmlp-bf16")
            and "-u8-" not in k]
    if f"fastmlp-{n_cores()}t" in fast:
        return f"fastmlp-{n_cores()}t"
    return fast[-1] if fast else None


# ----------------------------------------------------------------------------------------
# Machine, ceiling, data
# ----------------------------------------------------------------------------------------


def machine_info():
    """fastmlp's machine record, plus what this benchmark alone needs: the bfloat16 flags
    and kernel, the peers' versions and the load when the run starts."""
    from fastmlp import _core

    info = fastmlp_machine_info()
    info["bf16_flags"] = {f: f in info["cpu_features"] for f in BF16_FLAGS}
    # None from an older core, which has no bfloat16 kernels (its bf16 rows say so).
    for key, function in (("fastmlp_bf16_kernel", "active_bf16_kernel"),
                          ("fastmlp_detected_bf16_kernel", "detected_bf16_kernel")):
        info.setdefault(key, getattr(_core, function, lambda: None)())
    info["load_average_start"] = os.getloadavg() if hasattr(os, "getloadavg") else None
    for package in PEER_PACKAGES:  # versions without importing: the workers import them
        try:
            info[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            info[package] = None
    return info


def header_line(machine):
    flags = ", ".join(f"{f} {'yes' if v else 'no'}" for f, v in machine["bf16_flags"].items())
    return (f"{machine['cpu']}, {machine['cores']} cores, fastmlp ISA "
            f"{machine['fastmlp_isa']}, bf16 kernel {machine['fastmlp_bf16_kernel']} "
            f"({flags})")


def measure_ceiling(repeats, threads=None, size=CEILING_N):
    """Float32 GFLOP/s of numpy.matmul at size^3, one sample per repeat (threads: BLAS
    limit, or NumPy's default)."""
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size), dtype=np.float32)
    b = rng.standard_normal((size, size), dtype=np.float32)
    c = np.empty_like(a)
    flops = 2.0 * size**3
    samples = []
    with threadpool_limits(limits=threads, user_api="blas"):
        np.matmul(a, b, out=c)  # warm-up
        for _ in range(repeats):
            start = time.perf_counter()
            np.matmul(a, b, out=c)
            samples.append(flops / (time.perf_counter() - start) / 1e9)
    return samples


_SPLITS = ("X", "y", "X_test", "y_test")


def write_shared_data(data, directory):
    """The scaled arrays as .npy files in ``directory``: every worker trains on these
    very arrays, loaded and scaled once."""
    for name, array in zip(_SPLITS, data):
        np.save(Path(directory) / f"{name}.npy", array)


def read_shared_data(directory):
    """The arrays write_shared_data wrote, as (X, y, X_test, y_test)."""
    return tuple(np.load(Path(directory) / f"{name}.npy") for name in _SPLITS)


def load_data(args):
    """Scaled float32 train/test arrays and labels, or raise FileNotFoundError."""
    from fastmlp import PixelScaler
    from fastmlp.datasets import load_fashion_mnist

    X, y, X_test, y_test = load_fashion_mnist(args.data_home, download=args.download,
                                              return_X_y=True)
    if args.n_train:
        X, y = X[:args.n_train], y[:args.n_train]
    if args.n_test:
        X_test, y_test = X_test[:args.n_test], y_test[:args.n_test]
    scaler = PixelScaler(mode="symmetric").fit(X)
    return (scaler.transform(X), np.asarray(y, dtype=np.int64), scaler.transform(X_test),
            np.asarray(y_test, dtype=np.int64))


# ----------------------------------------------------------------------------------------
# Checks
# ----------------------------------------------------------------------------------------


def oracle_check(X, y, seed, n=2000):
    """fastmlp and the NumPy baseline after one epoch from the same seed: max |dW|."""
    n = min(n, X.shape[0])
    fast, _ = FastmlpRunner(n_cores()).train(X[:n], y[:n], 1, seed)
    base, _ = NumpyRunner().train(X[:n], y[:n], 1, seed)
    diff = max(float(np.max(np.abs(a - b)))
               for a, b in zip(fast.coefs_ + fast.intercepts_, base.coefs_ + base.intercepts_))
    loss_rel = abs(fast.loss_curve_[0] - base.loss_curve_[0]) / abs(base.loss_curve_[0])
    return {"n_samples": n, "max_abs_weight_diff": diff, "loss_rel_diff": loss_rel,
            "ok": bool(diff < 1e-4 and loss_rel < 1e-4)}


# ----------------------------------------------------------------------------------------
# Workers: one process per run of a system
# ----------------------------------------------------------------------------------------


def timed_predict(runner, model, X, calls=INFERENCE_CALLS):
    """Labels of the warm-up call (which also compiles, where a system compiles) and the
    wall time of each further call."""
    labels = np.asarray(runner.predict(model, X))
    samples = []
    for _ in range(calls):
        start = time.perf_counter()
        runner.predict(model, X)
        samples.append(time.perf_counter() - start)
    return labels, samples


def one_image_latency(runner, model, X, calls=LATENCY_CALLS):
    """predict on one image (the first test image): its label and the median wall time
    of a call, what a request of one image costs, input checks and dispatch included."""
    labels, samples = timed_predict(runner, model, X[:1], calls)
    return labels.reshape(-1)[0], statistics.median(samples)


def run_system(runner, data, epochs, seed):
    """Train, predict and check one system in this process: its result record."""
    X, y, X_test, y_test = data
    X, X_test = runner.prepare(X), runner.prepare(X_test)
    model, times = runner.train(X, y, epochs, seed)
    labels, infer = timed_predict(runner, model, X_test)
    label, latency = one_image_latency(runner, model, X_test)
    if label != labels[0]:
        raise RuntimeError(f"predict on one image gave label {label}, on all {labels[0]}")
    return {"epoch_times": times, "test_accuracy": float(np.mean(labels == y_test)),
            "inference_time": statistics.median(infer), "inference_times": infer,
            "latency_one": latency, **runner.report(model, X_test, labels)}


def _worker_data(args):
    return read_shared_data(args.shared_data) if args.shared_data else load_data(args)


def worker_main(args):
    """``--worker NAME``: one run of one system; its result as the last line of stdout
    (skipped or error records instead of a traceback, so a failing peer is one row)."""
    runner = systems.make_runners()[args.worker]
    try:
        result = run_system(runner, _worker_data(args), args.epochs, args.seed)
    except ImportError as exc:
        result = {"skipped": f"not importable: {exc}"}
    except Exception as exc:  # any failure, e.g. torch.compile without a C compiler
        import traceback

        traceback.print_exc()
        result = {"error": _error_text(exc)}
    print(json.dumps(result), flush=True)
    return 0


def _error_text(exc):
    """The exception's type and the first line of its message, at most 300 characters."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0][:300]}" if lines else type(exc).__name__


def scaling_worker_main(args):
    """``--scaling-worker SYSTEM``: one pass over the scaling grid for fastmlp or numpy."""
    data = _worker_data(args)

    def log(msg):
        if not args.quiet:
            print(msg, file=sys.stderr, flush=True)

    grid = scaling_grid(data[0].shape[0], args.quick)
    n_subset = min(args.scaling_samples or (7500 if args.quick else 15000), data[0].shape[0])
    points = _scaling_pass(data, grid, n_subset, args.scaling_epochs, args.seed, log,
                           args.scaling_worker)
    print(json.dumps({"points": points}), flush=True)
    return 0


def spawn(argv, quiet):
    """Run this script with ``argv`` in a new process: the JSON record it printed last, or
    an error record when it printed none."""
    cmd = [sys.executable, str(Path(__file__).resolve()), *argv]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if not quiet:
        for line in proc.stderr.splitlines():
            print(f"      {line}", file=sys.stderr, flush=True)
    records = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode == 0 and records:
        return json.loads(records[-1])
    tail = proc.stderr.strip().splitlines()[-1:] or ["no output"]
    return {"error": f"worker exited with status {proc.returncode}: {tail[0][:300]}"}


# ----------------------------------------------------------------------------------------
# The comparison
# ----------------------------------------------------------------------------------------


def run_comparison(runners, shared, epochs, repeats, seed, log, quiet=False):
    """Every runner once per repeat, each in a worker; raw records per system."""
    raw = {name: {"runs": [], "skipped": r.unavailable(), "errors": []}
           for name, r in runners.items()}
    for name, rec in raw.items():
        if rec["skipped"]:
            log(f"{name}: skipped ({rec['skipped']})")
    for r in range(repeats):
        for name, rec in raw.items():
            if rec["skipped"]:
                continue
            log(f"  repeat {r + 1}/{repeats}: {name} ...")
            argv = ["--worker", name, "--shared-data", str(shared), "--epochs", str(epochs),
                    "--seed", str(seed + r)] + (["--quiet"] if quiet else [])
            result = spawn(argv, quiet)
            _record(rec, result, r, log)
    return raw


def _record(rec, result, repeat, log):
    if "skipped" in result:
        rec["skipped"] = result["skipped"]
        log(f"    skipped ({rec['skipped']})")
    elif "error" in result:
        rec["errors"].append(result["error"])
        log(f"    error: {result['error']}")
    else:
        rec["runs"].append({"repeat": repeat, **result})
        epochs = " ".join(f"{t:.3f}" for t in result["epoch_times"])
        log(f"    epochs {epochs or '-'} s; test acc {result['test_accuracy']:.4f}; "
            f"predict {1e3 * result['inference_time']:.1f} ms, one image "
            f"{1e6 * result['latency_one']:.0f} µs")


def _unrun(rec):
    """The row of a system without a single result, or None."""
    if rec["skipped"] and not rec["runs"]:
        return {"skipped": rec["skipped"]}
    if not rec["runs"]:
        return {"error": rec["errors"][0] if rec["errors"] else "no result"}
    return None


def _paired(raw, name, ref, value):
    """value(run) of ``name`` over ``ref``'s, repeat by repeat (repeats both finished)."""
    mine = {run["repeat"]: value(run) for run in raw[name]["runs"]}
    theirs = {run["repeat"]: value(run) for run in raw[ref]["runs"]}
    return [mine[r] / theirs[r] for r in sorted(mine) if r in theirs]


def _training_row(runs, runner, timed, n_train, n_test, flops_epoch, ceiling):
    per_repeat = [run["epoch_times"][timed] for run in runs]
    all_t = [t for ts in per_repeat for t in ts]
    med = statistics.median(all_t)
    accs = [run["test_accuracy"] for run in runs]
    row = {
        "threads": runner.threads,
        "precision": runner.precision,
        "epoch_time_median": med,
        "epoch_time_min": min(all_t),
        "epoch_time_max": max(all_t),
        "spread": max(all_t) / min(all_t),
        "epoch_times": [run["epoch_times"] for run in runs],
        "first_epoch_time_median": statistics.median(run["epoch_times"][0] for run in runs),
        "samples_per_s": n_train / med,
        "gflops": flops_epoch / med / 1e9,
        "ceiling_fraction": flops_epoch / med / 1e9 / ceiling,
        "test_accuracy": accs[-1],
        "test_accuracy_min": min(accs),
        "inference_time": statistics.median(run["inference_time"] for run in runs),
        "inference_samples": n_test,
        "ok": True,
    }
    compile_times = [run["compile_time"] for run in runs if "compile_time" in run]
    if compile_times:
        row["compile_time_median"] = statistics.median(compile_times)
    return row


def summarize(raw, runners, n_train, n_test, sizes, ceiling, min_accuracy, epochs):
    """The training rows (systems that train), the reference row's name, accuracy flags
    and the FLOPs of an epoch."""
    flops_epoch = flops_per_sample(sizes) * n_train
    trained = {k: v for k, v in raw.items() if runners[k].trains}
    ref = reference_name([k for k, v in trained.items() if v["runs"]])
    timed = slice(1, None) if epochs > 1 else slice(0, None)
    out, flags = {}, []
    for name, rec in trained.items():
        out[name] = _unrun(rec) or _training_row(rec["runs"], runners[name], timed, n_train,
                                                 n_test, flops_epoch, ceiling)
        if out[name].get("test_accuracy_min", 1) < min_accuracy:
            out[name]["ok"] = False
            flags.append(f"{name}: test accuracy {out[name]['test_accuracy_min']:.4f} after "
                         f"{epochs} epochs is below the sanity bound {min_accuracy}")
    if ref is not None:
        for name, s in out.items():
            if "epoch_time_median" not in s:
                continue
            pairs = _paired(raw, name, ref, lambda run: statistics.median(
                run["epoch_times"][timed]))
            if pairs:  # none when this system and fastmlp never finished the same repeat
                s["ratio_to_reference"] = statistics.median(pairs)
            s["ratio_pairs"] = pairs
            # Each system's best epoch against fastmlp's: the reading least favourable to
            # fastmlp when a shared machine slows some repeats of the others.
            s["ratio_of_minimums"] = s["epoch_time_min"] / out[ref]["epoch_time_min"]
    return out, ref, flags, flops_epoch


def _inference_row(runs, runner, n_test, sizes):
    med = statistics.median(run["inference_time"] for run in runs)
    accs = [run["test_accuracy"] for run in runs]
    row = {"threads": runner.threads, "precision": runner.precision,
           "inference_time": med,
           "inference_time_min": min(t for run in runs for t in run["inference_times"]),
           "inference_times": [run["inference_times"] for run in runs],
           "latency_one": statistics.median(run["latency_one"] for run in runs),
           "images_per_s": n_test / med,
           "gflops": inference_flops_per_sample(sizes) * n_test / med / 1e9,
           "test_accuracy": accs[-1], "test_accuracy_min": min(accs), "ok": True}
    agreements = [run["agreement_with_fastmlp"] for run in runs
                  if "agreement_with_fastmlp" in run]
    if agreements:
        row["agreement_with_fastmlp_min"] = min(agreements)
    return row


def summarize_inference(raw, runners, ref, n_test, sizes, min_accuracy):
    """Every system's predict on the test images, with ratios to fastmlp's (float32, all
    cores) within each repeat; flags for the rows that only predict (the others' accuracy
    is checked with their training)."""
    out, flags = {}, []
    for name, rec in raw.items():
        out[name] = _unrun(rec) or _inference_row(rec["runs"], runners[name], n_test, sizes)
        row = out[name]
        low = row.get("test_accuracy_min", 1) < min_accuracy
        disagree = row.get("agreement_with_fastmlp_min", 1) < ONNX_AGREEMENT
        if low or disagree:
            row["ok"] = False
        if not runners[name].trains and low:
            flags.append(f"{name}: test accuracy {row['test_accuracy_min']:.4f} is below the "
                         f"sanity bound {min_accuracy}")
        if disagree:
            flags.append(f"{name}: labels agree with fastmlp's predict on only "
                         f"{row['agreement_with_fastmlp_min']:.2%} of the test images")
    if ref is not None and raw[ref]["runs"]:
        for name, row in out.items():
            if "inference_time" in row:
                pairs = _paired(raw, name, ref, lambda run: run["inference_time"])
                if pairs:
                    row["ratio_to_reference"] = statistics.median(pairs)
                row["ratio_pairs"] = pairs
    return out, flags


def error_flags(raw, runners):
    """Failed runs: flags for fastmlp, NumPy and scikit-learn, notes for the peers (a
    peer that fails on this machine is reported in its row, not a broken benchmark)."""
    flags, notes = [], []
    for name, rec in raw.items():
        for err in rec["errors"]:
            (flags if runners[name].required else notes).append(f"{name} failed: {err}")
    return flags, notes


def compile_notes(summary, runners):
    """Where compilation went: JAX compiles ahead of its first epoch, torch.compile in the
    first epoch (never timed, as no system's first epoch is)."""
    notes = []
    for name, s in summary.items():
        if "compile_time_median" in s:
            notes.append(f"{name} compiled its epoch in {s['compile_time_median']:.2f} s before "
                         "the first epoch (not in the epoch times)")
        elif getattr(runners[name], "mode", None) == "compile" and "epoch_time_median" in s:
            notes.append(f"{name}'s first epoch, which compiles, took "
                         f"{s['first_epoch_time_median']:.2f} s (median over repeats; not "
                         f"timed) against a median epoch of {s['epoch_time_median']:.3f} s")
    return notes


# ----------------------------------------------------------------------------------------
# Scaling curves
# ----------------------------------------------------------------------------------------


def scaling_grid(n_train, quick):
    cores = n_cores()
    threads = sorted({1, min(2, cores), cores})
    if quick:
        return {"samples": [max(BATCH_SIZE, n_train // 8), max(BATCH_SIZE, n_train // 4)],
                "width": [64, 256], "batch": [32, 256], "threads": threads}
    return {"samples": [n_train // 8, n_train // 4, n_train // 2, n_train],
            "width": [64, 128, 256, 512, 1024, 2048],
            "batch": [16, 32, 64, 128, 256, 512, 1024],
            "threads": threads}


def run_scaling(shared, args, log):
    """Every grid point for fastmlp and NumPy, each system's pass in a worker of its own;
    with --scaling-repeats > 1 the whole grid is run again (a slow spell of the machine
    then spoils one pass of a point, not all of them) and each point keeps the fastest
    timed epoch of all passes."""
    argv = ["--shared-data", str(shared), "--scaling-epochs", str(args.scaling_epochs),
            "--seed", str(args.seed)] + (["--quick"] if args.quick else [])
    if args.scaling_samples:
        argv += ["--scaling-samples", str(args.scaling_samples)]
    points, errors = {}, []
    for _ in range(args.scaling_repeats):
        for system in ("fastmlp", "numpy"):
            result = spawn(["--scaling-worker", system, *argv], args.quiet)
            if "error" in result:
                errors.append(f"scaling pass of {system} failed: {result['error']}")
                continue
            for q in result["points"]:
                _merge_point(points, q)
    return list(points.values()), errors


def _merge_point(points, q):
    key = (q["curve"], q["value"], q["system"])
    p = points.setdefault(key, q)
    if p is q:
        return
    p["epoch_times"] = p["epoch_times"] + q["epoch_times"]
    if q["epoch_time"] < p["epoch_time"]:
        for k in ("epoch_time", "us_per_sample", "gflops"):
            p[k] = q[k]


def _grid_points(grid, n_subset):
    """(curve, value, setting) of every point of the grid: setting has the point's n,
    hidden, batch and threads, the reference run's values but for the curve's own."""
    for curve, values in grid.items():
        for value in values:
            point = {"samples": "n", "width": "hidden", "batch": "batch"}.get(curve, "threads")
            setting = {"n": n_subset, "hidden": HIDDEN, "batch": BATCH_SIZE,
                       "threads": n_cores(), point: value}
            yield curve, value, setting


def _scaling_pass(data, grid, n_subset, epochs, seed, log, system):
    X, y = data[0], data[1]
    points = []
    for curve, value, s in _grid_points(grid, n_subset):
        n, hidden, batch = s["n"], s["hidden"], s["batch"]
        if batch > n:
            log(f"  {curve}={value}: skipped, batch {batch} > {n} samples")
            continue
        if system == "fastmlp":
            runner = FastmlpRunner(s["threads"])
        else:
            runner = NumpyRunner(s["threads"] if curve == "threads" else None)
        _, times = runner.train(X[:n], y[:n], epochs, seed, hidden=hidden, batch_size=batch)
        timed = times[1:] if len(times) > 1 else times
        # The fastest timed epoch: the least disturbed estimate of the cost.
        t = min(timed)
        sizes = [X.shape[1], hidden, int(y.max()) + 1]
        points.append({"curve": curve, "value": value, "system": system,
                       "n_samples": n, "hidden": hidden, "batch_size": batch,
                       "threads": runner.threads, "epoch_time": t,
                       "epoch_times": times,
                       "us_per_sample": t / n * 1e6,
                       "gflops": flops_per_sample(sizes) * n / t / 1e9})
        log(f"  {curve}={value} {system}: {t:.3f} s/epoch")
    return points


def scaling_findings(points, tolerance=0.2):
    """Plain sentences on where cost is, and is not, linear."""
    found = []
    for system in ("fastmlp", "numpy"):
        label = "fastmlp" if system == "fastmlp" else "NumPy"
        pts = {c: sorted((p for p in points if p["system"] == system and p["curve"] == c),
                         key=lambda p: p["value"]) for c in ("samples", "width", "batch",
                                                             "threads")}
        s = pts["samples"]
        if len(s) >= 2:
            base = s[-1]["us_per_sample"]
            worst = max(s, key=lambda p: abs(p["us_per_sample"] / base - 1))
            dev = worst["us_per_sample"] / base
            if abs(dev - 1) <= tolerance:
                found.append(f"{label}: epoch time is linear in the number of samples "
                             f"({s[0]['value']}..{s[-1]['value']}: cost per sample within "
                             f"{abs(dev - 1):.0%} of its value at {s[-1]['value']}).")
            else:
                found.append(f"{label}: epoch time is NOT linear in the number of samples: "
                             f"cost per sample at n={worst['value']} is {dev:.2f}x that at "
                             f"n={s[-1]['value']}.")
        w = pts["width"]
        if len(w) >= 2:
            best = max(w, key=lambda p: p["gflops"])
            slow = [p for p in w if p["gflops"] < (1 - tolerance) * best["gflops"]]
            if not slow:
                found.append(f"{label}: epoch time grows linearly with the hidden width "
                             f"({w[0]['value']}..{w[-1]['value']}: GFLOP/s within "
                             f"{tolerance:.0%} of the best).")
            else:
                found.append(f"{label}: cost is NOT linear in the hidden width: at width "
                             + ", ".join(f"{p['value']} ({best['gflops'] / p['gflops']:.2f}x)"
                                         for p in slow)
                             + f" each FLOP costs more than at width {best['value']} "
                             f"({best['gflops']:.1f} GFLOP/s).")
        b = pts["batch"]
        if len(b) >= 2:
            best = min(b, key=lambda p: p["us_per_sample"])
            slow = [p for p in b if p["us_per_sample"] > (1 + tolerance) * best["us_per_sample"]]
            found.append(f"{label}: cost per sample is lowest at batch {best['value']} "
                         f"({best['us_per_sample']:.1f} us/sample)"
                         + ("; it is higher by " + ", ".join(
                             f"{p['us_per_sample'] / best['us_per_sample']:.2f}x at batch "
                             f"{p['value']}" for p in slow) if slow else
                            f"; flat within {tolerance:.0%} over batches "
                            f"{b[0]['value']}..{b[-1]['value']}") + ".")
        t = pts["threads"]
        if len(t) >= 2:
            found.append(f"{label}: {t[-1]['value']} threads vs 1: "
                         f"{t[0]['epoch_time'] / t[-1]['epoch_time']:.2f}x speed-up.")
    # Where fastmlp gains least over NumPy, point by point.
    pairs = {}
    for p in points:
        pairs.setdefault((p["curve"], p["value"]), {})[p["system"]] = p["epoch_time"]
    ratios = [(k, v["numpy"] / v["fastmlp"]) for k, v in pairs.items()
              if "numpy" in v and "fastmlp" in v]
    if ratios:
        lo, hi = min(ratios, key=lambda r: r[1]), max(ratios, key=lambda r: r[1])
        found.append(f"NumPy / fastmlp epoch time ranges from {lo[1]:.2f}x ({lo[0][0]}="
                     f"{lo[0][1]}) to {hi[1]:.2f}x ({hi[0][0]}={hi[0][1]}).")
    return found


# ----------------------------------------------------------------------------------------
# Output
# ----------------------------------------------------------------------------------------


def _unrun_cell(s):
    return f"skipped: {s['skipped']}" if "skipped" in s else f"error: {s['error']}"


def markdown_table(summary, ref, ceiling, flops_epoch, n_train, n_test, ceiling_size):
    ref_label = ref or "fastmlp"
    lines = [
        f"| system | precision | threads | epoch median (s) | epoch min (s) | samples/s "
        f"| GFLOP/s | % of ceiling | epoch time / {ref_label} | min / {ref_label} min "
        f"| test acc | inference {n_test} (ms) | check |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, s in summary.items():
        if "epoch_time_median" not in s:
            lines.append(f"| {name} | | | {_unrun_cell(s)} | | | | | | | | | |")
            continue
        ratio = f"{s['ratio_to_reference']:.2f}x" if "ratio_to_reference" in s else "-"
        ratio_min = f"{s['ratio_of_minimums']:.2f}x" if "ratio_of_minimums" in s else "-"
        lines.append(
            f"| {name} | {s['precision']} | {s['threads']} | {s['epoch_time_median']:.3f} "
            f"| {s['epoch_time_min']:.3f} | {s['samples_per_s']:,.0f} | {s['gflops']:.1f} "
            f"| {100 * s['ceiling_fraction']:.1f}% | {ratio} | {ratio_min} "
            f"| {100 * s['test_accuracy']:.2f}% "
            f"| {1e3 * s['inference_time']:.1f} | {'ok' if s['ok'] else 'FLAGGED'} |")
    lines.append("")
    lines.append(f"Epoch of {n_train} samples = {flops_epoch / 1e9:.1f} GFLOP; float32 ceiling "
                 f"(numpy.matmul {ceiling_size}^3, all cores, median) = {ceiling:.1f} GFLOP/s.")
    return "\n".join(lines)


def inference_table(rows, ref, n_test):
    ref_label = ref or "fastmlp"
    lines = [
        f"| system | precision | threads | predict {n_test} median (ms) | min (ms) "
        f"| images/s | GFLOP/s | time / {ref_label} | 1 image (µs) | test acc | check |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, s in rows.items():
        if "inference_time" not in s:
            lines.append(f"| {name} | | | {_unrun_cell(s)} | | | | | | | |")
            continue
        ratio = f"{s['ratio_to_reference']:.2f}x" if "ratio_to_reference" in s else "-"
        acc = f"{100 * s['test_accuracy']:.2f}%"
        if "agreement_with_fastmlp_min" in s:
            acc += f" (agrees with fastmlp on {100 * s['agreement_with_fastmlp_min']:.2f}%)"
        lines.append(
            f"| {name} | {s['precision']} | {s['threads']} | {1e3 * s['inference_time']:.1f} "
            f"| {1e3 * s['inference_time_min']:.1f} | {s['images_per_s']:,.0f} "
            f"| {s['gflops']:.1f} | {ratio} | {1e6 * s['latency_one']:.0f} | {acc} "
            f"| {'ok' if s['ok'] else 'FLAGGED'} |")
    return "\n".join(lines)


def scaling_tables(points):
    out = []
    titles = {"samples": "training samples", "width": "hidden width", "batch": "batch size",
              "threads": "threads"}
    for curve, title in titles.items():
        rows = {}
        for p in points:
            if p["curve"] == curve:
                rows.setdefault(p["value"], {})[p["system"]] = p
        if not rows:
            continue
        out.append(f"| {title} | n | fastmlp epoch (s) | NumPy epoch (s) | fastmlp GFLOP/s "
                   "| NumPy GFLOP/s | fastmlp us/sample | NumPy / fastmlp |")
        out.append("|---|---|---|---|---|---|---|---|")
        for value, r in sorted(rows.items()):
            f, n = r.get("fastmlp"), r.get("numpy")
            if f is None or n is None:
                continue
            out.append(f"| {value} | {f['n_samples']} | {f['epoch_time']:.3f} "
                       f"| {n['epoch_time']:.3f} | {f['gflops']:.1f} | {n['gflops']:.1f} "
                       f"| {f['us_per_sample']:.1f} | {n['epoch_time'] / f['epoch_time']:.2f}x |")
        out.append("")
    return "\n".join(out)


def plot_scaling(points, path):
    """PNG of the four scaling curves; returns False when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    panels = [("samples", "training samples", "epoch_time", "epoch time (s)"),
              ("width", "hidden width", "epoch_time", "epoch time (s)"),
              ("batch", "batch size", "us_per_sample", "time per sample (us)"),
              ("threads", "threads", "epoch_time", "epoch time (s)")]
    fig, axes = plt.subplots(2, 2, figsize=(10, 8))
    for ax, (curve, xlabel, key, ylabel) in zip(axes.flat, panels):
        for system, style in (("fastmlp", "o-"), ("numpy", "s--")):
            pts = sorted((p for p in points if p["curve"] == curve and p["system"] == system),
                         key=lambda p: p["value"])
            if pts:
                ax.plot([p["value"] for p in pts], [p[key] for p in pts], style,
                        label="fastmlp" if system == "fastmlp" else "NumPy")
        if curve != "threads":
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
        values = sorted({p["value"] for p in points if p["curve"] == curve})
        ax.set_xticks(values, [str(v) for v in values])
        ax.minorticks_off()
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.suptitle("fastmlp and NumPy: training cost, 784-H-10 MLP, SGD")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


# ----------------------------------------------------------------------------------------
# Entry point
# ----------------------------------------------------------------------------------------


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="bench_training",
        description="Train the reference 784-256-10 MLP on Fashion-MNIST with fastmlp, NumPy, "
                    "scikit-learn, and PyTorch, JAX and ONNX Runtime (when installed), each "
                    "run in a process of its own; print Markdown tables and write JSON (and "
                    "a PNG of the scaling curves).")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: 2 epochs, 1 repeat, a small scaling grid")
    p.add_argument("--epochs", type=int, default=None,
                   help="epochs per training run (default 5; 2 with --quick); the first is "
                        "not timed")
    p.add_argument("--repeats", type=int, default=None,
                   help="training runs per system, interleaved (default 5; 1 with --quick)")
    p.add_argument("--systems", default="",
                   help="comma-separated: fastmlp-1t, fastmlp-<cores>t, fastmlp-bf16-1t, "
                        "fastmlp-bf16-<cores>t, fastmlp-u8-<cores>t, "
                        "fastmlp-bf16-u8-<cores>t, numpy, sklearn, torch-dataloader, "
                        "torch-preloaded, torch-bf16, torch-compile, jax, onnxruntime, or the "
                        "families fastmlp, fastmlp-bf16, torch (default: all)")
    p.add_argument("--no-scaling", action="store_true", help="skip the scaling curves")
    p.add_argument("--scaling-samples", type=int, default=None,
                   help="training samples for the width, batch and thread curves "
                        "(default 15000; 7500 with --quick)")
    p.add_argument("--scaling-epochs", type=int, default=None,
                   help="epochs per scaling point, the first not timed (default 3; 2 with "
                        "--quick)")
    p.add_argument("--scaling-repeats", type=int, default=None,
                   help="passes over the scaling grid; each point keeps its fastest epoch "
                        "(default 2; 1 with --quick)")
    p.add_argument("--data-home", default=None,
                   help="directory holding the Fashion-MNIST IDX files (default: fastmlp's "
                        "lookup order)")
    p.add_argument("--download", action="store_true", help="download Fashion-MNIST if missing")
    p.add_argument("--n-train", type=int, default=None, help="use the first N training images")
    p.add_argument("--n-test", type=int, default=None, help="use the first N test images")
    p.add_argument("--ceiling-size", type=int, default=CEILING_N,
                   help=f"matrix size of the numpy.matmul ceiling (default {CEILING_N})")
    p.add_argument("--seed", type=int, default=0, help="random_state of repeat 1 (+1 each)")
    p.add_argument("--min-accuracy", type=float, default=None,
                   help="test accuracy every system must reach, else the run is flagged "
                        "(default 0.75 after >= 2 epochs on >= 30000 samples, else 0)")
    p.add_argument("--output", type=Path, default=DEFAULT_OUTPUT,
                   help=f"JSON results (default {DEFAULT_OUTPUT.relative_to(HERE.parent)})")
    p.add_argument("--plot", type=Path, default=None,
                   help="PNG of the scaling curves (default: beside the JSON)")
    p.add_argument("--no-plot", action="store_true", help="do not draw the PNG")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    p.add_argument("--worker", metavar="NAME", default=None,
                   help="run one system once in this process (with --epochs, --seed and the "
                        "data options) and print its result as JSON: what the benchmark "
                        "runs for every row and repeat")
    p.add_argument("--scaling-worker", choices=("fastmlp", "numpy"), help=argparse.SUPPRESS)
    p.add_argument("--shared-data", type=Path, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.epochs = args.epochs or (2 if args.quick else 5)
    # Five: on a shared machine a slow spell can take a whole repeat of one system.
    args.repeats = args.repeats or (1 if args.quick else 5)
    args.scaling_epochs = args.scaling_epochs or (2 if args.quick else 3)
    args.scaling_repeats = args.scaling_repeats or (1 if args.quick else 2)
    for name in ("epochs", "repeats", "scaling_epochs", "scaling_repeats"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.worker and args.worker not in systems.make_runners():
        p.error(f"--worker: unknown system {args.worker!r}")
    return args


def accuracy_bound(args, n_train):
    if args.min_accuracy is not None:
        return args.min_accuracy
    return 0.75 if args.epochs >= 2 and n_train >= 30000 else 0.0


def oracle_flags(oracle):
    if oracle["ok"]:
        return []
    return [f"fastmlp and the NumPy baseline disagree after one epoch: max |dW| = "
            f"{oracle['max_abs_weight_diff']:.2e}, loss rel. diff {oracle['loss_rel_diff']:.2e}"]


def numpy_gap_flags(summary, ref):
    """Same network, weights and batches: NumPy and fastmlp should end alike."""
    s = summary.get("numpy", {})
    if ref is None or "test_accuracy" not in s:
        return []
    gap = abs(s["test_accuracy"] - summary[ref]["test_accuracy"])
    return [f"numpy and {ref} end {gap:.3f} apart in test accuracy"] if gap > 0.02 else []


def machine_notes(machine, summary, ceiling_samples):
    notes = []
    load = machine["load_average_start"]
    if load and load[0] > 0.75 * machine["cores"]:
        notes.append(f"the machine was busy (1-minute load average {load[0]:.1f} on "
                     f"{machine['cores']} cores at the start): multi-threaded timings suffer "
                     "most; rerun on an idle machine before trusting the ratios")
    noisy = [f"{k} ({s['spread']:.1f}x)" for k, s in summary.items() if s.get("spread", 1) > 1.5]
    if noisy:
        notes.append("epoch times varied by more than 1.5x (max/min) for " + ", ".join(noisy))
    over = [k for k, s in summary.items() if s.get("ceiling_fraction", 0) > 1]
    if over:
        notes.append(f"{', '.join(over)} exceeded the median ceiling: the ceiling samples "
                     f"ranged {min(ceiling_samples):.0f}..{max(ceiling_samples):.0f} GFLOP/s, "
                     "so the machine was slowed while it was measured")
    return notes


def print_report(r, args):
    """The Markdown report of a finished run (``r``: the result dict)."""
    c, m = r["config"], r["machine"]
    sizes = c["sizes"]
    print(f"## Training benchmark: {sizes[0]}-{sizes[1]}-{sizes[2]} MLP, SGD lr {LEARNING_RATE}, "
          f"batch {BATCH_SIZE}, {c['n_train']} training samples\n")
    print(f"{header_line(m)}; {args.epochs} epochs x {args.repeats} repeats, each run in a "
          f"process of its own, epoch time = median of epochs 2..{args.epochs} of every "
          f"repeat; load average {m['load_average_start']} at start.\n")
    print(r["markdown"])
    print(f"\n### Inference: predict on the {c['n_test']} test images (median of "
          f"{INFERENCE_CALLS} calls after a warm-up call, median over repeats)\n")
    print(r["markdown_inference"])
    o = r["oracle"]
    print(f"\nOracle: fastmlp vs NumPy after one epoch on {o['n_samples']} samples: max "
          f"|dW| = {o['max_abs_weight_diff']:.2e} ({'ok' if o['ok'] else 'FLAGGED'}).")
    for note in r["notes"]:
        print(f"\nNote: {note}.")
    if r["scaling"]["points"]:
        print("\n### Scaling (fastmlp with all cores, NumPy with its default BLAS threads; "
              "fastest of the timed epochs of each point)\n")
        print(scaling_tables(r["scaling"]["points"]))
        for f in r["scaling"]["findings"]:
            print(f"- {f}")
    if r["flags"]:
        print("\n**FLAGGED, do not trust these numbers:**")
        for f in r["flags"]:
            print(f"- {f}")


def run_benchmark(args, log):
    runners = make_runners([s.strip() for s in args.systems.split(",") if s.strip()])
    machine = machine_info()
    log(f"machine: {header_line(machine)}, NumPy BLAS threads "
        f"{machine['numpy_blas_threads']}, load average {machine['load_average_start']}")
    try:
        data = load_data(args)
    except FileNotFoundError as exc:
        print(f"bench_training: {exc}\nPass --download, or --data-home DIR.", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="fastmlp-bench-") as shared:
        write_shared_data(data, shared)
        result = measure(args, runners, machine, data, shared, log)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print_report(result, args)
    log(f"wrote {args.output}")
    if result["scaling"]["points"] and not args.no_plot:
        png = args.plot or args.output.with_name(args.output.stem + "_scaling.png")
        log(f"wrote {png}" if plot_scaling(result["scaling"]["points"], png)
            else "matplotlib is not installed: no plot")
    return 2 if result["flags"] else 0


def measure(args, runners, machine, data, shared, log):
    """Checks, ceiling, every system's runs and the scaling curves: the result dict."""
    X, y, X_test, _ = data
    n_train, n_test = X.shape[0], X_test.shape[0]
    sizes = [X.shape[1], HIDDEN, int(y.max()) + 1]
    min_accuracy = accuracy_bound(args, n_train)
    log("checking fastmlp against the NumPy baseline (one epoch, same seed) ...")
    oracle = oracle_check(X, y, args.seed)
    log("measuring the float32 ceiling ...")
    ceiling_samples = measure_ceiling(5, size=args.ceiling_size)
    ceiling_1t = statistics.median(measure_ceiling(3, threads=1, size=args.ceiling_size))
    log(f"training {', '.join(runners)}: {args.epochs} epochs x {args.repeats} repeats, "
        "each in a process of its own ...")
    raw = run_comparison(runners, shared, args.epochs, args.repeats, args.seed, log,
                         args.quiet)
    ceiling_samples += measure_ceiling(5, size=args.ceiling_size)
    ceiling = statistics.median(ceiling_samples)
    summary, ref, acc_flags, flops_epoch = summarize(
        raw, runners, n_train, n_test, sizes, ceiling, min_accuracy, args.epochs)
    inference, inf_flags = summarize_inference(raw, runners, ref, n_test, sizes, min_accuracy)
    err_flags, err_notes = error_flags(raw, runners)
    flags = oracle_flags(oracle) + acc_flags + inf_flags + err_flags + numpy_gap_flags(
        summary, ref)
    notes = (machine_notes(machine, summary, ceiling_samples) + compile_notes(summary, runners)
             + err_notes)
    scaling = scaling_record(args, n_train, shared, log)
    flags += scaling.pop("errors")
    machine["load_average_end"] = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "benchmark": "training",
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine,
        "config": {"sizes": sizes, "solver": "sgd", "learning_rate": LEARNING_RATE,
                   "momentum": 0.0, "alpha": 0.0, "batch_size": BATCH_SIZE,
                   "scaling": "PixelScaler(mode='symmetric')", "n_train": n_train,
                   "n_test": n_test, "epochs": args.epochs, "repeats": args.repeats,
                   "seed": args.seed, "min_accuracy": min_accuracy,
                   "inference_calls": INFERENCE_CALLS, "process_per_run": True,
                   "flops_per_epoch": flops_epoch,
                   "flops_per_sample": flops_per_sample(sizes),
                   "inference_flops_per_sample": inference_flops_per_sample(sizes)},
        "ceiling": {"gflops": ceiling, "gflops_max": max(ceiling_samples),
                    "gflops_1_thread": ceiling_1t, "samples": ceiling_samples,
                    "shape": [args.ceiling_size] * 3},
        "oracle": oracle,
        "reference": ref,
        "systems": summary,
        "inference": inference,
        "scaling": scaling,
        "flags": flags,
        "notes": notes,
        "ok": not flags,
        "markdown": markdown_table(summary, ref, ceiling, flops_epoch, n_train, n_test,
                                   args.ceiling_size),
        "markdown_inference": inference_table(inference, ref, n_test),
    }


def scaling_record(args, n_train, shared, log):
    points, findings, grid, errors = [], [], None, []
    if not args.no_scaling:
        n_subset = min(args.scaling_samples or (7500 if args.quick else 15000), n_train)
        grid = scaling_grid(n_train, args.quick)
        log(f"scaling curves ({args.scaling_epochs} epochs per point, width/batch/threads on "
            f"{n_subset} samples, each system's pass in a process of its own) ...")
        points, errors = run_scaling(shared, args, log)
        findings = scaling_findings(points)
    return {"grid": grid, "scaling_epochs": args.scaling_epochs,
            "scaling_repeats": args.scaling_repeats, "points": points,
            "findings": findings, "errors": errors}


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else list(argv))
    if args.worker:
        return worker_main(args)
    if args.scaling_worker:
        return scaling_worker_main(args)

    def log(msg):
        if not args.quiet:
            print(msg, file=sys.stderr, flush=True)

    return run_benchmark(args, log)


if __name__ == "__main__":
    sys.exit(main())
