"""The ``fastmlp`` command line, end to end on a small generated IDX data set, and the
reference run on the real Fashion-MNIST."""

import errno
import json
import os
import pathlib
import re
import stat
import subprocess
import sys
import warnings

import joblib
import numpy as np
import pytest

import fastmlp
from conftest import data_required
from fastmlp import cli, datasets
from fastmlp.datasets import write_idx

EPOCH_LINE = re.compile(r"^Epoch \[(\d+)/(\d+)\], Loss: (\d+\.\d{4}), Accuracy: (\d+\.\d{2})%$",
                        re.MULTILINE)
TEST_LINE = re.compile(r"^Test Loss: (\d+\.\d{4}), Test Accuracy: (\d+\.\d{2})%$", re.MULTILINE)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PLOTS = ("loss.png", "accuracy.png", "confusion_matrix.png", "samples.png")


def make_images(rng, n):
    """n 28x28 uint8 images of 10 easy classes: class k is a bright 6x11 block at one of
    10 places on a noisy background."""
    y = np.arange(n) % 10
    rng.shuffle(y)
    X = rng.integers(0, 60, size=(n, 28, 28), dtype=np.uint8)
    for k in range(10):
        r, c = 2 + 13 * (k // 5), 5 * (k % 5) + 1
        block = X[y == k, r:r + 11, c:c + 6]
        X[y == k, r:r + 11, c:c + 6] = np.maximum(block, 200)
    return X, y.astype(np.uint8)


@pytest.fixture
def data_dir(tmp_path, rng):
    d = tmp_path / "data"
    d.mkdir()
    X, y = make_images(rng, 600)
    X_test, y_test = make_images(rng, 200)
    write_idx(d / "train-images-idx3-ubyte.gz", X)
    write_idx(d / "train-labels-idx1-ubyte.gz", y)
    write_idx(d / "t10k-images-idx3-ubyte", X_test)  # raw files are accepted too
    write_idx(d / "t10k-labels-idx1-ubyte.gz", y_test)
    return d


def run(capsys, *argv):
    """(exit status, stdout, stderr) of ``fastmlp argv`` run in this process."""
    try:
        status = cli.main([str(a) for a in argv])
    except SystemExit as exc:
        status = exc.code
    out, err = capsys.readouterr()
    return status, out, err


@pytest.mark.parametrize("argv, unknown", [
    (["train", "--normalise", "none"], "--normalise none"),
    (["summary", "model.fastmlp"], "model.fastmlp"),
    (["predict", "model.fastmlp", "a.png", "--jsn", "b.npy"], "--jsn b.npy"),
])
def test_unknown_arguments_show_the_commands_usage(capsys, argv, unknown):
    status, out, err = run(capsys, *argv)
    assert status == 2 and out == ""
    assert err.startswith(f"usage: fastmlp {argv[0]} ")  # its options, not the top level's
    assert err.endswith(f"fastmlp {argv[0]}: error: unrecognized arguments: {unknown}\n")


def test_train_prints_the_per_epoch_lines(capsys, data_dir):
    status, out, err = run(capsys, "train", "--data-dir", data_dir, "--epochs", "3",
                           "--lr", "0.05")
    assert status == 0, err
    assert err == ""  # no progress bar when stderr is not a terminal
    epochs = EPOCH_LINE.findall(out)
    tests = TEST_LINE.findall(out)
    assert [(int(k), int(n)) for k, n, _, _ in epochs] == [(1, 3), (2, 3), (3, 3)]
    assert len(tests) == 3
    # Each epoch's lines come in order: training, test, time.
    lines = out.splitlines()
    i = lines.index(f"Epoch [1/3], Loss: {epochs[0][2]}, Accuracy: {epochs[0][3]}%")
    assert TEST_LINE.match(lines[i + 1])
    assert lines[i + 2].startswith("Epoch time: ")
    assert "784-256(ReLU)-10, 203,530 parameters" in out
    assert "600 training and 200 test images" in out
    # The easy classes are learned, and the summary table repeats the per-epoch figures.
    assert float(tests[-1][1]) > 90
    assert float(epochs[-1][2]) < float(epochs[0][2])
    table = out[out.index("Train loss"):]
    for (_, _, loss, acc), (tloss, tacc) in zip(epochs, tests):
        assert re.search(rf"{loss}\s+{acc}%\s+{tloss}\s+{tacc}%", table)
    assert re.search(r"^Total wall time: \d+\.\d s", out, re.MULTILINE)


def test_regularization_and_augmentation_flags(capsys, data_dir, tmp_path):
    record = tmp_path / "run.json"
    status, out, err = run(capsys, "train", "--data-dir", data_dir, "--epochs", "2",
                           "--solver", "adam", "--lr", "0.002", "--lr-schedule", "cosine",
                           "--warmup-epochs", "0.5", "--dropout", "0.2", "--weight-decay",
                           "0.01", "--label-smoothing", "0.1", "--random-shift", "1",
                           "--random-flip", "--json", record)
    assert status == 0, err
    assert "Training: AdamW, lr 0.002" in out
    assert ("Regularization: cosine schedule (0.5 warmup epochs), dropout 0.2, weight decay "
            "0.01, label smoothing 0.1, random shifts of up to 1 px, random horizontal flips"
            in out)
    config = json.loads(record.read_text())["config"]
    assert config["dropout"] == 0.2 and config["random_flip"] is True
    assert config["lr_schedule"] == "cosine" and config["random_shift"] == 1


def test_precision_flag(capsys, data_dir, tmp_path):
    from fastmlp import _core

    record, model = tmp_path / "run.json", tmp_path / "m.fastmlp"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the PrecisionWarning where bfloat16 falls back
        status, out, err = run(capsys, "train", "--data-dir", data_dir, "--epochs", "1",
                               "--precision", "bfloat16", "--json", record, "--save", model)
    assert status == 0, err
    kernel = _core.active_bf16_kernel()
    expected = (f", bfloat16 ({kernel} kernel)" if _core.bf16_hardware()
                else ", bfloat16 asked for but no bfloat16 kernel here: float32")
    assert expected in out
    assert json.loads(record.read_text())["config"]["precision"] == "bfloat16"
    import fastmlp

    assert fastmlp.load(model).precision == "bfloat16"
    status, _, err = run(capsys, "train", "--precision", "float16")
    assert status == 2 and "float16" in err


def test_preset_sets_defaults_that_options_override(capsys, data_dir, tmp_path):
    from fastmlp._presets import PRESETS

    record = tmp_path / "run.json"
    status, out, err = run(capsys, "train", "--data-dir", data_dir, "--preset", "accurate",
                           "--epochs", "1", "--hidden", "32", "--json", record)
    assert status == 0, err
    config = json.loads(record.read_text())["config"]
    params = PRESETS["accurate"].params
    assert config["preset"] == "accurate" and config["epochs"] == 1 and config["hidden"] == [32]
    assert config["dropout"] == params["dropout"] and config["lr"] == params["learning_rate_init"]
    assert config["lr_schedule"] == params["learning_rate"]
    assert config["random_flip"] is params["random_flip"]
    assert config["batch_size"] == params["batch_size"]
    assert "Regularization: cosine schedule (1 warmup epoch), label smoothing 0.1\n" in out


def test_readme_python_snippet_is_the_preset():
    # README.md writes the preset out for Python users: it must build what
    # `fastmlp train --preset accurate` trains, scaling included.
    from fastmlp._presets import PRESETS

    readme = (pathlib.Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme[readme.index("## Best accuracy in a minute"):]
    snippet = re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)
    namespace = {}
    exec(snippet, namespace)
    scaler, clf = namespace["model"].named_steps.values()
    preset = PRESETS["accurate"]
    assert scaler.mode == preset.normalize
    expected = fastmlp.MLPImageClassifier(**preset.params, random_state=0).get_params()
    assert clf.get_params() == expected


@pytest.mark.parametrize("argv", [["--dropout", "1"], ["--label-smoothing", "-0.1"],
                                  ["--random-shift", "-1"], ["--lr-schedule", "linear"],
                                  ["--preset", "fastest"], ["--warmup-epochs", "x"]])
def test_bad_regularization_options_exit_2(capsys, argv):
    status, _, err = run(capsys, "train", *argv)
    assert status == 2
    assert argv[0] in err


@pytest.mark.parametrize("argv, message", [
    (["train", "--hidden", "3000000000"], "--hidden: expected comma-separated positive"),
    (["train", "--hidden", "256,2147483648"], "at most 2147483647"),
    (["summary", "--hidden", "3000000000"], "--hidden: expected comma-separated positive"),
    (["train", "--seed", "-1"], "--seed: expected a seed in [0, 4294967295], got '-1'"),
    (["train", "--seed", "4294967296"], "--seed: expected a seed in [0, 4294967295]"),
    (["train", "--save", ""], "--save: expected a file path, got ''"),
    (["train", "--json", ""], "--json: expected a file path, got ''"),
    (["train", "--resume", ""], "--resume: expected a file path, got ''"),
    (["train", "--lr", "1e-320"], "--lr: expected a positive number in float32's range"),
    (["train", "--lr", "1e39"], "got '1e39' (inf in float32)"),
    (["train", "--alpha", "1e-320"], "--alpha: expected a number >= 0 in float32's range"),
    (["train", "--label-smoothing", "0.9999999999"],
     "--label-smoothing: expected a number in [0, 1) that stays below 1 in float32"),
    (["train", "--dropout", "0.9999999999"], "got '0.9999999999' (1.0 in float32)"),
])
def test_out_of_range_options_exit_2_before_loading_data(capsys, argv, message):
    # These failed with a traceback (--hidden), or after the data was loaded (--seed),
    # or after training (--save "" and --json "").
    status, out, err = run(capsys, *argv, "--data-dir", "/nonexistent")
    assert status == 2 and out == "" and message in err and "Traceback" not in err


@pytest.mark.parametrize("argv, message", [
    (["--solver", "adam", "--momentum", "0.9"], "--momentum applies to --solver sgd only"),
    (["--solver", "adam", "--nesterov"], "--nesterov applies to --solver sgd only"),
    (["--momentum", "0.9", "--solver", "adam", "--nesterov"], "leave out --momentum"),
    (["--nesterov"], "--nesterov needs --momentum > 0"),
    (["--warmup-epochs", "1"], "--lr-schedule constant would ignore it"),
    (["--preset", "accurate", "--lr-schedule", "constant", "--warmup-epochs", "2"],
     "add --lr-schedule cosine or leave out --warmup-epochs"),
    (["--hidden", "", "--dropout", "0.5"], '--hidden "" has none'),
    (["--validation-data", "a", "b"], "--validation-data is watched by --early-stopping"),
])
def test_contradictory_options_exit_2_before_loading_data(capsys, argv, message):
    # These trained, ignoring --momentum, --nesterov, --warmup-epochs or --dropout.
    status, out, err = run(capsys, "train", *argv, "--data-dir", "/nonexistent")
    assert status == 2 and out == "" and "Traceback" not in err
    assert err.count("\n") == 1 and err.startswith("fastmlp: error: ") and message in err


@pytest.mark.parametrize("argv", [
    ["--solver", "adam", "--momentum", "0"],
    ["--momentum", "0.9", "--nesterov"],
    ["--lr-schedule", "cosine", "--warmup-epochs", "1"],
    ["--hidden", "", "--dropout", "0"],
    ["--preset", "accurate", "--lr-schedule", "constant"],  # the preset's warmup is its own
])
def test_consistent_options_reach_the_data(capsys, argv):
    status, out, err = run(capsys, "train", *argv, "--data-dir", "/nonexistent")
    assert status == 1 and "/nonexistent does not hold" in err


@pytest.mark.parametrize("outputs", [
    ("--save", "{m}", "--json", "{m}"),
    ("--save", "{m}", "--json", "{link}"),
    ("--resume", "{first}", "--json", "{first}"),
    ("--early-stopping", "--validation-data", "{images}", "{labels}", "--json", "{labels}"),
    ("--early-stopping", "--validation-data", "{images}", "{labels}", "--save", "{images}"),
])
def test_an_output_over_another_file_of_the_run_is_refused_before_training(
        capsys, data_dir, tmp_path, outputs):
    # --json wrote over the model file --save had just written (or the resumed one).
    first = tmp_path / "first.fastmlp"
    assert run(capsys, "train", "--data-dir", data_dir, *QUICK, "--save", first)[0] == 0
    before = first.read_bytes()
    m = tmp_path / "m.fastmlp"
    (tmp_path / "link").symlink_to(m)
    paths = {"m": m, "link": tmp_path / "link", "first": first,
             "images": data_dir / "t10k-images-idx3-ubyte",
             "labels": data_dir / "t10k-labels-idx1-ubyte.gz"}
    data = {p: p.read_bytes() for p in (paths["images"], paths["labels"])}
    argv = [a.format(**paths) for a in outputs]
    status, out, err = run(capsys, "train", "--data-dir", data_dir, *QUICK, *argv)
    assert status == 2 and out == "" and "are the same file" in err
    assert len(err.strip().splitlines()) == 1
    assert not m.exists() and first.read_bytes() == before
    assert all(p.read_bytes() == content for p, content in data.items())


def test_resume_may_save_over_the_resumed_model(capsys, data_dir, tmp_path):
    first = tmp_path / "first.fastmlp"
    assert run(capsys, "train", "--data-dir", data_dir, *QUICK, "--save", first)[0] == 0
    status, _, err = run(capsys, "train", "--data-dir", data_dir, "--resume", first,
                         "--epochs", "1", "-q", "--save", first)
    assert status == 0, err
    assert fastmlp.load(first).n_iter_ == 2


def test_the_saved_data_dir_is_absolute(capsys, data_dir, tmp_path, monkeypatch):
    # A relative --data-dir was saved as given: --resume from elsewhere failed.
    monkeypatch.chdir(data_dir.parent)
    model = tmp_path / "model.fastmlp"
    status, _, err = run(capsys, "train", "--data-dir", data_dir.name, *QUICK, "--save",
                         model, "--json", tmp_path / "run.json")
    assert status == 0, err
    _, metadata = fastmlp.load(model, return_metadata=True)
    assert metadata["config"]["data_dir"] == str(data_dir)
    assert json.loads((tmp_path / "run.json").read_text())["config"]["data_dir"] == str(data_dir)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    status, _, err = run(capsys, "train", "--resume", model, "--epochs", "1", "-q")
    assert status == 0, err


def test_progress_bar_only_on_a_terminal(capsys, data_dir, monkeypatch):
    monkeypatch.setattr(cli, "_stderr_is_terminal", lambda: True)
    monkeypatch.setenv("COLUMNS", "200")  # room for the full 30-character bar
    status, out, err = run(capsys, "train", "--data-dir", data_dir, "--epochs", "2")
    assert status == 0, err
    assert re.search(r"Epoch 1/2 \[[#.]{30}\] \d+/600", err)
    assert "\r" not in out and "[#" not in out
    assert len(EPOCH_LINE.findall(out)) == 2


def test_progress_bar_redraws_fit_a_60_column_terminal(capsys, data_dir, monkeypatch):
    monkeypatch.setattr(cli, "_stderr_is_terminal", lambda: True)
    monkeypatch.setenv("COLUMNS", "60")
    status, out, err = run(capsys, "train", "--data-dir", data_dir, "--epochs", "2")
    assert status == 0, err
    redraws = [p.replace("\033[K", "") for p in err.replace("\n", "\r").split("\r")]
    bars = [p for p in redraws if p.startswith("Epoch ")]
    assert bars and max(map(len, bars)) <= 59  # a longer line would wrap and stay behind
    assert any(re.search(r"\] \d+/600  loss", p) for p in bars)  # the bar, shrunk


@pytest.mark.parametrize("test_files_only", [False, True], ids=["four files", "test files"])
def test_save_then_evaluate(capsys, data_dir, tmp_path, test_files_only):
    model = tmp_path / "model.fastmlp"
    status, out, err = run(capsys, "train", "--data-dir", data_dir, "--epochs", "3",
                           "--lr", "0.05", "--normalize", "standard", "--hidden", "32,16",
                           "--save", model)
    assert status == 0, err
    final = float(TEST_LINE.findall(out)[-1][1])

    classifier, saved = fastmlp.load(model, return_metadata=True)
    assert classifier.input_scaler_.mode == "standard"  # it scales the pixels itself
    assert classifier.hidden_layer_sizes == (32, 16)
    assert saved["dataset"] == "fashion-mnist" and saved["image_shape"] == [28, 28]
    assert saved["target_names"][9] == "Ankle boot"

    if test_files_only:  # evaluate needs only the test split
        for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"):
            (data_dir / name).unlink()
    status, out, err = run(capsys, "evaluate", model, "--data-dir", data_dir)
    assert status == 0, err
    # The same scaling is applied, so evaluate reproduces the last test accuracy.
    assert f"Test Accuracy: {final:.2f}% " in out
    assert "784-32(ReLU)-16(ReLU)-10" in out
    assert "precision" in out and "Ankle boot" in out and "T-shirt/top" in out
    matrix = out[out.index("Confusion matrix"):].splitlines()[2:12]
    counts = np.array([[int(v) for v in line.split()[-10:]] for line in matrix])
    assert counts.sum() == 200


def test_evaluate_errors(capsys, tmp_path, data_dir):
    status, _, err = run(capsys, "evaluate", tmp_path / "missing.joblib")
    assert status == 1 and "does not exist" in err
    junk = tmp_path / "junk.joblib"
    junk.write_bytes(b"not a model")
    status, _, err = run(capsys, "evaluate", junk, "--data-dir", data_dir)
    assert status == 1 and "cannot read the model file" in err
    assert "Traceback" not in err and "--allow-pickle" not in err  # it is no pickle either
    status, _, err = run(capsys, "evaluate", junk, "--data-dir", data_dir, "--allow-pickle")
    assert status == 1 and "cannot read the model file" in err and "Traceback" not in err
    model = tmp_path / "model.fastmlp"
    assert run(capsys, "train", "--data-dir", data_dir, *QUICK, "--save", model)[0] == 0
    (data_dir / "t10k-labels-idx1-ubyte.gz").unlink()
    status, _, err = run(capsys, "evaluate", model, "--data-dir", data_dir)
    assert status == 1 and "does not hold the test files" in err and "t10k-labels" in err


def test_evaluate_reads_only_the_test_split(capsys, data_dir, tmp_path):
    # With all four files there, a corrupt training file made evaluate fail.
    model = tmp_path / "model.fastmlp"
    assert run(capsys, "train", "--data-dir", data_dir, *QUICK, "--save", model)[0] == 0
    (data_dir / "train-labels-idx1-ubyte.gz").write_bytes(b"junk")
    status, out, err = run(capsys, "evaluate", model, "--data-dir", data_dir)
    assert status == 0, err
    assert "Test Accuracy: " in out and "test set: 200 images" in out


@pytest.mark.parametrize("labels, message", [
    (lambda y: np.array(list("abcdefghij"))[y], r"the model's classes are \['a', 'b', .*not "
                                                r"the data set's integer labels"),
    (lambda y: y + 1, r"the model's classes \(\[1, 2, .*, 10\]\) do not match the data "
                      r"set's labels .*\[0\] are not among them"),
    (lambda y: np.minimum(y, 4), r"\[5, 6, 7, 8, 9\] are not among them"),
])
def test_evaluate_refuses_a_model_of_other_classes(capsys, data_dir, tmp_path, labels,
                                                   message):
    # String classes ended in a traceback; shifted ones in a meaningless accuracy (the
    # labels were looked up in classes_ unchecked).
    X = datasets.read_idx(data_dir / "train-images-idx3-ubyte.gz").reshape(600, -1)
    y = datasets.read_idx(data_dir / "train-labels-idx1-ubyte.gz").astype(np.int64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = fastmlp.MLPImageClassifier((8,), max_iter=1, random_state=0).fit(
            X / np.float32(255), labels(y))
    path = tmp_path / "other.fastmlp"
    fastmlp.save(model, path)
    status, out, err = run(capsys, "evaluate", path, "--data-dir", data_dir)
    assert status == 1 and out == "" and "Traceback" not in err
    assert re.search(rf"error: {re.escape(str(path))} is not a model of Fashion-MNIST: "
                     rf".*{message}", err), err
    assert len(err.strip().splitlines()) == 1


def test_an_old_joblib_model_is_read_only_when_allowed(capsys, data_dir, tmp_path):
    status, _, err = run(capsys, "train", "--data-dir", data_dir, *QUICK, "--save",
                         tmp_path / "model.fastmlp")
    assert status == 0, err
    pipeline, metadata = fastmlp.load(tmp_path / "model.fastmlp", return_metadata=True)
    old = tmp_path / "model.joblib"  # what fastmlp 0.1's --save wrote
    joblib.dump({"model": pipeline, **metadata}, old)
    status, out, err = run(capsys, "evaluate", old, "--data-dir", data_dir)
    assert status == 1 and "pass --allow-pickle" in err and out == ""
    status, out, err = run(capsys, "evaluate", old, "--data-dir", data_dir, "--allow-pickle")
    assert status == 0, err
    assert "warning: reading" in err and "runs code" in err
    assert "Test Accuracy: " in out and "784-8(ReLU)-10" in out


def test_json_record(capsys, data_dir, tmp_path):
    path = tmp_path / "run.json"
    status, out, err = run(capsys, "train", "--data-dir", data_dir, "--epochs", "2",
                           "--hidden", "", "--solver", "adam", "--lr", "0.001",
                           "--seed", "7", "--json", path)
    assert status == 0, err
    doc = json.loads(path.read_text())
    assert doc["config"]["hidden"] == [] and doc["config"]["solver"] == "adam"
    assert doc["config"]["seed"] == 7 and doc["config"]["normalize"] == "symmetric"
    assert doc["architecture"] == "784-10 (softmax regression)"
    assert doc["n_parameters"] == 7850
    assert [h["epoch"] for h in doc["history"]] == [1, 2]
    for h in doc["history"]:
        assert {"loss", "accuracy", "test_loss", "test_accuracy", "time"} <= set(h)
        assert 0 <= h["accuracy"] <= 1 and 0 <= h["test_accuracy"] <= 1
    tests = TEST_LINE.findall(out)
    assert f"{100 * doc['history'][-1]['test_accuracy']:.2f}" == tests[-1][1]
    assert doc["final"]["test_accuracy"] == doc["history"][-1]["test_accuracy"]
    assert doc["n_train"] == 600 and doc["n_test"] == 200


def test_same_seed_same_run(capsys, data_dir):
    outs = []
    for _ in range(2):
        status, out, err = run(capsys, "train", "--data-dir", data_dir, "--epochs", "1",
                               "--threads", "1", "--seed", "3")
        assert status == 0, err
        outs.append(EPOCH_LINE.findall(out) + TEST_LINE.findall(out))
    assert outs[0] == outs[1]


def test_plots(capsys, data_dir, tmp_path):
    pytest.importorskip("matplotlib")
    import matplotlib.image

    plots = tmp_path / "plots" / "run1"  # created when missing
    status, out, err = run(capsys, "train", "--data-dir", data_dir, "--epochs", "2",
                           "--plots", plots)
    assert status == 0, err
    for name in PLOTS:
        path = plots / name
        assert path.read_bytes()[:8] == PNG_SIGNATURE
        image = matplotlib.image.imread(path)
        assert image.ndim == 3 and image.shape[0] > 200 and image.shape[1] > 200
        assert image.std() > 0  # not blank
    assert "Wrote plots" in out


def test_plots_without_matplotlib(capsys, data_dir, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import fails
    status, out, err = run(capsys, "train", "--data-dir", data_dir, "--plots", tmp_path / "p")
    assert status == 1
    assert "--plots needs matplotlib" in err and "[plot]" in err
    assert out == ""  # it says so before training
    assert not (tmp_path / "p").exists()


def test_divergence_without_normalization(capsys, data_dir):
    status, out, err = run(capsys, "train", "--data-dir", data_dir, "--normalize", "none",
                           "--lr", "1e6", "--epochs", "3")
    assert status == 1
    assert "diverged" in err and "--normalize symmetric" in err and "--lr 1e-5" in err
    assert len(err.strip().splitlines()) == 1
    assert "nan" not in out.lower() and "Traceback" not in err


def test_divergence_from_a_huge_alpha_names_alpha(capsys, data_dir):
    # The advice was only to lower the learning rate.
    status, out, err = run(capsys, "train", "--data-dir", data_dir, "--alpha", "1e30",
                           "--epochs", "1")
    assert status == 1 and len(err.strip().splitlines()) == 1 and "diverged" in err
    assert "the L2 penalty --alpha 1e+30 is too large" in err and "lower --alpha" in err
    assert "= 1.56e+26 times the weights" in err  # 0.01 * 1e30 / 64


def test_advice_when_training_barely_beats_chance():
    args = cli.build_parser().parse_args(["train", "--normalize", "none"])
    note = cli._poor_result_note(0.1004, 10, args)
    assert "barely above chance (10%)" in note and "--normalize symmetric" in note
    assert "--lr 1e-5" in note
    assert cli._poor_result_note(0.2, 10, args) is None
    args = cli.build_parser().parse_args(["train", "--lr", "0.5"])
    assert "--lr 0.005" in cli._poor_result_note(0.3, 4, args)


def test_advice_when_a_run_of_few_steps_barely_beats_chance():
    # It advised a smaller learning rate after one step per epoch.
    args = cli.build_parser().parse_args(["train", "--batch-size", "1000000"])
    note = cli._poor_result_note(0.1004, 10, args, (60000, 1))
    assert note.endswith("the run made only 1 optimizer step (1 epoch of 1 step: 60,000 "
                         "training samples in batches of 60,000), too few to learn from: "
                         "use a smaller --batch-size (e.g. --batch-size 64) or more --epochs")
    args = cli.build_parser().parse_args(["train", "--batch-size", "10000"])
    assert "the run made only 30 optimizer steps (5 epochs of 6 steps" in cli._poor_result_note(
        0.1, 10, args, (60000, 5))
    args = cli.build_parser().parse_args(["train", "--batch-size", "1000", "--early-stopping"])
    note = cli._poor_result_note(0.1, 10, args, (60000, 2))  # 54,000 samples: 54 steps
    assert "only 108 optimizer steps" not in note and "--lr 0.0001" in note
    note = cli._poor_result_note(0.1, 10, args, (60000, 1))
    assert "only 54 optimizer steps (1 epoch of 54 steps: 54,000 training samples" in note
    args = cli.build_parser().parse_args(["train", "--batch-size", "1"])
    assert cli._poor_result_note(0.1, 10, args, (50, 1)).endswith("use more --epochs")


def test_a_run_of_few_steps_is_told_so(capsys, data_dir, monkeypatch):
    def at_chance(*args):
        loss, _, y_pred = test_metrics(*args)
        return loss, 0.1, y_pred

    test_metrics = cli._test_metrics
    monkeypatch.setattr(cli, "_test_metrics", at_chance)
    status, out, err = run(capsys, "train", "--data-dir", data_dir, "--batch-size", "1000000",
                           "--epochs", "2", "-q")
    assert status == 0
    # The batch size is clipped in the command's words, not the estimator's warning.
    assert err.startswith("fastmlp: note: --batch-size 1,000,000 is more than the 600 "
                          "samples trained on: each batch holds all of them\n")
    assert "warning" not in err
    assert ("fastmlp: note: the test accuracy 10.00% is barely above chance (10%); the run "
            "made only 2 optimizer steps (2 epochs of 1 step: 600 training samples in "
            "batches of 600), too few to learn from: use a smaller --batch-size (e.g. "
            "--batch-size 6) or more --epochs\n") in err


@pytest.mark.parametrize("argv, noted", [
    (["--lr-schedule", "cosine", "--warmup-epochs", "1e9", "--epochs", "1"], True),
    (["--preset", "accurate", "--epochs", "1", "--hidden", "8"], True),  # its warmup is 1
    (["--preset", "accurate", "--epochs", "2", "--hidden", "8"], False),
])
def test_a_warmup_as_long_as_the_run_is_told(capsys, data_dir, argv, noted):
    status, _, err = run(capsys, "train", "--data-dir", data_dir, "-q", *argv)
    assert status == 0, err
    assert ("the learning rate rises for the whole run and never decays" in err) == noted
    if noted:
        assert err.startswith("fastmlp: note: --warmup-epochs ")


def test_raw_pixels_with_a_tiny_learning_rate_train(capsys, data_dir):
    status, out, err = run(capsys, "train", "--data-dir", data_dir, "--normalize", "none",
                           "--lr", "1e-5", "--epochs", "2")
    assert status == 0, err
    assert "raw pixels 0..255" in out
    assert len(TEST_LINE.findall(out)) == 2


def test_quiet(capsys, data_dir):
    status, out, err = run(capsys, "train", "--data-dir", data_dir, "--epochs", "1", "-q")
    assert status == 0, err
    assert re.fullmatch(r"Test Accuracy: \d+\.\d\d%\n", out)


def test_early_stopping_shows_validation(capsys, data_dir):
    status, out, err = run(capsys, "train", "--data-dir", data_dir, "--epochs", "2",
                           "--early-stopping", "--momentum", "0.9", "--nesterov")
    assert status == 0, err
    assert len(re.findall(r"^Validation Loss: \d+\.\d{4}, Validation Accuracy: ", out,
                          re.MULTILINE)) == 2
    assert "540 training" not in out  # the header counts the whole training split
    assert "momentum 0.9, Nesterov" in out


def test_summary(capsys):
    status, out, _ = run(capsys, "summary")
    assert status == 0
    assert "784-256(ReLU)-10" in out and "203,530" in out
    status, out, _ = run(capsys, "summary", "--hidden", "256,256", "--activation", "sigmoid")
    assert "Sigmoid" in out and f"{784 * 256 + 256 + 256 * 256 + 256 + 2570:,}" in out
    status, out, _ = run(capsys, "summary", "--hidden", "3", "--input", "4", "--classes", "3")
    assert "Total params: 27" in out


@pytest.mark.parametrize("argv", [
    ["train", "--epochs", "0"],
    ["train", "--lr", "-1"],
    ["train", "--lr", "nan"],
    ["train", "--momentum", "1.5"],
    ["train", "--hidden", "256,abc"],
    ["train", "--hidden", "0"],
    ["train", "--normalize", "minmax"],
    ["train", "--dataset", "cifar"],
    ["train", "--batch-size", "x"],
    ["evaluate"],
    ["summary", "--input", "0"],
    ["summary", "--classes", "1"],  # a classifier needs two
    ["frobnicate"],
    [],
])
def test_bad_options_exit_2(capsys, argv):
    status, out, err = run(capsys, *argv)
    assert status == 2
    assert "usage:" in err and "error:" in err and "Traceback" not in err


def test_data_dir_without_the_files(capsys, tmp_path):
    status, out, err = run(capsys, "train", "--data-dir", tmp_path)
    assert status == 1
    assert "does not hold the four IDX files" in err and "--download" in err
    assert out == ""


@pytest.mark.parametrize("dataset, title", [("fashion-mnist", "Fashion-MNIST"),
                                            ("mnist", "MNIST")])
def test_missing_data_shows_how_to_get_it(capsys, tmp_path, monkeypatch, dataset, title):
    from fastmlp import datasets

    monkeypatch.setattr(datasets, "SYSTEM_DATA_DIRS", (str(tmp_path / "system"),))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("FASTMLP_DATA", raising=False)
    for command in (["train"], ["evaluate", tmp_path / "m.fastmlp"]):
        if command[0] == "evaluate":  # it loads the model first
            fastmlp.save(fastmlp.MLPImageClassifier((2,), max_iter=1).partial_fit(
                np.eye(784)[:10], np.arange(10), classes=np.arange(10)), command[1])
        status, out, err = run(capsys, *command, "--dataset", dataset)
        assert status == 1
        assert err.startswith(f"fastmlp: error: {title} was not found")
        assert ("apt-get install dataset-fashion-mnist" in err) == (dataset == "fashion-mnist")
        # The command line's ways, not the Python API's ("data_home: not given", "call
        # load_mnist(data_home=DIR)").
        assert (f"  - download it: add --download to the command (saves to "
                f"{tmp_path / 'cache' / 'fastmlp' / dataset})") in err
        assert "put the four files in a directory DIR and add --data-dir DIR" in err
        assert "data_home" not in err and "load_" not in err
        assert "Traceback" not in err and out == ""


def test_unwritable_outputs_fail_before_training(capsys, data_dir, tmp_path):
    status, out, err = run(capsys, "train", "--data-dir", data_dir,
                           "--save", tmp_path / "no" / "such" / "model.fastmlp")
    assert status == 1 and "does not exist" in err and out == ""
    status, out, err = run(capsys, "train", "--data-dir", data_dir, "--json", tmp_path)
    assert status == 1 and "is a directory" in err and out == ""


def test_bench_without_the_script(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(cli, "_bench_script", lambda: None)
    status, _, err = run(capsys, "bench", "--quick")
    assert status == 1 and "bench/bench_training.py" in err


def test_bench_forwards_its_arguments(capsys, tmp_path, monkeypatch):
    script = tmp_path / "bench" / "bench_training.py"
    script.parent.mkdir()
    script.write_text("import sys\nprint('bench args', sys.argv[1:])\n")
    monkeypatch.setattr(cli, "_bench_script", lambda: script)
    status, out, _ = run(capsys, "bench", "--quick", "-n", "3")
    assert status == 0 and "bench args ['--quick', '-n', '3']" in out


def test_bench_never_runs_a_script_found_from_the_working_directory(capsys, tmp_path,
                                                                    monkeypatch):
    work = tmp_path / "work"  # looks like a checkout, but fastmlp is not installed from it
    planted = work / "bench" / "bench_training.py"
    planted.parent.mkdir(parents=True)
    planted.write_text(f"open({str(tmp_path / 'ran')!r}, 'w').close()\n")
    (work / "pyproject.toml").write_text("[project]\nname = 'fastmlp'\n")
    (work / "python" / "fastmlp").mkdir(parents=True)
    monkeypatch.chdir(work)
    # As installed from a wheel, whatever this test run's own layout is.
    monkeypatch.setattr(cli, "__file__", str(tmp_path / "site-packages" / "fastmlp" / "cli.py"))
    status, out, err = run(capsys, "bench", "--quick")
    assert not (tmp_path / "ran").exists()
    assert status == 1 and "source checkout" in err and "Traceback" not in err
    assert out == ""


def test_bench_script_is_the_one_of_the_checkout_holding_the_package(tmp_path, monkeypatch):
    checkout = tmp_path / "checkout"
    (checkout / "python" / "fastmlp").mkdir(parents=True)
    (checkout / "bench").mkdir()
    (checkout / "pyproject.toml").write_text("[project]\nname = 'fastmlp'\n")
    script = checkout / "bench" / "bench_training.py"
    script.write_text("")
    monkeypatch.setattr(cli, "__file__", str(checkout / "python" / "fastmlp" / "cli.py"))
    monkeypatch.chdir(tmp_path)
    assert cli._bench_script() == script.resolve()
    (checkout / "pyproject.toml").unlink()  # not a checkout after all
    assert cli._bench_script() is None
    # Installed from a wheel: site-packages/fastmlp/cli.py has no checkout around it.
    (tmp_path / "site-packages" / "fastmlp").mkdir(parents=True)
    (tmp_path / "bench").mkdir()
    (tmp_path / "bench" / "bench_training.py").write_text("")
    monkeypatch.setattr(cli, "__file__", str(tmp_path / "site-packages" / "fastmlp" / "cli.py"))
    assert cli._bench_script() is None


def test_an_interrupted_fit_is_told_by_the_warning_class_not_its_text(capsys):
    import warnings

    from fastmlp.exceptions import TrainingInterruptedWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.warn("stopped early", TrainingInterruptedWarning, stacklevel=1)
    assert cli._report_warnings(caught)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.warn("Training interrupted by user.", UserWarning, stacklevel=1)
    assert not cli._report_warnings(caught)
    assert "fastmlp: warning: Training interrupted by user." in capsys.readouterr().err


def test_json_record_describes_the_machine(capsys, data_dir, tmp_path):
    import fastmlp

    path = tmp_path / "run.json"
    status, _, err = run(capsys, "train", "--data-dir", data_dir, "--epochs", "1", "-q",
                         "--json", path)
    assert status == 0, err
    machine = json.loads(path.read_text())["machine"]
    assert machine["cpus"] == os.cpu_count() and machine["python"] and machine["platform"]
    assert machine["fastmlp_isa"] == fastmlp.active_isa()
    assert machine["cores"] >= 1 and isinstance(machine["cpu_features"], list)


def test_python_dash_m(tmp_path):
    env = {**os.environ, "PYTHONWARNINGS": "error"}
    proc = subprocess.run([sys.executable, "-m", "fastmlp", "--help"], capture_output=True,
                          text=True, env=env, cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    for command in ("train", "evaluate", "summary", "bench"):
        assert command in proc.stdout


# -- files written whole or not at all -------------------------------------------------

QUICK = ("--epochs", "1", "--hidden", "8", "-q")


def names(directory):
    return sorted(p.name for p in directory.iterdir())


@pytest.mark.parametrize("failure, status, message", [
    (OSError(errno.ENOSPC, "No space left on device"), 1, "No space left on device"),
    (KeyboardInterrupt(), 130, "fastmlp: interrupted"),
], ids=["disk full", "ctrl-c"])
@pytest.mark.parametrize("output", ["--save", "--json", "--plots"])
def test_a_failure_while_writing_leaves_the_previous_file(capsys, data_dir, tmp_path,
                                                          monkeypatch, output, failure,
                                                          status, message):
    if output == "--plots":
        pytest.importorskip("matplotlib")
    out = tmp_path / "out"
    out.mkdir()
    target = out / ("loss.png" if output == "--plots" else "file")
    target.write_bytes(b"the previous, valid file")

    def fsync_fails(fd):  # every byte is written, then the disk fills up (or Ctrl-C)
        raise failure

    monkeypatch.setattr(os, "fsync", fsync_fails)
    code, _, err = run(capsys, "train", "--data-dir", data_dir, *QUICK, output,
                       out if output == "--plots" else target)
    monkeypatch.undo()
    assert code == status and message in err and "Traceback" not in err
    assert target.read_bytes() == b"the previous, valid file"
    assert names(out) == [target.name]  # no temporary file left behind


def test_a_serializer_failing_midway_leaves_the_previous_model(capsys, data_dir, tmp_path,
                                                               monkeypatch):
    model = tmp_path / "model.fastmlp"
    model.write_bytes(b"the previous model")

    def savez_half(f, **arrays):
        f.write(b"PK\x03\x04half an archive")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "savez", savez_half)
    status, _, err = run(capsys, "train", "--data-dir", data_dir, *QUICK, "--save", model)
    assert status == 1 and "cannot save the model" in err and "unchanged" in err
    assert model.read_bytes() == b"the previous model" and names(tmp_path) == [
        "data", "model.fastmlp"]


def test_saved_files_are_complete_and_keep_their_permissions(capsys, data_dir, tmp_path):
    model, other = tmp_path / "model.fastmlp", tmp_path / "model.npz"
    model.write_bytes(b"old")
    os.chmod(model, 0o600)
    for path in (model, other):
        status, _, err = run(capsys, "train", "--data-dir", data_dir, *QUICK, "--save", path)
        assert status == 0, err
        assert fastmlp.load(path).predict(np.zeros((1, 784), np.uint8)).shape == (1,)
    assert stat.S_IMODE(os.stat(model).st_mode) == 0o600
    assert names(tmp_path) == ["data", "model.fastmlp", "model.npz"]  # the names as given


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
@pytest.mark.parametrize("output", ["--save", "--json"])
def test_outputs_that_are_not_regular_files_fail_before_training(capsys, data_dir, tmp_path,
                                                                 output):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    status, out, err = run(capsys, "train", "--data-dir", data_dir, *QUICK, output, fifo)
    assert status == 1 and "is a FIFO" in err and str(fifo) in err and out == ""
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


# -- Ctrl-C, memory, closed pipes: one line, a conventional status, no traceback --------


def test_ctrl_c_while_loading_the_data(capsys, data_dir, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(datasets, "load_fashion_mnist", interrupted)
    status, out, err = run(capsys, "train", "--data-dir", data_dir)
    assert status == 130 and err == "fastmlp: interrupted\n" and out == ""


# Ctrl-C in the middle of importing scikit-learn, the slow part of start-up.
CTRL_C_ON_IMPORT = """
import builtins, runpy, sys
real_import = builtins.__import__
def ctrl_c_on_sklearn(name, *args, **kwargs):
    if name.startswith("sklearn"):
        raise KeyboardInterrupt
    return real_import(name, *args, **kwargs)
builtins.__import__ = ctrl_c_on_sklearn
runpy.run_module("fastmlp", run_name="__main__", alter_sys=True)
"""


@pytest.mark.parametrize("command", ["summary", "train", "evaluate"])
def test_ctrl_c_during_start_up(tmp_path, data_dir, command):
    argv = {"summary": ["summary"], "train": ["train", "--data-dir", str(data_dir)],
            "evaluate": ["evaluate", "model.fastmlp"]}[command]
    proc = subprocess.run([sys.executable, "-c", CTRL_C_ON_IMPORT, *argv], capture_output=True,
                          text=True, cwd=tmp_path, timeout=120)
    assert proc.returncode == 130, proc.stderr
    assert proc.stderr == "fastmlp: interrupted\n" and proc.stdout == ""


def test_ctrl_c_after_an_epoch_saves_the_run_and_exits_130(capsys, data_dir, tmp_path,
                                                           monkeypatch):
    report = cli._EpochReporter.__call__

    def ctrl_c_after_epoch_2(self, estimator, info):
        stop = report(self, estimator, info)
        if info["event"] == "epoch" and info["epoch"] == 2:
            raise KeyboardInterrupt
        return stop

    monkeypatch.setattr(cli._EpochReporter, "__call__", ctrl_c_after_epoch_2)
    model, record = tmp_path / "model.fastmlp", tmp_path / "run.json"
    status, out, err = run(capsys, "train", "--data-dir", data_dir, "--epochs", "4",
                           "--hidden", "8", "--save", model, "--json", record)
    assert status == 130, err
    assert "interrupted after 2 of 4 epochs" in err and "Traceback" not in err
    assert fastmlp.load(model, return_metadata=True)[1]["final"]["epochs_trained"] == 2
    assert json.loads(record.read_text())["interrupted"] is True


# Runs `fastmlp ARGS` in a process limited to 4 GiB of address space: a model that slipped
# through would fail there, not eat the machine. The child sets the limit itself: a
# preexec_fn would fork this process, whose at-fork hooks (JAX's, once a benchmark test
# imported it) warn, and warnings are errors here.
_LIMITED_FASTMLP = ("import resource, runpy, sys; limit = 4 * 2**30; "
                    "resource.setrlimit(resource.RLIMIT_AS, (limit, limit)); "
                    "sys.argv[0] = 'fastmlp'; runpy.run_module('fastmlp', run_name='__main__')")


@pytest.mark.skipif(sys.platform != "linux", reason="RLIMIT_AS is Linux's")
@pytest.mark.skipif(bool(os.environ.get("FASTMLP_SANITIZERS")),
                    reason="AddressSanitizer cannot reserve its shadow memory under the "
                           "address-space limit this test sets")
def test_a_model_too_large_for_memory_is_refused_before_allocating(tmp_path, data_dir):
    proc = subprocess.run(
        [sys.executable, "-c", _LIMITED_FASTMLP, "train", "--data-dir", str(data_dir),
         "--hidden", "100000000", "-q"], capture_output=True, text=True, cwd=tmp_path,
        timeout=120)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.startswith("fastmlp: error: the model 784-100000000(ReLU)-10 has "
                                  "79,500,000,010 parameters")
    assert "GiB" in proc.stderr and "--hidden" in proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr


def test_memory_error_while_training_is_one_line(capsys, data_dir, monkeypatch):
    from fastmlp.estimator import MLPImageClassifier

    def fit(self, X, y, callback=None):
        raise MemoryError("Unable to allocate 1.00 TiB for an array with shape (2**38,)")

    monkeypatch.setattr(MLPImageClassifier, "fit", fit)
    status, _, err = run(capsys, "train", "--data-dir", data_dir, *QUICK)
    assert status == 1
    assert err == ("fastmlp: error: out of memory: Unable to allocate 1.00 TiB for an array "
                   "with shape (2**38,); use smaller --hidden layers or --batch-size\n")


@pytest.mark.parametrize("argv", [
    ["summary"], ["summary", "--hidden", "100000000"], ["--help"], ["train", "--help"],
    ["--version"], ["train", "-q", "--epochs", "1", "--hidden", "8", "--data-dir"],
])
def test_a_closed_stdout_ends_quietly_with_status_141(tmp_path, data_dir, argv):
    if argv[-1] == "--data-dir":
        argv = [*argv, str(data_dir)]
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first byte: every write fails
    try:
        proc = subprocess.run([sys.executable, "-m", "fastmlp", *argv], stdout=write_end,
                              stderr=subprocess.PIPE, text=True, cwd=tmp_path, timeout=120)
    finally:
        os.close(write_end)
    # argparse itself ignores errors writing --help and --version: those end with 0.
    assert proc.returncode == (0 if argv[-1] in ("--help", "--version") else 141), proc.stderr
    assert proc.stderr == ""


@pytest.mark.data
@pytest.mark.slow
def test_reference_run_on_fashion_mnist(capsys):
    """`fastmlp train` with no options on the real Fashion-MNIST (found by the loaders'
    lookup, e.g. /usr/share/datasets/fashion-mnist): 5 epochs of the reference
    configuration land within about a point of the published 83.92% test and 85.13%
    train accuracy."""
    status, out, err = run(capsys, "train")
    if status == 1 and "Fashion-MNIST was not found" in err:
        if data_required():
            pytest.fail(f"FASTMLP_REQUIRE_DATA is set but Fashion-MNIST is missing:\n{err}")
        pytest.skip("Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)")
    assert status == 0, err
    print(out)  # shown with -rP or on failure: the run's table and times
    assert "60,000 training and 10,000 test images" in out
    assert "784-256(ReLU)-10, 203,530 parameters, pytorch initialization" in out
    assert "SGD, lr 0.01, batch 64, 5 epochs, pixels scaled to [-1, 1]" in out
    epochs = EPOCH_LINE.findall(out)
    tests = TEST_LINE.findall(out)
    assert [int(k) for k, *_ in epochs] == [1, 2, 3, 4, 5] and len(tests) == 5
    train_acc = [float(a) for *_, a in epochs]
    test_acc = [float(a) for _, a in tests]
    train_loss = [float(loss) for _, _, loss, _ in epochs]
    assert 84.1 <= train_acc[-1] <= 86.2, out
    assert 82.9 <= test_acc[-1] <= 85.0, out
    # The shape of the reference curves: the training loss falls every epoch, and the
    # first epoch ends well short of the last.
    assert all(a > b for a, b in zip(train_loss, train_loss[1:])), out
    assert train_acc[0] < train_acc[-1] - 5, out


def test_validation_data_replaces_the_held_out_split(capsys, data_dir, tmp_path, rng):
    X_val, y_val = make_images(rng, 150)
    write_idx(tmp_path / "val-images-idx3-ubyte.gz", X_val)
    np.save(tmp_path / "val-labels.npy", y_val.astype(np.int64))
    model = tmp_path / "m.fastmlp"
    status, out, err = run(capsys, "train", "--data-dir", data_dir, "--epochs", "1",
                           "--early-stopping", "--validation-data",
                           tmp_path / "val-images-idx3-ubyte.gz", tmp_path / "val-labels.npy",
                           "--save", model)
    assert status == 0, err
    shown = float(re.search(r"Validation Accuracy: (\d+\.\d{2})%", out).group(1))
    classifier = fastmlp.load(model)
    assert classifier.t_ == 600  # every training image was trained on
    assert shown == pytest.approx(100 * classifier.score(X_val.reshape(150, -1), y_val),
                                  abs=0.005)


def test_resume_keeps_watching_the_validation_data(capsys, data_dir, tmp_path, rng,
                                                  monkeypatch):
    # The resumed run held out a random tenth of the training data instead.
    X_val, y_val = make_images(rng, 150)
    np.save(tmp_path / "images.npy", X_val)
    np.save(tmp_path / "labels.npy", y_val.astype(np.int64))
    monkeypatch.chdir(tmp_path)  # relative paths, resumed from elsewhere
    status, _, err = run(capsys, "train", "--data-dir", data_dir, "--epochs", "1", "-q",
                         "--early-stopping", "--validation-data", "images.npy", "labels.npy",
                         "--save", "m.fastmlp")
    assert status == 0, err
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    status, out, err = run(capsys, "train", "--data-dir", data_dir, "--epochs", "1",
                           "--resume", tmp_path / "m.fastmlp", "--save", tmp_path / "m.fastmlp")
    assert status == 0, err
    classifier, meta = fastmlp.load(tmp_path / "m.fastmlp", return_metadata=True)
    assert classifier.t_ == 2 * 600  # every training image, both times
    assert meta["config"]["validation_data"] == [str(tmp_path / "images.npy"),
                                                 str(tmp_path / "labels.npy")]
    assert "Validation Accuracy: " in out


@pytest.mark.parametrize("argv, message, code", [
    (["--validation-data", "a", "b"], "watched by --early-stopping; add it", 2),  # usage
    (["--early-stopping", "--validation-data", "missing-idx3", "b"], "cannot read", 1),
])
def test_bad_validation_data(capsys, data_dir, argv, message, code):
    status, _, err = run(capsys, "train", "--data-dir", data_dir, "--epochs", "1", *argv)
    assert status == code and message in err and "Traceback" not in err


@pytest.mark.parametrize("images, labels, bad", [
    (np.full((10, 28, 28), np.nan, np.float32), np.arange(10), "images.npy holds 7,840 NaN"),
    (np.where(np.arange(784 * 10).reshape(10, 28, 28) == 5, np.inf, 0.5), np.arange(10),
     "images.npy holds 1 NaN or infinite pixel values (of 7,840)"),
    (np.zeros((10, 28, 28), np.uint8), np.r_[np.arange(9), np.nan], "labels.npy holds 1 NaN"),
])
def test_validation_data_with_nan_is_refused_in_one_line(capsys, data_dir, tmp_path, images,
                                                         labels, bad):
    # NaN images ended in a paragraph of scikit-learn's advice on missing values.
    np.save(tmp_path / "images.npy", images)
    np.save(tmp_path / "labels.npy", labels)
    status, _, err = run(capsys, "train", "--data-dir", data_dir, "--epochs", "1",
                         "--early-stopping", "--validation-data", tmp_path / "images.npy",
                         tmp_path / "labels.npy")
    assert status == 1 and err.count("\n") == 1, err
    assert err.startswith(f"fastmlp: error: the validation data {tmp_path}/") and bad in err


def test_evaluate_help_asks_only_for_the_test_files(capsys):
    status, out, _ = run(capsys, "evaluate", "--help")
    assert status == 0
    text = " ".join(out.split())  # argparse wraps the help text, hyphens included
    assert "the two test IDX files (t10k-images-" in text
    assert "train-images" not in text
