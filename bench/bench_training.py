"""Training benchmark: fastmlp against NumPy, scikit-learn and PyTorch on Fashion-MNIST.

The reference run -- 784-256(ReLU)-10, pixels scaled to [-1, 1] with
``PixelScaler(mode="symmetric")``, plain SGD with learning rate 0.01, batches of 64, shuffled
every epoch -- trained by every system in turn, in one process:

* ``fastmlp-1t`` and ``fastmlp-<cores>t``: :class:`fastmlp.MLPImageClassifier` with
  ``n_threads`` 1 and all cores; epoch times from its ``history_``;
* ``numpy``: bench/numpy_mlp.py, the same network, initialization and batches in plain
  NumPy, with the BLAS threads NumPy has by default;
* ``sklearn``: ``sklearn.neural_network.MLPClassifier``, one epoch per ``partial_fit``;
* ``torch-dataloader`` and ``torch-preloaded`` (when torch is importable): the usual loop over
  a ``DataLoader`` of a ``TensorDataset``, and the fastest honest loop, which indexes
  pre-loaded tensors with a ``torch.randperm`` permutation.

Repeats are interleaved (repeat 1 of every system, then repeat 2, ...) so a slow spell of a
shared machine hits all systems alike, and each ratio to fastmlp is taken within a repeat.
Results are checked before they are reported: fastmlp and the NumPy baseline must agree
after one epoch from the same seed, and every system's test accuracy must pass a sanity
bound; a run that fails either is flagged (exit status 2).

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
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from fastmlp._machine import machine_info as fastmlp_machine_info
from fastmlp._machine import n_cores

HERE = Path(__file__).resolve().parent
DEFAULT_OUTPUT = HERE / "results" / "training.json"

HIDDEN = 256
BATCH_SIZE = 64
LEARNING_RATE = 0.01
CEILING_N = 2048  # numpy.matmul of two CEILING_N^2 float32 matrices measures the ceiling


def _load_sibling(name):
    """A module of bench/ (not a package), loaded by path so any caller can use it."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, HERE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules[name] = module
    return module


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
# Systems. Each runner trains a fresh model for a number of epochs and returns it with the
# wall time of every epoch; predict() gives labels.
# ----------------------------------------------------------------------------------------


class FastmlpRunner:
    family = "fastmlp"

    def __init__(self, n_threads):
        self.n_threads = n_threads
        self.threads = str(n_threads)

    def train(self, X, y, epochs, seed, hidden=HIDDEN, batch_size=BATCH_SIZE):
        from sklearn.exceptions import ConvergenceWarning

        from fastmlp import MLPImageClassifier

        clf = MLPImageClassifier(
            (hidden,), "relu", solver="sgd", momentum=0.0, alpha=0.0, batch_size=batch_size,
            learning_rate_init=LEARNING_RATE, max_iter=epochs, weight_init="pytorch",
            n_iter_no_change=epochs + 1, random_state=seed, n_threads=self.n_threads)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)  # max_iter is the point
            clf.fit(X, y)
        return clf, [h["time"] for h in clf.history_]

    def predict(self, model, X):
        return model.predict(X)


class NumpyRunner:
    family = "numpy"

    def __init__(self, blas_threads=None):
        self.blas_threads = blas_threads  # None: NumPy's default
        self.threads = "BLAS default" if blas_threads is None else str(blas_threads)

    def _limits(self):
        from threadpoolctl import threadpool_limits

        return threadpool_limits(limits=self.blas_threads, user_api="blas")

    def train(self, X, y, epochs, seed, hidden=HIDDEN, batch_size=BATCH_SIZE):
        numpy_mlp = _load_sibling("numpy_mlp")
        model = numpy_mlp.NumpyMLP((hidden,), learning_rate=LEARNING_RATE,
                                   batch_size=batch_size, weight_init="pytorch",
                                   random_state=seed)
        with self._limits():
            model.fit(X, y, epochs=epochs)
        return model, [h["time"] for h in model.history_]

    def predict(self, model, X):
        with self._limits():
            return model.predict(X)


