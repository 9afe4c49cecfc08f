"""Scale benchmark: one epoch on 60 thousand to millions of 28x28 uint8 images.

Fashion-MNIST's 60000 training images are tiled into a uint8 ``.npy`` file (memory-mapped,
never loaded whole), and for each sample count N the first N rows train ``--epochs`` epochs (3) of
the default ``MLPImageClassifier`` (784-256-10, Adam, batches of 128), along two paths:

* ``pipeline``: ``PixelScaler().fit_transform(X)`` then ``fit`` on its float32 copy (what a
  ``make_pipeline(PixelScaler(), MLPImageClassifier())`` does), 4 bytes per pixel in memory;
* ``fused``: ``MLPImageClassifier(input_scaler=PixelScaler())``: the core reads the uint8
  file through the mapping and scales each pixel as it gathers a batch; no copy;
* ``fused-ram``: the same on the uint8 images read into memory first (1 byte per pixel),
  the like-for-like comparison with the pipeline's float32 array in memory.

Each run is a process of its own, so its peak anonymous memory (``RssAnon`` of
/proc/self/status, sampled every 5 ms; file pages of the mapping are not anonymous) is its
own. Reported per run: the median epoch time (``history_``; epochs of one run vary by
10-30% on a shared virtual machine), the whole call's wall time (the pipeline's includes
its scaling pass), the peak anonymous memory above the interpreter's
with its imports, and the training accuracy. Before anything is timed, both paths train
the same 5000 images and must agree bitwise.

The fused path also runs on the largest N with ``shuffle="block"``; ``--cold`` adds its
first epoch, and that of ``shuffle=True``, with the file evicted from the page cache first
(``posix_fadvise(DONTNEED)``): what reading a file at random from disk costs, and what
block shuffling saves.

Run ``python bench/bench_scale.py --help`` for the options; ``--quick`` is a smoke run.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
DEFAULT_SIZES = (60_000, 300_000, 600_000, 1_200_000, 3_000_000)
SAMPLE_SECONDS = 0.005


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default=",".join(map(str, DEFAULT_SIZES)),
                   help="comma-separated sample counts (default: %(default)s)")
    p.add_argument("--paths", default="pipeline,fused-ram,fused", help="default: %(default)s")
    p.add_argument("--data-dir", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")),
                   help="where the tiled .npy file is written (default: %(default)s)")
    p.add_argument("--cold", action="store_true",
                   help="also time cold-cache epochs with shuffle=True and 'block'")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--epochs", type=int, default=3, help="epochs per run (default: 3)")
    p.add_argument("--quick", action="store_true", help="sizes 20000,60000; a smoke run")
    p.add_argument("--json", type=Path, default=HERE / "results" / "scale.json")
    p.add_argument("--worker", nargs=5, metavar=("PATH", "N", "FILE", "SHUFFLE", "EPOCHS"),
                   help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.sizes = "20000,60000"
    args.sizes = [int(s) for s in args.sizes.split(",")]
    args.paths = args.paths.split(",")
    return args


# -- the data ---------------------------------------------------------------------------

def tiled_file(data_dir, n):
    """A uint8 (n, 28, 28) .npy of Fashion-MNIST tiled, and its labels, made once."""
    images, labels = data_dir / f"fastmlp-scale-{n}.npy", data_dir / f"fastmlp-scale-{n}-y.npy"
    if images.exists() and labels.exists():
        return images, labels
    from fastmlp.datasets import load_fashion_mnist

    X, y, _, _ = load_fashion_mnist(return_X_y=True)
    out = np.lib.format.open_memmap(images, mode="w+", dtype=np.uint8, shape=(n, 28, 28))
    for start in range(0, n, len(X)):
        stop = min(n, start + len(X))
        out[start:stop] = np.asarray(X[:stop - start]).reshape(-1, 28, 28)
    out.flush()
    del out
    np.save(labels, np.resize(np.asarray(y, dtype=np.int64), n))
    return images, labels


def evict(path):
    """Drop the file's pages from the page cache (no root needed)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


# -- one run, in its own process --------------------------------------------------------

class AnonSampler:
    """Peak RssAnon (bytes) of this process, sampled by a thread."""

    def __init__(self):
        self.peak = self.base = _rss_anon()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.wait(SAMPLE_SECONDS):
            self.peak = max(self.peak, _rss_anon())

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss_anon())


def _rss_anon():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no RssAnon in /proc/self/status")


def make_model(path, shuffle, threads, epochs=1, **extra):
    from fastmlp import MLPImageClassifier, PixelScaler

    scaler = PixelScaler() if path.startswith("fused") else None
    return MLPImageClassifier(max_iter=epochs, random_state=0, input_scaler=scaler,
                              shuffle=True if shuffle == "True" else shuffle,
                              n_threads=threads, **extra)


