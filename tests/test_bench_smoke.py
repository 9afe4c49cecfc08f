"""The training and accuracy benchmarks (bench/bench_training.py, bench/bench_accuracy.py)
run end to end on a tiny data set."""

import importlib.util
import json
import subprocess
import sys
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
    """Every system in a worker process of its own, as in a real run: fastmlp float32 and
    bfloat16 (skipped without bfloat16 hardware), NumPy, and the scaling passes. (Each
    worker imports scikit-learn, about a second: the test runs few of them.)"""
    fake_fashion_mnist(tmp_path, rng, n_train=320, n_test=100)
    out = tmp_path / "results" / "training.json"
    bench = _load_bench()
    status = bench.main(["--quick", "--data-home", str(tmp_path),
                         "--systems", "fastmlp-1t,fastmlp-bf16-1t,numpy",
                         "--scaling-samples", "160", "--ceiling-size", "256",
                         "--output", str(out), "--no-plot", "--quiet", "--min-accuracy", "0.5"])
    printed = capsys.readouterr().out
    result = json.loads(out.read_text())
    assert status == 0, result["flags"]
    assert result["ok"] and result["oracle"]["ok"]
    assert result["config"]["n_train"] == 320 and result["config"]["epochs"] == 2
    machine = result["machine"]
    assert set(machine["bf16_flags"]) == {"avx512_bf16", "amx_bf16", "amx_tile"}
    assert "fastmlp_bf16_kernel" in machine and "jax" in machine
    systems = result["systems"]
    assert list(systems) == ["fastmlp-1t", "fastmlp-bf16-1t", "numpy"]
    ran = {k: s for k, s in systems.items() if "epoch_time_median" in s}
    assert {"fastmlp-1t", "numpy"} <= set(ran)
    assert "fastmlp-bf16-1t" in ran or "skipped" in systems["fastmlp-bf16-1t"]
    ref = result["reference"]
    assert ref == "fastmlp-1t" and ran[ref]["ratio_to_reference"] == 1.0
    assert ran[ref]["ratio_of_minimums"] == 1.0
    for s in ran.values():
        assert s["ratio_of_minimums"] == s["epoch_time_min"] / ran[ref]["epoch_time_min"]
        assert s["epoch_time_median"] > 0 and s["gflops"] > 0 and s["test_accuracy"] >= 0.5
        assert len(s["epoch_times"]) == 1 and len(s["epoch_times"][0]) == 2
    assert ran["fastmlp-1t"]["precision"] == "float32"
    inference = result["inference"]
    assert set(inference) == set(systems) and inference[ref]["ratio_to_reference"] == 1.0
    for name in ran:
        row = inference[name]
        assert row["ok"] and len(row["inference_times"][0]) == bench.INFERENCE_CALLS
        assert row["inference_time"] > 0 and row["images_per_s"] > 0
    curves = {p["curve"] for p in result["scaling"]["points"]}
    assert curves == {"samples", "width", "batch", "threads"}
    assert {p["system"] for p in result["scaling"]["points"]} == {"fastmlp", "numpy"}
    assert result["scaling"]["findings"]
    assert "| system |" in printed and "fastmlp-1t" in printed and "### Inference" in printed


@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
def test_the_8bit_rows_train_the_scaled_rows_model(rng, precision):
    # The -u8- rows start from the images the scaled rows came from and let fastmlp scale
    # them: the same model, so the rows differ in speed only.
    from fastmlp import PixelScaler

    systems = _load_bench().systems
    images = rng.integers(0, 256, size=(300, 784), dtype=np.uint8)
    X = PixelScaler(mode="symmetric").fit(images).transform(images)
    y = rng.integers(0, 10, size=300)
    rows = systems.FastmlpRunner(2, precision)
    pixels = systems.FastmlpRunner(2, precision, pixels=True)
    if rows.unavailable():
        pytest.skip(f"the {precision} rows cannot run here: {rows.unavailable()}")
    assert rows.prepare(X) is X
    assert pixels.prepare(X).tobytes() == images.tobytes()
    a, _ = rows.train(X, y, 2, 0)
    b, _ = pixels.train(pixels.prepare(X), y, 2, 0)
    for u, v in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_):
        assert u.tobytes() == v.tobytes()
    with pytest.raises(RuntimeError, match="not the symmetric scaling"):
        pixels.prepare(X * np.float32(0.99))


def test_low_accuracy_flags_the_run(tmp_path, rng, capsys):
    fake_fashion_mnist(tmp_path, rng, n_train=128, n_test=50)
    out = tmp_path / "training.json"
    status = _load_bench().main(["--quick", "--data-home", str(tmp_path),
                                 "--systems", "fastmlp-1t", "--no-scaling",
                                 "--ceiling-size", "256", "--output", str(out), "--quiet",
                                 "--min-accuracy", "1.01"])
    assert status == 2
    result = json.loads(out.read_text())
    assert not result["ok"] and len(result["flags"]) == 1
    assert "FLAGGED" in capsys.readouterr().out


