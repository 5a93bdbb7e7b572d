"""kerasflows.graph_calls: graphs run without Grappler's CPU-inert passes, same numbers."""

import contextlib
import os
import subprocess
import sys
import threading

import keras
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.protobuf import config_pb2, rewriter_config_pb2
from tensorflow.python.eager import context as context_lib

from kerasflows import background_step, flat_calls, graph_calls, training
from kerasflows import eval_calls
from kerasflows import models as M

R = rewriter_config_pb2.RewriterConfig


def rewrite_options():
    """The calling thread's function-call rewrite options, as TensorFlow passes them."""
    config = config_pb2.ConfigProto()
    config.ParseFromString(context_lib.context().function_call_options.config_proto_serialized)
    return config.graph_options.rewrite_options


def light(rewrite):
    return (rewrite.meta_optimizer_iterations == R.ONE and rewrite.disable_tfg_optimizer
            and rewrite.layout_optimizer == R.OFF
            and rewrite.memory_optimization == R.NO_MEM_OPT)


def test_light_calls_sets_this_threads_options_and_restores_them():
    before = context_lib.context().function_call_options
    assert not light(rewrite_options())
    seen = {}
    with graph_calls.light_calls():
        assert light(rewrite_options())
        # the passes that change a graph stay as TensorFlow has them
        assert rewrite_options().remapping != R.OFF
        assert not rewrite_options().disable_meta_optimizer
        with graph_calls.light_calls():            # nested: still light
            assert light(rewrite_options())
        assert light(rewrite_options())
        other = threading.Thread(target=lambda: seen.update(light=light(rewrite_options())))
        other.start()
        other.join()
    assert seen == {"light": False}                # another thread keeps its own
    assert context_lib.context().function_call_options is before
    with pytest.raises(RuntimeError, match="boom"):
        with graph_calls.light_calls():
            raise RuntimeError("boom")
    assert context_lib.context().function_call_options is before


def test_light_calls_keep_the_users_own_settings():
    eager_context = context_lib.context()
    saved = dict(eager_context._optimizer_experimental_options)
    tf.config.optimizer.set_experimental_options({"constant_folding": False})
    try:
        with graph_calls.light_calls():
            assert light(rewrite_options())
            assert rewrite_options().constant_folding == R.OFF
    finally:
        # exactly the options before (set_experimental_options can set a pass ON,
        # not back to TensorFlow's default), for the tests after this one
        eager_context._optimizer_experimental_options.clear()
        eager_context._optimizer_experimental_options.update(saved)
        eager_context._thread_local_data.function_call_options = None
    assert rewrite_options().constant_folding == R.DEFAULT
    with graph_calls.light_calls():
        assert rewrite_options().constant_folding != R.OFF


def test_disabled_light_calls_change_nothing(monkeypatch):
    monkeypatch.setattr(graph_calls, "ENABLED", False)
    before = context_lib.context().function_call_options
    with graph_calls.light_calls():
        assert context_lib.context().function_call_options is before


CHILD = r"""
import contextlib, sys
import numpy as np, tensorflow as tf
from kerasflows import graph_calls
x = tf.constant(np.arange(12, dtype="float32").reshape(4, 3) / 7)
for mode in sys.argv[1:]:          # a function of its own for each mode
    @tf.function(autograph=False)
    def f(x):
        y = tf.nn.relu(tf.matmul(x, tf.ones([3, 3])) + 1.0)
        return tf.reduce_sum(y * y + tf.exp(-y), axis=1)
    concrete = f.get_concrete_function(x)
    print(f"=== {mode}", file=sys.stderr, flush=True)
    with graph_calls.light_calls() if mode == "light" else contextlib.nullcontext():
        print(mode, f(x).numpy().tobytes().hex(), flush=True)
        # later calls, structured and through the flat inputs (as BackgroundCompiledStep
        # calls its graph), reuse the graph instantiated by the first
        f(x)
        concrete._call_flat([x], concrete.captured_inputs)
print("=== end", file=sys.stderr, flush=True)
"""


