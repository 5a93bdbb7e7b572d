"""`ContinuousFlow`: a continuous-time flow (FFJORD, Grathwohl et al. 2019,
"FFJORD: Free-form Continuous Dynamics for Scalable Reversible Generative
Models", ICLR).

The data are the solution at time `T` of `dx/dt = f(x, t)` started at the
base sample `z`; `f` is a Keras 3 `MLP` on `[x, t]` (and the context) owned
by the layer. The log-det follows `d log|det| / dt = tr(df/dx)` (the
instantaneous change of variables, Chen et al. 2018). TFP's `tfb.FFJORD`
solves both with its Dormand-Prince solver, whose gradients use the adjoint
method.
"""

import functools
import weakref

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from kerasflows.layers.base import (FlowLayer, RowsBijector, batch_log_det, check_float,
                                    solve_nonempty)
from kerasflows.layers.checks import nan_rows, nonfinite_rows, shared_context
from kerasflows.layers.nets import MLP, check_activation, check_hidden_units

tfb = tfp.bijectors

__all__ = ["ContinuousFlow", "exact_trace", "hutchinson_trace", "no_trace", "TRACES",
           "HUTCHINSON_SEED",
           "fixed_probe"]

TRACES = ("exact", "hutchinson")
#: The seed of Hutchinson's probe outside training (see `ContinuousFlow.bijector`).
HUTCHINSON_SEED = 0


def _mix32(h):
    """Chris Wellons' "lowbias32" integer hash of uint32 values (shifts 16, 15,
    16; multipliers 0x7feb352d, 0x846ca68b): each input bit flips about half
    of the output bits."""
    shift = lambda v, k: tf.bitwise.right_shift(v, tf.constant(k, tf.uint32))
    h = tf.bitwise.bitwise_xor(h, shift(h, 16)) * tf.constant(0x7FEB352D, tf.uint32)
    h = tf.bitwise.bitwise_xor(h, shift(h, 15)) * tf.constant(0x846CA68B, tf.uint32)
    return tf.bitwise.bitwise_xor(h, shift(h, 16))


def fixed_probe(shape, dtype, seed):
    """Hutchinson's probe outside training: Rademacher signs (+-1, each with
    probability 1/2; Hutchinson's own choice, of least variance) from an
    integer hash of each entry's column (last-axis index) and `seed`, so the
    same numbers come out eagerly, in graphs and under XLA
    (`tf.random.stateless_normal` gives other numbers under XLA than its CPU
    kernel, and XLA-mode log-densities moved by up to 3 nats from the
    graph's). Every row takes the same signs: a point's estimate does not
    depend on where it stands in its batch (signs by flat index gave one
    point log-densities up to 1.7 nats apart at different rows)."""
    shape = tf.cast(shape, tf.int32)
    key = _mix32(tf.constant(seed, tf.uint32) + tf.constant(0x9E3779B9, tf.uint32))
    index = tf.cast(tf.range(shape[-1]), tf.uint32)
    bit = tf.bitwise.right_shift(_mix32(tf.bitwise.bitwise_xor(index, key)),
                                 tf.constant(31, tf.uint32))
    return tf.broadcast_to(1 - 2 * tf.cast(bit, dtype), shape)


def exact_trace(ode_fn, state_shape, dtype):
    """FFJORD trace augmentation with the exact diagonal of `df/dx`.

    Takes one gradient per dimension (so it suits small D), written as a
    Python loop over the static event size so that it compiles with XLA
    (TFP's `trace_jacobian_exact` does not). Same contract as
    `tfb.ffjord.trace_jacobian_exact`: returns `(f, diag(df/dx))`, both
    `[batch, D]`, and the bijector sums the diagonal.
    """
    del state_shape, dtype

    def augmented_ode_fn(time, state_and_log_det, **kwargs):
        state, _ = state_and_log_det
        with tf.GradientTape(persistent=True, watch_accessed_variables=False) as tape:
            tape.watch(state)
            derivative = ode_fn(time, state, **kwargs)
            columns = [derivative[..., i] for i in range(state.shape[-1])]
        diag = [tape.gradient(c, state)[..., i] for i, c in enumerate(columns)]
        return derivative, tf.stack(diag, axis=-1)

    return augmented_ode_fn


