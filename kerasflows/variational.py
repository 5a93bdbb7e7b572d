"""Variational fitting: train a flow `q` to match a density known up to a constant.

The loss is the reverse KL up to the unknown constant, i.e. the negative
ELBO: `mean over x ~ q of [log q(x) - log p~(x)]`, which equals
`KL(q || p) - log Z` (Rezende & Mohamed 2015, eq. 15). Samples and their
`log q` come from `Flow.sample_and_log_prob`, so only the forward direction
is needed and forward-only layers (`Planar`, `Radial`) work. Training runs
through `keras.Model.fit` (progress bar, callbacks, `History`, XLA); the
logs hold `loss` (negative ELBO) and `ess`, the Kish effective sample size
of the importance weights `w = p~(x) / q(x)` as a fraction of the batch:
`ess = (sum w)^2 / (n sum w^2)`, 1 when `q` is proportional to `p~`.
"""

import math

import keras
import numpy as np
import tensorflow as tf

from kerasflows import targets
from kerasflows.autograph_free import AutoGraphFree
from kerasflows.flow import Flow
from kerasflows.layers.base import check_positive_int
from kerasflows.layers.checks import check_float
from kerasflows.flat_calls import FlatStepFunctions
from kerasflows.packed_adam import fused_adam_apply, fused_adam_slots

__all__ = ["VariationalFlow", "fit_target", "diagnostics", "kish_ess", "check_target",
           "check_traceable", "check_differentiable"]


def kish_ess(log_w):
    """Kish effective sample size of weights `exp(log_w)`, as a fraction of `n`."""
    log_w = tf.convert_to_tensor(log_w)
    if not log_w.dtype.is_floating:
        log_w = tf.cast(log_w, "float32")
    n = tf.cast(tf.shape(log_w)[0], log_w.dtype)
    lse = tf.reduce_logsumexp(log_w)
    return tf.exp(2.0 * lse - tf.reduce_logsumexp(2.0 * log_w)) / n


def _resolve(log_density):
    if isinstance(log_density, str):
        return targets.get(log_density)
    if not callable(log_density):
        hint = (" (a TFP distribution: pass its `log_prob`)"
                if callable(getattr(log_density, "log_prob", None)) else "")
        raise TypeError("`log_density` must be a callable x -> log density [N] or a target "
                        f"name in {targets.NAMES}{hint}. Received: {log_density!r}")
    return log_density


def _static_shape_check(log_p, n):
    shape = log_p.shape
    if shape.rank is not None and (shape.rank != 1 or shape[0] not in (None, n)):
        raise ValueError(f"log_density returned shape {tuple(shape.as_list())} for {n} samples; "
                         f"expected ({n},): one log-density per sample.")


def check_target(flow, log_density, n=256, seed=0):
    """Evaluates `log_density` once on `n` flow samples; raises a clear error if
    it returns the wrong shape or a non-finite value. Returns `(x, log_p)`.

    The samples are drawn op by op, whatever the flow's `eval_mode`: for this
    one call, tracing the flow's sampler took longer than running it (a
    32-layer planar flow: 4.4 s traced against 0.9 s op by op).
    """
    log_density = _resolve(log_density)
    n, seed, temperature, _ = flow._sample_args(n, None, seed, 1.0)
    x = flow._run_forward(flow._base_sample(n, seed, temperature), None)[0]
    try:
        log_p = tf.convert_to_tensor(log_density(x))
    except Exception as err:
        raise ValueError(f"log_density failed on a {x.dtype.name} batch of shape "
                         f"{tuple(x.shape)} (the flow's dtype): {err}") from err
    _static_shape_check(log_p, n)
    values = np.asarray(log_p)
    bad = ~np.isfinite(values)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"log_density returned {int(bad.sum())} non-finite values (NaN or inf) "
                         f"for {n} samples of the flow, e.g. {values[i]} at x={x.numpy()[i].tolist()}; "
                         "it must be finite wherever the flow puts mass.")
    return x, log_p


