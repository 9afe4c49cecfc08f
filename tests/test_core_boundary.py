"""The boundary between Python and the compiled core: named arguments, enumerations and
optimizer tables read from C++, the test-only hooks kept in ``_core.testing``, and the
size limits the code base holds itself to."""

import ast
import re
from pathlib import Path

import numpy as np
import pytest

from fastmlp import MLPImageClassifier, _core, kernels
from fastmlp._optim import OPTIMIZERS

ROOT = Path(__file__).resolve().parents[1]
MAX_FUNCTION_LINES = 100
MAX_POSITIONAL_CORE_ARGS = 6


def test_activations_and_labels_come_from_the_core():
    names = set(_core.Activation.__members__)
    assert names == {"identity", "relu", "logistic", "tanh"}
    assert set(kernels.ACTIVATIONS) == names == set(_core.ACTIVATION_LABELS)
    allowed = MLPImageClassifier._parameter_constraints["activation"][0].options
    assert set(allowed) == names
    assert _core.ACTIVATION_LABELS["logistic"] == "Sigmoid"
    assert _core.ACTIVATION_LABELS["identity"] == "Identity"


def test_each_core_solver_has_one_python_optimizer():
    assert set(OPTIMIZERS) == set(_core.Solver.__members__)
    for name, cls in OPTIMIZERS.items():
        assert cls.solver == _core.Solver.__members__[name]


@pytest.mark.parametrize("solver, momentum, slots", [
    ("sgd", 0.0, []),
    ("sgd", 0.9, ["velocity"]),
    ("adam", 0.0, ["first_moment", "second_moment"]),
])
def test_the_core_names_the_state_each_solver_keeps(solver, momentum, slots):
    est = MLPImageClassifier(solver=solver, momentum=momentum)
    optimizer = OPTIMIZERS[solver](est)
    assert optimizer.slots() == slots
    assert set(slots) <= set(_core.STATE_SLOTS)
    coefs = [np.zeros((3, 2), np.float32)]
    intercepts = [np.zeros(2, np.float32)]
    state = optimizer.new_state(coefs, intercepts)
    assert sorted(state.slots) == sorted(slots)
    for w, b in state.slots.values():
        assert w[0].shape == (3, 2) and b[0].shape == (2,)


def _train_args(rng, slots):
    coefs = [rng.normal(size=(4, 3)).astype(np.float32)]
    intercepts = [np.zeros(3, np.float32)]
    state = {s: ([np.zeros_like(c) for c in coefs], [np.zeros_like(b) for b in intercepts])
             for s in slots}
    config = _core.OptimConfig()
    config.solver = _core.Solver.adam
    return dict(coefs=coefs, intercepts=intercepts, state=state,
                X=rng.normal(size=(6, 4)).astype(np.float32),
                y=np.arange(6, dtype=np.int32) % 3, sample_weight=None,
                order=np.arange(6, dtype=np.int64), batch_size=4,
                activation=_core.Activation.relu, optimizer=config,
                options=_core.TrainOptions(), steps=np.zeros(1, np.int64), totals=np.zeros(4),
                n_threads=1)


def test_train_batches_takes_named_arguments_only(rng):
    args = _train_args(rng, ["first_moment", "second_moment"])
    res = _core.train_batches(**args)
    assert (res.n_samples, res.n_batches, res.t, res.finite) == (6, 2, 2, True)
    # The step count and the totals advance in place, inside the call.
    assert args["steps"][0] == 2
    np.testing.assert_array_equal(args["totals"][[2, 3]], [res.n_correct, 6])
    assert args["totals"][0] == res.loss_sum and args["totals"][1] == 6.0
    with pytest.raises(TypeError):
        _core.train_batches(*args.values())


def test_train_batches_names_a_missing_or_unknown_state_slot(rng):
    with pytest.raises(ValueError, match="'second_moment'"):
        _core.train_batches(**_train_args(rng, ["first_moment"]))
    with pytest.raises(ValueError, match="unknown optimizer state slot 'momentum'"):
        _core.train_batches(**_train_args(rng, ["first_moment", "second_moment", "momentum"]))


