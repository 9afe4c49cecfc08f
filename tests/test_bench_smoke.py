"""The training benchmark (bench/bench_training.py) runs end to end on a tiny data set."""

import importlib.util
import json
from pathlib import Path

import numpy as np

from fastmlp.datasets import write_idx

_BENCH = Path(__file__).resolve().parent.parent / "bench"


def _load_bench():
    spec = importlib.util.spec_from_file_location("bench_training",
                                                  _BENCH / "bench_training.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fake_fashion_mnist(directory, rng, n_train=640, n_test=200):
    """The four IDX files, with images whose class shows in a bright band (learnable)."""
    for split, n in (("train", n_train), ("t10k", n_test)):
        labels = (np.arange(n) % 10).astype(np.uint8)
        images = rng.integers(0, 60, size=(n, 28, 28), dtype=np.uint8)
        for i, label in enumerate(labels):
            images[i, 2 * label:2 * label + 3, :] = 250
        write_idx(directory / f"{split}-images-idx3-ubyte", images)
        write_idx(directory / f"{split}-labels-idx1-ubyte", labels)


def test_flop_count_of_the_reference_network():
    bench = _load_bench()
    assert bench.flops_per_sample([784, 256, 10]) == 818_176
    assert abs(bench.flops_per_sample([784, 256, 10]) * 60000 / 1e9 - 49.1) < 0.05


def test_quick_run_writes_table_and_json(tmp_path, rng, capsys):
    fake_fashion_mnist(tmp_path, rng, n_train=320, n_test=100)
    out = tmp_path / "results" / "training.json"
    bench = _load_bench()
    status = bench.main(["--quick", "--data-home", str(tmp_path),
                         "--systems", "fastmlp,numpy,sklearn", "--scaling-samples", "160",
                         "--ceiling-size", "256", "--output", str(out), "--no-plot", "--quiet",
                         "--min-accuracy", "0.5"])
    printed = capsys.readouterr().out
    result = json.loads(out.read_text())
    assert status == 0, result["flags"]
    assert result["ok"] and result["oracle"]["ok"]
    assert result["config"]["n_train"] == 320 and result["config"]["epochs"] == 2
    names = set(result["systems"])
    assert {"fastmlp-1t", "numpy", "sklearn"} <= names
    ref = result["reference"]
    assert ref in names and result["systems"][ref]["ratio_to_reference"] == 1.0
    assert result["systems"][ref]["ratio_of_minimums"] == 1.0
    for s in result["systems"].values():
        assert s["ratio_of_minimums"] == s["epoch_time_min"] / result["systems"][ref][
            "epoch_time_min"]
    for s in result["systems"].values():
        assert s["epoch_time_median"] > 0 and s["gflops"] > 0 and s["test_accuracy"] >= 0.5
    curves = {p["curve"] for p in result["scaling"]["points"]}
    assert curves == {"samples", "width", "batch", "threads"}
    assert result["scaling"]["findings"]
    assert "| system |" in printed and "fastmlp-1t" in printed


def test_low_accuracy_flags_the_run(tmp_path, rng, capsys):
    fake_fashion_mnist(tmp_path, rng, n_train=128, n_test=50)
    out = tmp_path / "training.json"
    status = _load_bench().main(["--quick", "--data-home", str(tmp_path),
                                 "--systems", "numpy,fastmlp-1t", "--no-scaling",
                                 "--ceiling-size", "256", "--output", str(out), "--quiet",
                                 "--min-accuracy", "1.01"])
    assert status == 2
    result = json.loads(out.read_text())
    assert not result["ok"] and len(result["flags"]) == 2
    assert "FLAGGED" in capsys.readouterr().out
