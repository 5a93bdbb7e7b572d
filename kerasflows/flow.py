"""`Flow`: a stack of flow layers over a base distribution, as a `keras.Model`.

Change of variables: with `g` the stack's inverse (data to base),
`log p(x) = log p0(g(x)) + log|det dg/dx|`, the log-dets summed over layers.
As in TFP, `forward` maps base `z` to data `x` (sampling) and `inverse` maps
`x` to `z` (density, features).
"""

import os
import sys
import warnings

import keras
import tensorflow as tf
import tensorflow_probability as tfp

from kerasflows.data_checks import check_domain, check_finite
from kerasflows.eval_calls import EVAL_MODES, CallCache, EvalModes
from kerasflows.flow_base import BASES, STUDENT_T_INITIAL_DF, FlowBase
from kerasflows.flow_inputs import FlowInputs, context_for, encoded_context_dim
from kerasflows.flow_sampling import FlowSampling, philox_normal
from kerasflows.flow_training import FlowTraining
from kerasflows.layers.base import FlowLayer, RowsBijector, check_positive_int, split_mixed_policy
from kerasflows.layers.checks import check_bool, check_float_compute, nan_rows, nonfinite_rows

tfb, tfd = tfp.bijectors, tfp.distributions

__all__ = ["Flow", "BASES", "STUDENT_T_INITIAL_DF", "EVAL_MODES", "philox_normal",
           "encoded_context_dim"]

#: The folders whose frames a warning of a call from Keras' `fit` skips
#: (`_caller_level`): the installed packages' (Keras, TensorFlow), the standard
#: library's and kerasflows' own.
_LIBRARY_FOLDERS = tuple({os.path.dirname(os.path.dirname(keras.__file__)) + os.sep,
                          os.path.dirname(os.path.dirname(tf.__file__)) + os.sep,
                          os.path.dirname(os.__file__) + os.sep,
                          os.path.dirname(__file__) + os.sep})


def _caller_level():
    """The `stacklevel` of the first frame outside those folders: the user's `fit`
    line when Keras traces the flow's call in its train step (a warning there named
    flow.py, under Keras' frames, as the line to blame)."""
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_code.co_filename.startswith(_LIBRARY_FOLDERS):
        frame, level = frame.f_back, level + 1
    return level


def _keras_shares_objects():
    """Whether Keras is serializing in its object-sharing scope (saving a model), where
    an object met twice is written once (Keras' state, read as its own
    `serialize_keras_object` reads it; no public API says so)."""
    try:
        from keras.src.backend.common import global_state
        return global_state.get_global_attribute("shared_objects/id_to_config_map") is not None
    except ImportError:          # another Keras: the plain config, unshared as before
        return False


