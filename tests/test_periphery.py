"""The package's small shared helpers: the one progress bar, the machine record, the
version and license metadata, and the atomic file writer."""

import importlib.metadata
import os
import re
import sys
import warnings

import numpy as np
import pytest

import fastmlp
from fastmlp import _atomic, _machine, _progress


@pytest.fixture
def bar(capsys, monkeypatch):
    """What the progress bar wrote to stderr since the last call, on a terminal wide
    enough for the full 30-character bar (the layout depends on the width)."""
    monkeypatch.setenv("COLUMNS", "200")
    _progress.clear_line()
    capsys.readouterr()
    yield lambda: capsys.readouterr().err
    _progress.clear_line()


def test_training_and_download_draw_the_same_bar(bar):
    _progress.draw_bar(2, 5, 300, 600, 0.5, 0.875, 1.25)
    train = bar()
    assert train == ("\rEpoch 2/5 [" + "#" * 15 + "." * 15 + "] 300/600  loss 0.5000  "
                     "acc 87.50%  1.2s\033[K")
    _progress.draw_transfer("t10k-labels-idx1-ubyte.gz", 3_000_000, 4_000_000)
    download = bar()
    assert download.startswith("\rt10k-labels-idx1-ubyte.gz: [" + "#" * 22 + "." * 8 + "]")
    assert download.endswith("   3.0/4.0 MB\033[K")
    _progress.draw_transfer("x", 2_500_000, None)  # size unknown: no bar
    assert bar() == "\rx:    2.5 MB\033[K"


def test_the_bar_is_full_at_and_past_the_end(bar):
    _progress.draw_transfer("x", 5, 4)  # a server that sent more than it announced
    assert "[" + "#" * 30 + "]" in bar()
    _progress.draw_bar(1, 1, 0, 0, 0.0, 0.0, 0.0)  # nothing to do
    assert "[" + "." * 30 + "]" in bar()


def test_clear_line_and_end_line_act_only_on_a_shown_bar(bar):
    _progress.clear_line()
    _progress.end_line()
    assert bar() == ""
    _progress.draw_transfer("x", 1, 2)
    _progress.end_line()
    assert bar().endswith("MB\033[K\n")
    _progress.end_line()  # the bar is no longer shown
    assert bar() == ""
    _progress.draw_bar(1, 1, 1, 2, 0.0, 0.0, 0.0)
    _progress.clear_line()
    assert bar().endswith("\r\033[K")


def _redraws(err):
    """The lines a terminal shows, one per redraw: the text between carriage returns."""
    assert "\n" not in err
    return [part.replace("\033[K", "") for part in err.split("\r") if part]


def _draw_extremes():
    """Training and download bars with the widest figures they print."""
    for done in (0, 30_000, 60_000):
        _progress.draw_bar(100, 100, done, 60_000, 12.3456, 1.0, 12345.6)
        _progress.draw_transfer("train-images-idx3-ubyte.gz", done * 441, 26_421_880)
    _progress.draw_transfer("train-images-idx3-ubyte.gz", 9_999_999, None)


@pytest.mark.parametrize("columns", [60, 80, 41, 20, 1])
def test_every_redraw_fits_the_terminal(bar, monkeypatch, columns):
    monkeypatch.setenv("COLUMNS", str(columns))
    _draw_extremes()
    lines = _redraws(bar())
    assert len(lines) == 7
    # One column stays free: a line reaching the last one wraps on some terminals.
    assert max(map(len, lines)) <= columns - 1
    if columns >= 80:  # the figures fit, and a shrunk bar with them
        assert all(line.endswith(("12345.6s", " MB")) for line in lines)
        assert re.search(r"^Epoch 100/100 \[#{5,}\] 60000/60000", lines[4])
    elif columns > 1:  # every line starts as it should, however much of it is cut
        assert all(line.startswith(("Epoch 100/100"[:columns - 1], "train-images"[:columns - 1]))
                   for line in lines)


def test_bar_shrinks_before_anything_else_is_cut(bar, monkeypatch):
    monkeypatch.setenv("COLUMNS", "60")
    _progress.draw_bar(3, 20, 300, 600, 0.5, 0.875, 1.25)
    line, = _redraws(bar())
    # 59 columns minus the 48 of the figures: a 7-character bar, 3/7 of it done.
    assert line == "Epoch 3/20 [###....] 300/600  loss 0.5000  acc 87.50%  1.2s"
    assert len(line) == 59
    monkeypatch.setenv("COLUMNS", "55")  # room for a bar of 3: none, the figures stay
    _progress.draw_bar(3, 20, 300, 600, 0.5, 0.875, 1.25)
    assert _redraws(bar()) == ["Epoch 3/20 300/600  loss 0.5000  acc 87.50%  1.2s"]