def test_worker_prints_one_json_record(tmp_path, rng, capsys):
    """--worker NAME runs one system in this process: its result is stdout's last line."""
    fake_fashion_mnist(tmp_path, rng, n_train=128, n_test=50)
    bench = _load_bench()
    status = bench.main(["--worker", "fastmlp-1t", "--epochs", "2", "--data-home",
                         str(tmp_path)])
    record = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert status == 0 and len(record["epoch_times"]) == 2
    assert 0 <= record["test_accuracy"] <= 1
    assert len(record["inference_times"]) == bench.INFERENCE_CALLS
    assert record["latency_one"] > 0


def test_system_selection_and_reference():
    bench = _load_bench()
    assert list(bench.make_runners(["fastmlp-bf16"])) == [
        k for k in bench.make_runners([]) if k.startswith("fastmlp-bf16-")]
    assert list(bench.make_runners(["torch"])) == [
        "torch-dataloader", "torch-preloaded", "torch-bf16", "torch-compile"]
    assert "fastmlp-bf16-1t" in bench.make_runners(["fastmlp"])
    assert bench.reference_name(["fastmlp-1t", "fastmlp-bf16-1t", "jax"]) == "fastmlp-1t"
    assert bench.reference_name(["fastmlp-bf16-1t", "numpy"]) is None
    with pytest.raises(SystemExit):
        bench.make_runners(["no-such-system"])


def _run(repeat, epoch_times, acc=0.9, infer=0.01, **extra):
    return {"repeat": repeat, "epoch_times": epoch_times, "test_accuracy": acc,
            "inference_time": infer, "inference_times": [infer], "latency_one": infer / 1000,
            **extra}


def test_ratios_pair_repeats_and_failed_peers_are_rows():
    """Ratios pair runs of the same repeat (a failed repeat drops out of the pairs); a
    failing peer is a row with its error and a note, a failing fastmlp row a flag; the
    inference-only row is checked for accuracy and agreement with fastmlp."""
    bench = _load_bench()
    runners = bench.make_runners(["fastmlp-1t", "numpy", "sklearn", "torch-compile",
                                  "onnxruntime"])
    raw = {
        "fastmlp-1t": {"runs": [_run(0, [9, 1.0]), _run(1, [9, 2.0])], "skipped": None,
                       "errors": []},
        "numpy": {"runs": [_run(1, [9, 3.0])], "skipped": None, "errors": ["boom"]},
        "sklearn": {"runs": [_run(2, [9, 3.0])], "skipped": None, "errors": []},
        "torch-compile": {"runs": [], "skipped": None, "errors": ["BackendCompilerFailed"]},
        "onnxruntime": {"runs": [_run(0, [], acc=0.4, infer=0.02,
                                      agreement_with_fastmlp=0.9)],
                        "skipped": None, "errors": []},
    }
    summary, ref, flags, _ = bench.summarize(raw, runners, 100, 50, [784, 256, 10], 100.0,
                                             0.5, 2)
    assert ref == "fastmlp-1t"
    assert list(summary) == ["fastmlp-1t", "numpy", "sklearn", "torch-compile"]
    assert summary["numpy"]["ratio_pairs"] == [1.5] and not flags
    assert summary["sklearn"]["ratio_pairs"] == [] and "ratio_to_reference" not in summary[
        "sklearn"]
    assert summary["torch-compile"] == {"error": "BackendCompilerFailed"}
    inference, inf_flags = bench.summarize_inference(raw, runners, ref, 50, [784, 256, 10],
                                                     0.5)
    assert inference["onnxruntime"]["ratio_pairs"] == [2.0]
    assert not inference["onnxruntime"]["ok"] and len(inf_flags) == 2
    err_flags, notes = bench.error_flags(raw, runners)
    assert err_flags == ["numpy failed: boom"]
    assert notes == ["torch-compile failed: BackendCompilerFailed"]
    table = bench.markdown_table(summary, ref, 100.0, 1e9, 100, 50, 256)
    assert "| torch-compile | | | error: BackendCompilerFailed |" in table