class SklearnRunner:
    family = "sklearn"
    threads = "BLAS default"

    def train(self, X, y, epochs, seed, hidden=HIDDEN, batch_size=BATCH_SIZE):
        from sklearn.neural_network import MLPClassifier

        clf = MLPClassifier(hidden_layer_sizes=(hidden,), solver="sgd", momentum=0.0,
                            alpha=0.0, batch_size=batch_size,
                            learning_rate_init=LEARNING_RATE, random_state=seed)
        classes = np.unique(y)
        times = []
        for _ in range(epochs):
            start = time.perf_counter()
            clf.partial_fit(X, y, classes=classes)
            times.append(time.perf_counter() - start)
        return clf, times

    def predict(self, model, X):
        return model.predict(X)


class TorchRunner:
    family = "torch"

    def __init__(self, preloaded):
        self.preloaded = preloaded
        self.threads = str(n_cores())

    def _torch(self):
        torch = importlib.import_module("torch")
        torch.set_num_threads(n_cores())
        return torch

    def train(self, X, y, epochs, seed, hidden=HIDDEN, batch_size=BATCH_SIZE):
        torch = self._torch()
        nn = torch.nn
        torch.manual_seed(seed)
        model = nn.Sequential(nn.Flatten(), nn.Linear(X.shape[1], hidden), nn.ReLU(),
                              nn.Linear(hidden, int(y.max()) + 1))
        loss_fn = nn.CrossEntropyLoss()
        optimizer = torch.optim.SGD(model.parameters(), lr=LEARNING_RATE)
        X_t = torch.from_numpy(X)
        y_t = torch.from_numpy(np.ascontiguousarray(y, dtype=np.int64))
        n = X.shape[0]
        generator = torch.Generator().manual_seed(seed)
        if not self.preloaded:
            loader = torch.utils.data.DataLoader(
                torch.utils.data.TensorDataset(X_t, y_t), batch_size=batch_size, shuffle=True,
                generator=generator)
        times = []
        for _ in range(epochs):
            start = time.perf_counter()
            model.train()
            # Loss and accuracy are accumulated per batch, as every system here reports them.
            loss_sum = torch.zeros(())
            correct = torch.zeros((), dtype=torch.int64)
            if self.preloaded:
                perm = torch.randperm(n, generator=generator)
                batches = ((X_t[idx], y_t[idx])
                           for idx in (perm[i:i + batch_size] for i in range(0, n, batch_size)))
            else:
                batches = loader
            for xb, yb in batches:
                logits = model(xb)
                loss = loss_fn(logits, yb)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                loss_sum += loss.detach() * yb.shape[0]
                correct += (logits.detach().argmax(1) == yb).sum()
            _ = (loss_sum.item() / n, correct.item() / n)
            times.append(time.perf_counter() - start)
        return model, times

    def predict(self, model, X):
        torch = self._torch()
        model.eval()
        with torch.inference_mode():
            return model(torch.from_numpy(X)).argmax(1).numpy()


def make_runners(selection):
    """Runners by name, in the order they run; ``selection`` is a list of names/families."""
    cores = n_cores()
    runners = {"fastmlp-1t": FastmlpRunner(1)}
    if cores > 1:
        runners[f"fastmlp-{cores}t"] = FastmlpRunner(cores)
    runners["numpy"] = NumpyRunner()
    runners["sklearn"] = SklearnRunner()
    runners["torch-dataloader"] = TorchRunner(preloaded=False)
    runners["torch-preloaded"] = TorchRunner(preloaded=True)
    if not selection:
        return runners
    chosen = {}
    for name in selection:
        hits = {k: r for k, r in runners.items() if k == name or r.family == name}
        if not hits:
            raise SystemExit(f"bench_training: unknown system {name!r}; choose from "
                             f"{', '.join(runners)} or a family (fastmlp, torch)")
        chosen.update(hits)
    return {k: r for k, r in runners.items() if k in chosen}


