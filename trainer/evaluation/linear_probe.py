"""Linear probe: logistic regression on frozen image features (CLIP's protocol, fixed C)."""
from __future__ import annotations

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler


def _as_numpy(x: torch.Tensor | np.ndarray) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def linear_probe(
    train_feats: torch.Tensor | np.ndarray,
    train_labels: torch.Tensor | np.ndarray,
    test_feats: torch.Tensor | np.ndarray,
    test_labels: torch.Tensor | np.ndarray,
    C: float = 1.0,
    seed: int = 0,
    max_iter: int = 1000,
) -> float:
    """Test accuracy in percent of an L2-regularized logistic regression (lbfgs) fit on
    standardized training features. Deterministic for fixed inputs.

    CLIP sweeps the inverse regularization `C` on a validation split; here it is a parameter.
    """
    x_train, y_train = _as_numpy(train_feats).astype(np.float64), _as_numpy(train_labels)
    x_test, y_test = _as_numpy(test_feats).astype(np.float64), _as_numpy(test_labels)
    if x_train.ndim != 2 or x_test.ndim != 2 or x_train.shape[1] != x_test.shape[1]:
        raise ValueError(f"linear probe needs 2-D features of equal width, got train {x_train.shape} and test {x_test.shape}")
    if x_train.shape[0] != y_train.shape[0] or x_test.shape[0] != y_test.shape[0]:
        raise ValueError("linear probe: every feature row needs exactly one label (check the train/test label lengths)")
    if x_test.shape[0] == 0:
        raise ValueError("linear probe: the test split is empty")
    if np.unique(y_train).size < 2:
        raise ValueError("linear probe: the training split needs at least two classes")
    if C <= 0:
        raise ValueError(f"linear probe: C must be positive, got {C}")
    probe = make_pipeline(
        StandardScaler(),
        LogisticRegression(C=C, solver="lbfgs", max_iter=max_iter, random_state=seed),
    )
    probe.fit(x_train, y_train)
    return 100.0 * float(np.mean(probe.predict(x_test) == y_test))
