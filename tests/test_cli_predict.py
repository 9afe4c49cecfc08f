"""``fastmlp predict`` on the user's image files, and ``fastmlp train --resume``."""

import json
import re
import sys
import warnings

import numpy as np
import pytest
from sklearn.pipeline import make_pipeline

import fastmlp
from fastmlp.datasets import write_idx
from test_cli import QUICK, data_dir, make_images, run  # noqa: F401 - data_dir: a fixture
from test_io import rewrite

Image = pytest.importorskip("PIL.Image")
NAMES = fastmlp.datasets._DATASETS["fashion-mnist"].target_names
LINE = re.compile(r"^(\S+)\s+(.+) (\d\.\d{4})$")


@pytest.fixture
def model(capsys, data_dir, tmp_path):  # noqa: F811 - the fixture imported above
    path = tmp_path / "model.fastmlp"
    status, _, err = run(capsys, "train", "--data-dir", data_dir, "--epochs", "3", "--lr",
                         "0.05", "--hidden", "32", "-q", "--save", path)
    assert status == 0, err
    return path


@pytest.fixture
def images(rng):
    return make_images(rng, 12)[0]


def expected(model_path, images):
    """(label names, probabilities of them) that the saved model gives these images."""
    proba = fastmlp.load(model_path).predict_proba(images.reshape(len(images), -1))
    return [NAMES[k] for k in proba.argmax(axis=1)], proba.max(axis=1)


def parse(out):
    return [LINE.match(line).groups() for line in out.splitlines()]


def test_png_files(capsys, model, images, tmp_path):
    files = []
    for i, image in enumerate(images[:4]):
        files.append(tmp_path / f"image{i}.png")
        Image.fromarray(image).save(files[-1])
    status, out, err = run(capsys, "predict", model, *files)
    assert status == 0 and err == ""
    labels, proba = expected(model, images[:4])
    rows = parse(out)
    assert [r[0] for r in rows] == [str(f) for f in files]
    assert [r[1] for r in rows] == labels
    np.testing.assert_allclose([float(r[2]) for r in rows], proba, atol=5e-5)


def test_files_may_follow_the_options(capsys, model, images, tmp_path):
    # "unrecognized arguments: b.npy": argparse ended FILE... at --top.
    files = [tmp_path / f"{name}.npy" for name in "abc"]
    for f, image in zip(files, images):
        np.save(f, image)
    status, out, err = run(capsys, "predict", model, files[0], "--top", "1", *files[1:])
    assert status == 0, err
    assert [r[0] for r in parse(out)] == [str(f) for f in files]  # in the order given
    assert [r[1] for r in parse(out)] == expected(model, images[:3])[0]


def test_colour_and_other_sizes_are_converted_with_a_note(capsys, model, images, tmp_path):
    rgb, large = tmp_path / "rgb.png", tmp_path / "large.jpg"
    Image.fromarray(images[0]).convert("RGB").save(rgb)
    Image.fromarray(np.kron(images[1], np.ones((2, 2), np.uint8))).save(large, quality=100)
    status, out, err = run(capsys, "predict", model, rgb, large)
    assert status == 0, err
    assert f"fastmlp: note: {rgb}: converted to grayscale" in err
    assert f"fastmlp: note: {large}: resized from 56x56 to 28x28 (the model's input size)" in err
    labels, _ = expected(model, images[:2])
    assert [r[1] for r in parse(out)] == labels


def test_npy_and_idx_files_one_image_or_a_stack(capsys, model, images, tmp_path):
    one, stack, rows, idx = (tmp_path / n for n in ("one.npy", "stack.npy", "rows.npy",
                                                     "images-idx3-ubyte.gz"))
    np.save(one, images[0])
    np.save(stack, images[:3])
    np.save(rows, images[3:5].reshape(2, -1).astype(np.float32))
    write_idx(idx, images[5:9])
    status, out, err = run(capsys, "predict", model, one, stack, rows, idx)
    assert status == 0 and err == ""
    got = parse(out)
    assert [r[0] for r in got] == [str(one)] + [f"{stack}[{i}]" for i in range(3)] + [
        f"{rows}[{i}]" for i in range(2)] + [f"{idx}[{i}]" for i in range(4)]
    assert [r[1] for r in got] == expected(model, images[[0, 0, 1, 2, 3, 4, 5, 6, 7, 8]])[0]


