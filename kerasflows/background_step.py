"""`BackgroundCompiledStep`: a train step that runs as a TensorFlow graph while
XLA compiles it on a background thread."""

import atexit
import threading

import tensorflow as tf

from kerasflows.graph_calls import light_calls
from kerasflows.layers.base import check_positive_int
from kerasflows.packed_adam import adam_layout, adam_state, adam_update
from kerasflows.sharded_step import check_shards, loss_and_grads, sharded_body, step_inputs

__all__ = ["BackgroundCompiledStep"]


class BackgroundCompiledStep:
    """An Adam train step that runs as a graph until XLA has compiled it.

    Made by `make_train_step(..., background_compile=True)`; call it as
    `step(x, context=None) -> loss` (the inputs converted and checked first, as
    `make_train_step`'s other steps do: `sharded_step.step_inputs`). For each batch signature the step is
    traced once (`get_concrete_function`) and runs as that TensorFlow graph
    while a daemon thread compiles the same graph with XLA by running it
    once on stand-in copies of the weights and Adam state (same shapes and
    dtypes, so the compiled function and XLA's cache entry are the ones the
    real variables use; the copies' update is thrown away). From the next
    call after that, the compiled step runs. The first step thus costs the
    tracing and one uncompiled run instead of tracing plus XLA compilation.
    The graph runs without the Grappler passes that leave a CPU graph as
    they found it (`kerasflows.graph_calls`), which takes about 0.2-0.4 s
    off the first run of a spline step.

    Which steps run as a graph depends on how long the compilation takes,
    and the two differ in float rounding, so two runs drift apart. With
    `graph_steps=N` exactly the first `N` calls of each batch signature run
    as a graph, and call `N + 1` waits for the compilation if it is still
    running (a compilation done sooner is not used before call `N + 1`):
    runs with the same seed are then the same, bit for bit.

    With `shards > 1` the compiled step is `make_train_step`'s sharded one,
    its parts and update compiled one after the other on the background
    thread; the graph runs the whole batch at once.

    Attributes:
        compiled: True when every batch signature called so far runs the
            compiled step from its next call on (its compilation has finished
            and, with `graph_steps`, its `graph_steps` graph calls are done).
        error: the exception that stopped a background compilation (the
            step then keeps running as a graph), or None.
        graph_steps: the fixed number of graph calls per batch signature, or
            None (switch as soon as the compiled step is ready).
    """

    def __init__(self, flow, optimizer, shards=1, graph_steps=None):
        shards = check_shards(flow, shards)
        self._flow = flow
        self.graph_steps = check_positive_int("graph_steps", graph_steps, allow_none=True)
        variables = list(flow.trainable_variables)
        layout = adam_layout(optimizer, variables)
        if layout is None:
            raise ValueError("BackgroundCompiledStep needs a plain keras.optimizers.Adam "
                             f"(received {type(optimizer).__name__}); use make_train_step.")
        self.state = adam_state(optimizer, variables)
        self.error = None
        # signature -> {"graph", "xla", "xla_function", "done", "calls", "graph_calls"}
        self._tiers = {}
        self._lock = threading.Lock()

        def step(x, context, weights, momentums, velocities, iterations):
            loss, grads = loss_and_grads(flow, variables, x, context, optimizer)
            adam_update(optimizer, grads, (weights, momentums, velocities, iterations),
                         layout)
            return loss
        self._step = tf.function(step, autograph=False)
        self._sharded = self._sharded_compile = None
        if shards > 1:
            body = sharded_body(flow, variables, optimizer, layout, jit_compile=True)

            def sharded(x, context, weights, momentums, velocities, iterations):
                return body(x, context, (weights, momentums, velocities, iterations), shards)
            self._sharded = tf.function(sharded, autograph=False)
            self._sharded_compile = lambda x, context, *state: body.compile_parts(
                x, context, state, shards)

    @property
    def compiled(self):
        with self._lock:
            return bool(self._tiers) and all(self._runs_compiled(t) for t in self._tiers.values())

    def _runs_compiled(self, tier):
        """True if the next call of `tier`'s batch signature runs the compiled step:
        it is ready and (with `graph_steps`) the signature's graph calls are done."""
        return tier["xla"] is not None and (self.graph_steps is None
                                            or tier["graph_calls"] >= self.graph_steps)

    def wait(self, timeout=None):
        """Blocks until every background compilation started so far has finished;
        returns True if all of them succeeded within `timeout` seconds."""
        for tier in list(self._tiers.values()):
            if not tier["done"].wait(timeout):
                return False
        return self.error is None

    def _signature(self, x, context):
        spec = lambda t: None if t is None else (tuple(t.shape), t.dtype)
        return spec(x), spec(context)

    def __call__(self, x, context=None):
        x, context = step_inputs(self._flow, x, context)
        key = self._signature(x, context)
        tier = self._tiers.get(key)
        if tier is None:
            graph = self._step.get_concrete_function(x, context, *self.state)
            with light_calls():
                loss = graph(x, context, *self.state)
            # Only now: a first call that raised (an interrupt, bad data) leaves no
            # tier whose compilation never starts; the next call tries again.
            tier = self._tiers[key] = {"graph": graph, "xla": None, "xla_function": None,
                                       "done": threading.Event(), "calls": {},
                                       "graph_calls": 1}
            threading.Thread(target=self._compile, args=(tier, x, context),
                             name="kerasflows-xla-compile", daemon=True).start()
            # A script that ends while XLA compiles waits for it (at most a minute)
            # rather than tearing the interpreter down under a running compilation.
            atexit.register(tier["done"].wait, 60)
            return loss
        if self.graph_steps is None:
            name = "graph" if tier["xla"] is None else "xla"
        elif tier["graph_calls"] < self.graph_steps:
            name = "graph"                 # even if XLA is done: exactly N graph calls
        else:
            tier["done"].wait()            # a failed compilation keeps the graph
            name = "graph" if tier["xla"] is None else "xla"
        if name == "graph":
            tier["graph_calls"] += 1
        call = tier["calls"].get(name)
        if call is None:
            call = tier["calls"][name] = self._flat_call(tier[name], x, context)
        if name == "xla":
            return call(x, context)
        with light_calls():        # the options the graph was first instantiated with
            return call(x, context)

    def _flat_call(self, fn, x, context):
        """`fn(x, context, *self.state)` with the state's flat inputs bound once.

        The state's flat inputs are its variables' resource handles, which
        never change; the structured call flattens and checks all ~35
        arguments on every step (about 0.2 ms: MAF on 2-D data, batch 512,
        1.84 -> 1.63 ms a step, same-process A/B). The returned call has
        `flat = True`; if this TensorFlow's `ConcreteFunction` does not
        flatten the arguments as expected, it is the structured call.
        """
        def structured(x, context):
            return fn(x, context, *self.state)
        structured.flat = False
        try:
            handles = [v.handle for v in tf.nest.flatten(self.state)]
            data = [t for t in (x, context) if t is not None]
            flat = fn.function_type.unpack_inputs(fn.function_type.bind(x, context, *self.state))
            if (len(flat) != len(data) + len(handles)
                    or any(a is not b for a, b in zip(flat[len(data):], handles))):
                return structured
            captured = fn.captured_inputs
        except Exception:  # noqa: BLE001 (another TensorFlow: keep the public call)
            return structured

        def call(x, context):
            data = [x] if context is None else [x, context]
            return fn._call_flat(data + handles, captured)
        call.flat = True
        return call

    def _compile(self, tier, x, context):
        try:
            weights, momentums, velocities, iterations = self.state
            copy = lambda v: tf.Variable(v.read_value(), trainable=v.trainable)
            stand_in = ([copy(v) for v in weights], [copy(v) for v in momentums],
                        [copy(v) for v in velocities], copy(iterations))
            graph = tier["graph"]
            if self._sharded is None:
                xla = tf.function(lambda *args: graph(*args), jit_compile=True, autograph=False)
                xla(x, context, *stand_in)                 # XLA compiles here
            else:
                xla = self._sharded
                self._sharded_compile(x, context, *stand_in)   # the parts compile here
                xla(x, context, *stand_in)     # and the step's graph is made (~0.1 s)
            tier["xla_function"] = xla
            compiled = xla.get_concrete_function(x, context, *self.state)
            with self._lock:
                tier["xla"] = compiled
        except Exception as exc:  # noqa: BLE001 (the graph tier keeps training)
            self.error = exc
        finally:
            tier["done"].set()