_JAX_EPOCH_CHECK = """
import importlib.util, sys
import jax
import numpy as np
spec = importlib.util.spec_from_file_location("training_systems", sys.argv[1])
systems = importlib.util.module_from_spec(spec)
spec.loader.exec_module(systems)
rng = np.random.default_rng(0)
n, B = 70, 16  # four full batches and a remainder of 6
X = rng.standard_normal((n, 12)).astype(np.float32)
y = rng.integers(0, 3, n)
coefs, intercepts = systems._pytorch_init([12, 8, 3], 0)
epoch, _ = systems._jax_functions(n, B)
key = jax.random.key(5)
params = [(jax.numpy.asarray(w), jax.numpy.asarray(b)) for w, b in zip(coefs, intercepts)]
got, _, _ = epoch(params, X, y.astype(np.int32), key, np.int32(0))
perm = np.asarray(jax.random.permutation(jax.random.fold_in(key, 0), n))
(w1, b1), (w2, b2) = [(w.astype(np.float64), b.astype(np.float64))
                      for w, b in zip(coefs, intercepts)]
for i in range(0, n, B):
    xb, yb = X[perm[i:i + B]].astype(np.float64), y[perm[i:i + B]]
    h = np.maximum(xb @ w1 + b1, 0)
    z = h @ w2 + b2
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    p[np.arange(len(yb)), yb] -= 1
    dz = p / len(yb)
    dh = (dz @ w2.T) * (h > 0)
    w2, b2 = w2 - 0.01 * h.T @ dz, b2 - 0.01 * dz.sum(0)
    w1, b1 = w1 - 0.01 * xb.T @ dh, b1 - 0.01 * dh.sum(0)
for mine, want in zip([p for layer in got for p in layer], [w1, b1, w2, b2]):
    np.testing.assert_allclose(np.asarray(mine), want, rtol=1e-4, atol=1e-5)
print("ok")
"""


def test_jax_epoch_is_plain_sgd():
    """The JAX runner's jitted epoch (scan over full batches, then the remainder) equals
    a NumPy loop of SGD steps over the same permutation. In a process of its own, as in
    the benchmark: JAX starts threads, and a test that forks after it (the CLI's, the
    fork-safety ones) would then warn that the child may deadlock."""
    if importlib.util.find_spec("jax") is None:  # (importorskip would import it here)
        pytest.skip("could not import 'jax': not installed")
    proc = subprocess.run([sys.executable, "-c", _JAX_EPOCH_CHECK,
                           str(_BENCH / "training_systems.py")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-3000:]


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


def test_accuracy_test_images_are_scaled_with_the_training_statistics(rng):
    """A "standard" recipe's test images use the training pixels' mean and standard
    deviation, as the fitted pipeline does, never statistics of their own."""
    scaled = _load_bench("bench_accuracy").scaled_test_images
    X = rng.integers(0, 256, size=(50, 784), dtype=np.uint8)
    X_test = rng.integers(0, 128, size=(20, 784), dtype=np.uint8)
    expected = (X_test - X.mean()) / X.std()
    np.testing.assert_allclose(scaled(X, X_test, "standard"), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(scaled(X, X_test, "symmetric"), X_test / 127.5 - 1, atol=1e-6)


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


def test_contention_quick_run_writes_table_and_json(tmp_path, rng, capsys):
    """Every scenario's fits run (each a process of its own) and end with the same weights;
    the table and the JSON say so."""
    fake_fashion_mnist(tmp_path, rng, n_train=640, n_test=200)
    out = tmp_path / "contention.json"
    bench = _load_bench("bench_contention")
    status = bench.main(["--epochs", "2", "--repeats", "1", "--precisions", "float32",
                         "--n-train", "640", "--data-home", str(tmp_path), "--output", str(out),
                         "--start-delay", "1"])
    printed = capsys.readouterr().out
    result = json.loads(out.read_text())
    assert status == 0 and result["ok"], result["flags"]
    half = max(1, result["machine"]["cores"] // 2)
    rows = result["rows"]
    assert [r["scenario"] for r in rows] == ["alone", "2 x all cores", f"2 x half ({half})"]
    assert [r["fits"] for r in rows] == [1, 2, 2]
    assert all(r["epoch_median"] > 0 for r in rows) and rows[0]["slowdown"] == 1
    records = [rec for recs in result["raw"]["float32"].values() for rec in recs]
    assert len(records) == 5 and len({rec["digest"] for rec in records}) == 1
    assert all(len(rec["epoch_times"]) == 2 for rec in records)
    assert "| float32 | alone | 1 |" in printed and "FLAGGED" not in printed


def test_contention_flags_fits_that_end_with_other_weights():
    bench = _load_bench("bench_contention")
    rec = {"epoch_times": [1.0, 1.0], "late": 0.0}
    raw = {"float32": {"alone": [{**rec, "digest": "a"}],
                       "2 x all cores": [{**rec, "digest": "a"}, {**rec, "digest": "b"}],
                       "2 x half (1)": [{**rec, "digest": "a"}] * 2}}
    _, flags = bench.summarize(raw, 2)
    assert flags == ["float32: fits ended with 2 different weights"]
