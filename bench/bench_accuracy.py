"""Accuracy benchmark: test accuracy against wall time on Fashion-MNIST, fastmlp and PyTorch.

Every recipe of :data:`RECIPES` -- the lecture's reference run, the estimator's defaults,
the ``accurate`` preset and a larger network -- is trained by

* ``fastmlp``: ``make_pipeline(PixelScaler(), MLPImageClassifier(**params))`` with all cores;
* ``torch`` (when torch is importable): the same recipe written in PyTorch CPU with
  ``torch.set_num_threads(<cores>)``: the same layers (``nn.Linear`` with PyTorch's default
  initialization, the activation, ``nn.Dropout`` after each hidden activation), the same
  optimizer (``SGD``, ``Adam``, or ``AdamW`` when ``weight_decay > 0``, decaying weights
  only; SGD's decoupled decay applied by hand before each step), the coupled ``alpha``
  penalty on the weights, the warmup + cosine schedule as a ``LambdaLR`` stepped every
  batch, ``CrossEntropyLoss(label_smoothing=...)``, shifts and flips as one index gather
  on the batch, data pre-loaded as float32 tensors and batches drawn from a seeded
  ``torch.randperm`` every epoch.

Each (seed, recipe, system) trains in its own subprocess (``--worker``), so the two
systems' thread pools never share a process, and the runs are interleaved seed by seed
(seed 0 of every recipe and system, then seed 1, ...) so a slow spell of a shared machine
hits both systems alike and each time ratio is taken between runs minutes apart at most.

The clock covers what a user waits for: scaling the training pixels, building the model,
every epoch, and the test accuracy printed after every epoch. Test pixels are scaled
before the clock. Reported: the median over seeds of the wall time and of the final test
accuracy (with its min-max), the epochs trained, and the median over seeds of the
per-seed time ratio torch / fastmlp. Results are checked before they are reported: at full
size each recipe's accuracy must fall in its range (the reference run: 82.9-85.5%), and
the two systems must end within 1.5 points of each other; a failed check marks the row
and the script exits with status 2.

Run ``python bench/bench_accuracy.py --help`` for the options; ``--quick`` is a smoke run.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import math
import os
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from fastmlp._presets import PRESETS

HERE = Path(__file__).resolve().parent
DEFAULT_OUTPUT = HERE / "results" / "accuracy.json"
SYSTEMS = ("fastmlp", "torch")

# The recipes, by name: MLPImageClassifier parameters (anything not given keeps the
# estimator's default), the PixelScaler mode applied first, and the test accuracy a full
# run (all 60000 training images, all epochs) must land in, else the row is marked failed.
# The ranges are sanity bounds for the recipe, not targets.
# The preset of `fastmlp train --preset accurate`, read from where the command line reads
# it; the images' geometry for its augmentations, since the pipeline hands the core rows.
_ACCURATE = PRESETS["accurate"]
_AUGMENTED = {**_ACCURATE.params, "image_shape": (28, 28)}
RECIPES = {
    "reference": {
        "description": "the lecture's run: 784-256-10, plain SGD lr 0.01, batch 64, 5 epochs",
        "scaling": "symmetric",
        "params": {"hidden_layer_sizes": (256,), "solver": "sgd", "learning_rate_init": 0.01,
                   "momentum": 0.0, "nesterovs_momentum": False, "alpha": 0.0,
                   "batch_size": 64, "weight_init": "pytorch", "max_iter": 5, "tol": 0.0,
                   "n_iter_no_change": 1000},
        "accuracy_range": (0.829, 0.855),
    },
    "defaults": {
        "description": "make_pipeline(PixelScaler(), MLPImageClassifier()): Adam lr 1e-3, "
                       "batch 128, 20 epochs, alpha 1e-4",
        "scaling": "symmetric",
        "params": {},
        "accuracy_range": (0.87, 0.92),
    },
    "accurate": {
        "description": f"the accurate preset: {_ACCURATE.description}",
        "scaling": _ACCURATE.normalize,
        "params": _AUGMENTED,
        "accuracy_range": (0.895, 0.93),
    },
    "large": {
        "description": "as accurate with 784-1024-1024-10, 30 epochs",
        "scaling": _ACCURATE.normalize,
        "params": {**_AUGMENTED, "hidden_layer_sizes": (1024, 1024), "max_iter": 30},
        "accuracy_range": (0.895, 0.93),
    },
}
DEFAULT_RECIPES = ("reference", "defaults", "accurate", "large")

# Values of the training-recipe parameters that leave training unchanged: the PyTorch side
# reads a recipe through them when the installed fastmlp does not know a parameter.
NEUTRAL = {"dropout": 0.0, "weight_decay": 0.0, "warmup_epochs": 0.0, "label_smoothing": 0.0,
           "random_shift": 0, "random_flip": False, "image_shape": None}
# Parameters that only concern fastmlp's own machinery (or its stopping rule, which the
# PyTorch side does not have: it trains every epoch of max_iter).
TORCH_IGNORES = {"tol", "n_iter_no_change", "verbose", "warm_start", "n_threads",
                 "random_state", "weight_init", "shuffle", "power_t", "validation_fraction",
                 "early_stopping_metric"}
CROSS_SYSTEM_GAP = 0.015  # same recipe, other library: final accuracies this close
QUICK_EPOCHS = 2


# ----------------------------------------------------------------------------------------
# Recipes
# ----------------------------------------------------------------------------------------


def recipe_params(name, epochs=None):
    """The recipe's explicit parameters, with max_iter replaced when ``epochs`` is given."""
    params = dict(RECIPES[name]["params"])
    if epochs is not None:
        params["max_iter"] = epochs
    return params