def test_pixels_outside_the_models_range_get_a_note(capsys, model, images, tmp_path):
    # The model's PixelScaler takes 0..255: images scaled to [0, 1] already, or far out of
    # range, are predicted, with a note that says what is wrong with them.
    unit, big, neg, fine, black = (tmp_path / n for n in ("unit.npy", "big.npy", "neg.npy",
                                                           "fine.npy", "black.npy"))
    np.save(unit, images[:2] / 255.0)
    np.save(big, images[:2] * 1000.0)
    np.save(neg, images[:2] - 5.0)
    np.save(fine, images[:2].astype(np.float64))
    np.save(black, np.zeros_like(images[:2], dtype=np.float32))  # 0 is a pixel value too
    status, out, err = run(capsys, "predict", model, unit, big, neg, fine, black)
    assert status == 0 and len(parse(out)) == 10
    low, top = images[:2].min(), images[:2].max()
    assert (f"fastmlp: note: {unit}: pixel values span {low / 255:g} to {top / 255:g}, but "
            f"the model takes pixels 0 to 255; if these images were scaled to [0, 1], "
            f"multiply them by 255") in err
    assert f"{big}: pixel values span {low * 1000.0:g} to {top * 1000.0:g}, outside" in err
    assert f"{neg}: pixel values span {low - 5.0:g} to " in err
    assert str(fine) not in err and str(black) not in err and err.count("fastmlp: note:") == 3


def test_json_and_top_k(capsys, model, images, tmp_path):
    stack = tmp_path / "stack.npy"
    np.save(stack, images[:5])
    status, out, err = run(capsys, "predict", model, stack, "--json", "--top", "3")
    assert status == 0, err
    entries = json.loads(out)
    proba = fastmlp.load(model).predict_proba(images[:5].reshape(5, -1))
    assert [(e["file"], e["index"]) for e in entries] == [(str(stack), i) for i in range(5)]
    for e, p in zip(entries, proba):
        best = np.argsort(-p, kind="stable")[:3]
        assert [q["class"] for q in e["predictions"]] == best.tolist()
        assert [q["label"] for q in e["predictions"]] == [NAMES[k] for k in best]
        np.testing.assert_allclose([q["probability"] for q in e["predictions"]], p[best],
                                   rtol=1e-12)
    status, out, _ = run(capsys, "predict", model, stack, "--top", "20")  # at most 10
    assert status == 0 and all(line.count(", ") == 9 for line in out.splitlines())


