"""Maximum-likelihood training under any `tf.distribute` strategy, with crash-safe resume.

Keras 3's `Model.fit` fails under `tf.distribute.MultiWorkerMirroredStrategy`
(keras-team/keras#20585, tensorflow/tensorflow#72388), so this module runs
its own loop, which works the same under the default strategy, under
`MirroredStrategy` and across workers:

- the flow and its Adam optimizer are built inside `strategy.scope()`, so
  their variables are mirrored on every replica;
- each epoch is one fixed permutation of the data (from `seed` and the epoch
  number), cut into full global batches (the remainder is dropped; the next
  epoch's permutation differs) and spread over the replicas with
  `strategy.experimental_distribute_dataset`;
- every replica takes the gradient of the sum of its examples' NLL divided
  by the global batch size; the optimizer sums the gradients over replicas,
  so a step equals one `fit` step on the whole batch (mean NLL in nats);
- after every epoch the chief writes a checkpoint (weights, optimizer state,
  epoch, history) atomically. Run the same command again after a crash and
  training continues from the last finished epoch; in a multi-worker run
  the chief's checkpoint is broadcast to every worker.

Example:

```python
strategy = kerasflows.distributed.get_strategy("multiworker")  # reads TF_CONFIG
flow, history = kerasflows.distributed.train_flow(
    lambda: kerasflows.models.NSF(event_dim=2), x, epochs=20, strategy=strategy)
```
"""

import contextlib
import json
import math
import operator
import os
import weakref

import keras
import numpy as np
import tensorflow as tf

from kerasflows import dequantization
from kerasflows.checkpoint import EpochCheckpoint, content_digest
from kerasflows.data_checks import check_domain
from kerasflows.layers.base import check_positive_int
from kerasflows.layers.checks import check_float
from kerasflows.layers.embedding import label_embedding

__all__ = ["train_flow", "get_strategy", "is_chief", "evaluate_nll", "epoch_order", "epoch_rows",
           "STRATEGIES"]

STRATEGIES = ("default", "mirrored", "multiworker")


def get_strategy(name="default"):
    """The `tf.distribute` strategy called `name` (one of `STRATEGIES`).

    `"multiworker"` builds a `MultiWorkerMirroredStrategy` from the
    `TF_CONFIG` environment variable, which every worker must set.
    """
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multiworker":
        _check_tf_config()
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ValueError(f"Unknown strategy {name!r}; expected one of {STRATEGIES}.")


def _check_tf_config():
    """Refuses a missing or malformed `TF_CONFIG` with a message naming it (TensorFlow
    reported bad JSON without saying where it came from)."""
    import json
    import os
    text = os.environ.get("TF_CONFIG")
    example = ('such as {"cluster": {"worker": ["10.0.0.1:12345", "10.0.0.2:12345"]}, '
               '"task": {"type": "worker", "index": 0}}')
    if not text:
        raise ValueError("strategy 'multiworker' needs the TF_CONFIG environment variable "
                         "(the cluster and this worker's task); see the README.")
    try:
        config = json.loads(text)
    except ValueError as e:
        raise ValueError(f"TF_CONFIG is not valid JSON ({e}); expected an object "
                         f"{example}.") from None
    task = config.get("task") if isinstance(config, dict) else None
    if not (isinstance(config, dict) and isinstance(config.get("cluster"), dict)
            and isinstance(task, dict) and "type" in task and "index" in task):
        raise ValueError(f"TF_CONFIG must name the cluster and this worker's task, "
                         f"{example}; received {text[:200]!r}.")


def _is_multiworker(strategy):
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


def is_chief(strategy):
    """True in a single process, and on the chief (worker 0) of a multi-worker run."""
    if not _is_multiworker(strategy):
        return True
    resolver = strategy.cluster_resolver
    if resolver.task_type in (None, "chief"):
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return resolver.task_type == "worker" and resolver.task_id == 0 and not has_chief


def epoch_order(n, seed, epoch):
    """The permutation of `n` examples used in `epoch` (depends only on seed and epoch)."""
    return np.random.default_rng([seed, epoch]).permutation(n)