def effective_params(params):
    """Every parameter the recipe trains with: fastmlp's defaults, the neutral values of
    parameters this fastmlp may not have yet, then the recipe's own."""
    from fastmlp import MLPImageClassifier

    return {**NEUTRAL, **MLPImageClassifier().get_params(), **params}


def fastmlp_support(params):
    """None when the installed fastmlp accepts the recipe, else why not."""
    from fastmlp import MLPImageClassifier

    missing = sorted(set(params) - set(MLPImageClassifier().get_params()))
    if missing:
        return f"this fastmlp has no parameter {', '.join(missing)}"
    try:
        MLPImageClassifier(**params)._validate_params()
    except ValueError as exc:  # InvalidParameterError: a value it does not know yet
        return f"this fastmlp refuses the recipe: {exc}"
    return None


def torch_support(p):
    """None when the PyTorch side can write the recipe ``p`` (effective parameters), else
    why not: it has fastmlp's training loop, not its stopping rules or class weights."""
    if p["early_stopping"]:
        return "the PyTorch side has no early_stopping"
    if p["class_weight"] is not None:
        return "the PyTorch side has no class_weight"
    if p["learning_rate"] not in ("constant", "cosine"):
        return f"the PyTorch side has no learning_rate={p['learning_rate']!r}"
    return None


