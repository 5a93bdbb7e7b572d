"""`FlowTraining`: the Keras training half of `kerasflows.Flow` (a mixin): the
maximum-likelihood loss, and `compile`, `fit`, `evaluate` and `predict`
that check their data and arguments before Keras' own."""

import contextlib
import warnings

import keras
import tensorflow as tf

from kerasflows.fit_data import is_stream, prepare_eval_data, prepare_fit_data, weights_for_keras
from kerasflows.flat_calls import FlatPredictCalls, FlatStepCalls, FlatStepFunctions
from kerasflows.layers.checks import real_number
from kerasflows.packed_adam import fused_adam_apply, fused_adam_slots, packed_size
from kerasflows.sharded_step import is_seed_state, training_state

__all__ = ["FlowTraining"]


class _LossMean(keras.metrics.Mean):
    """A flow's loss tracker (Keras' "loss" metric): Keras weighs each batch's loss
    by its rows; for a batch with sample weights this weighs its weighted mean
    by the weights' sum (`Flow.compute_loss` leaves it in `batch_weight`), so
    `fit`'s loss and `evaluate` are the weighted mean over all the examples,
    whatever the batch size."""

    def __init__(self, name="loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.batch_weight = None

    def update_state(self, values, sample_weight=None):
        weight, self.batch_weight = self.batch_weight, None
        return super().update_state(values, sample_weight=sample_weight if weight is None
                                    else tf.cast(weight, self.dtype))


def _replica_count():
    if tf.distribute.has_strategy():
        return tf.distribute.get_strategy().num_replicas_in_sync
    return 1


class FlowTraining(FlatStepFunctions):
    """The training methods of `kerasflows.Flow` (see there): its loss (the mean
    negative log-likelihood), `compile`, `fit`, `evaluate`, `predict`, loss
    scaling for float16 conditioners, and what `jit_compile="auto"` means."""

    #: Check the batches of a stream (`tf.data.Dataset`, `keras.utils.PyDataset`,
    #: generator) given to `fit` and `evaluate` as they are read: NaN or inf in
    #: the data, values outside the data-end layer's `data_domain`, labels a
    #: `ClassEmbedding` context encoder does not know, or weights not finite
    #: and >= 0, raise naming the data (arrays are checked whole
    #: before training). For tf.data a parallel map beside the step: 0.24-0.48
    #: ms a step (10-20%) for a 2-D MAF with batches of 512, 0.23 ms (5%) for a
    #: 64-D RealNVP (`benchmarks/stream_check.py`). False: no check (a NaN then
    #: shows as a NaN loss).
    check_stream_data = True

    #: Update a plain `keras.optimizers.Adam` (see `packed_adam.plain_adam`: no
    #: clipping, weight decay, EMA, AMSGrad, loss scaling or gradient accumulation,
    #: no distribution strategy) in `fit` with TF's fused Adam kernel, one op per
    #: weight, on the optimizer's own variables: the same formula and state as
    #: Keras' `apply_gradients`, which builds about 39 ops a weight where this
    #: builds 3. One difference: a sparse gradient (`tf.IndexedSlices`, a
    #: `ClassEmbedding`'s table) is taken dense, the pieces of one row summed, so
    #: this is Adam of the gradient, where Keras squares each piece before
    #: summing them into the second moment (a 3-class table drifts about 0.1
    #: apart in 4 steps of 128 rows at learning rate 1e-2). Tracing, compiling
    #: and running the update alone took 0.53 s instead of 2.17 s for a 5-layer
    #: NSF's 30 weights and 0.64 s instead of 4.45 s for 96 (XLA's default
    #: optimisation, medians of 3 fresh processes, `benchmarks/fused_adam.py`).
    #: False: Keras' own update.
    fused_adam = True

    def train_step(self, data):
        """Keras' training step (loss, gradient, update, metrics), with a plain Adam
        updated through TF's fused kernel (`fused_adam`)."""
        variables = self.trainable_weights
        slots = fused_adam_slots(self.optimizer, variables) if self.fused_adam else None
        if slots is None:
            return super().train_step(data)
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        with tf.GradientTape() as tape:
            y_pred = self(x, training=True)
            loss = self._compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight,
                                      training=True)
        rows = tf.shape(next(t for t in tf.nest.flatten(x) if t is not None))[0]
        self._loss_tracker.update_state(loss, sample_weight=rows)
        fused_adam_apply(self.optimizer, tape.gradient(loss, variables), variables, slots)
        return self.compute_metrics(x, y, y_pred, sample_weight=sample_weight)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """Mean negative log-likelihood, in nats per example (plus any layer losses);
        with `sample_weight`, the batch's weighted mean."""
        nll = -y_pred
        replicas = _replica_count()
        tracker = getattr(self, "_loss_tracker", None)
        if sample_weight is not None:
            w = tf.cast(sample_weight, nll.dtype)
            total = tf.reduce_sum(w)
            if replicas > 1:
                # the weights of the whole batch, over every replica: the replicas'
                # gradients add up to the gradient of the global weighted mean
                total = tf.distribute.get_replica_context().all_reduce("SUM", total)
            # this replica's share of the weighted mean; a batch whose weights are
            # all 0 adds nothing (not 0 / 0)
            loss = tf.math.divide_no_nan(tf.reduce_sum(nll * w), total)
            if isinstance(tracker, _LossMean):
                # Keras reports `loss * replicas` per replica: weighed by total /
                # replicas, the replicas add up to the batch's weighted mean
                tracker.batch_weight = total / replicas
        elif replicas > 1:
            # the rows of the whole batch, over every replica: a batch split unevenly
            # (its last, or any of an odd size) gave each replica's own mean an equal
            # share, and a replica without rows a NaN loss
            rows = tf.distribute.get_replica_context().all_reduce(
                "SUM", tf.cast(tf.shape(nll)[0], nll.dtype))
            loss = tf.math.divide_no_nan(tf.reduce_sum(nll), rows)
            if isinstance(tracker, _LossMean):
                tracker.batch_weight = rows / replicas
        else:
            loss = tf.reduce_mean(nll)
        if self.losses:
            loss += tf.add_n([tf.cast(l, loss.dtype) for l in self.losses]) / replicas
        return loss

    def float16_conditioners(self):
        """True if a layer's conditioner, or a layer of the context encoder, computes in
        float16 (a `"mixed_float16"` policy): its gradients then need loss scaling.
        The encoder's containers (a Sequential, a functional model, their InputLayer)
        compute nothing of their own and are not counted: Keras does not save their
        policy, so under a global mixed_float16 policy a loaded float32 flow took one
        and wrapped its optimizer, dropping the saved optimizer state."""
        containers = (keras.layers.InputLayer, keras.Sequential, keras.Function)
        encoder = ([] if self.context_encoder is None else
                   self.context_encoder._flatten_layers(include_self=True, recursive=True))
        return (any(l.conditioner_dtype_policy.compute_dtype == "float16"
                    for l in self.flow_layers)
                or any(l.dtype_policy.compute_dtype == "float16" for l in encoder
                       if not isinstance(l, containers)))

    def with_loss_scaling(self, optimizer):
        """`optimizer` wrapped in a `keras.optimizers.LossScaleOptimizer` if the flow has
        float16 conditioners and it is not one already; else `optimizer` itself.

        Raises:
            ValueError: loss scaling with a `ContinuousFlow` whose dynamics compute
                in float16: the scaled gradients overflow float16 in its adjoint
                ODE solve, whose error estimate is then NaN, and the solve never
                returns (a step at the first scale, 32768, ran for minutes).
        """
        if (self.float16_conditioners()
                and not isinstance(optimizer, keras.optimizers.LossScaleOptimizer)):
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        self._refuse_scaled_float16_odes(
            isinstance(optimizer, keras.optimizers.LossScaleOptimizer))
        return optimizer

    def _float16_odes(self):
        """The names of the `ContinuousFlow` layers whose dynamics compute in float16."""
        from kerasflows.layers.continuous import ContinuousFlow
        return [layer.name for layer in self.flow_layers if isinstance(layer, ContinuousFlow)
                and layer.conditioner_dtype_policy.compute_dtype == "float16"]

    def _scales_loss(self, optimizer, auto_scale_loss):
        """Whether `compile(optimizer, auto_scale_loss=...)` trains with loss scaling:
        an optimizer given wrapped, or float16 conditioners and `auto_scale_loss`."""
        return (isinstance(optimizer, keras.optimizers.LossScaleOptimizer)
                or (optimizer is not None and auto_scale_loss and self.float16_conditioners()))

    def _refuse_scaled_float16_odes(self, scaling):
        """The ValueError of `with_loss_scaling` if `scaling` the loss."""
        odes = self._float16_odes()
        if odes and scaling:
            raise ValueError(
                f"Flow '{self.name}': ContinuousFlow layer(s) {odes} compute their dynamics "
                "in float16, and loss scaling overflows float16 in their adjoint ODE solve, "
                "which then never returns. Compile with auto_scale_loss=False (and no "
                "LossScaleOptimizer), or give those layers conditioner_dtype=\"float32\" "
                "(or \"bfloat16\").")

    def compile(self, optimizer="rmsprop", loss=None, loss_weights=None, metrics=None,
                weighted_metrics=None, *args, auto_scale_loss=True, **kwargs):
        """`keras.Model.compile` for maximum likelihood: the loss is the mean negative
        log-likelihood, so `loss`, `loss_weights` and metrics (which compare
        predictions with targets, and a flow has none) raise a ValueError. With
        float16 conditioners (see the class docstring) and `auto_scale_loss=True`
        the optimizer is wrapped in a `LossScaleOptimizer`. The compile config
        saved with the flow keeps `auto_scale_loss`, and `jit_compile="auto"`
        unresolved, so a loaded flow resolves it where it loads (no XLA under a
        distribution strategy)."""
        for name, value in (("loss", loss), ("loss_weights", loss_weights),
                            ("metrics", metrics), ("weighted_metrics", weighted_metrics)):
            if value is not None and not (isinstance(value, (list, tuple, dict)) and not value):
                raise ValueError(
                    f"Flow.compile: a flow trains by maximum likelihood (its loss is the "
                    f"mean negative log-likelihood in nats) and has no targets, so it takes "
                    f"no `{name}`. Received {name}={value!r}.")
        if isinstance(optimizer, keras.optimizers.Optimizer) and packed_size(optimizer):
            raise ValueError(
                "Flow.compile: this optimizer was built by make_train_step on its packed "
                "layout (one moment vector over all the weights), which Keras' fit, "
                "evaluate and saving do not know; give compile a new optimizer (its "
                "state then starts afresh), or keep training with make_train_step.")
        self._refuse_scaled_float16_odes(self._scales_loss(optimizer, auto_scale_loss))
        super().compile(optimizer, *args, auto_scale_loss=auto_scale_loss, **kwargs)
        # as Keras sets its own: not tracked as one of the model's metrics (that
        # would report the loss twice)
        # in float64 for a float64 flow (floatx's float32 rounded its loss and evaluate)
        object.__setattr__(self, "_loss_tracker", _LossMean(
            name="loss", dtype="float64" if self.compute_dtype == "float64" else None))
        if auto_scale_loss and self.optimizer is not None:
            self.optimizer = self.with_loss_scaling(self.optimizer)
        self._keep_in_compile_config(*args, auto_scale_loss=auto_scale_loss, **kwargs)

    def _keep_in_compile_config(self, run_eagerly=False, steps_per_execution=1,
                                jit_compile="auto", *, auto_scale_loss=True, **kwargs):
        """Keeps in the compile config Keras saves (given `compile`'s arguments after
        `weighted_metrics`) what Keras leaves out: `auto_scale_loss` (Keras has no
        field for it), and `jit_compile="auto"` as given (Keras saves what it
        resolved to on this machine, which a flow loaded under a distribution
        strategy then kept: XLA, and its `fit` failed)."""
        config = self._compile_config.config
        config["auto_scale_loss"] = auto_scale_loss
        if isinstance(jit_compile, str) and jit_compile == "auto":
            config["jit_compile"] = "auto"

    def compile_from_config(self, config):
        """Compiles a flow loaded from a `.keras` file as it was saved, optimizer
        included (its state is then restored, so `fit` resumes where it stopped).
        Keras itself skips this step for models that override `compile`.
        A flow saved compiled with loss scaling and float16 ODE dynamics (which
        `compile` now refuses) loads compiled without it, its optimizer state
        afresh (the saved state is the loss-scale optimizer's), with a warning."""
        config = keras.saving.deserialize_keras_object(config)
        optimizer = config.get("optimizer")
        odes = self._float16_odes()
        if odes and self._scales_loss(optimizer, config.get("auto_scale_loss", True)):
            warnings.warn(
                f"Flow '{self.name}' was saved compiled with loss scaling, which its "
                f"float16 ContinuousFlow layer(s) {odes} cannot train with "
                "(the adjoint ODE solve never returns once the scaled gradients overflow): "
                "it loads compiled with auto_scale_loss=False, its optimizer state afresh.",
                stacklevel=2)
            config["auto_scale_loss"] = False
            if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
                config["optimizer"] = optimizer.inner_optimizer
        self.compile(**config)
        if self.optimizer is not None and self.built:
            self.optimizer.build(self.trainable_variables)

    def fit(self, x=None, y=None, batch_size=None, validation_data=None, **kwargs):
        """Trains by maximum likelihood; see `keras.Model.fit`.

        `x` is the data `[N, D]` as a NumPy array or tensor, or `(x, context)`
        for a conditional flow; or a stream of such batches: a `tf.data.Dataset`,
        `keras.utils.PyDataset` or Python generator (a batch may also be `(x,)`
        or `(x, None, sample_weight)`, Keras' forms). `validation_data` takes the
        same forms, and `(x_val, None, sample_weight)` for weighted arrays.
        Targets are not used: a non-None `y` raises. NaN or inf in array data
        raise before training, in a stream's batches as they are read
        (`check_stream_data`), as do values outside the data-end layer's
        `data_domain` (`Sigmoid`'s (0, 1), `Exp`'s (0, inf)) and labels a
        `ClassEmbedding` context encoder does not know. Layers that initialise
        from data (`ActNorm`) do so on `batch_size` rows before the first step: for arrays, rows drawn at
        random when `shuffle` (the default), as the first shuffled batch. `sample_weight` (array data: one finite weight
        >= 0 per example) weights each example's negative log-likelihood in
        the loss. A short last batch (of arrays or of a stream) is padded to the
        full batches' size rather than compiled for (see `pads_short_batches`). A stream is taken in its own
        order: `shuffle` defaults to False for it (Keras' default, True, only
        warned that it is ignored).
        """
        if not self.compiled:       # as Keras says it (the checks below read compile's state)
            raise ValueError("You must call `compile()` before using the model: a flow "
                             "trains with flow.compile(optimizer=...), then flow.fit(x).")
        if self.optimizer is not None and packed_size(self.optimizer) is not None:
            raise ValueError(
                "Flow.fit: this flow's optimizer was built by make_train_step on its packed "
                "layout (one moment vector over all weights), which Keras' apply_gradients "
                "cannot update; compile the flow with a new optimizer for fit, or go on "
                "with the make_train_step loop.")
        split = kwargs.get("validation_split")
        if split is not None and not 0 <= real_number(split) < 1:   # (NaN for a bool, a str)
            # -0.5 failed in kerasflows' own row count with an IndexError; 1.5 trained on
            # no rows with only Keras' "ran out of data" warning
            raise ValueError(f"Flow.fit: `validation_split` is the share of the rows held "
                             f"out, a number in [0, 1). Received: validation_split={split!r}")
        if is_stream(x):
            kwargs.setdefault("shuffle", False)     # Keras ignores it for a stream, and warns
            if kwargs.get("validation_split"):      # Keras' refusal named our wrapper of it
                raise ValueError(
                    f"Flow.fit: `validation_split` splits arrays, not a stream of batches "
                    f"(received a {type(x).__name__} with validation_split="
                    f"{kwargs['validation_split']!r}); give the held-out data as "
                    "validation_data= (arrays, or a stream of their batches).")
        if kwargs.get("class_weight") is not None:
            raise ValueError("Flow.fit: a flow has no classes or targets, so it takes no "
                             "`class_weight`; weigh examples with sample_weight= (one "
                             f"weight per example). Received class_weight="
                             f"{kwargs['class_weight']!r}.")
        x, validation_data, first = prepare_fit_data(
            self, x, y, batch_size, validation_data, shuffle=kwargs.get("shuffle", True),
            validation_batch_size=kwargs.get("validation_batch_size"),
            validation_split=kwargs.get("validation_split"))
        y, kwargs["sample_weight"] = weights_for_keras(
            self, x, kwargs.get("sample_weight"), "fit", batch_size=batch_size,
            split=kwargs.get("validation_split"))
        if first is not None and self.needs_data_init:
            self.initialize(*first)
        with self._fresh_functions_after_errors():
            return super().fit(x, y, batch_size=batch_size, validation_data=validation_data,
                               **kwargs)

    @contextlib.contextmanager
    def _fresh_functions_after_errors(self):
        """Drops Keras' train / test / predict functions when a call raises.

        A `tf.function` whose first trace failed (bad data in a stream, say)
        before it created its variables refuses to create them in any later
        trace ("Creating variables on a non-first call"), so every later
        `fit` of the flow failed; the next call now builds new ones."""
        try:
            yield
        except Exception:
            self.train_function = self.test_function = self.predict_function = None
            raise

    def evaluate(self, x=None, y=None, *args, **kwargs):
        """Mean negative log-likelihood of `x` (nats per example); see
        `keras.Model.evaluate`. `x` takes the forms `fit` takes, and array data
        are checked as there (rows, shape, NaN or inf, the data end's domain,
        known labels); no targets; `sample_weight` as in `fit` (then the weighted mean).
        Under XLA arrays of fewer rows than a batch are padded (weighted 0) to a power
        of two, so that small calls share an executable (`FlatStepCalls.min_rows`)."""
        if kwargs.get("_use_cached_eval_dataset"):
            # `fit`'s validation: the data `fit` prepared, with its placeholder y if weighted
            return super().evaluate(x, y, *args, **kwargs)
        x = prepare_eval_data(self, x, y, "evaluate")
        batch_size = _batch_size(args, kwargs)
        y, kwargs["sample_weight"] = weights_for_keras(self, x, kwargs.get("sample_weight"),
                                                       "evaluate", batch_size=batch_size)
        test_function = self.make_test_function()
        floor = isinstance(test_function, FlatStepCalls)
        if floor:   # arrays of fewer rows than a batch: padded to a power of two, as in predict
            test_function.min_rows = _short_batch_rows(x, batch_size)
        try:
            with self._fresh_functions_after_errors():
                return super().evaluate(x, y, *args, **kwargs)
        finally:
            if floor:
                test_function.min_rows = 0

    def predict(self, x, *args, **kwargs):
        """`log_prob` of `x` batch by batch, as a NumPy array; see `keras.Model.predict`.
        `x` takes the forms `fit` takes (arrays need rows of the flow's width;
        a row with NaN gets NaN, as from `log_prob`). Under XLA a short last
        batch is padded rather than compiled for (`FlatPredictCalls`), and so are
        arrays of fewer rows than a batch, to a power of two."""
        data = prepare_eval_data(self, x, None, "predict")
        if isinstance(self.make_predict_function(), FlatPredictCalls):
            # this call's batches set the length; arrays of fewer rows than a batch
            # are padded to a power of two (a compile each for 10, 11, 12... rows)
            self.predict_function.rows = _short_batch_rows(data, _batch_size(args, kwargs))
        with self._fresh_functions_after_errors():
            return super().predict(data, *args, **kwargs)

    def pads_short_batches(self):
        """True if `fit` and `evaluate` pad a short batch (of arrays or of a stream)
        to the full batches' size (rows repeated, weighted 0;
        `kerasflows.training.FlatStepCalls`) rather
        than compile the XLA step once more for it: when the step is XLA-compiled
        and called through its flat inputs (`flat_step_calls`), and no layer
        updates state while training (`BatchNorm`'s statistics would see the
        repeated rows). A seed generator's state (a `Dropout`'s) does not count:
        it advances once a step whatever the rows, and a padded row adds nothing."""
        return bool(self._flat_calls_apply() and self.jit_compile
                    and all(is_seed_state(v) for v in training_state(self)))

    def _resolve_auto_jit_compile(self):
        """What `compile(jit_compile="auto")` (Keras' default) means: XLA on CPUs too.

        Keras resolves "auto" to no XLA on machines without an accelerator;
        for the spline flows the XLA-compiled step is much the faster one
        there as well, and for the affine flows about as fast (2-D, batch
        512, minimum / median ms per `fit` step: NSF coupling 4.2 / 4.9
        against 6.4 / 8.8 as a TensorFlow graph, MAF 3.5 / 4.1 against 3.5 /
        3.7; `benchmarks/fit_throughput.py`, README "Speed of `fit`"). As in
        Keras, "auto" stays without XLA under a distribution strategy, with op
        determinism enabled, or when a layer does not support it. Pass
        `jit_compile=False` for a plain graph (no XLA compilation of the first
        step, 1-3 s for the spline flows).
        """
        if super()._resolve_auto_jit_compile():
            return True
        if self._under_strategy():
            return False
        try:   # Keras' own check of the layers and op determinism
            from keras.src.trainers.trainer import model_supports_jit
        except ImportError:   # another Keras: its default
            return False
        return bool(model_supports_jit(self))


def _batch_size(args, kwargs):
    """The `batch_size` of a `predict` or `evaluate` call: by keyword, or the first
    argument after the data (and `evaluate`'s `y`), as Keras' signatures place it."""
    return kwargs.get("batch_size", args[0] if args else None)


def _short_batch_rows(data, batch_size):
    """The rows `predict` pads its batches to at least: for arrays of n rows fewer
    than `batch_size` (Keras' default 32), the power of two from n (at most
    `batch_size`), so that small calls share an executable; else 0 (the call's
    longest batch sets it)."""
    if is_stream(data):
        return 0
    leaves = [v for v in tf.nest.flatten(data) if v is not None]
    if not leaves or not hasattr(leaves[0], "shape") or len(leaves[0].shape) == 0:
        return 0
    n, batch_size = int(leaves[0].shape[0]), batch_size or 32
    if not isinstance(batch_size, int) or n >= batch_size or n == 0:
        return 0
    return min(batch_size, 1 << (n - 1).bit_length())