def test_bad_files_are_reported_and_the_others_still_predicted(capsys, model, images,
                                                               tmp_path):
    good = tmp_path / "good.png"
    Image.fromarray(images[0]).save(good)
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(good.read_bytes()[:40])
    text, shape, pickled, nan, empty = (tmp_path / n for n in (
        "notes.txt", "shape.npy", "pickled.npy", "nan.npy", "empty.npy"))
    text.write_text("not an image")
    np.save(shape, np.zeros((2, 3, 5, 7, 9)))
    np.save(pickled, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    np.save(nan, np.full((28, 28), np.nan))
    np.save(empty, np.zeros((0, 28, 28), np.uint8))
    bad = [truncated, text, shape, pickled, nan, empty, tmp_path / "missing.png",
           tmp_path]
    status, out, err = run(capsys, "predict", model, good, *bad)
    assert status == 1 and "Traceback" not in err
    assert [r[0] for r in parse(out)] == [str(good)]
    messages = err.splitlines()
    assert [m.split(": ")[2] for m in messages] == [str(p) for p in bad]
    assert "not a readable image" in messages[0] and "neither an image" in messages[1]
    assert "shape (2, 3, 5, 7, 9)" in messages[2] and "not a readable .npy" in messages[3]
    assert "NaN or infinite" in messages[4] and "holds no pixels" in messages[5]
    assert "no such file" in messages[6] and "not a file" in messages[7]


def test_damaged_headers_are_reported_as_such(capsys, model, images, tmp_path):
    # Both ended in a traceback: Pillow's DecompressionBombError for a BMP whose header
    # (damaged) claims 900 million pixels, and tokenize's TokenError for a .npy header
    # with a parenthesis lost.
    bomb, npy, large = (tmp_path / n for n in ("bomb.bmp", "damaged.npy", "large.npy"))
    Image.fromarray(images[0]).save(bomb)
    header = bytearray(bomb.read_bytes())
    header[18:26] = np.array([30000, 30000], "<i4").tobytes()  # width, height
    bomb.write_bytes(bytes(header))
    np.save(npy, images[:1])
    content = npy.read_bytes()
    end = content.index(b")")  # closes the header's shape
    npy.write_bytes(content[:end] + b" " + content[end + 1:])
    # And a shape that claims 261 GiB: a MemoryError, told as "out of memory".
    np.save(large, images[:1])
    content = large.read_bytes()
    large.write_bytes(content.replace(b"(1, 28, 28)", b"(100000, 100000, 28)", 1)
                      .replace(b" " * 9 + b"\n", b"\n", 1))
    status, out, err = run(capsys, "predict", model, bomb, npy, large)
    assert status == 1 and out == "" and "Traceback" not in err, err
    messages = err.splitlines()
    assert len(messages) == 3
    assert messages[2] == (f"fastmlp: error: {large}: not a readable .npy file: its header "
                           f"declares {28 * 10**10} bytes of values, but it holds 784")
    assert messages[0].startswith(f"fastmlp: error: {bomb}: too large to read: Image size "
                                  f"(900000000 pixels) exceeds limit")
    assert messages[1].startswith(f"fastmlp: error: {npy}: not a readable .npy file")


def test_without_pillow_the_message_says_how_to_install_it(capsys, model, images, tmp_path,
                                                           monkeypatch):
    png, large = tmp_path / "image.png", tmp_path / "large.npy"
    Image.fromarray(images[0]).save(png)
    np.save(large, np.kron(images[0], np.ones((2, 2), np.uint8)))
    monkeypatch.setitem(sys.modules, "PIL", None)  # as if Pillow were not installed
    status, out, err = run(capsys, "predict", model, png, large)
    assert status == 1 and out == "" and "Traceback" not in err
    assert err.count('needs Pillow: pip install "fastmlp[image]"') == 2


def test_predict_without_a_model_file(capsys, tmp_path):
    status, out, err = run(capsys, "predict", tmp_path / "missing.fastmlp", tmp_path / "x.png")
    assert status == 1 and "does not exist" in err and out == ""
    status, out, err = run(capsys, "predict", tmp_path, tmp_path / "x.png")
    assert status == 1 and f"model file {tmp_path} is a directory" in err and out == ""
    status, out, err = run(capsys, "predict", "/dev/null", tmp_path / "x.png")
    assert status == 1 and "model file /dev/null is not a regular file" in err


# -- train --resume ----------------------------------------------------------------------


def test_resume_with_the_optimizer_state_continues_bitwise(capsys, data_dir, tmp_path):  # noqa: F811
    train = ("train", "--data-dir", data_dir, "--hidden", "16", "--solver", "adam", "--lr",
             "0.003", "-q")
    straight, first, resumed = (tmp_path / n for n in ("straight.fastmlp", "first.fastmlp",
                                                       "resumed.fastmlp"))
    assert run(capsys, *train, "--epochs", "3", "--save", straight)[0] == 0
    assert run(capsys, *train, "--epochs", "2", "--save", first, "--save-optimizer-state")[0] == 0
    # The saved options are the defaults: only how many more epochs is given.
    status, _, err = run(capsys, "train", "--data-dir", data_dir, "--resume", first, "-q",
                         "--epochs", "1", "--save", resumed)
    assert status == 0 and err == ""
    (a, meta_a), (b, meta_b) = (fastmlp.load(p, return_metadata=True)
                                for p in (straight, resumed))
    for x, y in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_):
        np.testing.assert_array_equal(x, y)
    assert b.n_iter_ == 3 and meta_b["final"]["epochs_trained"] == 3
    assert [r["epoch"] for r in meta_b["history"]] == [1, 2, 3]
    assert meta_b["history"][-1]["loss"] == meta_a["history"][-1]["loss"]


def test_resume_without_the_optimizer_state_restarts_it_with_a_note(capsys, data_dir,  # noqa: F811
                                                                    tmp_path):
    first = tmp_path / "first.fastmlp"
    assert run(capsys, "train", "--data-dir", data_dir, *QUICK, "--solver", "adam",
               "--save", first)[0] == 0
    status, out, err = run(capsys, "train", "--data-dir", data_dir, "--resume", first,
                           "--epochs", "1")
    assert status == 0
    assert "saved without its optimizer state" in err and "starts afresh" in err
    assert f"Resuming {first}: 1 epoch trained so far" in out and "Epoch [2/2]" in out


