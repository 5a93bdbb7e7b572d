"""Training helpers: `make_train_step`, a compiled maximum-likelihood step for
hand-written training loops (its pieces live in `packed_adam`,
`sharded_step` and `background_step`), and, for `Flow.fit`, the data
checks of `fit_data` and the flat step calls of `flat_calls`."""

import keras
import tensorflow as tf

from kerasflows.background_step import BackgroundCompiledStep
from kerasflows.fit_data import (check_finite, prepare_eval_data, prepare_fit_data,
                                  weights_for_keras)
from kerasflows.flat_calls import FlatCalls, FlatPredictCalls, FlatStepCalls, FlatStepFunctions
from kerasflows.layers.base import check_positive_int
from kerasflows.layers.checks import check_bool
from kerasflows.packed_adam import adam_layout, adam_state, adam_update
from kerasflows.sharded_step import (check_shards, loss_and_grads, shard_rows, sharded_body,
                                     step_inputs, training_state)

__all__ = ["prepare_fit_data", "prepare_eval_data", "check_finite", "weights_for_keras",
           "make_train_step", "shard_rows", "BackgroundCompiledStep", "FlatCalls",
           "FlatStepCalls", "FlatPredictCalls", "FlatStepFunctions"]


def _check_initialized(flow):
    """Raises ValueError if a layer that initialises from data (`ActNorm`) has not
    (`FlowLayer.is_data_initialized`): a train step would train it from its
    placeholder values, and a later `fit` would then initialise it over the
    trained ones."""
    pending = [f"'{l.name}'" for l in flow.uninitialized_layers()]
    if pending:
        several = len(pending) > 1
        raise ValueError(
            f"make_train_step: layer{'s' if several else ''} {', '.join(pending)} must "
            f"initialise from data before training and {'have' if several else 'has'} not "
            "been initialised yet: call flow.initialize(x) on a batch of training data (as "
            "fit does with its first batch) before making the step.")


class CheckedStep:
    """`step(x, context=None) -> loss`: `function` (a `tf.function`) called with
    `step_inputs(flow, x, context)`, tensors of the flow's dtype whose shapes are
    checked on the whole batch, converted here, outside the compiled call. Its
    other attributes (`get_concrete_function`, `function_spec`) are `function`'s."""

    def __init__(self, flow, function):
        self._flow = flow
        self._function = function

    def __call__(self, x, context=None):
        return self._function(*step_inputs(self._flow, x, context))

    def __getattr__(self, name):
        return getattr(self._function, name)


def _check_flow_and_optimizer(flow, optimizer):
    """Raises a TypeError naming `flow` or `optimizer` if it is not a
    `kerasflows.Flow` or a Keras optimizer (an optimizer's name among them)."""
    from kerasflows.flow import Flow        # kerasflows.flow imports this module's users

    if not isinstance(flow, Flow):
        raise TypeError(f"`flow` must be a kerasflows.Flow. Received: flow={flow!r}")
    if not isinstance(optimizer, keras.optimizers.Optimizer):
        hint = " (an instance, not a name: pass e.g. keras.optimizers.Adam(1e-3))" \
            if isinstance(optimizer, str) else ""
        raise TypeError(f"`optimizer` must be a keras.optimizers.Optimizer{hint}. Received: "
                        f"optimizer={optimizer!r}")


