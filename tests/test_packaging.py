"""What a user's tools see of the package: metadata, the version, type hints, docstrings
checked by numpydoc, the names dir() lists."""

import importlib.metadata
import inspect
import os
import pathlib
import re
import subprocess
import sys
import textwrap
import typing

import pytest

import fastmlp
from fastmlp import MLPImageClassifier, PixelScaler, datasets, io

ROOT = pathlib.Path(__file__).resolve().parent.parent

# -- metadata and the version ------------------------------------------------------------


def test_version_has_one_home():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in project["project"] and "version" in project["project"]["dynamic"]
    source = project["tool"]["scikit-build"]["metadata"]["version"]["input"]
    assert (ROOT / source).read_text().count("__version__ = ") == 1
    from fastmlp import _version

    # The installed distribution was built from that file, and fastmlp reads the same one.
    assert fastmlp.__version__ == _version.__version__ == importlib.metadata.version("fastmlp")


def test_classifiers_cover_the_running_python_and_typing():
    meta = importlib.metadata.metadata("fastmlp")
    classifiers = meta.get_all("Classifier")
    running = f"Programming Language :: Python :: {sys.version_info[0]}.{sys.version_info[1]}"
    assert running in classifiers
    assert "Typing :: Typed" in classifiers
    # PEP 639: the SPDX License-Expression replaces license classifiers, never both.
    assert meta["License-Expression"] and not [c for c in classifiers if c.startswith("License")]
    lowest = min(tuple(map(int, c.rsplit(" ", 1)[1].split("."))) for c in classifiers
                 if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c))
    assert meta["Requires-Python"] == f">={lowest[0]}.{lowest[1]}"


def test_py_typed_ships():
    files = [str(f) for f in importlib.metadata.files("fastmlp")]
    assert "fastmlp/py.typed" in files


# -- type hints on the public API --------------------------------------------------------

PUBLIC_FUNCTIONS = [
    MLPImageClassifier.__init__, MLPImageClassifier.fit, MLPImageClassifier.partial_fit,
    MLPImageClassifier.predict, MLPImageClassifier.predict_proba,
    MLPImageClassifier.predict_log_proba, MLPImageClassifier.summary, PixelScaler.__init__,
    PixelScaler.fit, PixelScaler.transform, PixelScaler.inverse_transform,
    datasets.load_fashion_mnist, datasets.load_mnist, datasets.read_idx, datasets.write_idx,
    io.save, io.load,
]


@pytest.mark.parametrize("function", PUBLIC_FUNCTIONS, ids=lambda f: f.__qualname__)
def test_public_signatures_are_annotated(function):
    signature = inspect.signature(function)
    missing = [name for name, p in signature.parameters.items()
               if name != "self" and p.annotation is inspect.Parameter.empty]
    assert not missing and signature.return_annotation is not inspect.Signature.empty
    if sys.version_info >= (3, 10):  # `int | None` evaluates from Python 3.10 on
        # Imported by datasets and io only when type checking.
        from sklearn.pipeline import Pipeline
        from sklearn.utils import Bunch

        hints = typing.get_type_hints(function, localns={
            "Bunch": Bunch, "Pipeline": Pipeline, "MLPImageClassifier": MLPImageClassifier})
        assert set(hints) - {"self"} == {*signature.parameters, "return"} - {"self"}


def test_type_checkers_see_the_public_api(tmp_path):
    # What mypy makes of a user's code: the names fastmlp serves lazily, fit through its
    # validating decorator, and load, have their types, and a wrong call is an error.
    pytest.importorskip("mypy", reason="mypy is not installed (it is in the test extra)")
    snippet = tmp_path / "snippet.py"
    snippet.write_text(textwrap.dedent("""\
        import numpy as np

        import fastmlp
        from fastmlp import MLPImageClassifier

        X, y = np.zeros((4, 2)), np.array([0, 1, 0, 1])
        reveal_type(MLPImageClassifier)
        reveal_type(MLPImageClassifier().fit)
        reveal_type(fastmlp.load)
        MLPImageClassifier().fit(X, y, bogus=1)
        fastmlp.MLPImageClasifier
        """))
    config = tmp_path / "mypy.ini"  # mypy's defaults, whatever configuration is around
    config.write_text("[mypy]\n")
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(config), "--no-error-summary",
         "--ignore-missing-imports", "--cache-dir", str(tmp_path / "cache"), str(snippet)],
        capture_output=True, text=True, cwd=tmp_path, timeout=300)
    lines = done.stdout.splitlines()
    revealed = [line.split("Revealed type is ", 1)[1] for line in lines
                if "Revealed type is " in line]
    assert len(revealed) == 3 and '"Any"' not in revealed, done.stdout + done.stderr
    assert revealed[0].startswith('"def (hidden_layer_sizes: ')
    assert revealed[0].endswith('-> fastmlp.estimator.MLPImageClassifier"')
    assert revealed[1].startswith('"def (X: ')
    assert revealed[1].endswith('-> fastmlp.estimator.MLPImageClassifier"')
    assert revealed[2].startswith('"Overload(def (path: ')
    errors = [line for line in lines if ": error: " in line]
    assert len(errors) == 2 and 'Unexpected keyword argument "bogus"' in errors[0], done.stdout
    assert 'has no attribute "MLPImageClasifier"' in errors[1], done.stdout
    assert done.returncode == 1


