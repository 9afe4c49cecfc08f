"""Contention benchmark: fastmlp fits that share the cores with other fits.

A grid search with two jobs, two notebooks or a CI machine running tests in parallel put
two training processes on the same cores. This benchmark runs the reference run
(784-256-10, plain SGD, batches of 64, as ``bench_training.py``) on Fashion-MNIST in
these scenarios, each fit a process of its own, the processes of a scenario started
together (each loads the data, then waits for a common start time):

* ``alone``: one fit with every core (``n_threads`` = the cores);
* ``2 x all cores``: two fits at once, each with every core (the cores oversubscribed
  twice: what two scripts with the defaults do);
* ``2 x half``: two fits at once, each with half the cores (what joblib's process
  workers get, since they limit each worker's OpenMP threads to its share).

Reported per scenario and precision: the median epoch time (epochs 2..N of every process
and repeat; the first epoch, which allocates, is not timed), its slowdown against
``alone``, and the throughput (epochs per second of all the scenario's fits together)
against ``alone``'s. Repeats are interleaved scenario by scenario. Before anything is
reported, every fit of a precision must end with bitwise the same weights: results
depend on neither the thread count nor the load.

    python bench/bench_contention.py                 # float32 and, with the hardware, bfloat16
    python bench/bench_contention.py --epochs 3 --repeats 1 --precisions float32   # quick
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import importlib.util
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _bench_training():
    spec = importlib.util.spec_from_file_location("bench_training", HERE / "bench_training.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=5, help="epochs per fit (default: 5)")
    p.add_argument("--repeats", type=int, default=3, help="default: 3")
    p.add_argument("--precisions", default=None,
                   help="comma-separated (default: float32, and bfloat16 where the CPU "
                        "has bfloat16 instructions)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-home", default=None)
    p.add_argument("--download", action="store_true")
    p.add_argument("--n-train", type=int, default=None, help="the first N training images")
    p.set_defaults(n_test=None)  # bench_training's load_data reads it
    p.add_argument("--output", type=Path, default=HERE / "results" / "contention.json")
    p.add_argument("--start-delay", type=float, default=4.0,
                   help="seconds from spawning a scenario's fits to their common start, "
                        "time for each to load the data (default: %(default)s)")
    # One fit, as a worker: its epoch times and weight digest as JSON on stdout.
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--shared-data", default=None, help=argparse.SUPPRESS)
    p.add_argument("--threads", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--precision", default="float32", help=argparse.SUPPRESS)
    p.add_argument("--start-at", type=float, default=0.0, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.epochs < 2 or args.repeats < 1:
        p.error("--epochs must be >= 2 (the first is not timed) and --repeats >= 1")
    return args


def weights_digest(model):
    h = hashlib.sha256()
    for a in (*model.coefs_, *model.intercepts_):
        h.update(a.tobytes())
    return h.hexdigest()[:16]


def worker_main(args):
    bt = _bench_training()
    X, y, _, _ = bt.read_shared_data(args.shared_data)
    runner = bt.FastmlpRunner(args.threads, precision=args.precision)
    time.sleep(max(0.0, args.start_at - time.time()))
    late = time.time() - args.start_at  # > 0: this worker loaded after the common start
    model, times = runner.train(X, y, args.epochs, args.seed)
    print(json.dumps({"epoch_times": times, "digest": weights_digest(model), "late": late}))
    return 0


def run_scenario(shared, n_fits, threads, precision, args):
    """n_fits workers started together: their records."""
    start_at = time.time() + args.start_delay
    argv = [sys.executable, str(Path(__file__).resolve()), "--worker", "--shared-data",
            str(shared), "--threads", str(threads), "--precision", precision, "--epochs",
            str(args.epochs), "--seed", str(args.seed), "--start-at", str(start_at)]
    procs = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(n_fits)]
    records = []
    for proc in procs:
        out, err = proc.communicate()
        lines = [ln for ln in out.splitlines() if ln.startswith("{")]
        if proc.returncode != 0 or not lines:
            raise RuntimeError(f"a {precision} worker failed: {err.strip()[-500:]}")
        records.append(json.loads(lines[-1]))
    return records


def scenarios(cores):
    half = max(1, cores // 2)
    return [("alone", 1, cores), ("2 x all cores", 2, cores), (f"2 x half ({half})", 2, half)]


def summarize(raw, cores):
    rows, flags = [], []
    for precision, by_scenario in raw.items():
        digests = {rec["digest"] for recs in by_scenario.values() for rec in recs}
        if len(digests) != 1:
            flags.append(f"{precision}: fits ended with {len(digests)} different weights")
        alone = None
        for name, n_fits, threads in scenarios(cores):
            recs = by_scenario[name]
            epochs = [t for rec in recs for t in rec["epoch_times"][1:]]
            median = statistics.median(epochs)
            alone = median if alone is None else alone
            rows.append({"precision": precision, "scenario": name, "fits": n_fits,
                         "threads": threads, "epoch_median": median, "epoch_min": min(epochs),
                         "slowdown": median / alone, "throughput": n_fits * alone / median,
                         "late_start_max": max(rec["late"] for rec in recs)})
    return rows, flags


def markdown(rows):
    out = ["| precision | scenario | fits | threads each | epoch median (s) | epoch min (s) "
           "| epoch / alone | throughput / alone |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        out.append(f"| {r['precision']} | {r['scenario']} | {r['fits']} | {r['threads']} | "
                   f"{r['epoch_median']:.3f} | {r['epoch_min']:.3f} | {r['slowdown']:.2f}x | "
                   f"{r['throughput']:.2f}x |")
    return "\n".join(out)


def main(argv=None):
    args = parse_args(argv)
    if args.worker:
        return worker_main(args)
    bt = _bench_training()
    from fastmlp import _core

    machine = bt.machine_info()
    cores = machine["cores"]
    if args.precisions:
        precisions = args.precisions.split(",")
    else:
        precisions = ["float32"] + (["bfloat16"] if _core.detected_bf16_kernel() != "reference"
                                    else [])
    print(f"# fastmlp contention benchmark, {datetime.date.today()}: {bt.header_line(machine)}")
    data = bt.load_data(args)
    raw = {p: {name: [] for name, _, _ in scenarios(cores)} for p in precisions}
    with tempfile.TemporaryDirectory() as shared:
        bt.write_shared_data(data, shared)
        for repeat in range(args.repeats):
            for precision in precisions:
                for name, n_fits, threads in scenarios(cores):
                    print(f"  repeat {repeat + 1}: {precision}, {name}", file=sys.stderr,
                          flush=True)
                    raw[precision][name] += run_scenario(shared, n_fits, threads, precision,
                                                         args)
    rows, flags = summarize(raw, cores)
    print(markdown(rows))
    for flag in flags:
        print(f"FLAGGED: {flag}")
    late = max(r["late_start_max"] for r in rows)
    if late > 0.5:
        print(f"Note: a worker started up to {late:.1f} s after its scenario's common start "
              "(loading took longer than the start delay).")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({"machine": machine, "epochs": args.epochs,
                                       "repeats": args.repeats, "rows": rows, "raw": raw,
                                       "flags": flags, "ok": not flags}, indent=1))
    return 2 if flags else 0


if __name__ == "__main__":
    sys.exit(main())