def batch_size_of(params, n):
    """The batch size fastmlp trains with (its "auto" rule included)."""
    if params["batch_size"] == "auto":
        return min(n, max(16, min(128, n // 16)))
    return min(n, int(params["batch_size"]))


def lr_factor(step, warmup_steps, total_steps):
    """learning_rate="cosine": the learning rate of 0-based ``step`` over the initial one.

    fastmlp's formula, with ``s = step + 1``, ``S_w = warmup_epochs * steps_per_epoch`` (not
    rounded) and ``S`` the steps of ``max_iter`` epochs: ``s / S_w`` during the warmup, then
    ``(1 + cos(pi * (s - S_w - 1) / (S - S_w))) / 2`` down towards 0.
    """
    s, total = step + 1, max(total_steps, warmup_steps)
    if warmup_steps > 0 and s <= warmup_steps:
        return s / warmup_steps
    span = total - warmup_steps
    progress = min(1.0, (s - warmup_steps - 1) / span) if span > 0 else 1.0
    return 0.5 * (1.0 + math.cos(math.pi * progress))


# ----------------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------------


def load_data(data_home, n_train=None, n_test=None):
    """uint8 train/test pixels (n, 784) and int64 labels, or raise FileNotFoundError."""
    from fastmlp.datasets import load_fashion_mnist

    X, y, X_test, y_test = load_fashion_mnist(data_home, return_X_y=True)
    if n_train:
        X, y = X[:n_train], y[:n_train]
    if n_test:
        X_test, y_test = X_test[:n_test], y_test[:n_test]
    return (np.asarray(X), np.asarray(y, dtype=np.int64), np.asarray(X_test),
            np.asarray(y_test, dtype=np.int64))


def scaled_test_images(X, X_test, mode):
    """The test images scaled as the recipe's pipeline scales them: by a PixelScaler fitted
    on the training images (``"standard"`` learns their mean and standard deviation)."""
    from fastmlp import PixelScaler

    return PixelScaler(mode=mode).fit(X).transform(X_test)


# ----------------------------------------------------------------------------------------
# Workers: one training run in this process, its result as a dict
# ----------------------------------------------------------------------------------------


def run_fastmlp(spec, data):
    """fastmlp: the pipeline a user writes, test accuracy printed after every epoch."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.pipeline import make_pipeline

    from fastmlp import MLPImageClassifier, PixelScaler

    X, y, X_test, y_test = data
    X_test = scaled_test_images(X, X_test, spec["scaling"])
    # JSON made the recipe's tuples lists; the estimator gets them back as written.
    params = {k: tuple(v) if isinstance(v, list) else v for k, v in spec["params"].items()}
    params.update(random_state=spec["seed"], n_threads=spec["threads"])
    pipe = make_pipeline(PixelScaler(mode=spec["scaling"]), MLPImageClassifier(**params))
    curve = []

    def after_epoch(clf, info):
        if info["event"] == "epoch":
            acc = float(np.mean(clf.predict(X_test) == y_test))
            curve.append({"epoch": info["epoch"], "time": time.perf_counter() - start,
                          "train_loss": info["loss"], "test_accuracy": acc})
            log_epoch(spec, curve[-1])

    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # max_iter is the point
        pipe.fit(X, y, mlpimageclassifier__callback=after_epoch)
    wall = time.perf_counter() - start
    return {"wall_time": wall, "epochs": int(pipe[-1].n_iter_), "curve": curve,
            "test_accuracy": curve[-1]["test_accuracy"]}


def torch_model(torch, sizes, activation, dropout):
    """Linear layers with PyTorch's default initialization; dropout after each hidden
    activation (every hidden layer the same rate, or one rate per layer)."""
    nn = torch.nn
    acts = {"relu": nn.ReLU, "tanh": nn.Tanh, "logistic": nn.Sigmoid, "identity": nn.Identity}
    rates = list(dropout) if isinstance(dropout, (list, tuple)) else [dropout] * (len(sizes) - 2)
    layers = []
    for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(fan_in, fan_out))
        if i < len(sizes) - 2:
            layers.append(acts[activation]())
            if rates[i] > 0:
                layers.append(nn.Dropout(rates[i]))
    return nn.Sequential(*layers)


def torch_optimizer(torch, model, p):
    """SGD, Adam, or AdamW when weight_decay > 0; decoupled decay on the weights only."""
    weights = [m.weight for m in model if isinstance(m, torch.nn.Linear)]
    biases = [m.bias for m in model if isinstance(m, torch.nn.Linear)]
    groups = [{"params": weights, "weight_decay": p["weight_decay"]},
              {"params": biases, "weight_decay": 0.0}]
    lr = p["learning_rate_init"]
    if p["solver"] == "sgd":
        # torch's SGD decay is coupled (added to the gradient): torch_epoch applies the
        # decoupled one itself, so both groups get none here.
        groups[0]["weight_decay"] = 0.0
        nesterov = bool(p["nesterovs_momentum"]) and p["momentum"] > 0
        return torch.optim.SGD(groups, lr=lr, momentum=p["momentum"], nesterov=nesterov)
    kind = torch.optim.AdamW if p["weight_decay"] else torch.optim.Adam
    return kind(groups, lr=lr, betas=(p["beta_1"], p["beta_2"]), eps=p["epsilon"])


def torch_schedule(torch, optimizer, p, steps_per_epoch):
    """A LambdaLR stepped after every batch, or None for a constant learning rate."""
    if p["learning_rate"] == "constant":
        return None
    total = steps_per_epoch * p["max_iter"]
    warmup = p["warmup_epochs"] * steps_per_epoch
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, warmup, total))


def torch_augment(torch, p, generator):
    """Shifts and flips of a batch of flattened images, or None without augmentation.

    One gather does both: output pixel (r, c) of an image reads pixel (r - dy, c - dx) of
    the image (flipped first when drawn), the index clamped to the image, which fills the
    uncovered border by replicating the edge pixels. ``Tensor.gather`` on flat indices is
    several times faster than advanced indexing with broadcast row and column indices.
    """
    shift, flip = int(p["random_shift"]), bool(p["random_flip"])
    if not shift and not flip:
        return None
    if p["image_shape"] is None:
        raise ValueError("augmentation needs image_shape")
    H, W = p["image_shape"][:2]
    C = p["image_shape"][2] if len(p["image_shape"]) == 3 else 1
    rows0, cols0, channels = torch.arange(H), torch.arange(W), torch.arange(C)

    def augment(xb):
        B = xb.shape[0]
        rows, cols = rows0.expand(B, H), cols0.expand(B, W)
        if shift:
            dy = torch.randint(-shift, shift + 1, (B, 1), generator=generator)
            dx = torch.randint(-shift, shift + 1, (B, 1), generator=generator)
            rows, cols = (rows - dy).clamp(0, H - 1), (cols - dx).clamp(0, W - 1)
        if flip:
            flipped = torch.rand((B, 1), generator=generator) < 0.5
            cols = torch.where(flipped, W - 1 - cols, cols)
        pixel = rows[:, :, None] * W + cols[:, None, :]  # (B, H, W), channels last
        return xb.gather(1, (pixel[..., None] * C + channels).reshape(B, -1))

    return augment


def add_l2_gradient(torch, model, alpha, batch):
    """fastmlp's ``alpha``: 0.5 * alpha * ||W||^2 / batch added to the loss, as its gradient."""
    with torch.no_grad():
        for m in model:
            if isinstance(m, torch.nn.Linear):
                m.weight.grad.add_(m.weight, alpha=alpha / batch)


def decay_weights(torch, optimizer, weight_decay):
    """Decoupled decay for SGD, as AdamW does it: W *= 1 - lr * weight_decay, weights only
    (the first parameter group), at the step's scheduled learning rate."""
    group = optimizer.param_groups[0]
    with torch.no_grad():
        for w in group["params"]:
            w.mul_(1.0 - group["lr"] * weight_decay)


def torch_setup(torch, p, n_features, n_classes, n, generator):
    """Everything one PyTorch training run needs, built from the recipe ``p``."""
    sizes = [n_features, *_hidden(p["hidden_layer_sizes"]), n_classes]
    model = torch_model(torch, sizes, p["activation"], p["dropout"])
    optimizer = torch_optimizer(torch, model, p)
    batch = batch_size_of(p, n)
    return {"model": model, "optimizer": optimizer, "batch": batch,
            "schedule": torch_schedule(torch, optimizer, p, math.ceil(n / batch)),
            "loss_fn": torch.nn.CrossEntropyLoss(label_smoothing=p["label_smoothing"]),
            "augment": torch_augment(torch, p, generator),
            "sgd_decay": p["weight_decay"] if p["solver"] == "sgd" else 0.0}


def torch_epoch(torch, run, X, y, alpha, generator):
    """One shuffled pass; the training loss accumulated per batch, as fastmlp reports it."""
    model, optimizer, batch = run["model"], run["optimizer"], run["batch"]
    model.train()
    n = X.shape[0]
    perm = torch.randperm(n, generator=generator)
    loss_sum = torch.zeros(())
    for start in range(0, n, batch):
        idx = perm[start:start + batch]
        xb, yb = X[idx], y[idx]
        if run["augment"] is not None:
            xb = run["augment"](xb)
        loss = run["loss_fn"](model(xb), yb)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if alpha:
            add_l2_gradient(torch, model, alpha, yb.shape[0])
        if run["sgd_decay"]:
            decay_weights(torch, optimizer, run["sgd_decay"])
        optimizer.step()
        if run["schedule"] is not None:
            run["schedule"].step()
        loss_sum += loss.detach() * yb.shape[0]
    return loss_sum.item() / n


def torch_accuracy(torch, model, X, y):
    model.eval()
    with torch.inference_mode():
        return float((model(X).argmax(1) == y).float().mean())


def run_torch(spec, data):
    """The same recipe in PyTorch CPU, on pre-loaded float32 tensors."""
    import torch

    from fastmlp import PixelScaler

    torch.set_num_threads(spec["threads"])
    torch.manual_seed(spec["seed"])  # initialization and dropout masks
    generator = torch.Generator().manual_seed(spec["seed"])  # batches, shifts, flips
    p = spec["params"]
    X, y, X_test, y_test = data
    X_test_t = torch.from_numpy(scaled_test_images(X, X_test, spec["scaling"]))
    y_test_t = torch.from_numpy(y_test)
    curve = []
    start = time.perf_counter()
    scaler = PixelScaler(mode=spec["scaling"])
    X_t, y_t = torch.from_numpy(scaler.fit_transform(X)), torch.from_numpy(y)
    run = torch_setup(torch, p, X.shape[1], int(y.max()) + 1, X.shape[0], generator)
    for epoch in range(1, p["max_iter"] + 1):
        loss = torch_epoch(torch, run, X_t, y_t, p["alpha"], generator)
        acc = torch_accuracy(torch, run["model"], X_test_t, y_test_t)
        curve.append({"epoch": epoch, "time": time.perf_counter() - start,
                      "train_loss": loss, "test_accuracy": acc})
        log_epoch(spec, curve[-1])
    wall = time.perf_counter() - start
    return {"wall_time": wall, "epochs": p["max_iter"], "curve": curve,
            "test_accuracy": curve[-1]["test_accuracy"], "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "torch_cpu_capability": torch.backends.cpu.get_cpu_capability()}


def _hidden(sizes):
    return [int(sizes)] if isinstance(sizes, int) else [int(s) for s in sizes]


def log_epoch(spec, point):
    if not spec.get("quiet"):
        print(f"    {spec['system']} {spec['recipe']} seed {spec['seed']}: epoch "
              f"{point['epoch']}: {point['time']:.1f} s, test accuracy "
              f"{100 * point['test_accuracy']:.2f}%", file=sys.stderr, flush=True)


def worker_main(spec_json):
    """``--worker SPEC``: one training run; its result as one JSON line on stdout."""
    spec = json.loads(spec_json)
    data = load_data(spec["data_home"], spec["n_train"], spec["n_test"])
    run = run_fastmlp if spec["system"] == "fastmlp" else run_torch
    result = run(spec, data)
    print(json.dumps(result))
    return 0


# ----------------------------------------------------------------------------------------
# The run: every (seed, recipe, system) in a subprocess
# ----------------------------------------------------------------------------------------


def spawn(spec):
    """Run one worker; its result dict, or {"error": ...} when it failed."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(spec)]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=None if not spec["quiet"]
                          else subprocess.PIPE, text=True)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or "").strip().splitlines()[-1:] or [f"exit {proc.returncode}"]
        return {"error": f"worker failed: {tail[0]}"}
    return json.loads(lines[-1])


def plan(args, torch_version):
    """The (recipe, system) cells to run, with the reason each skipped one is skipped."""
    cells = {}
    for name in args.recipes:
        params = recipe_params(name, QUICK_EPOCHS if args.quick else None)
        for system in args.systems:
            cell = {"recipe": name, "system": system, "params": params,
                    "recipe_params": params, "skipped": None, "runs": []}
            if system == "fastmlp":
                cell["skipped"] = fastmlp_support(params)
            elif torch_version is None:
                cell["skipped"] = "torch is not installed"
            else:
                cell["params"] = {k: v for k, v in effective_params(params).items()
                                  if k not in TORCH_IGNORES}
                cell["skipped"] = torch_support(cell["params"])
            cells[(name, system)] = cell
    return cells


def run_all(cells, args, threads, log):
    """Seed by seed, every cell once: runs interleaved so ratios pair close runs."""
    for seed in args.seeds:
        for (name, system), cell in cells.items():
            if cell["skipped"]:
                continue
            log(f"  seed {seed}: {system} {name} ...")
            spec = {"system": system, "recipe": name, "seed": seed, "threads": threads,
                    "params": cell["params"], "scaling": RECIPES[name]["scaling"],
                    "data_home": args.data_home, "n_train": args.n_train,
                    "n_test": args.n_test, "quiet": args.quiet}
            result = spawn(spec)
            result["seed"] = seed
            cell["runs"].append(result)
            if "error" in result:
                log(f"    {result['error']}")
            else:
                log(f"    {result['wall_time']:.1f} s, test accuracy "
                    f"{100 * result['test_accuracy']:.2f}%")


# ----------------------------------------------------------------------------------------
# Summary and checks
# ----------------------------------------------------------------------------------------


def summarize_cell(cell):
    runs = [r for r in cell["runs"] if "error" not in r]
    errors = [r["error"] for r in cell["runs"] if "error" in r]
    if cell["skipped"] or not runs:
        return {"skipped": cell["skipped"], "errors": errors, "ok": not errors}
    accs = [r["test_accuracy"] for r in runs]
    return {
        "wall_time_median": statistics.median(r["wall_time"] for r in runs),
        "wall_times": [r["wall_time"] for r in runs],
        "test_accuracy_median": statistics.median(accs),
        "test_accuracy_min": min(accs), "test_accuracy_max": max(accs),
        "epochs": sorted({r["epochs"] for r in runs}),
        "seeds": [r["seed"] for r in runs],
        "errors": errors, "ok": not errors, "checks": [],
    }


def time_ratio(cells, name):
    """torch / fastmlp wall time: the median over seeds of each seed's ratio."""
    fast, torch = cells.get((name, "fastmlp")), cells.get((name, "torch"))
    if not fast or not torch:
        return None, []
    by_seed = {r["seed"]: r["wall_time"] for r in fast["runs"] if "error" not in r}
    pairs = [r["wall_time"] / by_seed[r["seed"]] for r in torch["runs"]
             if "error" not in r and r["seed"] in by_seed]
    return (statistics.median(pairs) if pairs else None), pairs


def check_rows(rows, recipe, full_size):
    """Mark rows whose accuracy is out of the recipe's range or that disagree with the other
    system by more than CROSS_SYSTEM_GAP; the failures, as text. Both checks hold for a
    recipe as written (``full_size``): a few epochs on a subsample differ by seed noise."""
    flags = []
    done = {s: r for s, r in rows.items() if "test_accuracy_median" in r}
    lo, hi = RECIPES[recipe]["accuracy_range"]
    for r in done.values() if full_size else ():
        bad = [a for a in (r["test_accuracy_min"], r["test_accuracy_max"]) if not lo <= a <= hi]
        if bad:
            r["checks"].append(f"accuracy {100 * bad[0]:.2f}% outside "
                               f"{100 * lo:.1f}-{100 * hi:.1f}%")
    if len(done) == 2 and full_size:
        gap = abs(done["fastmlp"]["test_accuracy_median"] - done["torch"]["test_accuracy_median"])
        if gap > CROSS_SYSTEM_GAP:
            for r in done.values():
                r["checks"].append(f"systems {100 * gap:.2f} points apart")
    for system, r in rows.items():
        r["checks"] = r.get("checks", []) + r["errors"]
        r["ok"] = not r["checks"]
        flags += [f"{recipe} / {system}: {c}" for c in r["checks"]]
    return flags


def summarize(cells, args, full_size):
    results, flags = {}, []
    for name in args.recipes:
        rows = {s: summarize_cell(cells[(name, s)]) for s in args.systems}
        ratio, pairs = time_ratio(cells, name)
        if "torch" in rows and ratio is not None:
            rows["torch"].update(time_ratio_to_fastmlp=ratio, time_ratio_pairs=pairs)
        flags += check_rows(rows, name, full_size)
        results[name] = {"description": RECIPES[name]["description"],
                         "params": _jsonable(cells[(name, args.systems[0])]["recipe_params"]),
                         "accuracy_range": RECIPES[name]["accuracy_range"], "systems": rows,
                         "runs": {s: cells[(name, s)]["runs"] for s in args.systems}}
    return results, flags


def _jsonable(params):
    return {k: list(v) if isinstance(v, tuple) else v for k, v in params.items()}


# ----------------------------------------------------------------------------------------
# Output
# ----------------------------------------------------------------------------------------


def machine_info():
    """fastmlp's machine record, PyTorch's version (read without importing it) and the
    load when the run starts."""
    from fastmlp._machine import machine_info as fastmlp_machine_info

    info = fastmlp_machine_info()
    try:
        info["torch"] = importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        info["torch"] = None
    info["load_average_start"] = os.getloadavg() if hasattr(os, "getloadavg") else None
    return info


def header_line(machine):
    flags = " ".join(machine["cpu_features"]) or "none of avx2/fma/avx512"
    torch = f"PyTorch {machine['torch']}" if machine["torch"] else "PyTorch not installed"
    return (f"{machine['cpu']}, {machine['cores']} cores (flags: {flags}); fastmlp "
            f"{machine['fastmlp']} (ISA {machine['fastmlp_isa']}), {torch}, NumPy "
            f"{machine['numpy']}, scikit-learn {machine['scikit-learn']}, Python "
            f"{machine['python']}")


def _row(name, system, r, threads):
    if "test_accuracy_median" not in r:
        why = r["skipped"] or "; ".join(r["errors"]) or "no result"
        return f"| {name} | {system} | | | | skipped: {why} | | | |"
    ratio = "1.00x" if system == "fastmlp" else (
        f"{r['time_ratio_to_fastmlp']:.2f}x" if "time_ratio_to_fastmlp" in r else "-")
    epochs = "/".join(str(e) for e in r["epochs"])
    check = "ok" if r["ok"] else "FAILED: " + "; ".join(r["checks"])
    return (f"| {name} | {system} | {threads} | {epochs} | {r['wall_time_median']:.1f} "
            f"| {100 * r['test_accuracy_median']:.2f}% | {100 * r['test_accuracy_min']:.2f}"
            f"-{100 * r['test_accuracy_max']:.2f}% | {ratio} | {check} |")


def markdown_table(results, threads):
    lines = ["| recipe | system | threads | epochs | wall time (s) | test accuracy "
             "| min-max | time torch / fastmlp | check |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, rec in results.items():
        lines += [_row(name, s, r, threads) for s, r in rec["systems"].items()]
    lines.append("")
    lines += [f"- `{name}`: {rec['description']}." for name, rec in results.items()]
    return "\n".join(lines)


def print_report(results, flags, machine, args, n_train, n_test, full_size, threads):
    seeds = ",".join(str(s) for s in args.seeds)
    print(f"## Accuracy against wall time: Fashion-MNIST, {n_train} training / {n_test} test "
          f"images, seeds {seeds}{' (--quick)' if args.quick else ''}\n")
    load = machine["load_average_start"]
    busy = f"; 1-minute load average {load[0]:.1f} at the start" if load else ""
    print(header_line(machine) + busy + "\n")
    print("Wall time: training with the test accuracy after every epoch, median over seeds; "
          "test accuracy after the last epoch, median (min-max) over seeds; time ratio: "
          "median over seeds of torch / fastmlp.\n")
    print(markdown_table(results, threads))
    if not full_size:
        print("\nNot checked: accuracy ranges and the fastmlp-torch gap hold for full runs "
              "(60000 / 10000 images, every epoch of the recipe); this run is reduced.")
    if load and load[0] > 0.75 * machine["cores"]:
        print(f"\nNote: the machine was busy (load average {load[0]:.1f} on {machine['cores']} "
              "cores at the start): every time is inflated, multi-threaded runs most (a "
              "descheduled thread stalls the others at each join); rerun on an idle machine "
              "before trusting the times.")
    if flags:
        print("\n**FAILED checks, do not trust these rows:**")
        for f in flags:
            print(f"- {f}")


# ----------------------------------------------------------------------------------------
# Entry point
# ----------------------------------------------------------------------------------------


def _names(text, allowed, what):
    names = [s.strip() for s in text.split(",") if s.strip()]
    bad = [s for s in names if s not in allowed]
    if bad or not names:
        raise SystemExit(f"bench_accuracy: unknown {what} {', '.join(bad) or '(none)'}; "
                         f"choose from {', '.join(allowed)}")
    return names


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="bench_accuracy",
        description="Test accuracy against wall time on Fashion-MNIST for a few recipes, "
                    "fastmlp and the same recipe in PyTorch CPU (when installed); print a "
                    "Markdown table and write JSON.")
    p.add_argument("--recipes", default=",".join(DEFAULT_RECIPES),
                   help=f"comma-separated, from {', '.join(RECIPES)} (default: all)")
    p.add_argument("--systems", default=",".join(SYSTEMS),
                   help="comma-separated: fastmlp, torch (default: both)")
    p.add_argument("--seeds", default="0,1,2", help="random seeds, one run each (default 0,1,2)")
    p.add_argument("--quick", action="store_true",
                   help=f"smoke run: {QUICK_EPOCHS} epochs per recipe, the first seed only")
    p.add_argument("--threads", type=int, default=None,
                   help="threads of both systems (default: the cores this process may use)")
    p.add_argument("--n-train", type=int, default=None, help="use the first N training images")
    p.add_argument("--n-test", type=int, default=None, help="use the first N test images")
    p.add_argument("--data-home", default=None,
                   help="directory holding the Fashion-MNIST IDX files (default: fastmlp's "
                        "lookup order)")
    p.add_argument("--output", type=Path, default=DEFAULT_OUTPUT,
                   help=f"JSON results (default {DEFAULT_OUTPUT.relative_to(HERE.parent)})")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    p.add_argument("--worker", metavar="SPEC", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        return args
    args.recipes = _names(args.recipes, list(RECIPES), "recipe")
    args.systems = _names(args.systems, list(SYSTEMS), "system")
    try:
        args.seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        p.error(f"--seeds must be integers separated by commas, got {args.seeds!r}")
    if not args.seeds:
        p.error("--seeds needs at least one seed")
    if args.threads is not None and args.threads < 1:
        p.error("--threads must be at least 1")
    args.seeds = args.seeds[:1] if args.quick else args.seeds
    return args


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else list(argv))
    if args.worker:
        return worker_main(args.worker)

    def log(msg):
        if not args.quiet:
            print(msg, file=sys.stderr, flush=True)

    try:
        X, _, X_test, _ = load_data(args.data_home, args.n_train, args.n_test)
    except FileNotFoundError as exc:
        print(f"bench_accuracy: {exc}\nPass --data-home DIR.", file=sys.stderr)
        return 1
    n_train, n_test = X.shape[0], X_test.shape[0]
    machine = machine_info()
    threads = args.threads or machine["cores"]
    log(f"machine: {header_line(machine)}; load average {machine['load_average_start']}")
    cells = plan(args, machine["torch"])
    for cell in cells.values():
        if cell["skipped"]:
            log(f"{cell['system']} {cell['recipe']}: skipped ({cell['skipped']})")
    run_all(cells, args, threads, log)
    machine["load_average_end"] = os.getloadavg() if hasattr(os, "getloadavg") else None
    # Accuracy ranges hold for the recipe as written: all the data, every epoch.
    full_size = n_train == 60000 and n_test == 10000 and not args.quick
    results, flags = summarize(cells, args, full_size)
    print_report(results, flags, machine, args, n_train, n_test, full_size, threads)
    write_json(args, machine, results, flags, n_train, n_test, full_size, threads)
    log(f"wrote {args.output}")
    return 2 if flags else 0


def write_json(args, machine, results, flags, n_train, n_test, full_size, threads):
    result = {
        "benchmark": "accuracy",
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine,
        "config": {"n_train": n_train, "n_test": n_test, "seeds": args.seeds,
                   "quick": args.quick, "systems": args.systems, "recipes": args.recipes,
                   "threads": threads, "accuracy_ranges_checked": full_size,
                   "cross_system_gap": CROSS_SYSTEM_GAP},
        "recipes": results,
        "flags": flags,
        "ok": not flags,
        "markdown": markdown_table(results, threads),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
