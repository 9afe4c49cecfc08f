"""scikit-learn's own MLP tests as a yardstick of fastmlp's compatibility.

The installed scikit-learn's ``sklearn/neural_network/tests/test_mlp.py`` runs in a
subprocess with ``MLPImageClassifier`` in place of ``MLPClassifier`` (see
``tests/sklearn_mlp_plugin.py``; cases of the regressor alone are deselected). Every
classifier case must pass except those in ``EXPECTED_FAILURES``, each with the reason
it cannot: something fastmlp leaves out, or a deliberate difference that the estimator's
docstring documents. A listed case that starts passing fails this test too, so the
table stays true. The table was made with scikit-learn ``TABLE_VERSION``; under another
version only the cases present in both are compared.

Run alone with ``python -m pytest -q -p no:cacheprovider tests/test_sklearn_mlp_suite.py``.
"""

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

sklearn = pytest.importorskip("sklearn")
UPSTREAM = "sklearn.neural_network.tests.test_mlp"

TABLE_VERSION = "1.9.1"

LBFGS = "left out: the lbfgs solver"
MULTILABEL = "left out: multilabel targets"
SPARSE = "left out: sparse input"
FLOAT64 = "left out: float64 weights"
DOCUMENTED = "deliberate difference, documented"

# case -> (category, why); the categories above.
EXPECTED_FAILURES = {
    "test_gradient": (LBFGS, "checks _loss_grad_lbfgs against finite differences"),
    "test_lbfgs_classification[X0-y0]": (LBFGS, "solver='lbfgs'"),
    "test_lbfgs_classification[X1-y1]": (LBFGS, "solver='lbfgs'"),
    "test_lbfgs_classification_maxfun[X0-y0]": (LBFGS, "max_fun is lbfgs's parameter"),
    "test_lbfgs_classification_maxfun[X1-y1]": (LBFGS, "max_fun is lbfgs's parameter"),
    "test_mlp_warm_start_no_convergence[lbfgs-MLPImageClassifier]": (LBFGS, "solver='lbfgs'"),
    "test_partial_fit_errors": (LBFGS, "expects solver='lbfgs' to hide partial_fit"),
    "test_warm_start": (LBFGS, "fits with solver='lbfgs' (fastmlp raises the same "
                               "warm_start class error with sgd and adam)"),
    "test_multilabel_classification": (MULTILABEL, "multilabel y"),
    "test_predict_proba_multilabel": (MULTILABEL, "multilabel y"),
    "test_sparse_matrices[csr_matrix]": (SPARSE, "sparse X"),
    "test_sparse_matrices[csr_array]": (SPARSE, "sparse X"),
    "test_mlp_param_dtypes[MLPImageClassifier-float64]": (FLOAT64, "float64 coefs_"),
    "test_fit": (DOCUMENTED, "continues a hand-built network with one logistic output "
                             "unit; binary problems end in a 2-unit softmax"),
    "test_warm_start_full_iteration[MLPImageClassifier]": (
        DOCUMENTED, "n_iter_ counts the epochs of every warm-start fit"),
    "test_mlp_warm_start_no_convergence[sgd-MLPImageClassifier]": (
        DOCUMENTED, "n_iter_ counts the epochs of every warm-start fit"),
    "test_mlp_warm_start_no_convergence[adam-MLPImageClassifier]": (
        DOCUMENTED, "n_iter_ counts the epochs of every warm-start fit"),
    "test_preserve_feature_names[MLPImageClassifier]": (
        DOCUMENTED, "fits y of a single class; fastmlp needs two classes or more"),
}
CATEGORIES = {LBFGS, MULTILABEL, SPARSE, FLOAT64, DOCUMENTED}
# Classifier cases of scikit-learn TABLE_VERSION, to notice a plugin that deselects too much.
N_CASES = 37


def run_upstream(tmp_path):
    """{case: {"outcome", "message"}} of the installed scikit-learn's MLP tests run
    against MLPImageClassifier, in a subprocess outside this project's pytest settings."""
    outcomes = tmp_path / "outcomes.json"
    env = {**os.environ, "FASTMLP_SKLEARN_OUTCOMES": str(outcomes),
           "PYTHONPATH": os.pathsep.join(
               [str(Path(__file__).parent), *filter(None, [os.environ.get("PYTHONPATH")])])}
    cmd = [sys.executable, "-m", "pytest", "-p", "sklearn_mlp_plugin", "-p", "no:cacheprovider",
           "--rootdir", str(tmp_path), "-c", os.devnull, "-q", "--pyargs", UPSTREAM]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=1800)
    if not outcomes.exists():
        pytest.fail(f"the upstream run reported nothing:\n{proc.stdout[-3000:]}\n"
                    f"{proc.stderr[-3000:]}")
    return json.loads(outcomes.read_text(encoding="utf-8"))


def test_expected_failures_table_is_well_formed():
    for case, (category, why) in EXPECTED_FAILURES.items():
        assert category in CATEGORIES and why, case


def test_readme_states_the_table():
    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    readme = " ".join(readme.split())
    n_fail = len(EXPECTED_FAILURES)
    left_out = sum(c != DOCUMENTED for c, _ in EXPECTED_FAILURES.values())
    assert (f"{N_CASES - n_fail} of its {N_CASES} classifier cases pass under scikit-learn "
            f"{TABLE_VERSION}. Of the {n_fail} that fail, {left_out} need") in readme
    counts = {c: sum(c == k for k, _ in EXPECTED_FAILURES.values()) for c in CATEGORIES}
    stated = re.search(r"the `lbfgs` solver \((\d+) cases\), multilabel targets \((\d+)\), "
                       r"sparse input \((\d+)\), float64 weights \((\d+)\) — and (\d+) meet",
                       readme)
    assert stated is not None
    assert [int(v) for v in stated.groups()] == [
        counts[LBFGS], counts[MULTILABEL], counts[SPARSE], counts[FLOAT64], counts[DOCUMENTED]]


def test_sklearn_mlp_tests_pass_outside_the_expected_failures(tmp_path):
    try:
        found = importlib.util.find_spec(UPSTREAM) is not None
    except ModuleNotFoundError:  # sklearn.neural_network.tests itself is missing
        found = False
    if not found:  # some packagers strip the tests
        pytest.skip(f"this scikit-learn ships without {UPSTREAM}")
    outcomes = run_upstream(tmp_path)
    same_version = sklearn.__version__ == TABLE_VERSION
    if same_version:
        assert len(outcomes) == N_CASES, sorted(outcomes)
        assert set(EXPECTED_FAILURES) <= set(outcomes)
    failed = {case: o["message"] for case, o in outcomes.items()
              if o["outcome"] == "failed" and case not in EXPECTED_FAILURES}
    now_passing = [case for case, o in outcomes.items()
                   if o["outcome"] == "passed" and case in EXPECTED_FAILURES]
    skipped = [case for case, o in outcomes.items() if o["outcome"] == "skipped"]
    assert failed == {}, "upstream classifier cases that fail"
    assert now_passing == [], "expected failures that pass: take them out of the table"
    assert skipped == [], "upstream cases skipped (a missing optional dependency?)"
    n_passed = sum(o["outcome"] == "passed" for o in outcomes.values())
    assert n_passed == len(outcomes) - len(set(EXPECTED_FAILURES) & set(outcomes))