@keras.saving.register_keras_serializable(package="kerasflows")
class Flow(FlowInputs, EvalModes, FlowBase, FlowSampling, FlowTraining, keras.Model):
    """A normalizing flow: `layers` stacked over a base distribution.

    Layer 0 is applied first in the forward (sampling) direction, so data
    pass through the layers in reverse order on their way to the base.
    Calling the model on `x` returns `log_prob(x)`; `compile()` and `fit(x)`
    train it by maximum likelihood (the loss is the mean negative
    log-likelihood in nats per example; no targets are needed).

    Example:

    ```python
    x = kerasflows.datasets.load("moons", n=10_000)
    flow = kerasflows.models.NSF(event_dim=2, num_layers=4)
    flow.compile(optimizer=keras.optimizers.Adam(1e-3))
    flow.fit(x, batch_size=512, epochs=20)
    samples = flow.sample(1000, seed=0)
    ```

    Args:
        layers: a list of `kerasflows.layers.FlowLayer`.
        event_dim: the dimension D of the data.
        base: `"normal"` (standard normal), `"learned_normal"` (a diagonal
            Gaussian whose mean and log-scale are trained) or `"student_t"`
            (independent standard Student-t coordinates, each with its own
            degrees of freedom, trained from `STUDENT_T_INITIAL_DF` = 10; `base_df`):
            heavy tails for heavy-tailed data, which a flow of Lipschitz
            layers over a Gaussian cannot reach (Jaini et al. 2020, "Tails of
            Lipschitz triangular flows"; per-coordinate degrees of freedom as in
            Laszkiewicz et al. 2022, "Marginal tail-adaptive normalizing flows").
        context_dim: size of the context vector for a conditional flow.
        context_encoder: optional Keras layer or model (for example a
            `keras.Sequential` of `Dense` layers) that maps the context
            `[batch, context_dim]` to the features `[batch, E]` the layers
            are conditioned on (their `context_dim` is then E), as nflows'
            `embedding_net`. It is trained with the flow, saved with it and
            run inside every method, so `log_prob`, `sample`, `fit((x, c))`,
            exports and the visualizer all take the context as given.
            `flow.context_features` is E (`context_dim` without an encoder).
        **kwargs: passed to `keras.Model` (`name`, `dtype`).

    Mixed precision: under a mixed policy (`"mixed_float16"`,
    `"mixed_bfloat16"`, passed as `dtype` or set with
    `keras.config.set_dtype_policy`) a flow's own arithmetic (base
    density, transforms, log-dets) stays in float32 and only the layers'
    conditioner networks compute in the low-precision dtype (see
    `kerasflows.layers.FlowLayer`); `log_prob` returns float32. With
    float16 conditioners, `compile` wraps the optimizer in a
    `keras.optimizers.LossScaleOptimizer`, as Keras does for a
    `"mixed_float16"` model (`auto_scale_loss=False` turns it off).

    Call arguments:
        inputs: `x` of shape `[batch, D]` (or `(x,)`), or `(x, context)` when conditional.

    Returns:
        `log_prob(x)`, shape `[batch]`.

    Raises:
        ValueError: for an invalid layer list (an empty one leaves the base
            distribution alone), an unknown base,
            layers whose context size differs from the flow's (or from the
            width of `context_encoder`'s output), or a `context_encoder`
            without `context_dim` or that is not a Keras layer.
    """

    def __init__(self, layers, event_dim, base="normal", context_dim=None,
                 context_encoder=None, **kwargs):
        kwargs, _ = split_mixed_policy(kwargs)
        super().__init__(**kwargs)
        check_float_compute("A flow computes densities", self.compute_dtype)
        self.event_dim = check_positive_int("event_dim", event_dim)
        self.context_dim = check_positive_int("context_dim", context_dim, allow_none=True)
        if base not in BASES:
            raise ValueError(f"`base` must be one of {BASES}. Received: base={base!r}")
        self.base = base
        self.context_encoder = context_encoder
        layer_context_dim = self.context_dim
        if context_encoder is not None:
            layer_context_dim = encoded_context_dim(context_encoder, self.context_dim)
        if isinstance(layers, (FlowLayer, str)) or not hasattr(layers, "__iter__"):
            raise ValueError("Flow layers must be a list of kerasflows.layers.FlowLayer "
                             f"instances; received {type(layers).__name__}: {layers!r}"
                             + (" (wrap one layer in a list: [layer])"
                                if isinstance(layers, FlowLayer) else ""))
        layers = list(layers)
        for i, layer in enumerate(layers):
            if not isinstance(layer, FlowLayer):
                raise ValueError(f"Flow layers must be kerasflows.layers.FlowLayer instances; "
                                 f"layer {i} is {type(layer).__name__}: {layer!r}")
            if layer.compute_dtype != self.compute_dtype:
                raise ValueError(
                    f"Layer {i} ({layer.name}) computes in {layer.compute_dtype} but the flow "
                    f"in {self.compute_dtype}: give the flow and its layers one dtype "
                    f"(Flow(..., dtype={layer.compute_dtype!r}) or the layers' dtype="
                    f"{self.compute_dtype!r}), or set it for all with "
                    "keras.config.set_dtype_policy.")
            if layer.context_dim is not None and layer.context_dim != layer_context_dim:
                where = (f"the flow has context_dim={self.context_dim}"
                         if context_encoder is None else
                         f"the flow's context_encoder maps its context_dim={self.context_dim} "
                         f"to {layer_context_dim} features")
                raise ValueError(f"Layer {i} ({layer.name}) has context_dim={layer.context_dim} "
                                 f"but {where}.")
        if self.context_dim is not None and all(l.context_dim is None for l in layers):
            raise ValueError(
                f"The flow has context_dim={self.context_dim} but none of its "
                f"{len(layers)} layers takes a context (each has context_dim=None), so the "
                "context would be ignored: give the conditional layers context_dim="
                f"{layer_context_dim}, or leave the flow's context_dim unset.")
        self.flow_layers = layers
        #: The width of the context the layers see: the encoder's output, or context_dim.
        self.context_features = layer_context_dim
        for layer in layers:
            layer.ensure_built(self.event_dim)
        self._add_base_weights()
        self.sample_seed = keras.random.SeedGenerator(name="sample_seed")
        self._compiled = CallCache()
        self._eval_mode = "graph"
        self.built = True

    # -- the two directions --------------------------------------------------
    def _unencodable(self, h, total, states, log_dets, encoded):
        """NaN for the rows whose context, as the layers see it, is not finite (a
        NaN or inf context; `ClassEmbedding`'s NaN features for an unknown label).
        Left to the conditioners, the NaN came out as NaN eagerly and under XLA
        but as finite numbers from TensorFlow graphs, whose fused
        matmul-bias-ReLU kernels turn NaN into 0."""
        if encoded is None:
            return h, total, (states, log_dets)
        bad = nonfinite_rows(encoded)
        states = states[:1] + [nan_rows(bad, t) for t in states[1:]]
        return (nan_rows(bad, h), nan_rows(bad, total),
                (states, [nan_rows(bad, t) for t in log_dets]))

    def _run_inverse(self, x, context, training=False, keep=False, log_det=True):
        """`(z, log-det, (states, log_dets))` of data `x`; with `log_det=False` the map
        alone (`FlowLayer.transform`) and a log-det of 0."""
        context = self._encode(context, training=training)
        h, total, states, log_dets = x, tf.zeros(tf.shape(x)[:1], x.dtype), [x], []
        for layer in reversed(self.flow_layers):
            if not log_det:
                h = layer.transform(h, context=context_for(layer, context), forward=False)
                continue
            h, ld = layer.inverse_and_log_det(h, context=context_for(layer, context),
                                              training=training)
            total += ld
            if keep:
                states.append(h)
                log_dets.append(ld)
        return self._unencodable(h, total, states, log_dets, context)

    def _run_forward(self, z, context, keep=False, training=False, log_det=True):
        """`(x, log-det, (states, log_dets))` of base `z`; with `log_det=False` the map
        alone (`FlowLayer.transform`) and a log-det of 0."""
        context = self._encode(context, training=training)
        h, total, states, log_dets = z, tf.zeros(tf.shape(z)[:1], z.dtype), [z], []
        for layer in self.flow_layers:
            if not log_det:
                h = layer.transform(h, context=context_for(layer, context), forward=True)
                continue
            h, ld = layer.forward_and_log_det(h, context=context_for(layer, context),
                                              training=training)
            total += ld
            if keep:
                states.append(h)
                log_dets.append(ld)
        return self._unencodable(h, total, states, log_dets, context)

    def forward_and_log_det(self, z, context=None):
        """Base to data: returns `(x, log|det dx/dz|)`."""
        z, context = self._prepare(z, context)
        fn = lambda z, c=None: self._run_forward(z, c)[:2]
        return self._eager_compiled("forward", fn, z, context)

    def inverse_and_log_det(self, x, context=None):
        """Data to base: returns `(z, log|det dz/dx|)`."""
        self._check_invertible()
        x, context = self._prepare(x, context)
        fn = lambda x, c=None: self._run_inverse(x, c)[:2]
        return self._eager_compiled("inverse", fn, x, context)

    def forward(self, z, context=None):
        """Maps base samples `z` to data space."""
        # the map alone (`FlowLayer.transform`): a ContinuousFlow solves without its
        # log-det, and XLA drops the log-det work of the others
        z, context = self._prepare(z, context)
        fn = lambda z, c=None: self._run_forward(z, c, log_det=False)[0]
        return self._eager_compiled("forward_only", fn, z, context)

    def inverse(self, x, context=None):
        """Maps data `x` to the base space (the flow's features of `x`)."""
        self._check_invertible()
        x, context = self._prepare(x, context)
        fn = lambda x, c=None: self._run_inverse(x, c, log_det=False)[0]
        return self._eager_compiled("inverse_only", fn, x, context)

    def trace(self, z, context=None, return_log_dets=False):
        """Forward trace: `[z, after layer 0, ..., after layer L-1]` (L+1 tensors).

        With `return_log_dets=True` returns `(states, log_dets)`, where
        `log_dets[i]` (`[batch]`) is layer i's forward log|det J|.
        """
        return_log_dets = check_bool("return_log_dets", return_log_dets)   # ("no": True)
        z, context = self._prepare(z, context)
        fn = lambda z, c=None: self._run_forward(z, c, keep=True)[2]
        states, log_dets = self._eager_compiled("trace", fn, z, context)
        return (list(states), list(log_dets)) if return_log_dets else list(states)

    def trace_inverse(self, x, context=None, return_log_dets=False):
        """Inverse trace: `[x, after undoing layer L-1, ..., z]` (L+1 tensors).

        With `return_log_dets=True` returns `(states, log_dets)`, where
        `log_dets[i]` is the inverse log|det J| of the i-th step taken (layer
        L-1-i), so `log p(x) = log p0(states[-1]) + sum(log_dets)`.
        """
        return_log_dets = check_bool("return_log_dets", return_log_dets)
        self._check_invertible()
        x, context = self._prepare(x, context)
        fn = lambda x, c=None: self._run_inverse(x, c, keep=True)[2]
        states, log_dets = self._eager_compiled("trace_inverse", fn, x, context)
        return (list(states), list(log_dets)) if return_log_dets else list(states)

    # -- densities (samples: FlowSampling) -----------------------------------
    def _log_prob(self, x, context=None, training=False):
        self._check_invertible()
        z, ld, _ = self._run_inverse(x, context, training=training)
        return self.base_log_prob(z) + ld

    def log_prob(self, x, context=None):
        """`log p(x)` in nats, shape `[batch]`."""
        self._check_invertible()
        x, context = self._prepare(x, context)
        return self._eager_compiled("log_prob", self._log_prob, x, context)

    def _check_invertible(self):
        for layer in self.flow_layers:
            if layer.forward_only:
                raise layer.no_inverse_error()

    # -- TFP views -------------------------------------------------------------
    def get_bijector(self, context=None):
        """The whole stack as one TFP bijector (forward: base to data), on inputs of
        any batch shape `[..., D]` (its `inner` is the `tfb.Chain` of the layers'
        bijectors, which take `[N, D]` rows). A conditional flow's `context` is
        one row per input row (inputs of other rows are refused), or `[1, C]`.

        It reads the weights when called: the layers' bijectors are built anew
        for each call, so one held across training follows the weights,
        and gradients taken through it reach every weight. Its `trainable_variables`
        are the flow's trainable weights (as `tf.Variable`s; a frozen weight's is
        left out), which TFP's optimisers (`tfp.vi.fit_surrogate_posterior`) train
        (left to find the variables themselves, they train every one the loss reads,
        a frozen weight's too, whose `tf.Variable` Keras leaves trainable: with a
        frozen layer, pass `trainable_variables=view.trainable_variables`). Each is its own in
        TFP's cache, which, as for any TFP bijector of variables, answers the
        inverse of a transform's output (while it lives) from the call that
        made it: score samples drawn since the last weight change."""
        if self.context_dim is not None and context is None:
            raise ValueError(f"This flow is conditional (context_dim={self.context_dim}): "
                             "use get_bijector(context=...).")
        if context is not None:
            context = self._prepare_context(context)

        def chain():
            encoded = None if context is None else self._encode(context)
            return tfb.Chain([layer.bijector(context=context_for(layer, encoded))
                              for layer in reversed(self.flow_layers)])

        forward_only = [layer for layer in self.flow_layers if layer.forward_only]
        rows = None if context is None or context.shape[0] == 1 else context.shape[0]
        return RowsBijector(chain, self.event_dim,
                            forward_only[0].no_inverse_error() if forward_only else None,
                            context_rows=rows, variables=self._view_variables(),
                            dtype=tf.as_dtype(self.compute_dtype))

    def _view_variables(self):
        """The `tf.Variable`s a TFP view lists: the trainable weights', and the others'
        whose `tf.Variable` is not trainable itself (BatchNorm's statistics). A frozen
        weight's is (Keras freezes the weight, not its `tf.Variable`), so it is left
        out: TFP's optimisers train what a view lists."""
        return ([w.value for w in self.trainable_weights]
                + [w.value for w in self.non_trainable_weights if not w.value.trainable])

    def get_distribution(self, context=None):
        """The flow as a TFP `TransformedDistribution` over `[D]` events."""
        if self.context_dim is not None and context is None:
            raise ValueError(f"This flow is conditional (context_dim={self.context_dim}): "
                             "use get_distribution(context=...).")
        return tfd.TransformedDistribution(self.base_distribution(),
                                           self.get_bijector(context))

    @property
    def bijector(self):
        """One TFP bijector for the whole stack (`get_bijector(context)` if conditional)."""
        return self.get_bijector()

    @property
    def distribution(self):
        """The flow as a TFP distribution (`get_distribution(context)` if conditional)."""
        return self.get_distribution()

    # -- Keras ------------------------------------------------------------------
    def call(self, inputs, context=None, training=False):
        if training is True:
            self._warn_uninitialized()
        x, context = self._prepare(*self._split_inputs(inputs, context))
        return self._log_prob(x, context, training=training)

    def _warn_uninitialized(self):
        """Warns if a training call (traced once, in another model's step) finds a layer
        that initialises from data (`ActNorm`, `standardize=True`) not initialised:
        `Flow.fit` initialises first, another model's `fit` does not, and a later
        `Flow.fit` would initialise it over the trained weights."""
        with tf.init_scope():        # the weights' values now, also while tracing
            pending = [f"'{l.name}'" for l in self.uninitialized_layers()]
        if pending:
            warnings.warn(
                f"Flow '{self.name}' is training with layer(s) {', '.join(pending)} not yet "
                "initialised from data (they train from their identity start, and a later "
                "Flow.fit would initialise them over the trained weights): call "
                "flow.initialize(x) on a batch of the data the flow sees before training it "
                "inside another model.", UserWarning, stacklevel=_caller_level())

    @property
    def needs_data_init(self):
        """True if a layer (e.g. `ActNorm`) initialises from the first batch of data."""
        return any(l.needs_data_init for l in self.flow_layers)

    def uninitialized_layers(self):
        """The layers that initialise from data (`ActNorm`) and have not yet
        (`FlowLayer.is_data_initialized`), in order."""
        return [l for l in self.flow_layers if l.needs_data_init and not l.is_data_initialized()]

    def initialize(self, x, context=None):
        """Runs data-dependent initialisation (e.g. `ActNorm`) on a batch `x`.

        Run eagerly, NaN or inf in `x` or `context`, and values of `x` outside the
        data-end layer's `data_domain`, raise ValueError as in `fit`: statistics
        from them would leave the layers NaN (they initialise once)."""
        x, context = self._prepare(x, context)
        if x.shape[0] == 0:
            raise ValueError(f"Flow.initialize needs at least one row; received shape "
                             f"{tuple(x.shape)}.")
        if tf.executing_eagerly():
            check_finite("Flow.initialize's x", x, self.compute_dtype)
            if context is not None and context.dtype.is_floating:
                check_finite("Flow.initialize's context", context, self.compute_dtype)
            check_domain(self, "Flow.initialize's x", x, keras_cast=False)
        context = self._encode(context)
        h = x
        for layer in reversed(self.flow_layers):
            c = context_for(layer, context)
            layer.data_init(h, context=c)
            h, _ = layer.inverse_and_log_det(h, context=c)

    def export(self, path, version=1, overwrite=False, format="tf_saved_model", verbose=None,
               columns=None, dequantized_columns=None, context_columns=None):
        """Writes a TF Serving SavedModel to `path/<version>/`; see `kerasflows.export`.

        `format` and `verbose` are accepted as `keras.Model.export` takes them;
        the one format is `"tf_saved_model"` (with every signature of
        `kerasflows.export`, not only Keras' `serve`). `columns` names the data's
        columns, `context_columns` a conditional flow's context columns, and
        `dequantized_columns` the data columns trained with uniform noise, in the
        export's `assets.extra/kerasflows.json`. Returns the directory
        written.
        """
        from kerasflows.export import SIGNATURES, export_saved_model
        if format != "tf_saved_model":
            raise ValueError(f"Flow.export writes a TF Serving SavedModel "
                             f"(format='tf_saved_model'); received format={format!r}.")
        target = export_saved_model(self, path, version=version, overwrite=overwrite,
                                    columns=columns, dequantized_columns=dequantized_columns,
                                    context_columns=context_columns)
        if verbose:
            print(f"Saved a SavedModel with signatures {', '.join(SIGNATURES)} "
                  f"to {target}")
        return target

    def get_config(self):
        config = super().get_config()
        # a layer object used again (tied weights) is {"same_as": its first index}:
        # from_config (so clone_model, tabulate) ties it again, as load_model does
        first, layers = {}, []
        for i, layer in enumerate(self.flow_layers):
            if id(layer) in first:
                layers.append({"same_as": first[id(layer)]})
            else:
                first[id(layer)] = i
                layers.append(keras.saving.serialize_keras_object(layer))
        config.update(layers=layers, event_dim=self.event_dim, base=self.base,
                      context_dim=self.context_dim)
        if self.context_encoder is not None:
            # Saving a model, the encoder itself, which Keras serializes as it writes the
            # config: an encoder shared by two flows is then written once and loaded as one
            # (a dict of ours is copied by Keras, and its mark as shared went on the copy
            # not written: the second flow's encoder loaded with no weights).
            config["context_encoder"] = (
                self.context_encoder if _keras_shares_objects()
                else keras.saving.serialize_keras_object(self.context_encoder))
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        layers = []
        for entry in config.pop("layers"):
            if isinstance(entry, dict) and set(entry) == {"same_as"}:     # a tied layer
                layers.append(layers[entry["same_as"]])
            else:
                layers.append(keras.saving.deserialize_keras_object(
                    entry, custom_objects=custom_objects))
        if isinstance(config.get("context_encoder"), dict):
            config["context_encoder"] = keras.saving.deserialize_keras_object(
                config["context_encoder"], custom_objects=custom_objects)
        return cls(layers=layers, **config)