def hutchinson_trace(ode_fn, state_shape, dtype, sample_fn=tf.random.normal, seed=None):
    """FFJORD trace augmentation with Hutchinson's estimator: one Gaussian probe
    `e` per solve, drawn once with `sample_fn(shape, dtype=dtype, seed=seed)`,
    and `e * (e^T df/dx)` per dimension, whose sum over dimensions is an
    unbiased estimate of the trace (Hutchinson 1989; Grathwohl et al. 2019).

    Same contract and the same numbers as TFP's
    `tfb.ffjord.trace_jacobian_hutchinson` with one sample, written without
    its `tf.vectorized_map`: under XLA that made TensorFlow treat the
    dynamics' weights as compile-time constants, so every training step
    compiled again (2-D, hidden (16, 16), batch 256, 2 CPU cores: 8-14 s a step,
    against 10 ms a step compiled once).
    """
    shape = tf.concat([[1], tf.cast(state_shape, tf.int32)], axis=0)   # TFP's [samples, ...]
    probe = sample_fn(shape, dtype=dtype, seed=seed)[0]

    def augmented_ode_fn(time, state_and_log_det, **kwargs):
        state, _ = state_and_log_det
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch(state)
            derivative = ode_fn(time, state, **kwargs)
        vjp = tape.gradient(derivative, state, output_gradients=probe)
        return derivative, probe * vjp

    return augmented_ode_fn


def no_trace(ode_fn, state_shape, dtype):
    """FFJORD trace augmentation for the map alone: the log-det's derivative is 0, so
    a solve costs the dynamics only (`ContinuousFlow.transform`, which `Flow.sample`,
    `Flow.forward` and `Flow.inverse` call: they read no log-det)."""
    del state_shape, dtype

    def augmented_ode_fn(time, state_and_log_det, **kwargs):
        derivative = ode_fn(time, state_and_log_det[0], **kwargs)
        return derivative, tf.zeros_like(derivative)

    return augmented_ode_fn


def _positive_float(name, value):
    return check_float(name, value, lambda v: v > 0, "> 0")


def far_bound(dtype):
    """`sqrt(2 * largest)` of a float dtype (2.6e19 for float32): beyond it a standard
    normal's `-v^2 / 2` is -inf. From about `sqrt(largest) / rtol` (1.8e24 in float32
    at the default rtol) the squares in the solver's error estimate overflow, both the
    error's and its tolerance's (`atol + rtol |v|`): the estimate is inf / inf = NaN,
    every step is rejected, and the solve never returns (1e25 with a softplus or relu
    dynamics). A row inside the bound gets there only with `rtol` above 0.7 or a
    state that grows 1 / (1.4 rtol) times (7e4 at the default) during the solve."""
    return float(np.sqrt(2.0) * np.sqrt(np.finfo(tf.as_dtype(dtype).as_numpy_dtype).max))


def far_rows(t):
    """Whether each row of `t` `[N, K]` holds a finite value beyond `far_bound`:
    `[N]` bools."""
    big = tf.logical_and(tf.abs(t) > far_bound(t.dtype), tf.math.is_finite(t))
    return tf.reduce_any(big, axis=-1)