def train(path, X, y, shuffle, threads, epochs=1, **extra):
    """`epochs` epochs along `path`; returns the fitted model."""
    from fastmlp import PixelScaler

    model = make_model(path, shuffle, threads, epochs, **extra)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a few epochs do not converge
        if path == "pipeline":
            return model.fit(PixelScaler().fit_transform(X), y)
        if path == "fused-ram":
            return model.fit(np.array(X), y)  # the anonymous copy counts in its memory
        return model.fit(X, y)


def worker(path, n, file, shuffle, threads, epochs):
    # Imported before the sampler starts: their memory is the base, not the run's.
    import sklearn.model_selection  # noqa: F401

    import fastmlp  # noqa: F401

    X = np.load(file, mmap_mode="r")[:n]
    y = np.load(Path(str(file)[:-4] + "-y.npy"))[:n]
    with AnonSampler() as mem:
        start = time.perf_counter()
        model = train(path, X, y, shuffle, threads, epochs)
        wall = time.perf_counter() - start
    times = [e["time"] for e in model.history_]
    entry = model.history_[-1]
    return {"path": path, "n": n, "shuffle": shuffle, "epoch_s": float(np.median(times)),
            "epochs_s": times, "wall_s": wall,
            "peak_anon_mb": (mem.peak - mem.base) / 2**20, "base_anon_mb": mem.base / 2**20,
            "train_accuracy": entry["accuracy"]}


def run_worker(path, n, file, shuffle, threads, epochs):
    cmd = [sys.executable, __file__, "--worker", path, str(n), str(file), shuffle, str(epochs)]
    if threads:
        cmd += ["--threads", str(threads)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


# -- the benchmark ----------------------------------------------------------------------

def verify(file, threads):
    """Both paths must train the same first 5000 images to the same weights, bitwise."""
    X = np.load(file, mmap_mode="r")[:5000]
    y = np.load(Path(str(file)[:-4] + "-y.npy"))[:5000]
    a, b = (train(p, X, y, "True", threads, batch_size=64) for p in ("pipeline", "fused"))
    same = all(u.tobytes() == v.tobytes() for u, v in zip(a.coefs_ + a.intercepts_,
                                                          b.coefs_ + b.intercepts_))
    if not same:
        raise SystemExit("bench_scale: the fused path does not equal the pipeline; not timing")


def shuffle_rows(file, n, args):
    """The fused path on n samples with shuffle="block", warm; with --cold also the first
    epoch, on a file evicted from the page cache, of shuffle=True and "block"."""
    rows = [run_worker("fused", n, file, "block", args.threads, args.epochs)]
    print(table(rows[-1:]).splitlines()[-1], flush=True)
    for shuffle in ("True", "block") if args.cold else ():
        evict(file)
        row = run_worker("fused", n, file, shuffle, args.threads, args.epochs)
        rows.append({**row, "cold": True, "epoch_s": row["epochs_s"][0]})
        print(table(rows[-1:]).splitlines()[-1], flush=True)
    return rows


def table(rows):
    lines = ["| samples | path | shuffle | median epoch (s) | µs / sample | wall (s) "
             "| peak anon (MB) | train acc |", "|---:|---|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        cold = " (cold cache: first epoch)" if r.get("cold") else ""
        lines.append(f"| {r['n']:,} | {r['path']} | {r['shuffle']}{cold} | {r['epoch_s']:.2f} "
                     f"| {1e6 * r['epoch_s'] / r['n']:.1f} | {r['wall_s']:.2f} "
                     f"| {r['peak_anon_mb']:.0f} | {100 * r['train_accuracy']:.2f}% |")
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(argv)
    if args.worker:
        path, n, file, shuffle, epochs = args.worker
        print(json.dumps(worker(path, int(n), file, shuffle, args.threads, int(epochs))))
        return 0
    from fastmlp._machine import machine_info

    file, _ = tiled_file(args.data_dir, max(args.sizes))
    verify(file, args.threads)
    rows = []
    for n in args.sizes:
        for path in args.paths:
            rows.append(run_worker(path, n, file, "True", args.threads, args.epochs))
            print(table(rows[-1:]).splitlines()[-1], flush=True)
    rows += shuffle_rows(file, max(args.sizes), args)
    info = machine_info()
    print(f"\n{info.get('cpu', '')}, {args.threads or 'all'} threads, "
          f"{datetime.date.today()}\n\n{table(rows)}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"machine": info, "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
