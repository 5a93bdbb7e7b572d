"""Calls of a `tf.function` through its flat inputs, and the `keras.Model` mixin
that runs `fit` / `evaluate` steps that way."""

import weakref

import keras
import numpy as np
import tensorflow as tf

from kerasflows.graph_calls import light_calls

__all__ = ["FlatCalls", "FlatStepCalls", "FlatPredictCalls", "FlatStepFunctions"]


def _leaf_signature(t):
    """A hashable description of one data leaf, batch size left out."""
    if t is None:
        return None
    return (tuple(t.shape[1:]), t.dtype)


def _structure(data):
    """The nesting of `data` (tuples, lists, dicts), hashable; leaves as "."."""
    if isinstance(data, (tuple, list)):
        return (type(data).__name__,) + tuple(_structure(d) for d in data)
    if isinstance(data, dict):
        return ("dict",) + tuple((k, _structure(data[k])) for k in sorted(data))
    return "."


class FlatCalls:
    """Calls a `tf.function` of one (possibly nested) batch argument through its
    flat inputs: `FlatCalls(fn)(data)` returns `fn(data)`.

    A `tf.function` call looks its traced graph up by hashing the call's
    whole signature, captured variables included (a flow's weights, its
    optimizer's slots: ~100 of them for a 5-layer flow; in a cProfile of
    `fit` for MAF on 2-D data, the largest Python cost of a step). Here the
    graph is traced once per kind of batch (structure, dtypes and
    sizes but the batch dimension, which is left unknown, as Keras'
    `reduce_retracing` does; XLA still compiles each batch size once) and
    called with the batch's tensors and the captured inputs bound once. Unless
    `fn` is XLA-compiled, the calls are made in `graph_calls.light_calls()`
    (a shorter first call: TensorFlow's graph optimiser runs on it).

    Attributes:
        traces: number of graphs traced so far.
    """

    def __init__(self, fn):
        self._fn = fn
        self._light = not getattr(fn, "_jit_compile", False)
        self._calls = {}
        self.traces = 0

    def __call__(self, data):
        leaves = [None if t is None else tf.convert_to_tensor(t) for t in tf.nest.flatten(data)]
        key = (_structure(data), tuple(_leaf_signature(t) for t in leaves))
        call = self._calls.get(key)
        if call is None:
            call = self._calls[key] = self._trace(data, leaves)
        if self._light:     # every call: a graph is instantiated once per set of options
            with light_calls():
                return call(data, leaves)
        return call(data, leaves)

    def _trace(self, data, leaves):
        """Traces `fn` for this kind of batch; returns `call(data, leaves)`."""
        spec = tf.nest.pack_sequence_as(data, [
            None if t is None else tf.TensorSpec([None, *t.shape[1:]] if t.shape.rank else [],
                                                 t.dtype) for t in leaves])
        fn = self._fn.get_concrete_function(spec)
        self.traces += 1
        captured = fn.captured_inputs
        if len(fn.inputs) - len(captured) != sum(t is not None for t in leaves):
            # another TensorFlow: the structured call
            return lambda data, leaves: fn(tf.nest.pack_sequence_as(data, leaves))
        return lambda data, leaves: fn._call_flat([t for t in leaves if t is not None], captured)


def _weak(obj):
    """A weak reference to `obj`, or for an object that takes none a callable
    returning it."""
    try:
        return weakref.ref(obj)
    except TypeError:
        return lambda: obj


def _repeat_rows(data, rows, length):
    """`(data, index)`: every tensor of `data` with `rows` rows (None and others
    kept: a conditional batch's one context row shared by all) lengthened to
    `length` rows by repeating its rows cyclically; `index` the rows taken."""
    index = np.arange(length) % rows
    lengthened = lambda t: (t if t is None or not t.shape.rank or t.shape[0] != rows
                            else tf.gather(t, index))
    return tf.nest.map_structure(lengthened, data), index