_EVAL_FUNCTIONS = weakref.WeakKeyDictionary()


def evaluate_nll(flow, x, context=None, batch_size=8192):
    """Mean NLL of `x` under `flow` in nats and its standard error: `(mean, se)`.

    A conditional flow takes `context` `[N, C]`, one row per example. Both are
    taken in the flow's compute dtype (float64 for a float64 flow; float32 for
    a float32 or mixed-precision one). Runs one traced (not XLA-compiled) graph
    for every batch size, so no compilation per distinct shape.
    """
    batch_size = check_positive_int("batch_size", batch_size)
    x = np.asarray(x, flow.compute_dtype)       # float32 rounded a float64 flow's data
    if x.ndim != 2 or x.shape[1] != flow.event_dim:
        raise ValueError(f"evaluate_nll: x must have shape (N, {flow.event_dim}) for this "
                         f"flow; received shape {x.shape}.")
    if len(x) == 0:
        raise ValueError("evaluate_nll needs at least one example; received 0 rows.")
    if context is not None:
        context = np.asarray(context, flow.compute_dtype)
        width = "C" if flow.context_dim is None else flow.context_dim
        if context.ndim != 2 or flow.context_dim not in (None, context.shape[1]):
            raise ValueError(f"evaluate_nll: context must have shape (N, {width}), one row "
                             f"per example; received shape {context.shape}.")
        if len(context) != len(x):
            raise ValueError(f"context has {len(context)} rows but x has {len(x)}.")
    flow._prepare_context(None if context is None else context[:1])   # C, or None, checked
    if flow not in _EVAL_FUNCTIONS:
        specs = [tf.TensorSpec([None, flow.event_dim], flow.compute_dtype)]
        if flow.context_dim is not None:
            specs.append(tf.TensorSpec([None, flow.context_dim], flow.compute_dtype))
        # through a weak reference: a bound `flow.log_prob` held its key, the flow, and
        # no entry was ever dropped (every flow evaluated stayed alive)
        ref = weakref.ref(flow)
        _EVAL_FUNCTIONS[flow] = tf.function(lambda *args: ref().log_prob(*args),
                                            input_signature=specs, autograph=False)
    log_prob = _EVAL_FUNCTIONS[flow]
    batches = [(x[i:i + batch_size],) if context is None else
               (x[i:i + batch_size], context[i:i + batch_size])
               for i in range(0, len(x), batch_size)]
    nll = np.concatenate([-log_prob(*b).numpy() for b in batches]).astype(np.float64)
    se = float(nll.std(ddof=1) / math.sqrt(len(nll))) if len(nll) > 1 else float("nan")
    return float(nll.mean()), se


def _check_train_arguments(build_flow, learning_rate, seed, strategy, on_epoch_end):
    """`(learning_rate, seed)` as a Python float and int (Keras' Adam refused a NumPy
    float or an int, `set_random_seed` a NumPy int); raises an error naming the first
    of train_flow's arguments that is not what it takes, before anything is built."""
    if not callable(build_flow) or isinstance(build_flow, keras.Model):
        raise TypeError("`build_flow` must be a function of no arguments returning a "
                        "kerasflows.Flow (such as `lambda: kerasflows.models.MAF(2)`), not a "
                        f"flow. Received: build_flow={build_flow!r}")
    learning_rate = check_float("learning_rate", learning_rate, lambda v: v > 0, "> 0")
    seed = _check_seed(seed)
    if strategy is not None and not isinstance(strategy, tf.distribute.Strategy):
        raise TypeError("`strategy` must be a tf.distribute.Strategy or None (the current "
                        f"one). Received: strategy={strategy!r}")
    if on_epoch_end is not None and not callable(on_epoch_end):
        raise TypeError("`on_epoch_end` must be callable as on_epoch_end(epochs_done, flow, "
                        f"history) or None. Received: on_epoch_end={on_epoch_end!r}")
    return learning_rate, seed


