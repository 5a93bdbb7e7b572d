"""A multinomial logistic regression in NumPy, to classify digits in the tests
(kerasflows does not depend on scikit-learn)."""

import numpy as np


class LogisticRegression:
    """Softmax regression with an L2 penalty, fitted by Nesterov's accelerated
    gradient descent on the mean cross-entropy + `l2 / 2n * ||W||^2` (the objective
    of scikit-learn's `LogisticRegression(C=1 / l2)`, divided by n).

    `fit(x, y)` with `x` `[n, d]` and integer labels `y` `[n]` 0..K-1; `predict(x)`
    gives the most probable label of each row.
    """

    def __init__(self, l2=1.0, steps=1000):
        self.l2, self.steps = l2, steps

    def fit(self, x, y):
        x = np.c_[np.asarray(x, np.float64), np.ones(len(x))]      # a bias column
        y = np.asarray(y).astype(np.int64).reshape(-1)
        n, k = len(x), int(y.max()) + 1
        onehot = np.eye(k)[y]
        penalty = np.full((x.shape[1], 1), self.l2 / n)
        penalty[-1] = 0.0                                          # the bias is not penalised
        # the Hessian of the mean cross-entropy is at most X^T X / (2n) in each class
        step = 1.0 / (np.linalg.eigvalsh(x.T @ x / n).max() / 2 + self.l2 / n)
        w = v = np.zeros((x.shape[1], k))
        for t in range(self.steps):
            logits = x @ v
            p = np.exp(logits - logits.max(1, keepdims=True))
            p /= p.sum(1, keepdims=True)
            w_next = v - step * (x.T @ (p - onehot) / n + penalty * v)
            v = w_next + t / (t + 3) * (w_next - w)
            w = w_next
        self.weights = w
        return self

    def predict(self, x):
        x = np.c_[np.asarray(x, np.float64), np.ones(len(x))]
        return (x @ self.weights).argmax(1)