def reference_name(names):
    """fastmlp with all cores when it runs, else any fastmlp; ratios are against it."""
    fast = [k for k in names if k.startswith("fastmlp-")]
    if f"fastmlp-{n_cores()}t" in fast:
        return f"fastmlp-{n_cores()}t"
    return fast[-1] if fast else None


# ----------------------------------------------------------------------------------------
# Machine, ceiling, data
# ----------------------------------------------------------------------------------------


def machine_info():
    """fastmlp's machine record, plus what this benchmark alone needs: torch's version and
    the load when the run starts."""
    info = fastmlp_machine_info()
    info["torch"] = None
    info["load_average_start"] = os.getloadavg() if hasattr(os, "getloadavg") else None
    try:  # the version without importing torch: the other systems run without it loaded
        info["torch"] = importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        pass
    return info


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
# The comparison
# ----------------------------------------------------------------------------------------


def timed_predict(runner, model, X, repeats=3):
    labels = runner.predict(model, X)  # also the warm-up
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        runner.predict(model, X)
        samples.append(time.perf_counter() - start)
    return labels, statistics.median(samples)


def run_comparison(runners, data, epochs, repeats, seed, log):
    X, y, X_test, y_test = data
    raw = {name: {"repeats": [], "skipped": None} for name in runners}
    for r in range(repeats):
        for name, runner in runners.items():
            if raw[name]["skipped"]:
                continue
            log(f"  repeat {r + 1}/{repeats}: {name} ...")
            try:
                model, times = runner.train(X, y, epochs, seed + r)
            except ImportError as exc:
                raw[name]["skipped"] = f"not importable: {exc}"
                log(f"    skipped ({raw[name]['skipped']})")
                continue
            labels, infer = timed_predict(runner, model, X_test)
            acc = float(np.mean(labels == y_test))
            raw[name]["repeats"].append({"epoch_times": times, "test_accuracy": acc,
                                         "inference_time": infer})
            log(f"    epochs {' '.join(f'{t:.3f}' for t in times)} s; test acc {acc:.4f}")
    return raw


def summarize(raw, runners, n_train, n_test, sizes, ceiling, min_accuracy, epochs):
    flops_epoch = flops_per_sample(sizes) * n_train
    ref = reference_name([k for k, v in raw.items() if v["repeats"]])
    timed = slice(1, None) if epochs > 1 else slice(0, None)
    out, flags = {}, []
    for name, rec in raw.items():
        if not rec["repeats"]:
            out[name] = {"skipped": rec["skipped"] or "no result"}
            continue
        per_repeat = [rep["epoch_times"][timed] for rep in rec["repeats"]]
        all_t = [t for ts in per_repeat for t in ts]
        med = statistics.median(all_t)
        last = rec["repeats"][-1]
        accs = [rep["test_accuracy"] for rep in rec["repeats"]]
        s = {
            "threads": runners[name].threads,
            "epoch_time_median": med,
            "epoch_time_min": min(all_t),
            "epoch_time_max": max(all_t),
            "spread": max(all_t) / min(all_t),
            "epoch_times": [rep["epoch_times"] for rep in rec["repeats"]],
            "first_epoch_time_median": statistics.median(
                rep["epoch_times"][0] for rep in rec["repeats"]),
            "samples_per_s": n_train / med,
            "gflops": flops_epoch / med / 1e9,
            "ceiling_fraction": flops_epoch / med / 1e9 / ceiling,
            "test_accuracy": last["test_accuracy"],
            "test_accuracy_min": min(accs),
            "inference_time": last["inference_time"],
            "inference_samples": n_test,
            "ok": True,
        }
        if min(accs) < min_accuracy:
            s["ok"] = False
            flags.append(f"{name}: test accuracy {min(accs):.4f} after {epochs} epochs is "
                         f"below the sanity bound {min_accuracy}")
        out[name] = s
    if ref is not None:
        ref_medians = [statistics.median(rep["epoch_times"][timed])
                       for rep in raw[ref]["repeats"]]
        for name, s in out.items():
            if "skipped" in s:
                continue
            mine = [statistics.median(rep["epoch_times"][timed])
                    for rep in raw[name]["repeats"]]
            pairs = [a / b for a, b in zip(mine, ref_medians)]
            s["ratio_to_reference"] = statistics.median(pairs)
            s["ratio_pairs"] = pairs
            # Each system's best epoch against fastmlp's: the reading least favourable to
            # fastmlp when a shared machine slows some repeats of the others.
            s["ratio_of_minimums"] = s["epoch_time_min"] / out[ref]["epoch_time_min"]
    return out, ref, flags, flops_epoch


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