def make_train_step(flow, optimizer, jit_compile=True, background_compile=False, shards=1):
    """Returns `step(x, context=None) -> loss`: one maximum-likelihood optimizer step.

    The step calls a `tf.function` (XLA-compiled with `jit_compile=True`;
    its `get_concrete_function` and `function_spec` are the step's) that
    computes the mean negative log-likelihood of the batch (plus any layer
    losses, as `Flow.compute_loss`), its gradient and the optimizer update
    in one compiled call; the returned loss (a scalar tensor, nats per
    example) is the only value that leaves it. `x` and `context` may be
    arrays, tensors or nested lists (as `Flow.log_prob` takes them): before
    that call they become tensors of the flow's dtype, their shapes checked
    on the whole batch (`sharded_step.step_inputs`).

    A plain `keras.optimizers.Adam` (no clipping, weight decay, EMA, AMSGrad
    or gradient accumulation) is updated by the step itself, with Keras
    Adam's formula and the optimizer's own variables (fewer ops than
    `apply_gradients`: faster tracing and compilation). An Adam that is not
    built yet is built here on a *packed* layout: `optimizer.variables` are
    its iteration count, learning rate and one first- and one second-moment
    vector over all of `flow.trainable_variables` (flattened, in that order),
    not one pair per weight, so the compiled step handles 2 moment variables
    instead of 2 per weight; each variable costs an XLA launch microseconds,
    which on small steps adds up (MAF on 2-D data, batch 512: 2.0 -> 1.7 ms
    a step). Such an optimizer belongs to the flow's steps: a later
    `make_train_step` for the same flow reuses it, but Keras'
    `apply_gradients` (or `fit`) cannot; another flow raises, whatever its
    size. An Adam
    already built for the flow's weights keeps its per-weight slots (TF's
    fused Adam kernel, one op per weight); one built for other weights
    raises; any other optimizer runs its own `apply_gradients`.

    A flow with float16 conditioners (a `"mixed_float16"` policy, see
    `kerasflows.Flow`) trains through a `keras.optimizers.LossScaleOptimizer`
    wrapping `optimizer` (unless it is one already), as `Flow.compile` does.

    With `shards > 1` each batch is split into that many consecutive parts
    (`shard_rows`), each part's loss and gradient is computed by its own
    call of one compiled function, and TensorFlow runs those calls at the
    same time, one per inter-op thread; the gradients, weighted by rows, are
    then applied in one more compiled call. It is the same update up to
    float rounding. XLA:CPU runs the small matrix products of a training
    step on one core, so on a CPU `shards=2` puts a second core to work
    (2 cores, batches of 512, 5 layers, hidden [64, 64], side by side in
    `benchmarks/shards_ab.py`: 64-D RealNVP 2.09 -> 1.72 ms a step, MAF
    3.79 -> 2.95 ms; 2-D NSF coupling 1.76 -> 1.42 ms, RealNVP 0.86 ->
    0.77 ms, MAF 1.34 -> 1.22 ms; the 2-D autoregressive NSF none); on a
    GPU, keep 1. With a plain Adam the compiled calls take the weights'
    values, not the variables (the step reads them once and writes the
    update's new weights back), which keeps the three calls' own cost low.
    Layer losses are per-batch terms and count once. Not for flows that
    update state while they train (`BatchNorm`).

    The step runs on one device: under a `tf.distribute` strategy, or for a
    flow whose weights one made (distributed variables), it raises a
    ValueError; use `Flow.fit` or `kerasflows.distributed.train_flow` there.

    Each new batch shape traces (and compiles) again, so feed batches of
    one size. Layers that need data-dependent initialisation (`ActNorm`)
    must be initialised first with `flow.initialize(x)` (a ValueError says
    so otherwise, for each layer that answers `FlowLayer.is_data_initialized`
    False).

    With `background_compile=True` (and `jit_compile=True`, a plain Adam) the
    step is a `BackgroundCompiledStep`: training starts as soon as the step
    is traced, running it as a TensorFlow graph while XLA compiles it on a
    background thread, and switches to the compiled step when it is ready
    (the same computation, so the losses agree to float rounding; which
    steps ran as a graph depends on timing, so two runs are not bitwise
    equal). With `background_compile=N` (an int) exactly the first `N` steps
    of each batch shape run as a graph, even when XLA is done sooner, and
    from step `N + 1` the compiled step runs (step `N + 1` waits for the
    compilation if it has not finished): the same seed then gives the same
    run, bit for bit. Otherwise (another optimizer, no XLA, or a flow whose training call
    updates state of its own, such as `BatchNorm`'s moving statistics) the
    option is ignored.

    Example:

    ```python
    flow = kerasflows.models.MAF(2)
    step = make_train_step(flow, keras.optimizers.Adam(1e-3))
    for xb in batches:
        loss = float(step(xb))
    ```

    Args:
        flow: a `kerasflows.Flow`.
        optimizer: a Keras 3 optimizer (built here for the flow's weights,
            packed for an unbuilt Adam: see above).
        jit_compile: compile the step with XLA.
        background_compile: compile it on a background thread while the
            first steps run uncompiled (see above): True (switch as soon as
            it is compiled), or the number of uncompiled steps (switch after
            exactly that many, for reproducible runs).
        shards: split each batch into this many parts computed at the same
            time (see above); 1: one call for the whole step.

    Returns:
        The step: a `CheckedStep` around the compiled function, or (with
        `background_compile`) a `BackgroundCompiledStep`.

    Raises:
        TypeError: `flow` is not a `kerasflows.Flow`, or `optimizer` not a
            Keras optimizer instance (a name such as `"adam"` included).
        ValueError: (from the step) a batch of no rows, `x` not `[batch,
            event_dim]`, or a context the flow does not take (not `[batch,
            context_dim]` or `[1, context_dim]`, or given to an unconditional flow).
    """
    _check_flow_and_optimizer(flow, optimizer)
    _check_initialized(flow)
    shards = check_shards(flow, shards)
    jit_compile = check_bool("jit_compile", jit_compile)     # ("no" compiled)
    graph_steps = None
    if background_compile is not True and background_compile is not False:
        graph_steps = check_positive_int("background_compile", background_compile)
    optimizer = flow.with_loss_scaling(optimizer)
    variables = list(flow.trainable_variables)
    layout = adam_layout(optimizer, variables)
    if background_compile and jit_compile and layout and not training_state(flow):
        return BackgroundCompiledStep(flow, optimizer, shards=shards, graph_steps=graph_steps)
    if shards > 1:
        body = sharded_body(flow, variables, optimizer, layout, jit_compile)
        state = adam_state(optimizer, variables) if layout else None
        return CheckedStep(flow, tf.function(
            lambda x, context=None: body(x, context, state, shards), autograph=False))

    def step(x, context=None):
        loss, grads = loss_and_grads(flow, variables, x, context, optimizer)
        if layout:
            adam_update(optimizer, grads, adam_state(optimizer, variables), layout)
        else:
            optimizer.apply_gradients(zip(grads, variables))
        return loss
    # No autograph: the step has no Python control flow on tensors, and converting
    # it (and everything it calls) took about a third of the tracing time.
    return CheckedStep(flow, tf.function(step, jit_compile=bool(jit_compile), autograph=False))
