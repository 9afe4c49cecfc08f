"""scikit-learn's own estimator checks, with no expected failures."""

import pytest
from sklearn.utils.estimator_checks import parametrize_with_checks

from fastmlp import MLPImageClassifier, PixelScaler


# Convergence warnings are advice to the user, not a contract failure: the checks fit on
# tiny data with the default epoch budget.
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@parametrize_with_checks(
    [
        MLPImageClassifier(),
        MLPImageClassifier(hidden_layer_sizes=(16, 8), solver="sgd", activation="tanh",
                           class_weight="balanced", weight_init="pytorch", n_threads=1),
        # The checks' float data, scaled inside the core.
        MLPImageClassifier(input_scaler=PixelScaler(mode="standard"), max_iter=5),
    ]
)
def test_sklearn_compatible(estimator, check):
    check(estimator)