def check_traceable(log_density, x):
    """Traces `log_density` on a symbolic batch like `x`, as the train step calls it;
    raises a ValueError that says so when it only works on concrete values (NumPy,
    through which no gradient would flow, even run eagerly)."""
    spec = tf.TensorSpec(x.shape, x.dtype)
    try:
        tf.function(log_density, autograph=False).get_concrete_function(spec)
    except Exception as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise ValueError("log_density works on values but not inside the train step, where "
                         "it gets a symbolic tensor: write it with TensorFlow ops (tf.*, not "
                         "NumPy; the loss's gradient flows through it to the samples). "
                         f"Tracing it gave: {first}") from err


def check_differentiable(log_density, x):
    """Raises a ValueError if no gradient flows from `log_density(x)` back to `x`
    (`tf.numpy_function`, a cast through integers): the fit would ignore the target
    and only spread the flow out; or if the gradient is NaN or inf in a row (a
    `tf.where` over a branch that is not finite there): the first step would make
    every weight NaN."""
    x = tf.convert_to_tensor(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        log_p = tf.convert_to_tensor(log_density(x))
    grad = tape.gradient(log_p, x) if log_p.dtype.is_floating else None
    if grad is None:
        raise ValueError("no gradient flows through log_density to its input x "
                         f"(it returned {log_p.dtype.name} values that do not depend "
                         "differentiably on x: tf.numpy_function, NumPy or a cast to "
                         "integers?); the fit would ignore the target. Write it with "
                         "TensorFlow ops on floats.")
    bad = np.flatnonzero(~np.isfinite(grad.numpy()).all(axis=-1))
    if bad.size:
        raise ValueError(
            f"log_density's gradient with respect to x is NaN or inf in {bad.size} of "
            f"{len(x)} rows (at x = {x.numpy()[bad[0]].tolist()}), where its values are "
            "finite: the first step would make every weight NaN. A tf.where whose other "
            "branch is not finite there (log or sqrt of a negative number) gives such a "
            "gradient: mask the branch's input too, as tf.where(c, f(tf.where(c, x, 1.0)), "
            "other).")


def _check_one_device(model):
    """Raises a ValueError under a `tf.distribute` strategy (the model's or the current
    one): the train step draws one batch on one device."""
    if model._distribute_strategy is not None or tf.distribute.has_strategy():
        raise ValueError("Variational fitting runs on one device; call VariationalFlow.fit "
                         "outside any tf.distribute strategy and build the model outside "
                         "its scope. Received: "
                         f"{type(model.distribute_strategy).__name__}")


#: The fewest samples of the flow `_initialize_from_own_samples` initialises on
#: (a training batch of 2 gave ActNorm log-scales of -1.7: far from the identity).
INIT_SAMPLES = 2048


def _initialize_from_own_samples(flow, n, seed=0):
    """Initialises the layers that initialise from data (`ActNorm`) and have not, on
    `max(n, INIT_SAMPLES)` samples of the flow itself, else a later `Flow.fit` would
    initialise them over the variationally trained weights.

    The samples run forward, so forward-only layers may come before or after: a
    layer not yet initialised is at its identity start, where its data side is
    its input `h`; `data_init(h)` standardises that batch. From a standard normal
    base through layers near the identity, it stays near the identity.
    """
    pending = flow.uninitialized_layers()
    if not pending:
        return
    n, seed, temperature, _ = flow._sample_args(max(n, INIT_SAMPLES), None, seed, 1.0)
    h = flow._base_sample(n, seed, temperature)
    for layer in flow.flow_layers:
        if any(layer is p for p in pending):
            layer.data_init(h)
        h, _ = layer.forward_and_log_det(h)


def _check_flow(flow):
    if not isinstance(flow, Flow):
        raise TypeError(f"Expected a kerasflows.Flow. Received: {type(flow).__name__}")
    if flow.context_dim is not None:
        raise ValueError("Variational fitting takes an unconditional flow; this one has "
                         f"context_dim={flow.context_dim}.")


#: `keras.Model.fit` arguments about data, which `VariationalFlow.fit` has none of.
_DATA_ARGUMENTS = ("x", "y", "batch_size", "validation_data", "validation_split",
                   "validation_steps", "validation_freq", "validation_batch_size",
                   "sample_weight", "class_weight", "shuffle")


@keras.saving.register_keras_serializable(package="kerasflows")
class VariationalFlow(FlatStepFunctions, keras.Model, AutoGraphFree):
    """Wraps a `Flow` to fit it to an unnormalised density by reverse KL.

    Each training step draws `batch_size` samples from the flow and takes a
    gradient step on the negative ELBO. `compile()` then `fit()` as with any
    Keras model; `fit` needs no data. The trained flow is `self.flow` (save
    that one).

    Example:

    ```python
    flow = kerasflows.Flow([kerasflows.layers.Planar() for _ in range(32)], event_dim=2)
    vi = kerasflows.VariationalFlow(flow, "u1", batch_size=512)
    vi.compile(optimizer=keras.optimizers.Adam(1e-2))
    vi.fit(epochs=20, steps_per_epoch=100)
    print(vi.diagnostics())  # {"elbo": ..., "ess": ..., "reverse_kl": ...}
    ```

    Args:
        flow: an unconditional `kerasflows.Flow` (forward-only layers allowed).
        log_density: a callable `x [N, D] -> log p~(x) [N]` written with TF
            ops (unnormalised allowed), or a name from `kerasflows.targets.NAMES`.
        batch_size: samples drawn per step.

    Raises:
        TypeError, ValueError: for a non-Flow, a conditional flow, a bad
            `batch_size` or target, or a 2-D target with a flow of another size.
    """

    def __init__(self, flow, log_density, batch_size=256, **kwargs):
        super().__init__(**kwargs)
        _check_flow(flow)
        self.flow = flow
        # untracked: set as an attribute, a Keras target's weights were trained with the flow
        object.__setattr__(self, "_log_density", _resolve(log_density))
        if isinstance(self.log_density, targets.Target) and flow.event_dim != 2:
            raise ValueError(f"Target '{self.log_density.name}' is 2-D but the flow has "
                             f"event_dim={flow.event_dim}.")
        self.batch_size = check_positive_int("batch_size", batch_size)
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.ess_tracker = keras.metrics.Mean(name="ess")
        self.built = True

    @property
    def log_density(self):
        """The target, `x [N, D] -> log p~(x) [N]`: fixed, as a Keras layer or model too
        (its weights are not the fit's)."""
        return self._log_density

    @property
    def metrics(self):
        return [self.loss_tracker, self.ess_tracker]

    #: Update a plain Adam with TF's fused kernel, as `Flow.fused_adam` (a 32-layer
    #: planar flow's 96 weights: the update traced and compiled in 0.64 s, not 4.45;
    #: the first `fit` call 5.94 s, not 8.82, `benchmarks/fused_adam.py`).
    fused_adam = True

    def log_weights(self, n, training=False):
        """Draws `n` flow samples; returns `(x, log p~(x) - log q(x))`.

        `training=True` (the train step) runs the flow's layers in training mode
        (`Flow.sample_and_log_prob`)."""
        x, log_q = self.flow.sample_and_log_prob(n, training=training)
        log_p = tf.convert_to_tensor(self.log_density(x))
        _static_shape_check(log_p, n)
        return x, tf.cast(log_p, log_q.dtype) - log_q

    def train_step(self, data):
        with tf.GradientTape() as tape:
            _, log_w = self.log_weights(self.batch_size, training=True)
            loss = -tf.reduce_mean(log_w)
            scaled = self.optimizer.scale_loss(loss)
        variables = self.trainable_variables
        grads = tape.gradient(scaled, variables)
        slots = fused_adam_slots(self.optimizer, variables) if self.fused_adam else None
        if slots is None:
            self.optimizer.apply(grads, variables)
        else:       # a plain Adam: TF's fused kernel (see `Flow.fused_adam`)
            fused_adam_apply(self.optimizer, grads, variables, slots)
        self.loss_tracker.update_state(loss)
        self.ess_tracker.update_state(kish_ess(log_w))
        return {m.name: m.result() for m in self.metrics}

    def call(self, n):
        """`n` samples of the flow (Keras' `__call__` passes tensors only: draw them
        with `vi.flow.sample(n)`; training runs `train_step`)."""
        return self.flow.sample(n)

    def evaluate(self, *args, **kwargs):
        """Not available: there is no data; `diagnostics()` measures the fit."""
        raise NotImplementedError("VariationalFlow has no data to evaluate on; "
                                  "vi.diagnostics() measures the fit (ELBO, ESS, reverse KL).")

    def predict(self, *args, **kwargs):
        """Not available: there is no data; `vi.flow.sample(n)` draws samples."""
        raise NotImplementedError("VariationalFlow has no data to predict from; "
                                  "vi.flow.sample(n) draws samples of the fitted flow.")

    def fit(self, epochs=1, steps_per_epoch=100, callbacks=None, verbose="auto", **kwargs):
        """Trains for `epochs` x `steps_per_epoch` steps; returns a `History`.

        Other keyword arguments (`initial_epoch`, ...) go to `keras.Model.fit`;
        data arguments (`x`, `validation_split`, `sample_weight`, ...) are not
        accepted, nor a `tf.distribute` strategy (the fit runs on one device).
        The target is checked on a first batch before training (shape `[N]`,
        finite values, traceable, a finite gradient to `x`); then layers that
        initialise from data (`ActNorm`) and have not are initialised on
        samples of the flow itself (staying near the identity), so that a later
        `Flow.fit` keeps them.

        A `keras.callbacks.ModelCheckpoint` must save weights only
        (`save_weights_only=True`, a `.weights.h5` file): a VariationalFlow is
        not saved whole (save its `flow` after the fit), and such a callback is
        refused before training. The training noise comes from the flow's
        `sample_seed`, whose state no Keras file keeps (as for any Keras seed
        generator): a fit resumed from a checkpoint (`BackupAndRestore`) draws
        the noise of a new run, not the rest of the interrupted one's.
        """
        for key in _DATA_ARGUMENTS:
            if key in kwargs:
                hint = "; set batch_size in the constructor" if key == "batch_size" else ""
                raise ValueError(f"VariationalFlow.fit draws its own samples and takes no "
                                 f"`{key}`{hint}. Received: {key}={kwargs[key]!r:.80}")
        if isinstance(epochs, (list, tuple, np.ndarray, tf.Tensor, tf.data.Dataset)):
            raise ValueError("VariationalFlow.fit draws its own samples and takes no data; "
                             f"its first argument is `epochs`. Received: {type(epochs).__name__}")
        check_positive_int("epochs", epochs)
        check_positive_int("steps_per_epoch", steps_per_epoch)
        # one callback, or nested lists, as Keras takes them (it flattens them)
        callbacks = keras.tree.flatten(callbacks) if callbacks is not None else None
        for callback in callbacks or ():
            if (isinstance(callback, keras.callbacks.ModelCheckpoint)
                    and not callback.save_weights_only):
                raise ValueError(
                    "VariationalFlow holds a target function and is not saved whole: give "
                    "ModelCheckpoint save_weights_only=True (a .weights.h5 file), and save "
                    f"its trained `flow` after the fit. Received: filepath={callback.filepath!r}")
        _check_one_device(self)
        x, _ = check_target(self.flow, self.log_density, n=self.batch_size)
        check_traceable(self.log_density, x)
        check_differentiable(self.log_density, x)
        _initialize_from_own_samples(self.flow, self.batch_size)
        steps = tf.data.Dataset.from_tensors(tf.zeros([1])).repeat()
        return super().fit(steps, epochs=epochs, steps_per_epoch=steps_per_epoch,
                           callbacks=callbacks, verbose=verbose, shuffle=False, **kwargs)

    def diagnostics(self, n=20_000, seed=0):
        """`diagnostics(self.flow, self.log_density, n, seed)`."""
        return diagnostics(self.flow, self.log_density, n=n, seed=seed)

    def get_config(self):
        raise NotImplementedError("VariationalFlow holds a target function and is not saved; "
                                  "save its trained `flow` instead.")


def diagnostics(flow, log_density, n=20_000, seed=0):
    """Measures how well `flow` matches `log_density` on `n` fresh samples.

    Returns a dict of floats: `elbo` (mean of `log p~ - log q`) and its
    standard error `elbo_se`; `log_z_is`, the importance-sampling estimate
    `log mean w`, and `log_z_is_se`, its delta-method standard error
    `sqrt((1/ess - 1) / (n - 1))` (the standard error of the mean weight over
    that mean; an underestimate where the weights are heavy-tailed, as the ESS
    itself); `ess` (Kish, as a fraction); and, when the target's
    `log_z` is known (`kerasflows.targets`), `log_z` and
    `reverse_kl = log_z - elbo` = KL(q || p) in nats.
    """
    _check_flow(flow)
    log_density = _resolve(log_density)
    n = check_positive_int("n", n)
    x, log_q = flow.sample_and_log_prob(n, seed=seed)
    log_p = tf.convert_to_tensor(log_density(x))
    _static_shape_check(log_p, n)
    log_w = tf.cast(log_p, "float64") - tf.cast(log_q, "float64")
    lw = log_w.numpy()
    # a target -inf (or +inf) at some samples: the ELBO is -inf (+inf), its s.e. inf,
    # not the NaN (and NumPy's warning) of inf - inf in the standard deviation
    # (the sample standard deviation: of one sample, NaN, not 0)
    spread = (lw.std(ddof=1) if np.isfinite(lw).all() and n > 1 else
              math.nan if np.isnan(lw).any() or n == 1 else math.inf)
    out = {"elbo": float(lw.mean()), "elbo_se": float(spread / math.sqrt(n)),
           "log_z_is": float(tf.reduce_logsumexp(log_w)) - math.log(n),
           "ess": float(kish_ess(log_w))}
    # (n * sum w^2 / (sum w)^2 = 1 / ess: the weights' squared coefficient of variation
    # + 1; as elbo_se, inf where the estimate is infinite and NaN for one sample)
    out["log_z_is_se"] = (
        math.nan if math.isnan(out["log_z_is"]) or n == 1 else
        math.inf if math.isinf(out["log_z_is"]) else
        math.sqrt(max(1.0 / out["ess"] - 1.0, 0.0) / (n - 1)))
    log_z = getattr(log_density, "log_z", None)
    if log_z is not None:
        out.update(log_z=float(log_z), reverse_kl=float(log_z) - out["elbo"])
    return out


def fit_target(flow, log_density, epochs=10, steps_per_epoch=100, batch_size=256,
               learning_rate=None, optimizer=None, callbacks=None, verbose="auto"):
    """Fits `flow` to `log_density` by reverse KL; returns the Keras `History`.

    A shortcut for `VariationalFlow(flow, log_density, batch_size)`, compiled
    with `optimizer` (default `Adam(learning_rate)`, `learning_rate` a number or a
    Keras `LearningRateSchedule`, 1e-3 if not given; an optimizer has its own, so both
    are refused) and fitted for
    `epochs` x `steps_per_epoch` steps. `history.history` holds `loss`
    (negative ELBO) and `ess` per epoch; see also `diagnostics`.
    """
    if optimizer is not None and learning_rate is not None:    # (it was ignored)
        raise ValueError("fit_target takes `learning_rate` for its default Adam or an "
                         "`optimizer` with its own; received both "
                         f"(learning_rate={learning_rate!r}).")
    # as a Python float: Keras' Adam refused an int or a NumPy float; a Keras schedule as
    # it is, as Adam takes it (it was refused as not a number)
    schedule = isinstance(learning_rate, keras.optimizers.schedules.LearningRateSchedule)
    if optimizer is None and not schedule:
        learning_rate = check_float("learning_rate", 1e-3 if learning_rate is None
                                    else learning_rate, lambda v: v > 0,
                                    "> 0 (or a keras.optimizers.schedules.LearningRateSchedule)")
    model = VariationalFlow(flow, log_density, batch_size=batch_size)
    model.compile(optimizer=optimizer or keras.optimizers.Adam(learning_rate))
    return model.fit(epochs=epochs, steps_per_epoch=steps_per_epoch, callbacks=callbacks,
                     verbose=verbose)