def test_resume_takes_the_saved_seed_and_init_when_given_again(capsys, data_dir, tmp_path):  # noqa: F811
    first = tmp_path / "first.fastmlp"
    assert run(capsys, "train", "--data-dir", data_dir, *QUICK, "--seed", "3", "--init",
               "glorot", "--save", first)[0] == 0
    status, _, err = run(capsys, "train", "--data-dir", data_dir, "--resume", first,
                         "--seed", "3", "--init", "glorot", "--epochs", "1", "-q")
    assert status == 0, err
    status, _, err = run(capsys, "train", "--data-dir", data_dir, "--resume", first,
                         "--seed", "0", "-q")
    assert status == 1 and "(--seed 3 --init glorot); --seed 0 would have no effect" in err


@pytest.mark.parametrize("extra, message", [
    (("--hidden", "32"), "leave out the options that change it"),
    (("--normalize", "unit"), "--normalize symmetric"),
    (("--preset", "accurate"), "leave out --preset"),
    # these were silently ignored: the model keeps its own initialization and shuffling
    (("--seed", "5"), "--seed 5 would have no effect: leave out --seed"),
    (("--init", "glorot"), "--init glorot would have no effect: leave out --init"),
    (("--seed=7", "--init", "glorot"), "--seed 7 and --init glorot would have no effect"),
])
def test_resume_refuses_to_change_the_model(capsys, data_dir, tmp_path, extra, message):  # noqa: F811
    first = tmp_path / "first.fastmlp"
    assert run(capsys, "train", "--data-dir", data_dir, *QUICK, "--save", first)[0] == 0
    status, _, err = run(capsys, "train", "--data-dir", data_dir, "--resume", first, *extra)
    usage = extra[0] == "--preset"  # the command line alone is bad usage: status 2
    assert status == (2 if usage else 1) and message in err and "Traceback" not in err
    status, _, err = run(capsys, "train", "--data-dir", data_dir, "--resume",
                         tmp_path / "missing.fastmlp")
    assert status == 1 and "does not exist" in err


def fitted_in_python(data_dir, path, **params):  # noqa: F811 - a directory, not the fixture
    """Save, as fastmlp.save does from Python (no command-line config), a classifier fitted
    for one epoch on the training split of data_dir."""
    X = fastmlp.datasets.read_idx(data_dir / "train-images-idx3-ubyte.gz")
    y = fastmlp.datasets.read_idx(data_dir / "train-labels-idx1-ubyte.gz")
    params = {"max_iter": 1, "input_scaler": fastmlp.PixelScaler(), **params}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # one epoch: the ConvergenceWarning
        fastmlp.save(fastmlp.MLPImageClassifier(**params).fit(X.reshape(len(X), -1), y), path)
    return path


def test_resume_of_a_model_fitted_in_python_keeps_its_parameters(capsys, data_dir, tmp_path):  # noqa: F811
    # It went on with the command line's defaults: SGD, lr 0.01, batch 64, no alpha, and
    # the header said "pytorch initialization" for a glorot model.
    first = fitted_in_python(data_dir, tmp_path / "py.fastmlp")
    status, out, err = run(capsys, "train", "--data-dir", data_dir, "--resume", first,
                           "--epochs", "1", "--save", tmp_path / "next.fastmlp")
    assert status == 0, err
    assert "784-256(ReLU)-10, 203,530 parameters, glorot initialization" in out
    # batch_size "auto" on 600 samples is 600 // 16 = 37; random_state None is no seed.
    assert ("Training: Adam, lr 0.001, batch 37, 1 epoch, pixels scaled to [-1, 1], no "
            "integer seed, L2 alpha 0.0001\n") in out
    assert "Epoch [2/2]" in out
    model, meta = fastmlp.load(tmp_path / "next.fastmlp", return_metadata=True)
    assert (model.solver, model.learning_rate_init, model.alpha) == ("adam", 1e-3, 1e-4)
    assert model.batch_size == 37 and model.n_iter_ == 2 and model.random_state is None
    assert meta["config"]["seed"] is None and meta["final"]["epochs_trained"] == 2
    # Options given still change the training options, and the saved config is resumed.
    status, out, err = run(capsys, "train", "--data-dir", data_dir, "--resume",
                           tmp_path / "next.fastmlp", "--epochs", "1", "--solver", "sgd",
                           "--lr", "0.05", "--batch-size", "50")
    assert status == 0, err
    assert "Training: SGD (momentum 0.9, Nesterov), lr 0.05, batch 50, 1 epoch" in out
    assert "Epoch [3/3]" in out


