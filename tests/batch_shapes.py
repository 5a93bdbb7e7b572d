"""A check shared by the conformance suite and the FFJORD tests: a layer's bijector
takes the batch shapes TFP's distributions give it."""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from kerasflows.layers import NoInverseError


def check_bijector_batch_shapes(layer, conditional=None, rtol=1e-12, log_det_rtol=1e-10,
                                log_prob_rtol=1e-9):
    """`layer.bijector()` (a built float64 layer of 3 dimensions) in a
    `TransformedDistribution`: `sample()` is `[3]`, a `[2, 4, 3]` batch gives the
    rows' numbers (within the tolerances: an ODE solver's steps depend on the
    batch), the inverse of a forward-only layer names it; `conditional`, a built
    conditional layer of context 2, says its bijector needs the context."""
    b = layer.bijector()
    d = tfp.distributions.TransformedDistribution(
        tfp.distributions.MultivariateNormalDiag(tf.zeros(3, "float64")), b)
    assert d.sample(seed=1).shape == (3,)
    z = tf.random.stateless_normal([8, 3], [1, 2], dtype="float64")
    x_rows = b.forward(z)
    x = b.forward(tf.reshape(z, [2, 4, 3]))
    assert x.shape == (2, 4, 3)
    np.testing.assert_allclose(tf.reshape(x, [8, 3]), x_rows, rtol=rtol, atol=rtol)
    rows = lambda ld, n: np.broadcast_to(ld, n).reshape(-1)     # a constant log-det: scalar
    np.testing.assert_allclose(
        rows(b.forward_log_det_jacobian(tf.reshape(z, [2, 4, 3]), event_ndims=1), (2, 4)),
        rows(b.forward_log_det_jacobian(z, event_ndims=1), (8,)), rtol=log_det_rtol)
    if layer.forward_only:
        with pytest.raises(NoInverseError, match="forward-only"):
            d.log_prob(tf.constant(x.numpy()))     # not TFP's cache of the forward call
    else:
        lp = d.log_prob(tf.constant(x.numpy()))
        assert lp.shape == (2, 4) and d.log_prob(x[0, 0]).shape == ()
        np.testing.assert_allclose(tf.reshape(lp, [8]), d.log_prob(tf.reshape(x, [8, 3])),
                                   rtol=log_prob_rtol)
    if conditional is not None:
        with pytest.raises(ValueError, match=r"is conditional \(context_dim=2\): its "
                           r"bijector needs `context=` of shape \(batch, 2\)"):
            conditional.bijector()
        # a [C] context was read as C rows, refused deep in TFP's loop of autoregressive
        # layers as "The context has 2 rows and the inputs 1"
        for context in (tf.zeros([2], "float64"), [0.0, 0.0], tf.zeros([1, 3], "float64")):
            with pytest.raises(ValueError, match=r"expected context of shape \(batch, 2\); "
                               r"received shape \((2,|1, 3)\)"):
                conditional.bijector(context=context).forward(tf.zeros([1, 3], "float64"))
