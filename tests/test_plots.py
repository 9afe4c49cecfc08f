"""The training plots of ``fastmlp train --plots``: epoch ticks, the validation curve and
the restored epoch when early stopping is on. Drawn with matplotlib's Agg backend."""

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402

from fastmlp import _plots  # noqa: E402

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _rows(rng, n_epochs, validation):
    """Per-epoch records shaped like the command line's."""
    rows = []
    for epoch in range(1, n_epochs + 1):
        row = {"epoch": epoch, "loss": rng.uniform(0.2, 2), "accuracy": rng.uniform(),
               "test_loss": rng.uniform(0.2, 2), "test_accuracy": rng.uniform()}
        if validation:
            row.update(val_loss=rng.uniform(0.2, 2), val_accuracy=rng.uniform())
        rows.append(row)
    return rows


def _drawn(fig):
    """The figure's only axes, after drawing it (ticks are placed at draw time)."""
    FigureCanvasAgg(fig)
    fig.canvas.draw()
    (ax,) = fig.axes
    return ax


def _visible_ticks(ax):
    low, high = ax.get_xlim()
    return [t for t in ax.get_xticks() if low <= t <= high]


@pytest.mark.parametrize("n_epochs", [21, 23, 37, 64, 150])
def test_epoch_ticks_are_integers_past_20_epochs(rng, n_epochs):
    ax = _drawn(_plots._curve(_rows(rng, n_epochs, False), "loss", "Loss", 1, "t"))
    ticks = _visible_ticks(ax)
    # 21 epochs once gave ticks at 2.5, 7.5, ...: half epochs do not exist; nor does
    # epoch 0, which the axis margin showed.
    assert len(ticks) >= 3 and all(float(t).is_integer() for t in ticks)
    assert 1 <= min(ticks) and max(ticks) <= n_epochs


def test_every_epoch_is_a_tick_up_to_20(rng):
    ax = _drawn(_plots._curve(_rows(rng, 20, False), "loss", "Loss", 1, "t"))
    assert list(ax.get_xticks()) == list(range(1, 21))


@pytest.mark.parametrize("key, scale", [("loss", 1), ("accuracy", 100)])
def test_validation_curve_and_restored_epoch_are_drawn(rng, key, scale):
    rows = _rows(rng, 6, True)
    ax = _drawn(_plots._curve(rows, key, key.title(), scale, "t", restored=4))
    lines = {line.get_label(): line for line in ax.get_lines()}
    validation = lines["validation (after epoch)"]
    assert np.allclose(validation.get_ydata(), [scale * r[f"val_{key}"] for r in rows])
    marker = lines["restored weights (epoch 4)"]
    assert list(marker.get_xdata()) == [4, 4]  # a vertical line at the epoch
    legend = [text.get_text() for text in ax.get_legend().get_texts()]
    assert "validation (after epoch)" in legend and "restored weights (epoch 4)" in legend


def test_without_early_stopping_no_validation_curve_nor_marker(rng):
    ax = _drawn(_plots._curve(_rows(rng, 6, False), "loss", "Loss", 1, "t"))
    assert [line.get_label() for line in ax.get_lines()] == [
        "train (during epoch)", "test (after epoch)"]


def test_restored_epoch_is_the_first_best_validation_epoch():
    accuracies, losses = [0.5, 0.8, 0.7, 0.8], [1.0, 0.6, 0.4, 0.4]
    rows = [{"epoch": e, "val_accuracy": a, "val_loss": v}
            for e, a, v in zip(range(3, 7), accuracies, losses)]  # epochs 3..6: warm start
    assert _plots.restored_epoch(rows) == 4  # ties go to the first, as in the estimator
    assert _plots.restored_epoch(rows, "loss") == 5
    assert _plots.restored_epoch([{"epoch": 1, "loss": 1.0}]) is None
    assert _plots.restored_epoch([]) is None


def test_write_plots_marks_the_epoch_early_stopping_restored(rng, tmp_path, monkeypatch):
    rows = _rows(rng, 25, True)
    drawn = []
    curve = _plots._curve

    def spy(rows, key, label, scale, title, restored=None):
        drawn.append((key, restored))
        return curve(rows, key, label, scale, title, restored)

    monkeypatch.setattr(_plots, "_curve", spy)
    y = rng.integers(0, 3, size=40)
    paths = _plots.write_plots(tmp_path, rows, y, y[::-1], rng.integers(0, 256, (40, 8, 8)),
                               ["a", "b", "c"], "t")
    best = rows[int(np.argmax([r["val_accuracy"] for r in rows]))]["epoch"]
    assert drawn == [("loss", best), ("accuracy", best)]
    assert all(p.read_bytes()[:8] == PNG_SIGNATURE for p in paths)