class FlatStepCalls(FlatCalls):
    """Keras' train (or test) function for `fit` / `evaluate`: `FlatCalls` of the step.

    `Flow.make_train_function` / `make_test_function` use it in place of
    Keras' own (see `Flow.flat_step_calls`): `function(iterator)` takes the
    next `steps_per_execution` batches from `iterator` and runs
    `step_fn(batch)` (Keras' `train_step` / `test_step`, compiled with XLA if
    `jit_compile`) on each, as Keras does, and returns the last logs; each
    call goes through the step's flat inputs (`FlatCalls`) instead of Keras'
    `tf.function` call.

    An XLA-compiled step compiles once per batch size, so the short last batch
    of an epoch (`N % batch_size` rows) would compile the step a second time
    (3.1 s for a 2-D NSF flow). When the model allows it
    (`model.pads_short_batches()`), a batch shorter than the
    longest one seen from the same iterator is padded to that length instead:
    its rows repeated, the repeats weighted 0, so the step's weighted loss, its
    gradient and the loss Keras reports are those of the real rows, from the
    executable the full batches use. Unweighted batches get weights of 1 for
    that (`Flow.fit` and `evaluate` give them to array data whose last batch
    is short; a stream's batches get them here).

    Attributes:
        padded: number of batches padded so far.
        min_rows: the length a new iterator's batches are padded to at least
            (`Flow.evaluate` sets it for arrays of fewer rows than a batch).
    """

    def __init__(self, model, step_fn, jit_compile):
        super().__init__(tf.function(step_fn, jit_compile=bool(jit_compile), autograph=False))
        self.model = model
        self._jit = bool(jit_compile)
        self._pads = None
        self._iterator = None
        self._rows = 0
        self.min_rows = 0
        self.padded = 0
        self._ones = {}                 # weights of 1 for an unweighted batch, by rows

    def __call__(self, iterator):
        if self._pads is None:
            pads = getattr(self.model, "pads_short_batches", None)
            self._pads = self._jit and callable(pads) and bool(pads())
        if self._pads and (self._iterator is None or self._iterator() is not iterator):
            # a new epoch's or call's batches (a weak reference: the iterator may hold
            # a shuffle buffer, and must go with Keras' loop)
            self._iterator, self._rows = _weak(iterator), self.min_rows
        logs = None
        for _, data in zip(range(self.model.steps_per_execution), iterator):
            if self._pads:
                data = self._padded(data)
            logs = super().__call__(data)
        if logs is None:
            raise StopIteration
        return logs

    def _padded(self, data):
        """`data` weighted, and padded to the iterator's longest batch if it is
        shorter. An unweighted batch gets weights of 1 (a stream's: then every
        batch has one form, and its short last batch can be padded, not compiled
        for; arrays whose last batch is short have them from `Flow.fit`)."""
        x, y, weight = keras.utils.unpack_x_y_sample_weight(data)
        if weight is None:
            rows = int(tf.nest.flatten(x)[0].shape[0])
            weight = self._ones.get(rows)
            if weight is None:
                weight = self._ones[rows] = tf.ones([rows], tf.float32)
            data = (x, y, weight)
        rows = int(weight.shape[0])
        if rows >= self._rows:
            self._rows = rows
            return data
        (x, y, weight), index = _repeat_rows((x, y, weight), rows, self._rows)
        self.padded += 1
        return x, y, weight * tf.constant(index == np.arange(self._rows), weight.dtype)