def test_the_package_itself_type_checks(tmp_path):
    # The installed package, with its core's stubs, under mypy's defaults: the types it
    # declares agree with what its own code does with them.
    pytest.importorskip("mypy", reason="mypy is not installed (it is in the test extra)")
    config = tmp_path / "mypy.ini"
    config.write_text("[mypy]\n")
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(config), "--ignore-missing-imports",
         "--cache-dir", str(tmp_path / "cache"), "-p", "fastmlp"],
        capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Success: no issues found" in done.stdout


# -- numpydoc ----------------------------------------------------------------------------

# Parameters documented exactly (PR01-PR10), a described return value (RT01, RT03-RT05),
# a one-line summary sentence (SS01-SS06) and well-formed sections (GL). Left out: the
# extended summary, See Also and Examples (ES01, SA01, EX01), which not every method needs,
# and RT02, which forbids naming the return value as scikit-learn's docstrings do.
NUMPYDOC_CODES = {
    "GL02", "GL03", "GL05", "GL06", "GL07", "GL08", "GL09", "GL10",
    "SS01", "SS02", "SS03", "SS04", "SS05", "SS06",
    "PR01", "PR02", "PR03", "PR04", "PR05", "PR06", "PR07", "PR08", "PR09", "PR10",
    "RT01", "RT03", "RT04", "RT05",
}


@pytest.mark.parametrize("name", [
    *(f"fastmlp.MLPImageClassifier.{m}" for m in
      ("fit", "predict", "predict_proba", "predict_log_proba", "partial_fit", "summary")),
    *(f"fastmlp.PixelScaler.{m}" for m in ("fit", "transform", "inverse_transform")),
])
def test_numpydoc_sections_complete(name):
    validate = pytest.importorskip("numpydoc.validate")
    result = validate.validate(name)
    errors = [(code, message) for code, message in result["errors"]
              if code in NUMPYDOC_CODES]
    assert errors == []
    # A backslash continuing a line of the docstring leaves its indentation inside the
    # line in help(): numpydoc does not see it.
    assert re.findall(r"\S {3,}\S", result["docstring"]) == []


def _summary_only(X):
    """Most probable class of each sample."""  # predict's docstring before these checks
    return X


def test_numpydoc_check_can_fail(monkeypatch):
    validate = pytest.importorskip("numpydoc.validate")
    monkeypatch.setattr(fastmlp, "_summary_only", _summary_only, raising=False)
    codes = {code for code, _ in validate.validate("fastmlp._summary_only")["errors"]}
    assert {"PR01", "RT01"} <= codes & NUMPYDOC_CODES


# -- dir() and the lazy names ------------------------------------------------------------


def test_dir_lists_the_lazy_names_before_they_load():
    # A fresh interpreter: nothing but `import fastmlp` has run.
    code = ("import sys, fastmlp; print(sorted(n for n in ('datasets', 'kernels', "
            "'preprocessing', 'estimator') if f'fastmlp.{n}' in sys.modules)); "
            "print(' '.join(dir(fastmlp)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.splitlines()
    assert out[0] == "[]"  # still lazy
    listed = set(out[1].split())
    assert {"MLPImageClassifier", "PixelScaler", "datasets", "kernels", "preprocessing",
            *fastmlp.__all__} <= listed


def test_every_public_name_in_dir_resolves():
    for name in dir(fastmlp):
        if not name.startswith("_"):
            assert getattr(fastmlp, name) is not None
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        fastmlp.nope  # noqa: B018


# -- estimator tags ----------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")  # 2 epochs
def test_three_d_array_tag_matches_what_fit_accepts():
    from sklearn.datasets import load_digits
    from sklearn.utils import get_tags

    assert get_tags(MLPImageClassifier()).input_tags.three_d_array is True
    digits = load_digits()
    params = {"hidden_layer_sizes": (8,), "max_iter": 2, "random_state": 0}
    images = MLPImageClassifier(**params).fit(digits.images / 16, digits.target)
    rows = MLPImageClassifier(**params).fit(digits.data / 16, digits.target)
    # (n, 8, 8) images are the rows (n, 64): the same model, the same predictions.
    assert (images.predict_proba(digits.images / 16) == rows.predict_proba(digits.data / 16)).all()


# -- the kernel-choice variables -----------------------------------------------------------


def _import_warnings(**env):
    code = "import warnings; warnings.simplefilter('always'); import fastmlp"
    done = subprocess.run([sys.executable, "-c", code], env={**os.environ, **env},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stderr


@pytest.mark.parametrize("variable, active", [("FASTMLP_ISA", fastmlp.active_isa),
                                              ("FASTMLP_BF16_KERNEL",
                                               fastmlp._core.active_bf16_kernel)])
def test_an_ignored_kernel_variable_warns_at_import(variable, active):
    message = _import_warnings(**{variable: "bogus"})
    assert f"RuntimeWarning: {variable}='bogus' was ignored" in message
    assert f"fastmlp uses {active()!r}" in message
    # A name the CPU runs lowers the choice silently; so does the variable unset.
    assert _import_warnings(**{variable: "generic" if variable == "FASTMLP_ISA"
                               else "reference"}) == ""
    assert "ignored" not in _import_warnings()