@pytest.mark.parametrize("params, given, message", [
    ({"beta_1": 0.8}, (), "fitted with beta_1=0.8, which `fastmlp train` has no option to "
                          "keep: continue training it in Python"),
    ({"class_weight": "balanced", "shuffle": False}, (), "shuffle=False, class_weight="),
    ({"input_scaler": fastmlp.PixelScaler(max_value=16)}, (),
     "input_scaler=PixelScaler(max_value=16)"),
    ({"solver": "sgd", "learning_rate": "invscaling"}, (),
     "learning_rate='invscaling' (give --lr-schedule to change it)"),
    ({"hidden_layer_sizes": (4, 4), "dropout": (0.1, 0.2)}, (),
     "dropout=(0.1, 0.2) (give --dropout to change it)"),
    ({"early_stopping": True, "n_iter_no_change": np.inf}, (),
     "n_iter_no_change=inf (give --patience to change it)"),
    ({"solver": "sgd", "learning_rate": "invscaling"}, ("--lr-schedule", "constant"), None),
    ({"hidden_layer_sizes": (4, 4), "dropout": (0.1, 0.2)}, ("--dropout", "0.1"), None),
    ({"early_stopping": True, "n_iter_no_change": np.inf}, ("--patience", "3"), None),
    ({"early_stopping": True, "tol": 1e-3}, (), "fitted with tol=0.001, which"),
    ({"tol": 1e-3}, (), None),  # the command line trains without a stopping rule
], ids=["beta_1", "class_weight and shuffle", "max_value", "invscaling", "dropout per layer",
        "no patience", "schedule given", "dropout given", "patience given",
        "early-stopping tol", "tol without early stopping"])
def test_resume_refuses_what_the_command_line_cannot_keep(capsys, data_dir, tmp_path,  # noqa: F811
                                                          params, given, message):
    first = fitted_in_python(data_dir, tmp_path / "py.fastmlp", **{"hidden_layer_sizes": (8,),
                                                                    **params})
    status, out, err = run(capsys, "train", "--data-dir", data_dir, "--resume", first,
                           "--epochs", "1", "-q", *given)
    if message is None:
        assert status == 0, err
        return
    assert status == 1 and message in err and out == ""  # before any data is loaded
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("scaler, normalize, shown", [
    (fastmlp.PixelScaler(mode="standard"), "standard", "pixels standardized"),
    (None, "none", "raw pixels 0..255"),
    (fastmlp.PixelScaler(mode="unit"), "unit", "pixels scaled to [0, 1]"),
])
def test_resume_of_a_model_fitted_in_python_keeps_its_architecture_and_scaling(  # noqa: F811
        capsys, data_dir, tmp_path, scaler, normalize, shown):  # noqa: F811
    # Refused: "leave out the options that change it (... --normalize standard)", with
    # no option given.
    first = fitted_in_python(data_dir, tmp_path / "py.fastmlp", hidden_layer_sizes=(16, 8),
                             activation="tanh", input_scaler=scaler, random_state=3)
    status, out, err = run(capsys, "train", "--data-dir", data_dir, "--resume", first,
                           "--epochs", "1")
    assert status == 0, err
    assert "Model: 784-16(Tanh)-8(Tanh)-10" in out and shown in out and "seed 3" in out
    status, out, err = run(capsys, "train", "--data-dir", data_dir, "--resume", first,
                           "--hidden", "16,8", "--activation", "tanh", "--normalize",
                           normalize, "--seed", "3", "--epochs", "1", "-q")
    assert status == 0, err  # the model's own values may be given
    other = "symmetric" if normalize != "symmetric" else "unit"
    status, out, err = run(capsys, "train", "--data-dir", data_dir, "--resume", first,
                           "--normalize", other, "--epochs", "1")
    assert status == 1 and out == ""
    assert (f"(--hidden 16,8 --activation tanh --normalize {normalize}); leave out the "
            f"options that change it") in err