def _check_seed(seed):
    """`seed` as an int in [0, 2**32) (what NumPy's and Keras' seeding take; a NumPy
    integer too), else a ValueError naming train_flow's `seed`."""
    try:
        if isinstance(seed, bool):
            raise TypeError
        value = operator.index(seed)
    except TypeError:
        value = -1
    if not 0 <= value < 2**32:
        raise ValueError("train_flow: `seed` must be an integer in [0, 2**32). "
                         f"Received: seed={seed!r}")
    return value


def _make_optimizer(learning_rate, lr_decay, total_steps):
    if lr_decay == "cosine":
        learning_rate = keras.optimizers.schedules.CosineDecay(learning_rate, total_steps)
    elif lr_decay != "none":
        raise ValueError(f"Unknown lr_decay {lr_decay!r}; expected 'none' or 'cosine'.")
    return keras.optimizers.Adam(learning_rate)


def _make_train_step(flow, optimizer, strategy, jit_compile):
    replicas = strategy.num_replicas_in_sync

    def loss_and_grads(x, count):
        with tf.GradientTape() as tape:
            loss = -tf.reduce_sum(flow(x, training=True)) / count
            for extra in flow.losses:
                loss += tf.cast(extra, loss.dtype) / replicas
        grads = tape.gradient(loss, flow.trainable_variables)
        # the squared norm: inf where Adam's squared gradient overflows while the loss is
        # still finite (a batch holding a row far off the data's scale); one fused reduction
        squares = tf.add_n([tf.reduce_sum(tf.square(tf.cast(g, loss.dtype)))
                            for g in grads if g is not None] or [tf.zeros([], loss.dtype)])
        return loss, grads, squares

    # Compiled on its own, unless a layer's statistics are over every replica's rows
    # (`BatchNorm`): their all-reduce cannot run inside a nested tf.function.
    if not (replicas > 1 and any(getattr(l, "batch_statistics", False)
                                 for l in flow.flow_layers)):
        loss_and_grads = tf.function(loss_and_grads, jit_compile=jit_compile,
                                     reduce_retracing=True)

    def replica_step(batch):        # x, or (x, context) for a conditional flow
        x = batch[0] if isinstance(batch, tuple) else batch
        ctx = tf.distribute.get_replica_context()
        count = ctx.all_reduce("SUM", tf.cast(tf.shape(x)[0], x.dtype))
        loss, grads, squares = loss_and_grads(batch, count)
        optimizer.apply_gradients(zip(grads, flow.trainable_variables))
        return tf.stack([loss, squares])

    @tf.function(reduce_retracing=True)
    def train_step(batch):
        """`[loss, squares]` of one step, each summed over the replicas: `squares`, the
        sum of each replica's squared gradient norm, is for a finiteness check (it is not
        the squared norm of the all-reduced gradient)."""
        return strategy.reduce("SUM", strategy.run(replica_step, args=(batch,)), axis=None)
    return train_step


def epoch_rows(x, context, seed, epoch, dequantize=None):
    """`(rows, context rows or None)`: the training rows of `epoch` in their order,
    `epoch_order`, with the epoch's uniform noise added to the `dequantize`
    columns (if any; the noise depends only on seed and epoch, so a resumed run
    sees the same)."""
    order = epoch_order(len(x), seed, epoch)
    rows = x[order]
    if dequantize:
        rows = dequantization.dequantize(rows, dequantize, seed=[seed, epoch, 1])
    return rows, (None if context is None else context[order])


def _epoch_dataset(x, context, seed, epoch, global_batch, strategy, dequantize=None):
    rows, context = epoch_rows(x, context, seed, epoch, dequantize)
    data = tf.data.Dataset.from_tensor_slices(rows if context is None else (rows, context))
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    data = data.batch(global_batch, drop_remainder=True).with_options(options)
    return strategy.experimental_distribute_dataset(data)


