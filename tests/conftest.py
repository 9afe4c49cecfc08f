"""Shared fixtures. Every test that draws random numbers uses ``rng``, seeded from
FASTMLP_TEST_SEED when set, otherwise from a fresh seed printed in the report header and
on failure, so any failure can be replayed with FASTMLP_TEST_SEED=<seed>."""

import os
import zlib

# scikit-learn's estimator checks include an array-API check that only runs when SciPy's
# array-API mode is on; it must be set before SciPy is first imported.
os.environ.setdefault("SCIPY_ARRAY_API", "1")

import numpy as np
import pytest

_SEED = int(os.environ.get("FASTMLP_TEST_SEED", np.random.SeedSequence().entropy % 2**32))


def pytest_report_header(config):
    return f"fastmlp test seed: FASTMLP_TEST_SEED={_SEED}"


@pytest.fixture
def seed(request):
    """Per-test seed: the session seed mixed with the test's name (stable under -k)."""
    return (_SEED + zlib.crc32(request.node.nodeid.encode())) % 2**32


@pytest.fixture
def rng(seed):
    return np.random.default_rng(seed)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.failed:
        report.sections.append(
            ("fastmlp seed", f"replay with FASTMLP_TEST_SEED={_SEED} pytest '{item.nodeid}'")
        )


def data_required():
    return os.environ.get("FASTMLP_REQUIRE_DATA", "") not in ("", "0")


def fashion_mnist_or_skip():
    """The real Fashion-MNIST (the loaders' Bunch). Where it is not installed the test is
    skipped, saying how to install it; with FASTMLP_REQUIRE_DATA set it fails instead."""
    from fastmlp.datasets import load_fashion_mnist

    try:
        return load_fashion_mnist()
    except FileNotFoundError as exc:
        if data_required():
            pytest.fail(f"FASTMLP_REQUIRE_DATA is set but Fashion-MNIST is missing:\n{exc}")
        pytest.skip("Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)")