@keras.saving.register_keras_serializable(package="kerasflows")
class ContinuousFlow(FlowLayer):
    """Continuous-time flow (FFJORD): `x = z + integral_0^T f(x(t), t) dt`.

    The dynamics `f` is an MLP on `[x, t]` (plus the context), with its
    output layer zero-initialised so the layer starts at the identity. The
    log-det integrates the trace of `df/dx`, exactly (`trace="exact"`, one
    gradient per dimension, best for small D) or with Hutchinson's
    estimator (`trace="hutchinson"`, one Gaussian probe per row and training
    call: unbiased but noisy, for larger D). Outside training the log-det is
    exact by default (`eval_trace`), so `log_prob` is a normalised density:
    one fixed probe for every row and call is not noise that averages out but
    a bias of each point's log-density (a 2-D flow's density integrated to
    0.42, and its NLL came out 0.44 nats high).
    Use `activation="tanh"` or another smooth activation: the adaptive solver
    needs smooth dynamics.

    Example:

    ```python
    flow = kerasflows.Flow([ContinuousFlow(hidden_units=(32, 32))], event_dim=2)
    flow.compile(optimizer=keras.optimizers.Adam(1e-3))
    flow.fit(x, batch_size=256, epochs=5)
    ```

    `compile()`'s default `jit_compile="auto"` trains it with XLA, as any
    flow: on this 2-core CPU (2-D, hidden (64, 64), batch 512, untrained)
    the XLA step took 15-17 ms against 23-25 ms as a graph, after a first
    step of 11-15 s against 6-7 s. Pass `jit_compile=False` for the graph.

    Args:
        hidden_units: sizes of the dynamics MLP's hidden layers.
        activation: its activation (a Keras activation name, or a registered
            function: see `check_activation`).
        trace: `"exact"` or `"hutchinson"`, the trace in training.
        eval_trace: the trace outside training: `"exact"` (the default) or
            `"hutchinson"`, one probe of fixed Rademacher signs (`fixed_probe`):
            one gradient per solve step where exact takes D, deterministic, the
            same in every eval_mode, but an estimate, not a normalised density.
            For large D exact costs that much more where a log-det is asked
            for (`log_prob`, `sample_and_log_prob`; hidden (32, 32), `log_prob` of
            256 rows at D = 256: 2.1 s against 0.17 s);
            `sample`, `forward` and `inverse` solve the map alone (`transform`).
        time: the integration time T.
        rtol, atol: relative and absolute tolerances of the Dormand-Prince
            ODE solver (smaller is more accurate and slower).
        context_dim: size of the context, or None.

    Raises:
        ValueError: for an unknown `trace` or `eval_trace`, a non-positive `time`, `rtol`
            or `atol`, or an `activation` `check_activation` refuses.
    """

    #: Under a GradientTape, a Flow's eager calls run op by op, not as a graph
    #: (`Flow.eval_mode`): the traced gradient of the adjoint solve took 18 s where
    #: eager took 1.4 s, and under two nested tapes it had not returned in 6 minutes.
    eager_under_tape = True

    def __init__(self, hidden_units=(64, 64), activation="tanh", trace="exact", time=1.0,
                 rtol=1e-5, atol=1e-5, context_dim=None, eval_trace="exact", **kwargs):
        super().__init__(context_dim=context_dim, **kwargs)
        self.hidden_units = check_hidden_units(hidden_units)
        self.activation = check_activation(activation)
        if trace not in TRACES:
            raise ValueError(f"`trace` must be one of {TRACES}. Received: trace={trace!r}")
        self.trace = trace
        if eval_trace not in TRACES:
            raise ValueError(f"`eval_trace` must be one of {TRACES}. "
                             f"Received: eval_trace={eval_trace!r}")
        self.eval_trace = eval_trace
        self.time = _positive_float("time", time)
        self.rtol = _positive_float("rtol", rtol)
        self.atol = _positive_float("atol", atol)

    def build_flow(self, event_dim):
        self.net = MLP(event_dim, self.hidden_units, self.activation,
                       dtype=self.conditioner_dtype_policy, name="dynamics")
        self.net.build((None, event_dim + 1 + (self.context_dim or 0)))

    def dynamics(self, t, x, context=None):
        """`f(t, x) -> dx/dt`, `[batch, D]`, given the context (TFP's solver passes it
        as one of its `constants`, see `ffjord`)."""
        t = tf.fill(tf.stack([tf.shape(x)[0], 1]), tf.cast(t, x.dtype))
        parts = [x, t] if context is None else [
            x, t, tf.cast(shared_context(context, x), x.dtype)]
        return tf.cast(self.net(tf.concat(parts, axis=-1)), x.dtype)

    def bijector(self, context=None, training=False):
        """TFP's `tfb.FFJORD` of these dynamics, guarded as `forward_and_log_det` is
        (rows with a NaN, an inf or a value beyond `far_bound`, in the input or its
        context row, are not solved: see `solve_rows`), on inputs of any batch
        shape. With `trace="hutchinson"`, the probe is drawn afresh (Gaussian)
        for each training call, an unbiased estimate of the trace; any other call
        takes `eval_trace`: the exact trace, or `fixed_probe`'s signs from
        `HUTCHINSON_SEED`, a fixed estimate. Either way the same inputs give the
        same samples and log-densities in every eval_mode (a fresh probe moved
        the adaptive solver's steps, and samples of one seed differed by up to
        4e-5)."""
        self.check_bijector_context(context)
        if context is not None:
            context = tf.convert_to_tensor(context, dtype=self.compute_dtype)
        # its dynamics and trace take rows [N, D]; TFP's callers, any batch shape
        return RowsBijector(_GuardedODE(self, context, training), self.event_dim, name="ffjord")

    def ffjord(self, context=None, training=False, log_det=True):
        """TFP's `tfb.FFJORD` of these dynamics for rows `[N, D]`, unguarded: its
        solver never returns for a row with a NaN, an inf or a value beyond
        `far_bound`, nor for an empty batch. `bijector()` is the guarded one.
        With `log_det=False` its log-dets are 0 (`no_trace`): for the map alone.

        The context goes to the solver as one of its `constants`: its adjoint
        method returns gradients for those (and for the initial state and the
        variables), not for a tensor the dynamics would capture."""
        solver = tfp.math.ode.DormandPrince(rtol=self.rtol, atol=self.atol)
        solve = solver.solve if context is None else functools.partial(
            solver.solve, constants={"context": context})
        if not log_det:
            trace_fn = no_trace
        elif (self.trace if training else self.eval_trace) == "exact":
            trace_fn = exact_trace
        elif training:
            trace_fn = hutchinson_trace
        else:
            trace_fn = functools.partial(hutchinson_trace, sample_fn=fixed_probe,
                                         seed=HUTCHINSON_SEED)
        self.check_bijector_context(context)
        return tfb.FFJORD(state_time_derivative_fn=self.dynamics,
                          ode_solve_fn=solve, trace_augmentation_fn=trace_fn,
                          initial_time=0.0, final_time=self.time,
                          dtype=tf.as_dtype(self.compute_dtype))

    def forward_and_log_det(self, z, context=None, training=False):
        return self._solved(z, context, training, forward=True)

    def inverse_and_log_det(self, x, context=None, training=False):
        return self._solved(x, context, training, forward=False)

    def _solved(self, v, context, training, forward):
        v, context = self.check_inputs(v, context)
        b = self.bijector(context=context, training=training)
        transform, log_det = ((b.forward, b.forward_log_det_jacobian) if forward else
                              (b.inverse, b.inverse_log_det_jacobian))
        return transform(v), batch_log_det(log_det(v, event_ndims=1), v)

    def transform(self, v, context=None, forward=True):
        """The map alone, solved without the log-det (`no_trace`: the dynamics alone,
        where the exact trace takes D gradients a step). The solver's steps adapt to
        the map only, so it agrees with `forward_and_log_det`'s to the solver's
        tolerance (`rtol`, `atol`), not bit for bit."""
        v, context = self.check_inputs(v, context)
        return self.solve_rows(v, context, forward=forward, log_det=False)[0]

    def solve_rows(self, v, context=None, training=False, forward=True, log_det=True):
        """`(y, log_det)` of rows `v` `[N, D]` in the direction asked, with the probe
        `bijector` describes (an empty batch through `solve_nonempty`: TFP's
        solver never returns from it); with `log_det=False`, the map alone and
        log-dets of 0.

        All rows are solved together by one adaptive solver, whose error estimate
        a single NaN or inf row (in `v` or its context) makes NaN: every step was
        then rejected and the call never returned. Such rows are solved from zeros
        and come out NaN, as in the other layers. So are finite rows beyond
        `far_bound` (see `far_rows`; in the context they come out NaN, in `v` as
        +-inf with log-det 0, so that `log_prob` there is -inf, as for any flow over
        a Gaussian base)."""
        def solve(v, context):
            b = self.ffjord(context=context, training=training, log_det=log_det)
            transform, jacobian = ((b.forward, b.forward_log_det_jacobian) if forward else
                                   (b.inverse, b.inverse_log_det_jacobian))
            if not log_det:
                return transform(v), tf.zeros(tf.shape(v)[:1], v.dtype)
            return transform(v), batch_log_det(jacobian(v, event_ndims=1), v)
        bad = nonfinite_rows(v)
        far = far_rows(v)
        if context is not None:
            # a shared [1, C] context as one row per row of v: solve_nonempty pads the
            # rows of an unknown batch, and the padded context's rows are no longer known
            # to be 1, so the dynamics could not broadcast it
            context = shared_context(context, v)
            bad_context = tf.logical_or(nonfinite_rows(context), far_rows(context))
            context = tf.where(bad_context[:, None], tf.zeros_like(context), context)
            bad = tf.logical_or(bad, bad_context)
        skip = tf.logical_or(bad, far)
        y, log_det = solve_nonempty(solve, tf.where(skip[:, None], tf.zeros_like(v), v), context)
        inf = tf.constant(np.inf, v.dtype)
        y = tf.where(far[:, None], tf.where(v < 0, -inf, inf), y)
        log_det = tf.where(far, tf.zeros_like(log_det), log_det)
        return nan_rows(bad, y), nan_rows(bad, log_det)

    def get_config(self):
        config = super().get_config()
        config.update(hidden_units=list(self.hidden_units), activation=self.activation,
                      trace=self.trace, time=self.time, rtol=self.rtol, atol=self.atol,
                      eval_trace=self.eval_trace)
        return config