def run_scaling(data, grid, n_subset, epochs, seed, log, repeats=1):
    """Every grid point for fastmlp and NumPy; with repeats > 1 the whole grid is run again
    (a slow spell of the machine then spoils one pass of a point, not all of them) and each
    point keeps the fastest timed epoch of all passes."""
    passes = [_scaling_pass(data, grid, n_subset, epochs, seed, log) for _ in range(repeats)]
    points = passes[0]
    for other in passes[1:]:
        for p, q in zip(points, other):
            p["epoch_times"] = p["epoch_times"] + q["epoch_times"]
            if q["epoch_time"] < p["epoch_time"]:
                for k in ("epoch_time", "us_per_sample", "gflops"):
                    p[k] = q[k]
    return points


def _scaling_pass(data, grid, n_subset, epochs, seed, log):
    X, y = data[0], data[1]
    cores = n_cores()
    points = []
    for curve, values in grid.items():
        for value in values:
            n, hidden, batch, threads = n_subset, HIDDEN, BATCH_SIZE, cores
            if curve == "samples":
                n = value
            elif curve == "width":
                hidden = value
            elif curve == "batch":
                batch = value
            else:
                threads = value
            if batch > n:
                log(f"  {curve}={value}: skipped, batch {batch} > {n} samples")
                continue
            for system in ("fastmlp", "numpy"):
                if system == "fastmlp":
                    runner = FastmlpRunner(threads)
                else:
                    runner = NumpyRunner(threads if curve == "threads" else None)
                _, times = runner.train(X[:n], y[:n], epochs, seed, hidden=hidden,
                                        batch_size=batch)
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


