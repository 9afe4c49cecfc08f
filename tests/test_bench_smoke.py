"""The training and accuracy benchmarks (bench/bench_training.py, bench/bench_accuracy.py)
run end to end on a tiny data set."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from fastmlp.datasets import write_idx

_BENCH = Path(__file__).resolve().parent.parent / "bench"


def _load_bench(name="bench_training"):
    spec = importlib.util.spec_from_file_location(name, _BENCH / f"{name}.py")
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


def test_accuracy_quick_run_writes_table_and_json(tmp_path, rng, capsys):
    """fastmlp alone (no torch needed), the reference recipe, 2 epochs on 2000 images; the
    worker runs in a subprocess, as in a real run."""
    fake_fashion_mnist(tmp_path, rng, n_train=2000, n_test=200)
    out = tmp_path / "results" / "accuracy.json"
    bench = _load_bench("bench_accuracy")
    status = bench.main(["--quick", "--systems", "fastmlp", "--recipes", "reference",
                         "--n-train", "2000", "--data-home", str(tmp_path),
                         "--output", str(out), "--quiet"])
    printed = capsys.readouterr().out
    result = json.loads(out.read_text())
    assert status == 0, result["flags"]
    assert result["ok"] and result["benchmark"] == "accuracy"
    config = result["config"]
    assert config["n_train"] == 2000 and config["seeds"] == [0] and config["quick"]
    assert not config["accuracy_ranges_checked"]
    assert {"cpu", "cpu_features", "fastmlp", "torch"} <= set(result["machine"])
    assert list(result["recipes"]) == ["reference"]
    recipe = result["recipes"]["reference"]
    assert recipe["params"]["max_iter"] == 2 and recipe["params"]["solver"] == "sgd"
    assert list(recipe["systems"]) == ["fastmlp"]
    row = recipe["systems"]["fastmlp"]
    assert row["ok"] and row["epochs"] == [2] and row["seeds"] == [0]
    assert row["wall_time_median"] > 0 and 0.5 <= row["test_accuracy_median"] <= 1
    (run,) = recipe["runs"]["fastmlp"]
    assert [p["epoch"] for p in run["curve"]] == [1, 2]
    assert run["curve"][0]["time"] < run["curve"][1]["time"] <= run["wall_time"]
    assert run["test_accuracy"] == run["curve"][-1]["test_accuracy"]
    assert "| recipe | system |" in printed and "| reference | fastmlp |" in printed


def test_accuracy_schedule_formula():
    """fastmlp's warmup + cosine: the initial rate on the last warmup step and the first
    decay step, half of it midway, towards 0 on the last step; fractional warmups too."""
    lr = _load_bench("bench_accuracy").lr_factor
    assert [lr(s, 4, 12) for s in range(5)] == [0.25, 0.5, 0.75, 1.0, 1.0]
    assert abs(lr(8, 4, 12) - 0.5) < 1e-12 and 0 < lr(11, 4, 12) < 0.04
    assert lr(0, 0, 10) == 1.0 and lr(0, 2.5, 10) == 0.4 and lr(2, 2.5, 10) < 1.0
    assert lr(5, 8, 4) == 6 / 8  # total steps never below the warmup


def test_accuracy_torch_shifts_and_flips_match_numpy():
    """The PyTorch side's augmentation equals edge-padded NumPy crops of the flipped image
    for the same draws (flip first, then the shift)."""
    torch = pytest.importorskip("torch")
    bench = _load_bench("bench_accuracy")
    H, W, C, B, k = 5, 6, 2, 8, 2
    params = {"random_shift": k, "random_flip": True, "image_shape": (H, W, C)}
    x = torch.arange(B * H * W * C, dtype=torch.float32).reshape(B, -1)
    out = bench.torch_augment(torch, params, torch.Generator().manual_seed(3))(x).numpy()
    draws = torch.Generator().manual_seed(3)  # the same draws, in the same order
    dy = torch.randint(-k, k + 1, (B, 1), generator=draws).ravel().tolist()
    dx = torch.randint(-k, k + 1, (B, 1), generator=draws).ravel().tolist()
    flips = (torch.rand((B, 1), generator=draws) < 0.5).ravel().tolist()
    for i in range(B):
        img = x[i].numpy().reshape(H, W, C)
        img = img[:, ::-1] if flips[i] else img
        padded = np.pad(img, ((k, k), (k, k), (0, 0)), mode="edge")
        want = padded[k - dy[i]:k - dy[i] + H, k - dx[i]:k - dx[i] + W]
        np.testing.assert_array_equal(out[i], want.reshape(-1))