def _sync_from_chief(strategy, variables, restored):
    """Gives every worker the chief's `(epoch, values)`; returns the synced epoch or None."""
    sizes = [int(np.prod(v.shape)) for v in variables]
    flat = np.zeros(2 + sum(sizes))
    if restored is not None and is_chief(strategy):
        flat[0], flat[1] = 1.0, restored[0]
        flat[2:] = np.concatenate([np.ravel(a) for a in restored[1]])
    local = tf.constant(flat, tf.float64)

    def replica_fn():
        ctx = tf.distribute.get_replica_context()
        mine = tf.where(tf.equal(ctx.replica_id_in_sync_group, 0), local, tf.zeros_like(local))
        return ctx.all_reduce("SUM", mine)
    total = strategy.experimental_local_results(tf.function(lambda: strategy.run(replica_fn))())
    total = total[0].numpy()
    if total[0] == 0:
        return None
    parts = np.split(total[2:], np.cumsum(sizes)[:-1])
    return int(total[1]), [p.reshape(v.shape) for p, v in zip(parts, variables)]


def _model_identity(flow):
    """What a checkpoint keeps of the model it trained: the flow's class and its config
    (the layers' classes and settings; Keras' numbered layer names, which depend on
    how many layers the process made before, as `<layer i>`), JSON-able. A layer
    without a config gives the classes of all the layers instead."""
    names, classes = {}, []
    for layer in flow._flatten_layers(include_self=True, recursive=True):
        names.setdefault(layer.name, f"<layer {len(names)}>")
        classes.append(_class_name(layer))

    def canonical(value):
        if isinstance(value, dict):
            return {k: canonical(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [canonical(v) for v in value]
        if isinstance(value, str):
            return names.get(value, value)
        return value
    try:
        config = flow.get_config()
    except NotImplementedError:         # a custom layer Keras cannot describe
        config = {"layer_classes": classes}
    # arrays and tensors as their values; other objects by class (a repr may hold an address)
    config = json.loads(json.dumps(config, default=lambda o: (
        np.asarray(o).tolist() if hasattr(o, "__array__") else f"<{_class_name(o)}>")))
    return {"class": _class_name(flow), "config": canonical(config)}


def _class_name(value):
    return f"{type(value).__module__}.{type(value).__qualname__}"


def _first_difference(found, wanted, where=""):
    """`(path, found, wanted)` of the first place where two JSON values differ, or None."""
    if isinstance(found, dict) and isinstance(wanted, dict):
        for k in sorted(set(found) | set(wanted)):
            if found.get(k, "(none)") != wanted.get(k, "(none)"):
                return _first_difference(found.get(k, "(none)"), wanted.get(k, "(none)"),
                                         f"{where}.{k}" if where else k)
        return None
    if isinstance(found, list) and isinstance(wanted, list) and len(found) == len(wanted):
        for i, (a, b) in enumerate(zip(found, wanted)):
            if a != b:
                return _first_difference(a, b, f"{where}[{i}]")
        return None
    return None if found == wanted else (where, found, wanted)


def _run_settings(flow, x, context, epochs, batch_size, learning_rate, lr_decay, seed,
                  dequantize):
    """What `train_flow`'s checkpoint must have been written with to be resumed when the
    caller gives no `fingerprint`: the model (`_model_identity`), the data (rows and
    SHA-256) and context, and the settings that shape the run (`epochs` only where
    the cosine schedule spans them; more epochs otherwise go on from the checkpoint)."""
    settings = {"train_flow_model": _model_identity(flow),
                "train_flow_batch_size": batch_size,
                "train_flow_learning_rate": float(learning_rate),
                "train_flow_lr_decay": lr_decay, "train_flow_seed": seed,
                "train_flow_dequantize": None if dequantize is None else [int(c) for c in dequantize]}
    if lr_decay == "cosine":
        settings["train_flow_epochs"] = epochs
    for name, array in (("data", x), ("context", context)):
        if array is not None:
            settings[f"train_flow_{name}_rows"], settings[f"train_flow_{name}_sha256"] = (
                content_digest(array))
    return settings


def _restore(checkpoint, strategy, variables):
    restored = None
    if checkpoint is not None and is_chief(strategy):
        restored = checkpoint.load(
            check=lambda found, values: _check_state(checkpoint, variables, values, found))
    if _is_multiworker(strategy):
        synced = _sync_from_chief(strategy, variables, restored and restored[:2])
        if synced is None:
            return 0, None
        restored = (synced[0], synced[1], restored[2] if restored else None)
    if restored is None:
        return 0, None
    epoch, values, history = restored
    for v, value in zip(variables, values):
        v.assign(value.astype(v.dtype))
    return epoch, history


def _check_state(checkpoint, variables, values, found_fingerprint=None):
    """Raises a ValueError, before any variable is written, if the checkpoint's
    fingerprint's model (`_model_identity`, train_flow's own fingerprint) is another,
    naming the first difference, or its arrays are not this model's and its
    optimizer's (Keras' own error named an Adam slot). A checkpoint whose recorded
    settings differ (the CLI's --hidden, --layers) is left to `EpochCheckpoint.load`,
    which names them: the arrays' shapes only said "array 0 is (1, 8)"."""
    wanted = [tuple(v.shape) for v in variables]
    found = [tuple(np.shape(value)) for value in values]
    what = None
    if found_fingerprint is not None:
        settings = checkpoint.fingerprint
        if any(found_fingerprint[k] != settings[k] for k in settings
               if k in found_fingerprint and k != "train_flow_model"):
            return
        model, saved = settings.get("train_flow_model"), found_fingerprint.get("train_flow_model")
        difference = (_first_difference(saved, model) if model is not None and saved is not None
                      else None)
        if difference is not None:
            where, a, b = difference
            what = (f"its {where or 'model'} is {json.dumps(a)[:200]} where this model's is "
                    f"{json.dumps(b)[:200]}")
    if what is None and wanted != found:
        k = next((i for i, (a, b) in enumerate(zip(wanted, found)) if a != b),
                 min(len(wanted), len(found)))
        what = (f"array {k} is {found[k]} where {getattr(variables[k], 'path', k)} is "
                f"{wanted[k]}" if k < min(len(wanted), len(found)) else
                f"{len(found)} arrays for this model's {len(wanted)}")
    if what is not None:
        raise ValueError(f"The checkpoint in {checkpoint.directory} does not fit this model "
                         f"({what}): it is the training state of another model, or was written "
                         f"by an older kerasflows; delete {checkpoint.path} to start afresh, or "
                         "use another checkpoint folder.")


def _run_epoch(step, dist_data, steps, epoch, epochs, verbose, finalize):
    if verbose:
        print(f"Epoch {epoch + 1}/{epochs}", flush=True)
    bar = keras.utils.Progbar(steps, verbose=verbose, stateful_metrics=["val_loss"])
    losses = []
    for i, batch in enumerate(dist_data):
        loss, squares = step(batch).numpy().tolist()
        _check_step(loss, squares, epoch, i)
        losses.append(loss)
        last = finalize and i + 1 == steps
        # a finalizing update shows the value it is given, not the running mean
        bar.update(i + 1, [("loss", float(np.mean(losses)) if last else loss)], finalize=last)
    return bar, losses


_DIVERGED_HINT = ("look for extreme or off-scale rows in the data (rescale or drop them), "
                  "or lower the learning rate.")


def _check_step(loss, squares, epoch, i):
    """Raises a FloatingPointError naming the step if its loss or its gradient's squared
    norm (which overflowed Adam's state while the loss stayed finite) is not finite."""
    where = f"at epoch {epoch + 1}, step {i + 1}"
    if not math.isfinite(loss):
        raise FloatingPointError(f"Training diverged: loss {loss} {where}; {_DIVERGED_HINT}")
    if not math.isfinite(squares):
        raise FloatingPointError(f"Training diverged: the gradient overflowed (squared norm "
                                 f"{squares}, loss {loss:.4g}) {where}; {_DIVERGED_HINT}")


def _finite_state(variables, epoch):
    """The values of `variables` (the flow's weights and its optimizer's state) after
    `epoch`, or a FloatingPointError naming those that are not finite (a checkpoint of
    them resumed into NaN)."""
    values = [v.numpy() for v in variables]
    bad = [getattr(v, "path", v.name) for v, a in zip(variables, values)
           if a.dtype.kind == "f" and not np.isfinite(a).all()]
    if bad:
        raise FloatingPointError(f"Training diverged: {len(bad)} of the model's and "
                                 f"optimizer's arrays are not finite after epoch {epoch + 1} "
                                 f"({', '.join(bad[:3])}{', ...' if len(bad) > 3 else ''}); "
                                 f"{_DIVERGED_HINT}")
    return values


_FLOAT32_MAX = float(np.finfo(np.float32).max)


def _checked_rows(name, value, shape, width=None, rows=None):
    """`value` as a float32 array `shape` (`"[N, D]"`, for the messages), checked up
    front: real numbers, 2-D, `rows` rows and `width` columns when given, at least one
    row, finite, and within float32's range (a float64 1e300 became inf). A ValueError
    names `name`, the check it failed and the value."""
    array = np.asarray(value)
    if array.dtype.kind not in "biuf":
        raise ValueError(f"train_flow: {name} must hold real numbers {shape}; received dtype "
                         f"{array.dtype}.")
    if array.ndim != 2:
        raise ValueError(f"train_flow: {name} must be 2-D, {shape} (one row per example); "
                         f"received shape {array.shape}.")
    if rows is not None and len(array) != rows:
        raise ValueError(f"train_flow: {name} must be of shape {shape}, one row per example; "
                         f"received {len(array)} rows (shape {array.shape}).")
    if width is not None and array.shape[1] != width:
        raise ValueError(f"train_flow: {name} must be of shape {shape}; received "
                         f"{array.shape[1]} columns (shape {array.shape}).")
    if len(array) == 0:
        raise ValueError(f"train_flow: {name} has no rows (shape {array.shape}); expected at "
                         "least one example.")
    if array.dtype.kind == "f":
        bad = ~np.isfinite(array)
        if bad.any():
            r, c = np.argwhere(bad)[0]
            raise ValueError(f"train_flow: {name} has {int(bad.sum())} NaN/inf values (the "
                             f"first at row {r}, column {c}: {array[r, c]}); expected finite "
                             "numbers.")
        if array.dtype.itemsize > 4:
            big = np.abs(array) > _FLOAT32_MAX
            if big.any():
                r, c = np.argwhere(big)[0]
                raise ValueError(f"train_flow: {name} has {int(big.sum())} values beyond "
                                 f"float32's range (the first at row {r}, column {c}: "
                                 f"{array[r, c]:g}; float32 holds magnitudes up to "
                                 f"{_FLOAT32_MAX:.4g}): they overflow float32, which the flow "
                                 "computes in, to inf; rescale them.")
    return array.astype(np.float32)


def _checked_validation(validation_data, x, context):
    """`validation_data` as a tuple `(x_val,)` or `(x_val, context_val)` of float32
    arrays, checked as `x` and `context` are (`_checked_rows`)."""
    if not isinstance(validation_data, tuple):
        validation_data = (validation_data,)
    given = "(x_val, context_val)" if context is not None else "x_val"
    if len(validation_data) != (1 if context is None else 2):
        raise ValueError(
            f"train_flow: validation_data must be {given}"
            f"{' for a conditional flow (a context given)' if context is not None else ''}; "
            f"received a tuple of {len(validation_data)}.")
    x_val = _checked_rows("validation_data", validation_data[0], f"[M, {x.shape[1]}]",
                          width=x.shape[1])
    if context is None:
        return (x_val,)
    return x_val, _checked_rows("validation_data's context", validation_data[1],
                                f"[{len(x_val)}, {context.shape[1]}]", width=context.shape[1],
                                rows=len(x_val))


def train_flow(build_flow, x, context=None, *, epochs, batch_size=512, learning_rate=1e-3,
               lr_decay="none", seed=0, validation_data=None, strategy=None,
               checkpoint_dir=None, fingerprint=None, verbose=1, jit_compile=True,
               on_epoch_end=None, dequantize=None):
    """Builds a flow in `strategy.scope()` and trains it by maximum likelihood.

    Args:
        build_flow: a function of no arguments returning a new `kerasflows.Flow`
            (called once, inside the strategy's scope).
        x: training data `[N, D]`: finite real numbers within float32's range
            (trained in float32).
        context: for a conditional flow, its context `[N, C]`, one row per example.
        epochs: total number of epochs (a resumed run stops at the same count).
        batch_size: the global batch size, shared by all replicas (at most N).
        learning_rate: Adam's (initial) learning rate, a finite number > 0.
        lr_decay: `"none"` or `"cosine"` (cosine decay to 0 over all steps).
        seed: an integer in [0, 2**32); seeds weight initialization and the
            per-epoch data order.
        validation_data: optional `[M, D]` array (`(x_val, context_val)` for a
            conditional flow), checked as `x` is; its NLL is logged every epoch.
        strategy: a `tf.distribute.Strategy`; default: the current one.
        checkpoint_dir: where the chief checkpoints after every epoch and
            resumes from; None disables checkpoints. A resumed run gives the
            model of an uninterrupted one, except where training draws from
            TensorFlow's stateful random ops, which a new process restarts (a
            `ContinuousFlow(trace="hutchinson")`'s training probes, a dropout
            layer of the user's). The chief holds the
            folder's lock (`EpochCheckpoint.lock`) while it trains: a run on a
            folder another process is training in raises
            `kerasflows.checkpoint.CheckpointInUseError`.
        fingerprint: JSON-able settings stored with the checkpoint; a
            checkpoint written with other settings is refused, and so is one
            with more epochs done than `epochs`. Default: train_flow's own (the
            model built, its class and config, the rows and SHA-256 of `x` and
            `context`, `batch_size`, `learning_rate`, `lr_decay`, `seed`,
            `dequantize`, and `epochs` with the cosine schedule); a caller's
            fingerprint takes their place (`kerasflows train` gives its options
            and data's). A checkpoint of another model is refused naming what
            differs.
        verbose: 1 shows a Keras progress bar, 2 one line per epoch (chief only), 0 is
            silent.
        jit_compile: compile each replica's loss and gradients with XLA.
        on_epoch_end: called on the chief as `on_epoch_end(epochs_done, flow,
            history)` after each epoch (and its checkpoint), e.g. to save the flow
            so far.
        dequantize: column indices of `x` whose whole numbers get uniform noise
            in [0, 1), new each epoch (`kerasflows.dequantization`; seeded by
            `seed` and the epoch). `validation_data` is taken as given: add its
            noise once beforehand (`dequantize(x_val, columns, seed)`).

    Returns:
        `(flow, history)`, history a dict with per-epoch `loss` (and `val_loss`),
        one value per epoch from the first, resumed ones included. A resumed run
        that adds `validation_data` has NaN `val_loss` for the epochs trained
        without it (as has one that leaves it out after a run with it), so that
        `val_loss` lines up with `loss`, as in Keras' `History`.

    Raises:
        ValueError: empty or non-finite data, data outside the data-end layer's
            domain, labels a `ClassEmbedding` context encoder does not know, a bad
            argument, or a checkpoint written by different settings or another model.
        TypeError: `build_flow` not a function (a flow given instead), `strategy`
            not a `tf.distribute.Strategy`, or `on_epoch_end` not callable.
        CheckpointInUseError: another process is training in `checkpoint_dir`.
        FloatingPointError: the loss, the gradient (a step's squared norm) or,
            after an epoch, the weights or optimizer state became NaN or inf,
            naming the step or the arrays; no checkpoint is written of them.
    """
    learning_rate, seed = _check_train_arguments(build_flow, learning_rate, seed, strategy,
                                                 on_epoch_end)
    x = _checked_rows("x", x, "[N, D]")
    epochs = check_positive_int("epochs", epochs)
    batch_size = check_positive_int("batch_size", batch_size)
    if context is not None:
        context = _checked_rows("context", context, f"[{len(x)}, C]", rows=len(x))
    if dequantize is not None:
        dequantize = dequantization.columns_to_dequantize(x, dequantize, "train_flow")
    if validation_data is not None:
        validation_data = _checked_validation(validation_data, x, context)
    strategy = strategy or tf.distribute.get_strategy()
    verbose = verbose if is_chief(strategy) else 0
    batch_size = min(batch_size, len(x))
    steps = len(x) // batch_size
    keras.utils.set_random_seed(seed)
    with strategy.scope():
        flow = build_flow()
        from kerasflows.flow import Flow
        if not isinstance(flow, Flow):
            raise TypeError(f"train_flow: build_flow() returned {flow!r}; expected a "
                            "kerasflows.Flow (does it end in `return`?).")
        if flow.event_dim != x.shape[1]:
            raise ValueError(f"train_flow: the flow has event_dim={flow.event_dim} but x has "
                             f"{x.shape[1]} columns.")
        given = None if context is None else context.shape[1]
        if flow.context_dim != given:
            raise ValueError(f"train_flow: the flow has context_dim={flow.context_dim} but "
                             f"the context given has {given} columns.")
        # a value outside the data end's domain (a last Sigmoid's 0) makes every weight NaN
        check_domain(flow, "train_flow: x", x, keras_cast=False)
        if validation_data is not None:
            check_domain(flow, "train_flow: validation_data", validation_data[0],
                         keras_cast=False)
        embedding = label_embedding(flow)   # a ClassEmbedding's unknown label gives NaN
        if embedding is not None:
            embedding.check_context(context, "train_flow: context")
            if validation_data is not None:
                embedding.check_context(validation_data[1], "train_flow: validation_data's "
                                        "context")
        optimizer = _make_optimizer(learning_rate, lr_decay, max(epochs * steps, 1))
        optimizer.build(flow.trainable_variables)
        if flow.needs_data_init:
            rows, contexts = epoch_rows(x, context, seed, 0, dequantize)
            flow.initialize(rows[:batch_size], None if context is None else contexts[:batch_size])
    variables = list(flow.weights) + list(optimizer.variables)
    checkpoint = None
    if checkpoint_dir is not None and is_chief(strategy):
        checkpoint = EpochCheckpoint(checkpoint_dir, fingerprint if fingerprint is not None
                                     else _run_settings(flow, x, context, epochs, batch_size,
                                                        learning_rate, lr_decay, seed,
                                                        dequantize))
    with checkpoint.lock() if checkpoint is not None else contextlib.nullcontext():
        start, history = _restore(checkpoint, strategy, variables)
        if start > epochs:
            path = os.path.join(checkpoint_dir, EpochCheckpoint.FILENAME)
            raise ValueError(f"The checkpoint in {checkpoint_dir} has {start} epochs done, "
                             f"more than epochs={epochs}: give epochs >= {start} to go on from "
                             f"it, or delete {path} to start over.")
        history = history or {"loss": []}
        if validation_data is not None or "val_loss" in history:
            # NaN for the epochs without validation data: one val_loss an epoch, as Keras'
            val_loss = history.setdefault("val_loss", [])
            val_loss += [math.nan] * (len(history["loss"]) - len(val_loss))
        if start and verbose:
            print(f"Resuming from the checkpoint in {checkpoint_dir}: "
                  f"{start} of {epochs} epochs done.", flush=True)
        step = _make_train_step(flow, optimizer, strategy, jit_compile)
        if strategy is tf.distribute.get_strategy() and not tf.distribute.has_strategy():
            from kerasflows.flat_calls import FlatCalls
            step = FlatCalls(step)      # one device: skip the per-call signature lookup
        for epoch in range(start, epochs):
            data = _epoch_dataset(x, context, seed, epoch, batch_size, strategy, dequantize)
            bar, losses = _run_epoch(step, data, steps, epoch, epochs, verbose,
                                     finalize=validation_data is None)
            history["loss"].append(float(np.mean(losses)))
            if validation_data is not None:
                history["val_loss"].append(evaluate_nll(flow, *validation_data)[0])
                bar.update(steps, [("val_loss", history["val_loss"][-1])], finalize=True)
            elif "val_loss" in history:
                history["val_loss"].append(math.nan)
            values = _finite_state(variables, epoch)
            if checkpoint is not None:
                checkpoint.save(epoch + 1, values, history)
            if on_epoch_end is not None and is_chief(strategy):
                on_epoch_end(epoch + 1, flow, history)
    return flow, history