class FlatPredictCalls(FlatCalls):
    """Keras' predict function for `predict`: `FlatCalls` of `predict_step`.

    `function(data)` takes Keras' list of one batch and returns
    `predict_step(batch)`. Under XLA a batch shorter than the longest one of
    the same `predict` call (`rows`, set by `Flow.predict`: 0, or for arrays of
    fewer rows than a batch the power of two from their rows) is padded to that
    length, its rows repeated, and the result cut back to its rows: the short
    last batch runs on the full batches' executable instead of compiling its
    own (predict runs the flow in inference mode, so no layer's state sees the
    repeats).

    Attributes:
        rows: the longest batch of the current `predict` call so far.
        padded: number of batches padded so far.
    """

    def __init__(self, step_fn, jit_compile):
        super().__init__(tf.function(step_fn, jit_compile=bool(jit_compile), autograph=False))
        self._jit = bool(jit_compile)
        self.rows = 0
        self.padded = 0

    def __call__(self, data):
        batch = data[0]
        leaves = [t for t in tf.nest.flatten(batch) if t is not None]
        rows = int(leaves[0].shape[0])
        if not self._jit or rows >= self.rows:
            self.rows = max(self.rows, rows)
            return super().__call__(batch)
        self.padded += 1
        out = super().__call__(_repeat_rows(batch, rows, self.rows)[0])
        return tf.nest.map_structure(lambda t: t[:rows], out)


class FlatStepFunctions:
    """A `keras.Model` mixin: `fit` / `evaluate` call the step through
    `FlatStepCalls` (see `flat_step_calls`), and the optimizer is built before
    the train step's first trace. `Flow` and `VariationalFlow` use it.

    Without a distribution strategy Keras leaves building the optimizer to the
    step's first trace, and a `tf.function` whose trace makes variables is
    traced twice: the first `fit` call of a conditional 5-layer NSF coupling
    flow on 2-D data took 7.95 s that way against 5.16 s
    (`benchmarks/first_step.py --mode fit`, README).
    """

    #: Run `fit` / `evaluate` batches through `FlatStepCalls` (the same step,
    #: called through its flat inputs, without Keras' per-call signature
    #: lookup, and as a plain graph with `graph_calls.light_calls`) when nothing
    #: needs Keras' own loop: no distribution strategy, `steps_per_execution=1`
    #: and not `run_eagerly`. False: always Keras' loop.
    flat_step_calls = True

    def _under_strategy(self):
        """True if the model was made, or is used, in a distribution strategy's scope."""
        return bool(self._distribute_strategy) or tf.distribute.has_strategy()

    def _flat_calls_apply(self):
        return (self.flat_step_calls and not self.run_eagerly and self.steps_per_execution == 1
                and not self._under_strategy())

    def _step_function(self, name, step_fn, keras_make, force):
        """`self.<name>` (the train or test function), made if needed: Keras' own
        (`keras_make`), or (see `flat_step_calls`) a `FlatStepCalls` of `step_fn`."""
        if getattr(self, name) is not None and not force:
            return getattr(self, name)
        if not self._flat_calls_apply():
            return keras_make(force=force)
        setattr(self, name, FlatStepCalls(self, step_fn, self.jit_compile))
        return getattr(self, name)

    def make_train_function(self, force=False):
        """Keras' train function, or (see `flat_step_calls`) a `FlatStepCalls` of
        `train_step`; the optimizer is built first (its slots made for the
        model's trainable weights) if every layer is built and it is not yet."""
        if (self.optimizer is not None and not self.optimizer.built
                and not self._under_strategy()
                and all(layer.built for layer in self._flatten_layers())):
            self.optimizer.build(self.trainable_variables)
        return self._step_function("train_function", self.train_step,
                                   super().make_train_function, force)

    def make_predict_function(self, force=False):
        """Keras' predict function, or (see `flat_step_calls`) a `FlatPredictCalls`
        of `predict_step`."""
        if self.predict_function is not None and not force:
            return self.predict_function
        if not self._flat_calls_apply():
            return super().make_predict_function(force=force)
        self.predict_function = FlatPredictCalls(self.predict_step, self.jit_compile)
        return self.predict_function

    def make_test_function(self, force=False):
        """Keras' test function, or (see `flat_step_calls`) a `FlatStepCalls` of `test_step`."""
        return self._step_function("test_function", self.test_step,
                                   super().make_test_function, force)