def markdown_table(summary, ref, ceiling, flops_epoch, n_train, n_test, ceiling_size):
    ref_label = ref or "fastmlp"
    lines = [
        f"| system | threads | epoch median (s) | epoch min (s) | samples/s | GFLOP/s "
        f"| % of ceiling | epoch time / {ref_label} | min / {ref_label} min | test acc "
        f"| inference {n_test} (ms) | check |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, s in summary.items():
        if "skipped" in s:
            lines.append(f"| {name} | | skipped: {s['skipped']} | | | | | | | | | |")
            continue
        ratio = f"{s['ratio_to_reference']:.2f}x" if "ratio_to_reference" in s else "-"
        ratio_min = f"{s['ratio_of_minimums']:.2f}x" if "ratio_of_minimums" in s else "-"
        lines.append(
            f"| {name} | {s['threads']} | {s['epoch_time_median']:.3f} "
            f"| {s['epoch_time_min']:.3f} | {s['samples_per_s']:,.0f} | {s['gflops']:.1f} "
            f"| {100 * s['ceiling_fraction']:.1f}% | {ratio} | {ratio_min} "
            f"| {100 * s['test_accuracy']:.2f}% "
            f"| {1e3 * s['inference_time']:.1f} | {'ok' if s['ok'] else 'FLAGGED'} |")
    lines.append("")
    lines.append(f"Epoch of {n_train} samples = {flops_epoch / 1e9:.1f} GFLOP; float32 ceiling "
                 f"(numpy.matmul {ceiling_size}^3, all cores, median) = {ceiling:.1f} GFLOP/s.")
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
                    "scikit-learn and PyTorch (when installed); print a Markdown table and "
                    "write JSON (and a PNG of the scaling curves).")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: 2 epochs, 1 repeat, a small scaling grid")
    p.add_argument("--epochs", type=int, default=None,
                   help="epochs per training run (default 5; 2 with --quick); the first is "
                        "not timed")
    p.add_argument("--repeats", type=int, default=None,
                   help="training runs per system, interleaved (default 5; 1 with --quick)")
    p.add_argument("--systems", default="",
                   help="comma-separated: fastmlp-1t, fastmlp-<cores>t, numpy, sklearn, "
                        "torch-dataloader, torch-preloaded, or the families fastmlp, torch "
                        "(default: all)")
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
    args = p.parse_args(argv)
    args.epochs = args.epochs or (2 if args.quick else 5)
    # Five: on a shared machine a slow spell can take a whole repeat of one system.
    args.repeats = args.repeats or (1 if args.quick else 5)
    args.scaling_epochs = args.scaling_epochs or (2 if args.quick else 3)
    args.scaling_repeats = args.scaling_repeats or (1 if args.quick else 2)
    for name in ("epochs", "repeats", "scaling_epochs", "scaling_repeats"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else list(argv))

    def log(msg):
        if not args.quiet:
            print(msg, file=sys.stderr, flush=True)

    runners = make_runners([s.strip() for s in args.systems.split(",") if s.strip()])
    machine = machine_info()
    if machine["torch"] is None:
        for name in [k for k, r in runners.items() if r.family == "torch"]:
            runners.pop(name)
            log(f"{name}: torch is not installed, skipped")
    log(f"machine: {machine['cpu']}, {machine['cores']} cores, fastmlp ISA "
        f"{machine['fastmlp_isa']}, NumPy BLAS threads {machine['numpy_blas_threads']}, "
        f"load average {machine['load_average_start']}")

    try:
        data = load_data(args)
    except FileNotFoundError as exc:
        print(f"bench_training: {exc}\nPass --download, or --data-home DIR.", file=sys.stderr)
        return 1
    X, y, X_test, y_test = data
    n_train, n_test = X.shape[0], X_test.shape[0]
    sizes = [X.shape[1], HIDDEN, int(y.max()) + 1]
    min_accuracy = args.min_accuracy
    if min_accuracy is None:
        min_accuracy = 0.75 if args.epochs >= 2 and n_train >= 30000 else 0.0

    flags = []
    log("checking fastmlp against the NumPy baseline (one epoch, same seed) ...")
    oracle = oracle_check(X, y, args.seed)
    if not oracle["ok"]:
        flags.append(f"fastmlp and the NumPy baseline disagree after one epoch: max |dW| = "
                     f"{oracle['max_abs_weight_diff']:.2e}, loss rel. diff "
                     f"{oracle['loss_rel_diff']:.2e}")

    log("measuring the float32 ceiling ...")
    ceiling_samples = measure_ceiling(5, size=args.ceiling_size)
    ceiling_1t = statistics.median(measure_ceiling(3, threads=1, size=args.ceiling_size))

    log(f"training {', '.join(runners)}: {args.epochs} epochs x {args.repeats} repeats ...")
    raw = run_comparison(runners, data, args.epochs, args.repeats, args.seed, log)
    ceiling_samples += measure_ceiling(5, size=args.ceiling_size)
    ceiling = statistics.median(ceiling_samples)
    summary, ref, acc_flags, flops_epoch = summarize(
        raw, runners, n_train, n_test, sizes, ceiling, min_accuracy, args.epochs)
    flags += acc_flags
    for name in ("numpy",):
        if ref and name in summary and "skipped" not in summary[name]:
            gap = abs(summary[name]["test_accuracy"] - summary[ref]["test_accuracy"])
            if gap > 0.02:  # same network, weights and batches: they should agree
                flags.append(f"{name} and {ref} end {gap:.3f} apart in test accuracy")

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

    points, findings, grid = [], [], None
    if not args.no_scaling:
        n_subset = min(args.scaling_samples or (7500 if args.quick else 15000), n_train)
        grid = scaling_grid(n_train, args.quick)
        log(f"scaling curves ({args.scaling_epochs} epochs per point, width/batch/threads on "
            f"{n_subset} samples) ...")
        points = run_scaling(data, grid, n_subset, args.scaling_epochs, args.seed, log,
                             args.scaling_repeats)
        findings = scaling_findings(points)
    machine["load_average_end"] = os.getloadavg() if hasattr(os, "getloadavg") else None

    table = markdown_table(summary, ref, ceiling, flops_epoch, n_train, n_test,
                           args.ceiling_size)
    print(f"## Training benchmark: {sizes[0]}-{sizes[1]}-{sizes[2]} MLP, SGD lr {LEARNING_RATE}, "
          f"batch {BATCH_SIZE}, {n_train} training samples\n")
    print(f"{machine['cpu']}, {machine['cores']} cores, fastmlp ISA {machine['fastmlp_isa']}; "
          f"{args.epochs} epochs x {args.repeats} repeats, epoch time = median of epochs "
          f"2..{args.epochs} of every repeat; load average {machine['load_average_start']} "
          f"at start.\n")
    print(table)
    print(f"\nOracle: fastmlp vs NumPy after one epoch on {oracle['n_samples']} samples: max "
          f"|dW| = {oracle['max_abs_weight_diff']:.2e} ({'ok' if oracle['ok'] else 'FLAGGED'}).")
    for note in notes:
        print(f"\nNote: {note}.")
    if points:
        print("\n### Scaling (fastmlp with all cores, NumPy with its default BLAS threads; "
              "fastest of the timed epochs of each point)\n")
        print(scaling_tables(points))
        for f in findings:
            print(f"- {f}")
    if flags:
        print("\n**FLAGGED, do not trust these numbers:**")
        for f in flags:
            print(f"- {f}")

    result = {
        "benchmark": "training",
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine,
        "config": {"sizes": sizes, "solver": "sgd", "learning_rate": LEARNING_RATE,
                   "momentum": 0.0, "alpha": 0.0, "batch_size": BATCH_SIZE,
                   "scaling": "PixelScaler(mode='symmetric')", "n_train": n_train,
                   "n_test": n_test, "epochs": args.epochs, "repeats": args.repeats,
                   "seed": args.seed, "min_accuracy": min_accuracy,
                   "flops_per_epoch": flops_epoch,
                   "flops_per_sample": flops_per_sample(sizes),
                   "inference_flops_per_sample": inference_flops_per_sample(sizes)},
        "ceiling": {"gflops": ceiling, "gflops_max": max(ceiling_samples),
                    "gflops_1_thread": ceiling_1t, "samples": ceiling_samples,
                    "shape": [args.ceiling_size] * 3},
        "oracle": oracle,
        "reference": ref,
        "systems": summary,
        "scaling": {"grid": grid, "scaling_epochs": args.scaling_epochs,
                    "scaling_repeats": args.scaling_repeats, "points": points,
                    "findings": findings},
        "flags": flags,
        "notes": notes,
        "ok": not flags,
        "markdown": table,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    log(f"wrote {args.output}")
    if points and not args.no_plot:
        png = args.plot or args.output.with_name(args.output.stem + "_scaling.png")
        if plot_scaling(points, png):
            log(f"wrote {png}")
        else:
            log("matplotlib is not installed: no plot")
    return 2 if flags else 0


if __name__ == "__main__":
    sys.exit(main())
