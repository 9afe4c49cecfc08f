"""Frozen results: the sha256 of every weight and of the predicted probabilities after a
few fully specified fits on the real Fashion-MNIST, per instruction set (float32) or
bfloat16 kernel, with 1 and 2 threads.

The float32 hashes were recorded with the v1 core (commit ca2ba1a) before the training
core was redesigned; a refactor, a new feature at its default or a faster kernel must
leave them unchanged. The FMA chain of each instruction set is the contract, so each one has its own
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

# precision="bfloat16", per bfloat16 kernel, recorded on an Intel Xeon with AMX
# (2026-12-02), the same at 1 and 2 threads. The AVX512-BF16 kernel is the emulated
# vdpbf16ps chain exactly, and the rest of training is float32 code that rounds alike on
# every instruction set, so its hashes hold on any CPU with AVX512-BF16 (AMD Zen 4 too);
# AMX sums in its own order and has its own.
BF16_CONFIGS = ("sgd_reference", "adam_default")
BF16_GOLDEN = {
    "amx": {
        "sgd_reference": (
            "36a4d49b6be761a56127d0ff8dd6aaecd8757434efd78d8c2bfe1fef08df2d78",
            "ef528ec1b5099bb3df850d5c20ecde14dd7856216d4612f3f264b70409d5e3f9"),
        "adam_default": (
            "6e04ba42bafeb6776fe6350f35be6e303c66b412bc7b9794ce895c1805863503",
            "4ca62b2807633c9ed620eaeb77bbf6b94297e1181663d50a1888dbcf359b6864"),
    },
    "avx512bf16": {
        "sgd_reference": (
            "a87f3f01db2654884539adaea9b53ffdca84b7a64f7bf15d04a011681aadd552",
            "e7e01867ef8247a47acca19a475580b2b53d7f7775dccaa133cade931c71ee0c"),
        "adam_default": (
            "cab081f2938b8246ebf655234c905d5baaea393911053f96501d8db65aa6e125",
            "906883d68d269ccdda892756e586c3c1fc1edb06600a8ce3efed1b7270f6ae8d"),
    },
}


def _scaled_fashion_mnist(bunch):
    X = bunch.data.reshape(len(bunch.data), -1).astype(np.float32)
    return X / np.float32(127.5) - np.float32(1.0), bunch.target


def fingerprint(name, n_threads, X, y, **params):
    """(weights sha256, probabilities sha256) of CONFIGS[name] (updated with params) fitted
    with n_threads."""
    Xt, yt = (X, y) if name == "sgd_reference" else (X[:12000], y[:12000])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 2 epochs do not converge
        model = MLPImageClassifier(n_threads=n_threads, **{**CONFIGS[name], **params})
        model.fit(Xt, yt)
    weights = hashlib.sha256()
    for a in (*model.coefs_, *model.intercepts_):
        weights.update(np.ascontiguousarray(a, np.float32).tobytes())
    proba = hashlib.sha256(model.predict_proba(X[:2000]).tobytes())
    return weights.hexdigest(), proba.hexdigest()


@pytest.fixture(scope="module")
def fashion_mnist():
    from conftest import fashion_mnist_or_skip

    return _scaled_fashion_mnist(fashion_mnist_or_skip())


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


@pytest.mark.data
@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("name", BF16_CONFIGS)
@pytest.mark.parametrize("kernel", ["amx", "avx512bf16"])
def test_bfloat16_results_are_frozen(fashion_mnist, kernel, name, n_threads):
    from fastmlp import _core

    rank = {"reference": 0, "avx512bf16": 1, "amx": 2}
    if rank[_core.detected_bf16_kernel()] < rank[kernel]:
        pytest.skip(f"this CPU lacks the {kernel} kernel (best: {_core.detected_bf16_kernel()})")
    before = _core.active_bf16_kernel()
    _core.set_bf16_kernel(kernel)
    try:
        got = fingerprint(name, n_threads, *fashion_mnist, precision="bfloat16")
    finally:
        _core.set_bf16_kernel(before)
    assert got == BF16_GOLDEN[kernel][name]


if __name__ == "__main__":
    with kernels._isa(sys.argv[1]) as active:
        from fastmlp.datasets import load_fashion_mnist

        data = _scaled_fashion_mnist(load_fashion_mnist())
        for config in CONFIGS:
            print(active, config, *fingerprint(config, 1, *data))