def test_terminal_width_comes_from_columns_then_the_terminal(monkeypatch):
    monkeypatch.setenv("COLUMNS", "61")
    assert _progress.terminal_columns() == 61
    for unusable in ("", "0", "wide"):  # ignored, as shutil ignores them
        monkeypatch.setenv("COLUMNS", unusable)
        monkeypatch.setattr(_progress.shutil, "get_terminal_size",
                            lambda: os.terminal_size((47, 10)))
        assert _progress.terminal_columns() == 47  # stderr is captured: not a terminal


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_estimator_verbose_redraws_fit_a_60_column_terminal(bar, monkeypatch, rng):
    import fastmlp.estimator as est

    monkeypatch.setenv("COLUMNS", "60")
    monkeypatch.setattr(_progress, "stderr_is_terminal", lambda: True)
    X, y = rng.normal(size=(3000, 20)), rng.integers(0, 3, size=3000)
    est.MLPImageClassifier(hidden_layer_sizes=(8,), max_iter=3, batch_size=32,
                           verbose=True).fit(X, y)
    lines = [line for line in bar().replace("\n", "\r").split("\r") if line.strip()]
    drawn = [line.replace("\033[K", "") for line in lines if line.startswith("Epoch")]
    assert len(drawn) >= 3 and max(map(len, drawn)) <= 59
    assert "[" in drawn[-1] and "3000/3000" in drawn[-1]


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_estimator_verbose_in_a_notebook_shows_tqdm(monkeypatch, rng):
    """In a Jupyter kernel (stderr no terminal) each epoch gets a tqdm.auto bar that counts
    every sample and is closed at the epoch's end; without tqdm there is none, and fit
    works as before."""
    import types

    import fastmlp.estimator as est

    bars = []

    class Recorder:
        def __init__(self, total, desc, unit, leave):
            self.total, self.desc, self.n, self.closed, self.postfix = total, desc, 0, False, ""
            bars.append(self)

        def update(self, k):
            self.n += k

        def set_postfix_str(self, text, refresh):
            self.postfix = text

        def close(self):
            self.closed = True

    monkeypatch.setattr(_progress, "stderr_is_terminal", lambda: False)
    monkeypatch.setattr(_progress, "in_notebook", lambda: True)
    monkeypatch.setitem(sys.modules, "tqdm.auto", types.SimpleNamespace(tqdm=Recorder))
    X, y = rng.normal(size=(600, 10)), rng.integers(0, 3, size=600)
    est.MLPImageClassifier(hidden_layer_sizes=(8,), max_iter=2, batch_size=32,
                           verbose=True).fit(X, y)
    assert [b.desc for b in bars] == ["Epoch 1/2", "Epoch 2/2"]
    assert all(b.total == b.n == 600 and b.closed and "loss " in b.postfix for b in bars)
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)  # tqdm not installed
    assert _progress.epoch_progress(1, 2, 600) is None
    est.MLPImageClassifier(hidden_layer_sizes=(8,), max_iter=1, verbose=True).fit(X, y)
    assert len(bars) == 2


def test_in_notebook_is_false_outside_a_kernel():
    assert _progress.in_notebook() is False


def test_machine_info():
    info = _machine.machine_info()
    assert info["fastmlp"] == fastmlp.__version__
    assert info["fastmlp_isa"] == fastmlp.active_isa()
    assert info["fastmlp_detected_isa"] == fastmlp.detected_isa()
    assert 1 <= info["cores"] <= (os.cpu_count() or 1) and info["cpu"]
    assert set(info["cpu_features"]) <= set(_machine._FEATURES)
    for lib in info["blas"]:  # which package ships it, never where this machine keeps it
        assert lib["library"] is None or not os.path.isabs(lib["library"])
    assert all(isinstance(n, int) for n in info["numpy_blas_threads"])


def test_cpuinfo_fields_and_features(tmp_path, monkeypatch):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: Test CPU @ 3.0GHz\n"
                       "flags\t\t: fpu sse2 avx2 fma avx512f amx_tile amx_bf16 avx512_bf16\n\n"
                       "processor\t: 1\nmodel name\t: Test CPU @ 3.0GHz\n")
    monkeypatch.setattr(_machine, "_CPUINFO", str(cpuinfo))
    assert _machine.cpu_model() == "Test CPU @ 3.0GHz"
    assert _machine.cpu_features() == ["avx2", "fma", "avx512f", "avx512_bf16", "amx_tile",
                                       "amx_bf16"]
    cpuinfo.write_text("processor\t: 0\ncpu family\t: 26\nmodel\t\t: 2\n"
                       "model name\t: AMD EPYC\n")
    assert _machine.cpu_model() == "AMD EPYC (family 26, model 2)"
    monkeypatch.setattr(_machine, "_CPUINFO", str(tmp_path / "missing"))
    assert _machine.cpu_features() == [] and _machine.cpu_model()


