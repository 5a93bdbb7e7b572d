"""Graph calls that skip the TensorFlow graph optimiser's passes that do nothing on a CPU.

The first call of a traced `tf.function` graph (one that XLA does not
compile) runs Grappler, TensorFlow's graph optimiser, over it. On a 2-D NSF
coupling train step (5 layers, about 3,200 traced ops) its passes took 741 ms
of a 1.30 s first run (`benchmarks/first_step.py --mode graph --passes
--full-grappler`, `benchmarks/results/2026-12-01-first-step-modes.txt`),
and some of those passes leave a CPU graph as they found it: the MLIR graph
normaliser (`tfg_optimizer`, 146 ms), the layout optimiser (it converts
convolutions to the GPU's NCHW layout; 42 ms) and the memory optimiser
(swaps GPU memory to the host; 71 ms) changed no node, and the second
round of all passes changed about 20 of ~1,600.

`light_calls()` runs the graph calls made inside it with those four
switched off (the pruning, constant folding, common-subgraph elimination,
arithmetic, remapping, dependency, loop and implementation-selection passes
still run, once): the first run of the benchmark's spline steps then took
0.31-0.42 s instead of 0.58-0.82 s, of its MAF and RealNVP steps 0.15-0.20
s instead of 0.21-0.26 s, and the losses of 100 steps of all four, on 2-D
and 64-D data, were the same to the bit (`benchmarks/first_step.py --mode
graph [--full-grappler]`, `benchmarks/results/2026-12-01-light-graph-calls.txt`).

The options are TensorFlow's per-thread function-call options (a
`ConfigProto`'s `RewriterConfig`, passed with each call and read when the
graph is first instantiated), so only the calls made inside the block, on
this thread, see them; calls elsewhere, other threads and XLA-compiled
functions keep TensorFlow's own settings, and settings made with
`tf.config.optimizer.set_experimental_options` carry over. On a machine
with a GPU, or a TensorFlow without these internals, or with
`kerasflows.graph_calls.ENABLED = False`, `light_calls()` changes nothing.
"""

import contextlib
import functools
import threading

import tensorflow as tf

try:            # TensorFlow's internals: a TensorFlow without them keeps its own options
    from tensorflow.core.protobuf import config_pb2, rewriter_config_pb2
    from tensorflow.python.eager import context as context_lib
except ImportError:
    context_lib = None

__all__ = ["ENABLED", "light_calls", "light_options"]

ENABLED = True      # False: every graph call with TensorFlow's own Grappler settings

_local = threading.local()


@functools.cache
def _sees_gpu():
    return bool(tf.config.list_physical_devices("GPU"))


def light_options(config):
    """`config` (a `ConfigProto`) with the CPU-inert Grappler passes switched
    off in place (see the module docstring); returns `config`."""
    passes = rewriter_config_pb2.RewriterConfig
    rewrite = config.graph_options.rewrite_options
    rewrite.meta_optimizer_iterations = passes.ONE
    rewrite.disable_tfg_optimizer = True
    rewrite.layout_optimizer = passes.OFF
    rewrite.memory_optimization = passes.NO_MEM_OPT
    return config


def _light_call_options(eager_context):
    """The calling thread's `FunctionCallOptions` with `light_options`, made once per
    thread and per options object it replaces (a new `tf.config` setting replaces it)."""
    current = eager_context.function_call_options
    cached = getattr(_local, "options", None)
    if cached is not None and current in cached:       # made before, or already light
        return cached[1]
    config = config_pb2.ConfigProto()
    config.ParseFromString(current.config_proto_serialized)
    light = context_lib.FunctionCallOptions(executor_type=current.executor_type,
                                            config_proto=light_options(config))
    _local.options = (current, light)
    return light


@contextlib.contextmanager
def light_calls():
    """Graph calls made in this block, on this thread, skip the Grappler passes
    that do not change a CPU graph (see the module docstring)."""
    light = eager_context = None
    if ENABLED and context_lib is not None and not _sees_gpu():
        try:
            eager_context = context_lib.context()
            light = _light_call_options(eager_context)
        except AttributeError:              # another TensorFlow: its own options
            light = None
    if light is None:
        yield
        return
    outer = eager_context.function_call_options
    eager_context.function_call_options = light
    try:
        yield
    finally:
        eager_context.function_call_options = outer
