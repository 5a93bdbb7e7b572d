"""How eager calls of a flow's methods run (`Flow.eval_mode`): cached
`tf.function`s, plain graphs or XLA-compiled, large XLA batches in blocks."""

import tensorflow as tf
from tensorflow.python.eager import record

from kerasflows.graph_calls import light_calls

__all__ = ["EVAL_MODES", "EVAL_BLOCK_ROWS", "EvalModes", "CallCache", "block_rows",
           "in_blocks"]

EVAL_MODES = ("graph", "xla", "eager")
#: Most rows per block when `eval_mode="xla"` evaluates a large batch block by
#: block (a layer may ask for fewer: `FlowLayer.eval_block_rows`).
EVAL_BLOCK_ROWS = 8192


def block_rows(n, target=None):
    """Rows per block for a batch of `n` rows: None below two blocks, else
    the most even split into blocks of at most `target` (default
    `EVAL_BLOCK_ROWS`) rows."""
    target = target or EVAL_BLOCK_ROWS
    if n is None or n < 2 * target:
        return None
    blocks = -(-n // target)
    return -(-n // blocks)


def named(fn, key):
    """`fn` under a name that says what it computes (`Flow._eager_compiled`'s `key`):
    the name TensorFlow gives the traced function, so XLA's compile cache, keyed
    on it, tells the flow's functions apart by what they are."""
    name, mode, rows, _ = key
    def call(*args):
        return fn(*args)
    call.__name__ = f"flow_{name}_{mode}" + (f"_blocks{rows}" if rows else "")
    return call


def in_blocks(fn, rows, trace_once=False):
    """`fn` evaluated on `rows`-row blocks of its arguments, one after the
    other (a while loop), with the results concatenated.

    Every argument (None skipped) and every result has the batch as its
    first axis, and each row's result depends only on that row, so the
    result equals `fn(*args)`; the last block is padded with zero rows, whose
    results are dropped. `fn` is traced twice (once for its results'
    signature, once into the loop), or with `trace_once` once, the loop
    calling that trace: for XLA, which inlines the call (in two throwaway
    A/B probes, fresh processes, a 16-D NSF-AR's first density call of
    65,536 rows 8.99 -> 7.04 s and 10.0 -> 7.9 s, later calls the same or
    faster). A plain graph runs such a call as a function of its own every
    block; in two probes a 64-D NSF's density took 1.12-1.14x the time that
    way, but identical code varied by as much between probes on that machine,
    so the graph mode keeps the body traced into the loop, as before.
    """
    def blocked(*args):
        n = tf.shape(args[0])[0]
        count = (n + rows - 1) // rows
        pad = count * rows - n

        def split(a):
            a = tf.pad(a, tf.concat([[[0, pad]], tf.zeros([a.shape.rank - 1, 2], tf.int32)], 0))
            return tf.reshape(a, tf.concat([[count, rows], tf.shape(a)[1:]], 0))

        present = [i for i, a in enumerate(args) if a is not None]

        def body(block):
            call = [None] * len(args)
            for i, b in zip(present, block):
                call[i] = b
            return fn(*call)

        specs = tuple(tf.TensorSpec([rows] + args[i].shape[1:], args[i].dtype) for i in present)
        # map_fn needs the results' signature before it traces its body: a trace
        # of its own. Under XLA the loop then calls that trace (inlined), which
        # saves tracing the flow twice; a graph keeps the body in the loop (docstring).
        once = tf.function(lambda *b: body(b), autograph=False).get_concrete_function(*specs)
        signature = tf.nest.map_structure(lambda t: tf.TensorSpec(t.shape, t.dtype),
                                          once.structured_outputs)
        out = tf.map_fn((lambda block: once(*block)) if trace_once else body,
                        tuple(split(args[i]) for i in present),
                        fn_output_signature=signature, parallel_iterations=1)
        return tf.nest.map_structure(
            lambda t: tf.reshape(t, tf.concat([[count * rows], tf.shape(t)[2:]], 0))[:n], out)
    return blocked


class CallCache:
    """The traced functions of a flow's eager calls, by key: a plain object, not a
    dict, so that neither Keras nor TensorFlow tracks them as the flow's parts.
    As a dict they were: a model holding the flow could no longer be exported as
    a SavedModel (`keras.Model.export`, `tf.saved_model.save`) after one eager
    `log_prob` or `sample`, TensorFlow refusing the tuple keys of a dict of
    functions."""

    def __init__(self):
        self._functions = {}

    def __contains__(self, key):
        return key in self._functions

    def __getitem__(self, key):
        return self._functions[key]

    def __setitem__(self, key, function):
        self._functions[key] = function

    def __iter__(self):
        return iter(self._functions)

    def items(self):
        return self._functions.items()

    def __len__(self):
        return len(self._functions)

    def clear(self):
        """Drops every traced function (the next call traces again)."""
        self._functions.clear()


class EvalModes:
    """A mixin of `kerasflows.Flow`: `eval_mode`, and `_eager_compiled`, through
    which `log_prob`, `sample`, `forward`, `inverse` and the traces run. Needs
    the flow's `_compiled` cache (a `CallCache`), `_eval_mode`, `flow_layers` and
    `context_encoder`."""

    @property
    def eval_mode(self):
        """How eager calls of `log_prob`, `sample`, `forward`, ... run.

        `"graph"` (default): a cached `tf.function`, traced once for every
        batch size (the batch dimension left free) and run without the
        graph optimiser's passes that leave a CPU graph as they found it
        (`kerasflows.graph_calls`: a shorter first call; spline flows on
        16-D data and wider evaluate large batches in blocks, as below);
        `"xla"`: the same,
        XLA-compiled (`jit_compile=True`; fastest for repeated calls of one
        shape, but every new input shape compiles again; a large batch goes
        through in blocks when every layer allows it, of about the fewest
        rows any layer asks for (`FlowLayer.eval_block_rows`: at most
        `EVAL_BLOCK_ROWS`, fewer for spline layers on wide data), from two
        blocks' rows on, which keeps each block's activations in cache,
        bounds the memory and gives the same numbers); `"eager"`: op by
        op, no tracing (handy for debugging and one-off calls). Inside a
        `tf.function` or a train step the methods run as plain ops whatever
        the mode; under a `tf.GradientTape`, "xla" runs as "graph" (a tape
        cannot take gradients through an XLA call holding a loop), and a flow
        with a `ContinuousFlow` runs eagerly (its traced gradient took 13 times
        eager's time, and under nested tapes never returned). Not saved with
        the model.
        """
        return self._eval_mode

    @eval_mode.setter
    def eval_mode(self, mode):
        if mode not in EVAL_MODES:
            raise ValueError(f"`eval_mode` must be one of {EVAL_MODES}. Received: {mode!r}")
        self._eval_mode = mode

    def _eager_compiled(self, name, fn, *args):
        """Runs `fn` through a cached `tf.function` when called eagerly (see `eval_mode`).

        `fn` maps rows to rows (each result row depends only on its input
        rows). In "xla" mode a batch through layers that all allow it
        (`FlowLayer.eval_block_rows` not None) runs block by block
        (`in_blocks`) if it has at least twice the fewest rows a layer asks
        for: the same results, with each block's activations kept in cache
        (RealNVP on 2-D, 10^5 rows: 42 -> 29 ms; a 64-D NSF-AR's density of
        65,536 rows in blocks of 1,024: 2.31 -> 1.93 s, 1,289 -> 160 MB,
        `benchmarks/eval_blocks.py`). In "graph" mode only if a layer asked
        for fewer rows than `EVAL_BLOCK_ROWS` (spline layers on 16-D data
        and wider), where blocks took 0.08-0.26x the memory of the whole
        batch and 0.64-1.24x the time (NSF-AR faster, coupling up to 24%
        slower; `eval_blocks.py --mode graph`; on a second, slower machine
        0.56-0.79x the time, `results/2026-12-05-eval-blocks-graph-second-
        machine.txt`), in one block size for every batch (one trace, the last
        block padded); the graph of an affine or
        2-D flow was slower in blocks (in a one-process probe a 64-D MAF's
        density of 65,536 rows 1.13x, a 2-D RealNVP's 1.6x).
        """
        if not tf.executing_eagerly() or self._eval_mode == "eager":
            return fn(*args)
        mode = self._eval_mode
        if record.could_possibly_record() and any(
                getattr(l, "eager_under_tape", False) for l in self.flow_layers):
            # a layer whose traced gradient costs more than its ops (FFJORD's adjoint
            # solve: 13x eager's time under one tape, and under two it never returned)
            return fn(*args)
        if mode == "xla" and record.could_possibly_record():
            # A tape cannot take gradients back through an XLA call holding a loop
            # (MADE's solve, the blocks: "TensorList crossing the XLA/TF boundary"):
            # under a GradientTape the call runs as a graph.
            mode = "graph"
        rows = None
        if self.context_encoder is None:
            wanted = [l.eval_block_rows(EVAL_BLOCK_ROWS) for l in self.flow_layers]
            fewest = None if None in wanted else min(wanted, default=EVAL_BLOCK_ROWS)
            # A graph frees each op's buffers as it goes: blocks gain there only where
            # a layer asked for fewer rows (wide spline rows); elsewhere they cost time.
            if fewest is not None and (mode == "xla" or fewest < EVAL_BLOCK_ROWS):
                rows = block_rows(args[0].shape[0], fewest)
                if rows is not None and mode == "graph":
                    # XLA compiles every batch size anyway, so there the split is
                    # even; a graph's loop takes any batch, so one block size (the
                    # last block padded) keeps it to one trace for all of them.
                    rows = fewest
                elif rows is not None:
                    # even, rounded up to a 16th of `fewest` (the last block padded):
                    # at most 16 traced functions, where each batch size's own split
                    # added one for good (7 for 10 sizes from 16,384 rows)
                    step = max(1, fewest // 16)
                    rows = min(fewest, -(-rows // step) * step)
        key = (name, mode, rows, tuple(a is None for a in args))
        if key not in self._compiled:
            compiled = tf.function(
                named(fn if rows is None else
                      in_blocks(fn, rows, trace_once=mode == "xla"), key),
                jit_compile=mode == "xla", reduce_retracing=True, autograph=False)
            # One trace for every batch size: a graph needs no static batch, and
            # tracing a flow takes seconds (first shape, then again relaxed at the
            # second: the visualizer's moons heatmap waited 2.4 s for that). XLA
            # still compiles each batch size it meets, from this one graph.
            compiled.get_concrete_function(*[
                None if a is None else tf.TensorSpec([None, *a.shape[1:]], a.dtype)
                for a in args])
            self._compiled[key] = compiled
        if mode == "xla":
            return self._compiled[key](*args)
        with light_calls():      # a graph: Grappler's CPU-inert passes skipped
            return self._compiled[key](*args)