def test_library_name_keeps_the_folder_and_file_only():
    assert _machine.library_name("/opt/x/numpy.libs/libopenblas.so") == os.path.join(
        "numpy.libs", "libopenblas.so")
    assert _machine.library_name(None) is None and _machine.library_name("") is None


def test_version_comes_from_the_distribution():
    assert fastmlp.__version__ == importlib.metadata.version("fastmlp")
    assert re.fullmatch(r"\d+\.\d+\.\d+.*", fastmlp.__version__)


def test_the_wheel_ships_the_license():
    meta = importlib.metadata.metadata("fastmlp")
    assert meta["License-Expression"] == "BSD-3-Clause"
    assert "LICENSE" in meta.get_all("License-File", [])
    files = [f for f in importlib.metadata.files("fastmlp") if f.name == "LICENSE"]
    assert files, "LICENSE is not in the installed distribution"
    text = files[0].read_text()
    assert "Redistribution and use in source and binary forms" in text
    assert "the fastmlp developers" in text


@pytest.mark.parametrize("failure", [OSError("disk full"), KeyboardInterrupt()])
def test_staged_files_land_only_on_commit(tmp_path, failure):
    first, second = _atomic.StagedFile(tmp_path / "a"), _atomic.StagedFile(tmp_path / "b")
    with first.write() as f:
        f.write(b"one")
    with pytest.raises(type(failure)), second.write() as f:
        f.write(b"two")
        raise failure
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        os.path.basename(s.tmp) for s in (first, second))
    assert all(p.name.startswith(".") and p.name.endswith(".part") for p in tmp_path.iterdir())
    first.discard()
    second.discard()
    second.discard()  # twice, or never created: no error
    assert list(tmp_path.iterdir()) == []
    staged = _atomic.StagedFile(tmp_path / "c")
    with staged.write() as f:
        f.write(b"three")
    staged.commit()
    assert [p.name for p in tmp_path.iterdir()] == ["c"]
    assert (tmp_path / "c").read_bytes() == b"three"


# --- warnings name the user's line --------------------------------------------------------

def _warned_here(category, call):
    """The warning of this category that call() raises, checked to name this file."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        call()
    mine = [w for w in caught if issubclass(w.category, category)]
    assert mine, [str(w.message) for w in caught]
    assert {w.filename for w in mine} == {__file__}, [f"{w.filename}:{w.lineno}" for w in mine]
    return mine[0]


def test_warnings_point_at_the_callers_line(rng, monkeypatch):
    # A fixed stacklevel named fastmlp/_input.py or fastmlp/estimator.py for the
    # warnings of an input_scaler, of bfloat16 without hardware, and of ConvergenceWarning.
    from sklearn.datasets import load_digits
    from sklearn.exceptions import ConvergenceWarning

    from fastmlp import MLPImageClassifier, PixelRangeWarning, PixelScaler, PrecisionWarning

    X, y = load_digits(return_X_y=True)
    monkeypatch.setattr(fastmlp._core, "bf16_hardware", lambda: False)
    clf = MLPImageClassifier((8,), max_iter=1, input_scaler=PixelScaler(),
                             precision="bfloat16", random_state=0)
    for category in (PixelRangeWarning, PrecisionWarning, ConvergenceWarning):
        _warned_here(category, lambda: clf.fit(X, y))
    _warned_here(PixelRangeWarning, lambda: PixelScaler().fit(X))
    _warned_here(PixelRangeWarning, lambda: PixelScaler().fit_transform(X))
    small = MLPImageClassifier((8,), batch_size=500, random_state=0)
    _warned_here(UserWarning, lambda: small.partial_fit(X[:100] / 16, y[:100], np.arange(10)))

    def interrupt(model, info):
        raise KeyboardInterrupt

    _warned_here(fastmlp.TrainingInterruptedWarning,
                 lambda: MLPImageClassifier((8,)).fit(X / 16, y, callback=interrupt))


def test_warnings_under_a_pipeline_point_outside_fastmlp():
    # scikit-learn's frames between the caller and fastmlp count as the caller's.
    from sklearn.datasets import load_digits
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.pipeline import make_pipeline

    from fastmlp import MLPImageClassifier, PixelRangeWarning, PixelScaler

    X, y = load_digits(return_X_y=True)
    model = make_pipeline(PixelScaler(), MLPImageClassifier((8,), max_iter=1))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(X, y)
    assert {w.category for w in caught} == {PixelRangeWarning, ConvergenceWarning}
    package = os.path.dirname(fastmlp.__file__) + os.sep
    assert not any(w.filename.startswith(package) for w in caught), [
        f"{w.filename}:{w.lineno}" for w in caught]