@pytest.mark.parametrize("edit, message", [
    (lambda m: m["config"].update(activation="bogus"), "config.activation must be one of"),
    (lambda m: m.update(history=None), "history must be a list of objects, got null"),
    (lambda m: m.clear() or m.update(x=1) or [1, 2], "it must be an object"),
    (lambda m: m.update(image_shape="abc"), "image_shape must be null or a list"),
    (lambda m: m.update(target_names=5), "target_names must be a list of strings"),
], ids=["activation", "history", "list", "image_shape", "target_names"])
def test_corrupt_metadata_is_one_line_for_resume_and_predict(capsys, data_dir, tmp_path,  # noqa: F811
                                                             images, edit, message):
    # KeyError, TypeError and AttributeError tracebacks, deep inside the commands.
    first = tmp_path / "first.fastmlp"
    assert run(capsys, "train", "--data-dir", data_dir, *QUICK, "--save", first)[0] == 0
    np.save(tmp_path / "image.npy", images[0])

    def corrupt(header):
        header["metadata"] = edit(header["metadata"]) or header["metadata"]

    rewrite(first, edit_header=corrupt)
    for argv in (("train", "--data-dir", data_dir, "--resume", first, "--epochs", "1"),
                 ("predict", first, tmp_path / "image.npy")):
        status, out, err = run(capsys, *argv)
        assert status == 1 and out == "" and "Traceback" not in err
        assert f"{first} has corrupt metadata: {message}" in err
        assert len(err.strip().splitlines()) == 1


def test_resume_of_a_saved_pipeline_says_how_to_continue_it(capsys, data_dir, tmp_path):  # noqa: F811
    X = fastmlp.datasets.read_idx(data_dir / "train-images-idx3-ubyte.gz")
    y = fastmlp.datasets.read_idx(data_dir / "train-labels-idx1-ubyte.gz")
    pipeline = make_pipeline(fastmlp.PixelScaler(), fastmlp.MLPImageClassifier(max_iter=1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # one epoch: the ConvergenceWarning
        fastmlp.save(pipeline.fit(X.reshape(len(X), -1), y), tmp_path / "p.fastmlp")
    status, out, err = run(capsys, "train", "--data-dir", data_dir, "--resume",
                           tmp_path / "p.fastmlp")
    assert status == 1 and out == "" and len(err.strip().splitlines()) == 1
    assert (f"{tmp_path / 'p.fastmlp'} holds a Pipeline; `fastmlp train --resume` continues "
            f"an MLPImageClassifier, which scales its own pixels: save "
            f"MLPImageClassifier(input_scaler=PixelScaler(...))") in err


def test_resume_of_a_model_of_an_unknown_data_set_asks_for_it(capsys, data_dir, tmp_path):  # noqa: F811
    first = tmp_path / "first.fastmlp"
    assert run(capsys, "train", "--data-dir", data_dir, *QUICK, "--save", first)[0] == 0
    rewrite(first, edit_header=lambda h: h["metadata"]["config"].update(dataset="cifar"))
    status, _, err = run(capsys, "train", "--data-dir", data_dir, "--resume", first)
    assert status == 1 and "trained on an unknown data set 'cifar'; pass --dataset" in err
    status, _, err = run(capsys, "train", "--data-dir", data_dir, "--resume", first,
                         "--dataset", "fashion-mnist", "--epochs", "1", "-q")
    assert status == 0, err


def test_a_pickled_model_with_corrupt_metadata_is_refused(capsys, data_dir, tmp_path):  # noqa: F811
    import joblib

    first = tmp_path / "first.fastmlp"
    assert run(capsys, "train", "--data-dir", data_dir, *QUICK, "--save", first)[0] == 0
    model, metadata = fastmlp.load(first, return_metadata=True)
    old = tmp_path / "old.joblib"
    joblib.dump({"model": model, **metadata, "target_names": 5}, old)
    status, out, err = run(capsys, "predict", old, tmp_path / "x.npy", "--allow-pickle")
    assert status == 1 and "corrupt metadata: target_names must be a list of strings" in err
    joblib.dump({"model": model, **metadata, "image_shape": (28, 28)}, old)  # a tuple is fine
    np.save(tmp_path / "x.npy", np.zeros((28, 28), np.uint8))
    status, out, err = run(capsys, "predict", old, tmp_path / "x.npy", "--allow-pickle")
    assert status == 0, err
