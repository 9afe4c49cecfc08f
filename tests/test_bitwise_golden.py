"""Frozen float32 results: the sha256 of every weight and of the predicted probabilities
after a few fully specified fits on the real Fashion-MNIST, per instruction set, with 1 and
2 threads.

The hashes were recorded with the v1 core (commit ca2ba1a) before the training core was
redesigned; a refactor, a new feature at its default or a faster kernel must leave them
unchanged. The FMA chain of each instruction set is the contract, so each one has its own
hashes. To record the hashes of an instruction set this file has none for, build the v1
commit and run ``python tests/test_bitwise_golden.py ISA``.
"""

import hashlib
import sys
import warnings

import numpy as np
import pytest

from fastmlp import MLPImageClassifier, kernels

# Shared by every fit: 2 epochs; all but the reference run train on the first 12000 images.
CONFIGS = {
    "sgd_reference": dict(hidden_layer_sizes=(256,), solver="sgd", learning_rate_init=0.01,
                          momentum=0.0, nesterovs_momentum=False, alpha=0.0, batch_size=64,
                          weight_init="pytorch", max_iter=2, tol=0.0, n_iter_no_change=10,
                          random_state=0),
    "adam_default": dict(max_iter=2, random_state=1),
    "nesterov_tanh_class_weight": dict(hidden_layer_sizes=(64, 32), activation="tanh",
                                       solver="sgd", learning_rate_init=0.02, momentum=0.9,
                                       nesterovs_momentum=True, class_weight="balanced",
                                       batch_size=100, max_iter=2, random_state=2),
    "adam_logistic_early_stopping": dict(hidden_layer_sizes=(100,), activation="logistic",
                                         early_stopping=True, validation_fraction=0.2,
                                         batch_size=50, max_iter=2, random_state=3),
}

# (weights sha256, probabilities of the first 2000 training images sha256) per ISA.
GOLDEN = {
    "avx2": {
        "sgd_reference": (
            "1f6fcdb3d8fd30cb20e0ea8110475b171a3e92eff104e820eb883112e430abe7",
            "7c58adb1324edf816b29fcfd7b50b8f0870a0b45228d2bb1f45ea6d483d258eb"),
        "adam_default": (
            "64ea7343dcb9a935e4d83a0bb78f370b2afaa2365944e40f640eb3d4ac8cdb4b",
            "8ae469c4706b901f4d1ff9dacb30e4641c802aa1d3ce0aa114359446a8726d83"),
        "nesterov_tanh_class_weight": (
            "c5224c554db79cc95e8683c4859d6b4156ed16e410beb8d86e8b08a92c802277",
            "b7a1ad35ee82e00a4964d91ff4d5efae126c885f61878c7cee01762f7f63bf6b"),
        "adam_logistic_early_stopping": (
            "613f46a9cca493c0877e0f2107bedbfa40c8cca20976532d2894a567fda9b394",
            "b8e7297be74e7fc05ea9d390d388393812a9dab91fbab14f9c85c8d17084a6d6"),
    },
    "generic": {
        "sgd_reference": (
            "0373e656acbcfa2198273f552b5f180f0b6961865145be8ae0b268ac532470d9",
            "943c49dcc25cdbb161d4cdaad46f22953c48baa6322898ae78926d41a613f773"),
        "adam_default": (
            "60390e480ad9be03f392c6c4ed1839c47f0ce611c9e6f9c9ce00b87c9a87504e",
            "8913a9040a55296dd6240e305e400daf5a04029d0b21fc2661b6cd4c3a05e5e2"),
        "nesterov_tanh_class_weight": (
            "ae049490290b670982153d1e16f7b15952ee371f3aa93f0f798eed5fd2425956",
            "2b4bfbc32c1651ba4aba5e80c8f9373b6561b36238aea1ce55be4cf8f18c8ff4"),
        "adam_logistic_early_stopping": (
            "de977b63f1a50b46e186f43a51a3792c3f6fb6e977782be53e89c85f2271f11c",
            "cd3852e6d83a2c4569ce14b29b70384d92c1bf7c64aef99266eb21fd7d8ebaca"),
    },
}
# AVX-512 computes the same FMA chains as AVX2 (gemm.hpp): its hashes, recorded with the
# v1 build on an Intel Xeon (2026-12-02) for all four configurations at 1 and 2 threads,
# are AVX2's.
GOLDEN["avx512"] = GOLDEN["avx2"]


def _scaled_fashion_mnist():
    from fastmlp.datasets import load_fashion_mnist

    bunch = load_fashion_mnist()
    X = bunch.data.reshape(len(bunch.data), -1).astype(np.float32)
    return X / np.float32(127.5) - np.float32(1.0), bunch.target


def fingerprint(name, n_threads, X, y):
    """(weights sha256, probabilities sha256) of CONFIGS[name] fitted with n_threads."""
    Xt, yt = (X, y) if name == "sgd_reference" else (X[:12000], y[:12000])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 2 epochs do not converge
        model = MLPImageClassifier(n_threads=n_threads, **CONFIGS[name]).fit(Xt, yt)
    weights = hashlib.sha256()
    for a in (*model.coefs_, *model.intercepts_):
        weights.update(np.ascontiguousarray(a, np.float32).tobytes())
    proba = hashlib.sha256(model.predict_proba(X[:2000]).tobytes())
    return weights.hexdigest(), proba.hexdigest()


@pytest.fixture(scope="module")
def fashion_mnist():
    from conftest import data_required

    try:
        return _scaled_fashion_mnist()
    except FileNotFoundError as exc:
        if data_required():
            pytest.fail(f"FASTMLP_REQUIRE_DATA is set but Fashion-MNIST is missing: {exc}")
        pytest.skip("Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)")


@pytest.mark.data
@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("name", sorted(CONFIGS))
@pytest.mark.parametrize("isa", ["generic", "avx2", "avx512"])
def test_float32_results_are_frozen(fashion_mnist, isa, name, n_threads):
    with kernels._isa(isa) as active:
        if active != isa:
            pytest.skip(f"this CPU lacks {isa} (has {active})")
        if isa not in GOLDEN:
            pytest.skip(f"no frozen hashes for {isa} yet: record them with the v1 build "
                        f"(python tests/test_bitwise_golden.py {isa})")
        assert fingerprint(name, n_threads, *fashion_mnist) == GOLDEN[isa][name]


if __name__ == "__main__":
    with kernels._isa(sys.argv[1]) as active:
        data = _scaled_fashion_mnist()
        for config in CONFIGS:
            print(active, config, *fingerprint(config, 1, *data))