def test_train_batches_checks_the_optimizer_config(rng):
    args = _train_args(rng, ["first_moment", "second_moment"])
    args["optimizer"].beta_1 = 1.0
    before = args["coefs"][0].copy()
    with pytest.raises(ValueError, match="beta_1"):
        _core.train_batches(**args)
    np.testing.assert_array_equal(args["coefs"][0], before)


def test_predict_checks_that_layers_chain(rng):
    coefs = [rng.normal(size=(4, 5)).astype(np.float32),
             rng.normal(size=(6, 3)).astype(np.float32)]
    intercepts = [np.zeros(5, np.float32), np.zeros(3, np.float32)]
    X = rng.normal(size=(2, 4)).astype(np.float32)
    with pytest.raises(ValueError, match="layer 1 takes 6 inputs, but layer 0 has 5 outputs"):
        _core.predict_proba(coefs, intercepts, X, activation=_core.Activation.relu, log=False,
                            n_threads=1)


def test_test_hooks_live_in_the_testing_module(rng):
    a = rng.normal(size=(3, 4)).astype(np.float32)
    ref = _core.testing.matmul(a, a, trans_b=True, reference=True)
    # Bitwise on the FMA paths; the portable one multiplies and adds separately.
    np.testing.assert_allclose(ref, kernels.matmul(a, a, trans_b=True), rtol=1e-6, atol=1e-6)
    with pytest.raises(TypeError):
        _core.matmul(a, a, False, True, 1, reference=True)


def test_isa_names_have_one_parser():
    with pytest.raises(ValueError, match="'avx512', 'avx2' or 'generic', got 'sse9'"):
        _core.set_isa("sse9")


# --- the size limits, read from the sources ------------------------------------------

def _python_sources():
    return sorted((ROOT / "python" / "fastmlp").glob("*.py"))


def _cpp_sources():
    return sorted(p for ext in ("cpp", "hpp", "inc") for p in (ROOT / "csrc").rglob(f"*.{ext}"))


def _needs_sources():
    if not (ROOT / "csrc").is_dir():
        pytest.skip("the source tree is not beside the tests")


def _body_lines(node):
    """Lines of a function's body, its docstring aside."""
    body = node.body
    if (isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)):
        if len(body) == 1:
            return 0
        body = body[1:]
    return node.end_lineno - body[0].lineno + 1


def test_no_python_function_is_over_100_lines():
    _needs_sources()
    long = []
    for path in _python_sources():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                if _body_lines(node) > MAX_FUNCTION_LINES:
                    long.append(f"{path.name}:{node.lineno} {node.name}")
    assert not long


# A function definition's opening line: a parameter list closed, then `{`; not a
# control statement, a lambda or an initializer.
_CPP_FUNCTION = re.compile(r"\)\s*(const)?\s*(noexcept)?\s*\{\s*$")
_CPP_CONTROL = re.compile(r"^(if|for|while|switch|else|do|\}|//|#)\b")


def test_no_cpp_function_is_over_100_lines():
    _needs_sources()
    long = []
    for path in _cpp_sources():
        lines = path.read_text().splitlines()
        for i, line in enumerate(lines):
            s = line.strip()
            if not _CPP_FUNCTION.search(s) or _CPP_CONTROL.match(s) or "[" in s.split("(")[0]:
                continue
            depth, j = 0, i
            while j < len(lines):
                depth += lines[j].count("{") - lines[j].count("}")
                if depth <= 0 and j > i:
                    break
                j += 1
            if j - i - 1 > MAX_FUNCTION_LINES:
                long.append(f"{path.name}:{i + 1}")
    assert not long


def test_bindings_stay_thin():
    _needs_sources()
    assert len((ROOT / "csrc" / "bindings.cpp").read_text().splitlines()) <= 300


def test_no_call_into_the_core_has_more_than_6_positional_arguments():
    _needs_sources()
    calls = []
    for path in [*_python_sources(), *sorted((ROOT / "bench").glob("*.py"))]:
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and isinstance(node.func.value, ast.Name) and node.func.value.id == "_core"
                    and len(node.args) > MAX_POSITIONAL_CORE_ARGS):
                calls.append(f"{path.name}:{node.lineno}")
    assert not calls