def run_child(*modes):
    """Runs CHILD on `modes` in one process; {mode: (its output, Grappler's log of its calls)}."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="0", TF_CPP_VMODULE="meta_optimizer=1")
    proc = subprocess.run([sys.executable, "-c", CHILD, *modes], capture_output=True, text=True,
                          env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    outputs = dict(line.split() for line in proc.stdout.splitlines() if line.split()[0] in modes)
    logs = proc.stderr.split("=== ")
    return {mode: (outputs[mode], next(log for log in logs if log.startswith(mode + "\n")))
            for mode in modes}


def test_tensorflow_runs_the_light_graph_without_the_inert_passes():
    """Grappler's own log: the passes named off do not run on a light call's graph,
    the others do, once (three calls, one optimisation); the numbers are the same
    to the bit."""
    runs = run_child("full", "light")
    (full_out, full_log), (light_out, light_log) = runs["full"], runs["light"]
    assert light_out == full_out
    for name in ("tfg_optimizer", "layout:", "memory_optimizer"):
        assert name in full_log
        assert name not in light_log, name
    passes = lambda log, name: sum(f"] {name}: Graph size" in line for line in log.splitlines())
    assert passes(full_log, "common_subgraph_elimination") == 2
    assert passes(light_log, "common_subgraph_elimination") == 1
    assert passes(light_log, "remapper") == 1 and passes(light_log, "constant_folding") == 1


def nsf_losses(steps, light_graph):
    keras.utils.set_random_seed(0)
    flow = M.NSF(2, num_layers=2, hidden_units=(16, 16), bins=4, autoregressive=False)
    step = training.make_train_step(flow, keras.optimizers.Adam(1e-2), jit_compile=False)
    x = tf.constant(np.random.default_rng(0).normal(size=(128, 2)).astype("float32"))
    with graph_calls.light_calls() if light_graph else contextlib.nullcontext():
        return [float(step(x)) for _ in range(steps)]


def test_a_light_train_step_trains_to_the_same_losses_bit_for_bit():
    full = nsf_losses(8, light_graph=False)
    light_losses = nsf_losses(8, light_graph=True)
    assert light_losses == full
    assert full[-1] < full[0]


class Recorder:
    def __init__(self):
        self.calls = 0

    @contextlib.contextmanager
    def __call__(self):
        self.calls += 1
        with graph_calls.light_calls():
            yield


def test_background_step_runs_its_graph_tier_light_and_its_xla_tier_as_is(monkeypatch):
    recorder = Recorder()
    monkeypatch.setattr(background_step, "light_calls", recorder)
    keras.utils.set_random_seed(0)
    flow = M.MAF(2, num_layers=2, hidden_units=(8,))
    step = training.make_train_step(flow, keras.optimizers.Adam(1e-3), background_compile=3)
    x = tf.constant(np.random.default_rng(0).normal(size=(64, 2)).astype("float32"))
    for _ in range(5):
        float(step(x))
    assert step.compiled and step.error is None
    assert recorder.calls == 3         # the three graph calls, not the two compiled ones


def test_graph_mode_evaluation_runs_light_and_xla_mode_as_is(monkeypatch):
    recorder = Recorder()
    monkeypatch.setattr(eval_calls, "light_calls", recorder)
    keras.utils.set_random_seed(0)
    flow = M.RealNVP(2, num_layers=2, hidden_units=(8,))
    x = np.random.default_rng(0).normal(size=(32, 2)).astype("float32")
    graph = flow.log_prob(x).numpy()
    flow.sample(4)
    assert recorder.calls == 2
    flow.eval_mode = "xla"
    np.testing.assert_allclose(flow.log_prob(x).numpy(), graph, rtol=1e-5, atol=1e-5)
    assert recorder.calls == 2
    flow.eval_mode = "eager"
    np.testing.assert_allclose(flow.log_prob(x).numpy(), graph, rtol=1e-5, atol=1e-5)
    assert recorder.calls == 2


def test_fit_and_evaluate_run_a_plain_graph_light_and_an_xla_step_as_is(monkeypatch):
    recorder = Recorder()
    monkeypatch.setattr(flat_calls, "light_calls", recorder)
    x = np.random.default_rng(0).normal(size=(96, 2)).astype("float32")
    flow = M.MAF(2, num_layers=2, hidden_units=(8,))
    flow.compile(optimizer="adam", jit_compile=False)
    hist = flow.fit(x, batch_size=32, epochs=2, verbose=0)      # 6 steps
    assert isinstance(flow.train_function, training.FlatStepCalls)
    assert recorder.calls == 6 and np.isfinite(hist.history["loss"]).all()
    flow.evaluate(x, batch_size=48, verbose=0)                  # 2 more
    assert recorder.calls == 8
    flow.compile(optimizer="adam", jit_compile=True)
    flow.fit(x, batch_size=32, epochs=1, verbose=0)
    flow.evaluate(x, batch_size=48, verbose=0)
    assert recorder.calls == 8


def test_a_flows_call_cache_clears_and_traces_again():
    """`benchmarks/permute_ab.py` cleared `flow._compiled` between its variants; the
    cache lost `clear` when it stopped being a dict (AttributeError on every run)."""
    import kerasflows
    from kerasflows.layers import ElementwiseAffine
    flow = kerasflows.Flow([ElementwiseAffine()], 2)
    x = np.ones((3, 2), np.float32)
    first = flow.log_prob(x).numpy()
    assert len(flow._compiled) >= 1
    flow._compiled.clear()
    assert len(flow._compiled) == 0
    np.testing.assert_array_equal(flow.log_prob(x).numpy(), first)
    assert len(flow._compiled) >= 1