# Files saved while the registration above sat on another function (December 2026)
# name the class without its package ("ContinuousFlow"); they load too. Saving still
# writes "kerasflows>ContinuousFlow".
keras.saving.get_custom_objects().setdefault("ContinuousFlow", ContinuousFlow)


class _GuardedODE(tfb.Bijector):
    """A `ContinuousFlow`'s map of rows `[N, D]` through its `solve_rows`. One solve
    gives a transform and its log-det: the last solves are kept by their input
    tensor, and each also answers the opposite direction at its output (as
    `tfb.FFJORD`'s own cache does). Inputs and outputs are held weakly: TFP's
    process-wide cache holds this bijector while they live, so holding them
    here kept them for good (every eager call of the layer leaked its rows)."""

    def __init__(self, layer, context, training):
        parameters = dict(locals())
        self.layer, self.context, self.training = layer, context, training
        # (weak reference to an input, forward?, weak reference to its output, log-det),
        # the last few
        self._solves = []
        super().__init__(forward_min_event_ndims=1, is_constant_jacobian=False,
                         dtype=tf.as_dtype(layer.compute_dtype), parameters=parameters,
                         name="ffjord")

    @classmethod
    def _parameter_properties(cls, dtype):
        return dict()

    def _solve(self, v, forward):
        for tensor, direction, out, log_det in self._solves:
            if tensor() is v and direction == forward and out() is not None:
                return out(), log_det
        out, log_det = self.layer.solve_rows(v, self.context, training=self.training,
                                             forward=forward)
        v_ref, out_ref = weakref.ref(v), weakref.ref(out)
        self._solves = [(v_ref, forward, out_ref, log_det),
                        (out_ref, not forward, v_ref, -log_det)] + self._solves[:2]
        return out, log_det

    def _forward(self, z):
        return self._solve(z, True)[0]

    def _inverse(self, x):
        return self._solve(x, False)[0]

    def _forward_log_det_jacobian(self, z):
        return self._solve(z, True)[1]

    def _inverse_log_det_jacobian(self, x):
        return self._solve(x, False)[1]
