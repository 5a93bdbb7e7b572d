"""ContinuousFlow (FFJORD): conformance, trace estimators, training, saving."""

import re

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

import kerasflows
from kerasflows.layers import ContinuousFlow
from kerasflows.layers.continuous import hutchinson_trace
from kerasflows.testing import check_flow_layer


def test_check_flow_layer_conditional_exact_trace():
    """Over `time=0.5` (not the default 1.0, so that a `time` lost in one direction
    or in the config shows): its eager solves and adjoint gradients took 60% of
    1.0's CPU, and a trace missing one column still misses by 0.07 (0.16 over 1.0)."""
    keras.utils.set_random_seed(0)
    layer = ContinuousFlow(hidden_units=(8,), rtol=1e-8, atol=1e-8, context_dim=2,
                           dtype="float64", time=0.5)
    report = check_flow_layer(layer, 2, batch=8, perturb=0.3)
    assert report["inverse_error"] < 1e-5
    assert report["logdet_error"] < 1e-6


def test_hutchinson_estimate_is_unbiased():
    keras.utils.set_random_seed(0)
    exact = ContinuousFlow(hidden_units=(16,), trace="exact")
    exact.ensure_built(3)
    kerasflows.testing.perturb_weights(exact, 0.3, seed=1)
    noisy = ContinuousFlow.from_config({**exact.get_config(), "trace": "hutchinson"})
    noisy.ensure_built(3)
    noisy.set_weights(exact.get_weights())
    z = tf.constant(np.random.default_rng(0).standard_normal((64, 3)), "float32")
    x, ld = exact.forward_and_log_det(z)
    x_h, _ = noisy.forward_and_log_det(z)
    np.testing.assert_allclose(x_h.numpy(), x.numpy(), atol=1e-3)  # same map (solver tolerance)
    # 400 copies of the batch in one training solve: each row gets its own Gaussian
    # probe (outside training every row takes the same fixed signs)
    estimates = noisy.forward_and_log_det(tf.tile(z, [400, 1]), training=True)[1].numpy()
    estimates = estimates.reshape(400, 64)
    assert np.std(estimates, axis=0).max() > 1e-4  # really stochastic
    se = estimates.std(axis=0) / np.sqrt(len(estimates))
    assert np.all(np.abs(estimates.mean(axis=0) - ld.numpy()) < 5 * se + 1e-4)


def test_same_seed_same_samples_and_empty_batches_with_either_trace():
    """Hutchinson's probe was drawn afresh on every call, so one seed gave other
    samples (it moves the adaptive solver's steps); an empty batch never returned."""
    from kerasflows.testing import perturb_weights
    keras.utils.set_random_seed(0)
    for trace in ("exact", "hutchinson"):
        layer = ContinuousFlow(hidden_units=(16,), trace=trace)
        layer.ensure_built(2)
        perturb_weights(layer, 0.5)
        flow = kerasflows.Flow([layer], event_dim=2)
        np.testing.assert_array_equal(flow.sample(20, seed=1), flow.sample(20, seed=1))
        x = flow.sample(20, seed=2).numpy()
        np.testing.assert_array_equal(flow.log_prob(x), flow.log_prob(x))
        assert flow.sample(0).shape == (0, 2)
        assert flow.log_prob(np.zeros((0, 2), "float32")).shape == (0,)
    # in training the probe is fresh each call (a fixed one would bias every step)
    log_det = tf.function(lambda v: layer.inverse_and_log_det(v, training=True)[1])
    assert np.abs(log_det(x).numpy() - log_det(x).numpy()).max() > 0


def test_trains_under_fit_and_saves(tmp_path):
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((1024, 2)) * [0.5, 0.3] + [1.0, -0.5]).astype("float32")
    flow = kerasflows.Flow([ContinuousFlow(hidden_units=(16,))], event_dim=2)
    nll_before = -float(np.mean(flow.log_prob(x).numpy()))
    flow.compile(optimizer=keras.optimizers.Adam(1e-2))
    assert flow.jit_compile is True                   # the exact trace: XLA
    history = flow.fit(x, batch_size=256, epochs=3, verbose=0)
    nll_after = -float(np.mean(flow.log_prob(x).numpy()))
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert nll_after < nll_before - 0.5
    flow.save(tmp_path / "cnf.keras")
    loaded = keras.models.load_model(tmp_path / "cnf.keras")
    np.testing.assert_allclose(loaded.log_prob(x[:16]).numpy(), flow.log_prob(x[:16]).numpy(),
                               atol=1e-5)


def test_hutchinson_trace_gives_the_numbers_of_tfps():
    net = keras.Sequential([keras.layers.Dense(8, activation="tanh"), keras.layers.Dense(3)])
    ode_fn = lambda t, x: net(tf.concat([x, tf.fill([tf.shape(x)[0], 1], t)], -1))
    state = tf.constant(np.random.default_rng(0).normal(size=(5, 3)), "float32")
    sample_fn = lambda shape, dtype, seed: tf.random.stateless_normal(shape, [seed, 0], dtype=dtype)
    args = (ode_fn, tf.shape(state), tf.float32)
    ours = hutchinson_trace(*args, sample_fn=sample_fn, seed=3)(0.5, (state, state))
    tfps = tfp.bijectors.ffjord.trace_jacobian_hutchinson(*args, sample_fn=sample_fn, seed=3)(
        0.5, (state, state))
    for a, b in zip(ours, tfps):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_hutchinson_xla_step_takes_the_weights_as_inputs():
    """With TFP's trace (its `tf.vectorized_map`) XLA took the dynamics' weights as
    compile-time constants, so each step compiled again; the HLO then held the
    weights' values. `jit_compile="auto"` compiles the step with XLA."""
    flow = kerasflows.Flow([ContinuousFlow(hidden_units=(8,), trace="hutchinson")],
                           event_dim=2)
    x = tf.constant(np.random.default_rng(0).normal(size=(16, 2)), "float32")

    @tf.function(jit_compile=True, autograph=False)
    def grads(x):
        with tf.GradientTape() as tape:
            loss = -tf.reduce_mean(flow(x, training=True))
        return tape.gradient(loss, flow.trainable_variables)
    hlo = grads.experimental_get_compiler_ir(x)(stage="hlo")
    inputs = re.search(r"entry_computation_layout=\{\((.*?)\)->", hlo).group(1)
    for w in flow.trainable_variables:
        assert f"f32[{','.join(map(str, w.shape))}]" in inputs, w.path
    assert not re.findall(r"ReadVariableOp\S* = \S+ constant\(", hlo)
    flow.compile(optimizer="adam")
    assert flow.jit_compile is True


def test_forward_and_its_log_det_come_from_one_solve():
    layer = ContinuousFlow(hidden_units=(8,))
    layer.ensure_built(2)
    calls = []
    dynamics = layer.dynamics

    def counting(t, x, context=None):
        calls.append(1)
        return dynamics(t, x, context=context)
    layer.dynamics = counting
    z = tf.constant(np.random.default_rng(0).standard_normal((8, 2)), "float32")
    layer.forward_and_log_det(z)
    one = len(calls)
    calls.clear()
    b = layer.bijector()
    b.forward(z)
    assert len(calls) == one > 0, "forward_and_log_det solves once, as forward alone does"
    # a batch shape [2, 4]: reshaped to rows once, so the log-det reads the same solve
    z3 = tf.reshape(z, [2, 4, 2])
    for direction in ("forward", "inverse"):
        calls.clear()
        getattr(layer.bijector(), direction)(z3)
        alone = len(calls)
        calls.clear()
        b = layer.bijector()
        v = getattr(b, direction)(z3)
        log_det = getattr(b, f"{direction}_log_det_jacobian")(z3, event_ndims=1)
        assert len(calls) == alone > 0, direction
        assert v.shape == (2, 4, 2) and log_det.shape == (2, 4)
    # TFP's distribution takes the log-det at the inverse's output: the same solve
    d = tfp.distributions.TransformedDistribution(
        tfp.distributions.MultivariateNormalDiag(tf.zeros(2)), layer.bijector())
    calls.clear()
    d.log_prob(z)
    rows = len(calls)
    calls.clear()
    assert d.log_prob(z3).shape == (2, 4) and len(calls) == rows > 0


@pytest.mark.parametrize("kwargs, match", [
    ({"trace": "exactly"}, "trace='exactly'"),
    ({"time": 0}, "time=0"),
    ({"rtol": -1e-5}, "rtol=-1e-05"),
    ({"atol": "small"}, "atol='small'"),
    ({"time": float("inf")}, "`time` must be a finite number > 0. Received: time=inf"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ContinuousFlow(**kwargs)


def test_bijector_takes_any_batch_shape():
    from batch_shapes import check_bijector_batch_shapes
    from kerasflows.testing import perturb_weights
    keras.utils.set_random_seed(0)
    layer = ContinuousFlow(hidden_units=(8,), dtype="float64")
    layer.ensure_built(3)
    perturb_weights(layer, 0.3, seed=1)
    cond = ContinuousFlow(hidden_units=(8,), context_dim=2, dtype="float64")
    cond.ensure_built(3)
    # the adaptive solver's steps depend on the batch it solves (a sample of one row
    # against 8 rows); a log-prob of a `[2, 4]` batch and of its 8 rows both read
    # their log-det from the inverse's one solve of the same rows
    check_bijector_batch_shapes(layer, cond, rtol=1e-9, log_det_rtol=1e-6, log_prob_rtol=1e-9)


def test_hutchinson_log_density_is_the_same_in_every_eval_mode():
    """The fixed probe came from `tf.random.stateless_normal`, whose numbers under
    XLA are not its CPU kernel's: XLA-mode and `predict` log-densities were up to
    3 nats away from the graph's for the same points."""
    from kerasflows.layers.continuous import fixed_probe
    probe = [fixed_probe(tf.constant([6, 4]), "float32", 0)]
    probe.append(tf.function(fixed_probe)(tf.constant([6, 4]), "float32", 0))
    probe.append(tf.function(fixed_probe, jit_compile=True)(tf.constant([6, 4]), "float32", 0))
    for p in probe[1:]:
        np.testing.assert_array_equal(p.numpy(), probe[0].numpy())
    assert set(np.unique(probe[0])) == {-1.0, 1.0}
    assert not np.array_equal(fixed_probe([6, 4], "float32", 1), probe[0])   # seeded
    keras.utils.set_random_seed(0)
    layer = ContinuousFlow(hidden_units=(16,), trace="hutchinson", eval_trace="hutchinson")
    layer.ensure_built(3)
    kerasflows.testing.perturb_weights(layer, 0.5, seed=2)
    flow = kerasflows.Flow([layer], event_dim=3)
    x = np.random.default_rng(0).standard_normal((5, 3)).astype("float32")
    values = {}
    for mode in ("eager", "graph", "xla"):
        flow.eval_mode = mode
        values[mode] = flow.log_prob(x).numpy()
    np.testing.assert_allclose(values["xla"], values["graph"], atol=1e-4)
    np.testing.assert_allclose(values["eager"], values["graph"], atol=1e-4)
    np.testing.assert_allclose(flow.predict(x, verbose=0), values["graph"], atol=1e-4)
    # one point, one log-density, wherever it stands in its batch: the signs came from
    # each entry's flat index, and one point's values differed by up to 1.7 nats
    assert np.all(probe[0].numpy() == probe[0].numpy()[:1])
    flow.eval_mode = "graph"
    same = flow.log_prob(np.repeat(x[:1], 6, 0)).numpy()
    np.testing.assert_allclose(same, np.full(6, same[0]), atol=1e-5)
    # (to the solver's tolerance: its steps are the whole batch's)
    np.testing.assert_allclose(same, np.full(6, values["graph"][0]), atol=2e-3)
    np.testing.assert_allclose(flow.log_prob(x[::-1]).numpy()[::-1], values["graph"],
                               atol=2e-3)


#: The child that runs the scripts below: each request is one line, a script as a
#: JSON string, run in a fresh namespace; the reply is one line, its printed output
#: and its traceback (or None).
CHILD_RUNNER = """
import contextlib, io, json, os, sys, traceback
reply = os.fdopen(os.dup(1), "w")
os.dup2(2, 1)                              # stray writes to fd 1 go to stderr
for line in sys.stdin:
    out, error = io.StringIO(), None
    try:
        with contextlib.redirect_stdout(out):
            exec(json.loads(line), {"__name__": "__main__"})
    except BaseException:
        error = traceback.format_exc()
    reply.write(json.dumps([out.getvalue(), error]) + "\\n")
    reply.flush()
"""


@pytest.fixture(scope="module")
def run_in_child():
    """`run_in_child(script)`: the script's printed output, run in a child process
    so that a hang (240 s) fails the test instead of the run. One child per module
    (and xdist worker) runs each script asked for: a Python + TensorFlow start is
    4-5 CPU-s. A child that hung or died is replaced for the next script."""
    import json
    import os
    import subprocess
    import sys
    import tempfile
    import threading
    child = {}

    def stop():
        proc = child.pop("proc", None)
        if proc is not None:
            try:
                proc.stdin.close()
            except OSError:                # a child that died
                pass
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            child.pop("stderr").close()

    def run(script, timeout=240):
        if "proc" not in child:
            child["stderr"] = tempfile.TemporaryFile()
            child["proc"] = subprocess.Popen(
                [sys.executable, "-c", CHILD_RUNNER], stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=child["stderr"], text=True,
                env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
        proc = child["proc"]
        proc.stdin.write(json.dumps(script) + "\n")
        proc.stdin.flush()
        line = []
        reader = threading.Thread(target=lambda: line.append(proc.stdout.readline()),
                                  daemon=True)
        reader.start()
        reader.join(timeout)
        hung = not line
        if hung or not line[0]:
            proc.kill()
            child["stderr"].seek(0)
            stderr = child["stderr"].read().decode(errors="replace")
            stop()
            pytest.fail(f"the script did not return in {timeout} s" if hung else
                        f"the child exited ({proc.returncode}):\n{stderr[-3000:]}")
        out, error = json.loads(line[0])
        assert error is None, error[-3000:]
        return out
    yield run
    stop()


NAN_ROWS_SCRIPT = """
import numpy as np, kerasflows
from kerasflows.layers import ClassEmbedding, ContinuousFlow
x = np.array([[0.1, 0.2], [0.3, 0.0], [np.nan, 0.0]], "float32")
plain = kerasflows.Flow([ContinuousFlow(hidden_units=(8,))], event_dim=2)
conditional = kerasflows.Flow([ContinuousFlow(hidden_units=(8,), context_dim=1)],
                              event_dim=2, context_dim=1)
labelled = kerasflows.Flow([ContinuousFlow(hidden_units=(8,), context_dim=4)], event_dim=2,
                           context_dim=1, context_encoder=ClassEmbedding(3, features=4))
c = np.array([[0.5], [np.nan], [0.5]], "float32")
labels = np.array([[0.0], [7.0], [1.0]], "float32")           # 7: not one of 3 classes
for mode in ("eager", "graph"):
    for flow in (plain, conditional, labelled):
        flow.eval_mode = mode
    print(mode, plain.log_prob(x).numpy().tolist())
    print(mode, conditional.log_prob(x[:2], context=c[:2]).numpy().tolist())
    print(mode, labelled.log_prob(x[:2], context=labels[:2]).numpy().tolist())
    print(mode, np.isnan(conditional.sample(3, context=c, seed=0).numpy()).any(1).tolist())
"""


def test_a_nan_row_comes_out_nan_and_the_others_are_solved(run_in_child):
    """One adaptive solve takes every row: a NaN or inf row (data, context, or a label a
    ClassEmbedding does not know) made its error estimate NaN and the call never returned.
    Run in a child process, so that a hang fails the test instead of the run."""
    lines = [line.split(" ", 1) for line in run_in_child(NAN_ROWS_SCRIPT).strip().splitlines()]
    assert [mode for mode, _ in lines] == ["eager"] * 4 + ["graph"] * 4
    for k, (_, values) in enumerate(lines):
        values = eval(values, {"nan": float("nan")})
        if k % 4 == 0:
            assert np.isfinite(values[:2]).all() and np.isnan(values[2])
        elif k % 4 == 3:
            assert values == [False, True, False]
        else:
            assert np.isfinite(values[0]) and np.isnan(values[1])


def test_a_shared_context_in_a_graph_of_unknown_rows():
    # a [1, C] context in a tf.function whose batch size is unknown: the padding of
    # an empty batch lost the context's one row, and the dynamics failed to concatenate
    keras.utils.set_random_seed(0)
    flow = kerasflows.Flow([ContinuousFlow(hidden_units=(4,), context_dim=2, trace="exact")],
                           event_dim=2, context_dim=2)
    x = np.random.default_rng(0).normal(size=(3, 2)).astype("float32")
    c = np.array([[0.5, -1.0]], "float32")
    eager = flow.log_prob(x, np.repeat(c, 3, axis=0)).numpy()
    graph = tf.function(lambda x, c: flow.log_prob(x, c), input_signature=[
        tf.TensorSpec([None, 2]), tf.TensorSpec([1, 2])])
    np.testing.assert_allclose(graph(x, c).numpy(), eager, rtol=1e-5)
    assert graph(tf.zeros([0, 2]), c).shape == (0,)
    layer = flow.flow_layers[0]
    step = tf.function(lambda z, c: layer.forward_and_log_det(z, context=c), input_signature=[
        tf.TensorSpec([None, 2]), tf.TensorSpec([1, 2])])
    y, _ = step(x, c)
    np.testing.assert_allclose(y.numpy(), layer.forward_and_log_det(
        x, context=np.repeat(c, 3, axis=0))[0].numpy(), rtol=1e-5, atol=1e-6)


FAR_ROWS_SCRIPT = """
import keras, numpy as np, kerasflows
from kerasflows.layers import ContinuousFlow
from kerasflows.testing import perturb_weights
keras.utils.set_random_seed(0)
x = np.array([[0.1, 0.2], [1e25, 0.0], [-1e30, 1.0], [2e19, -1e19]], "float32")
for activation in ("softplus", "relu"):
    plain = kerasflows.Flow([ContinuousFlow(hidden_units=(8,), activation=activation)], 2)
    conditional = kerasflows.Flow([ContinuousFlow(hidden_units=(8,), activation=activation,
                                                  context_dim=1)], event_dim=2, context_dim=1)
    for flow in (plain, conditional):
        perturb_weights(flow, 0.5, seed=1)
    c = np.array([[0.5], [1e25], [0.5], [0.5]], "float32")
    for mode in ("eager", "graph"):
        plain.eval_mode = conditional.eval_mode = mode
        z, log_det = plain.inverse_and_log_det(x)
        print(mode, [plain.log_prob(x).numpy().tolist(), z.numpy().tolist(),
                     log_det.numpy().tolist(), plain.forward(x).numpy().tolist(),
                     conditional.log_prob(x[[0, 0, 3, 3]], context=c).numpy().tolist()])
"""


def test_a_row_far_out_comes_out_infinite_and_the_others_are_solved(run_in_child):
    """A finite row far out (1e25) with an unbounded activation (softplus, relu) made the
    solver's error estimate inf / inf = NaN, as a NaN row did, and the call never
    returned. Rows beyond `far_bound` (2.6e19 in float32) come out +-inf with log-det 0,
    log_prob -inf there as for a Gaussian base; a context there gives NaN. Run in a child
    process, so that a hang fails the test instead of the run."""
    from kerasflows.layers.continuous import far_bound
    assert 2.6e19 < far_bound("float32") < 2.7e19
    lines = [line.split(" ", 1) for line in run_in_child(FAR_ROWS_SCRIPT).strip().splitlines()]
    assert [mode for mode, _ in lines] == ["eager", "graph"] * 2
    inf = float("inf")
    for _, values in lines:
        log_p, z, log_det, x, conditional = eval(values, {"nan": float("nan"), "inf": inf})
        assert np.isfinite(log_p[0]) and log_p[1:3] == [-inf, -inf], log_p
        assert z[1:3] == [[inf, inf], [-inf, inf]] and log_det[1:3] == [0.0, 0.0]
        assert np.isfinite(z[0] + z[3]).all() and np.isfinite(log_det[0] + log_det[3])
        assert x[1:3] == [[inf, inf], [-inf, inf]] and np.isfinite(x[0] + x[3]).all()
        # (2e19, -1e19), inside the bound, is solved: its state may pass 2.6e19 (-inf)
        assert np.isfinite(conditional[0]) and not np.isnan(conditional[2:]).any()
        assert np.isnan(conditional[1]), conditional


TFP_GUARD_SCRIPT = """
import keras, numpy as np, kerasflows
from kerasflows.layers import ContinuousFlow
from kerasflows.testing import perturb_weights
keras.utils.set_random_seed(0)
flow = kerasflows.Flow([ContinuousFlow(hidden_units=(8,), activation="softplus")], 2)
conditional = kerasflows.Flow([ContinuousFlow(hidden_units=(8,), activation="softplus",
                                              context_dim=1)], event_dim=2, context_dim=1)
for f in (flow, conditional):
    perturb_weights(f, 0.5, seed=1)
x = np.array([[0.1, 0.2], [np.nan, 0.0], [1e25, 0.0], [-1e30, 1.0]], "float32")
layer = flow.flow_layers[0]
b = layer.bijector()
print([b.inverse(x).numpy().tolist(), b.inverse_log_det_jacobian(x, event_ndims=1).numpy().tolist(),
       b.forward(x).numpy().tolist(), flow.distribution.log_prob(x).numpy().tolist(),
       flow.distribution.log_prob(x[None]).numpy().tolist(), flow.log_prob(x).numpy().tolist(),
       b.forward(np.zeros((0, 2), "float32")).shape.as_list(),
       b.inverse_log_det_jacobian(np.zeros((0, 2), "float32"), event_ndims=1).shape.as_list()])
c = np.array([[0.5], [1e25], [np.inf], [0.5]], "float32")
d = conditional.get_distribution(context=c)
print([d.log_prob(x[[0, 0, 0, 0]]).numpy().tolist(),
       conditional.log_prob(x[[0, 0, 0, 0]], context=c).numpy().tolist()])
"""


def test_the_bijector_and_distribution_take_bad_rows_as_the_layer_does(run_in_child):
    """`layer.bijector()` and `flow.distribution` used TFP's FFJORD without the layer's
    guard: a NaN row, a row beyond `far_bound` or an empty batch never returned
    through them. They now give the numbers `log_prob` gives. In a child process, so
    that a hang fails the test instead of the run."""
    first, second = run_in_child(TFP_GUARD_SCRIPT).strip().splitlines()
    names = {"nan": float("nan"), "inf": float("inf")}
    z, log_det, forward, tfp_log_p, batched, log_p, empty, empty_log_det = eval(first, names)
    inf = float("inf")
    assert np.isfinite(z[0]).all() and np.isnan(z[1]).all()
    assert z[2:] == [[inf, inf], [-inf, inf]] and log_det[2:] == [0.0, 0.0]
    assert np.isfinite(log_det[0]) and np.isnan(log_det[1])
    assert np.isnan(forward[1]).all() and forward[2:] == [[inf, inf], [-inf, inf]]
    np.testing.assert_allclose(tfp_log_p, log_p, rtol=1e-5)
    np.testing.assert_allclose(batched, [log_p], rtol=1e-5)
    assert np.isfinite(log_p[0]) and np.isnan(log_p[1]) and log_p[2:] == [-inf, -inf]
    assert empty == [0, 2] and empty_log_det == [0]
    tfp_conditional, conditional = eval(second, names)
    np.testing.assert_allclose(tfp_conditional, conditional, rtol=1e-5)
    assert np.isfinite(conditional[0] + conditional[3]) and np.isnan(conditional[1:3]).all()


def test_the_flows_distribution_chains_the_ode_with_other_layers():
    """`flow.distribution` / `flow.bijector` of a ContinuousFlow beside other layers
    (or another ContinuousFlow): its bijector's dtype was the string "float32", and
    the chain took the tensor handed to it as strings ("Tensor conversion requested
    dtype string")."""
    from kerasflows.layers import AffineCoupling
    keras.utils.set_random_seed(0)
    flow = kerasflows.Flow([ContinuousFlow(hidden_units=(8,)), AffineCoupling(hidden_units=(8,)),
                            ContinuousFlow(hidden_units=(8,))], event_dim=2)
    x = np.random.default_rng(0).standard_normal((4, 2)).astype("float32")
    assert flow.flow_layers[0].bijector().dtype == tf.float32
    np.testing.assert_allclose(flow.distribution.log_prob(x), flow.log_prob(x), rtol=1e-4,
                               atol=1e-4)
    z = flow.bijector.inverse(x)
    np.testing.assert_allclose(flow.bijector.forward(z), x, rtol=1e-4, atol=1e-4)
    assert flow.distribution.sample(3, seed=1).shape == (3, 2)


def test_the_bijector_solves_once_for_a_transform_and_its_log_det():
    layer = ContinuousFlow(hidden_units=(8,))
    layer.ensure_built(2)
    solves = []
    solve_rows = layer.solve_rows
    layer.solve_rows = lambda *a, **k: solves.append(k["forward"]) or solve_rows(*a, **k)
    z = tf.constant(np.random.default_rng(0).standard_normal((5, 2)), "float32")
    b = layer.bijector()
    x = b.forward(z)
    b.forward_log_det_jacobian(z, event_ndims=1)
    np.testing.assert_allclose(b.inverse_log_det_jacobian(x, event_ndims=1),
                               -b.forward_log_det_jacobian(z, event_ndims=1))
    assert b.inverse(x) is z and solves == [True]
    b.inverse_log_det_jacobian(z, event_ndims=1)
    assert solves == [True, False]


def test_a_bijector_built_after_a_weight_change_is_not_answered_from_the_cache():
    # TFP shares its cache between equal bijectors: two of one layer had equal parameters,
    # so the one built after the weights changed gave the first one's outputs
    keras.utils.set_random_seed(0)
    layer = ContinuousFlow(hidden_units=(8,))
    layer.ensure_built(2)
    z = tf.constant(np.random.default_rng(0).standard_normal((4, 2)), "float32")
    before = layer.bijector().forward(z)
    for k, w in enumerate(layer.weights):
        w.assign(tf.random.normal(w.shape, stddev=0.5, seed=k))
    after = layer.bijector().forward(z)
    np.testing.assert_allclose(after, layer.forward_and_log_det(z)[0], rtol=1e-6)
    assert np.abs(after - before).max() > 1e-2


def test_under_a_tape_a_continuous_flow_runs_op_by_op():
    """The traced gradient of FFJORD's adjoint solve took 13 times eager's time under
    one tape, and under two nested tapes (a second-order score) never returned: under
    a tape its calls run eagerly whatever the eval_mode, with eager's numbers."""
    keras.utils.set_random_seed(0)
    flow = kerasflows.Flow([ContinuousFlow(hidden_units=(8,))], 3)
    from kerasflows.testing import perturb_weights
    perturb_weights(flow, 0.3, seed=1)
    x = tf.constant(np.random.default_rng(0).normal(size=(4, 3)), "float32")
    flow.eval_mode = "eager"
    with tf.GradientTape() as tape:
        tape.watch(x)
        want = tape.gradient(flow.log_prob(x), x)
    for mode in ("graph", "xla"):
        flow.eval_mode = mode
        with tf.GradientTape() as outer:
            outer.watch(x)
            with tf.GradientTape() as tape:
                tape.watch(x)
                log_p = flow.log_prob(x)
            got = tape.gradient(log_p, x)
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
        assert not flow._compiled, mode          # no graph was traced under the tapes
    flow.eval_mode = "graph"
    flow.log_prob(x)                             # without a tape: the graph as before
    assert flow._compiled


def _conditional_flow(trace="exact", context_encoder=None, tol=1e-8):
    """A float64 conditional ContinuousFlow on 2-D data with a 1-D context (or a
    3-D one out of `context_encoder`), solved tightly (`tol`: the solver's rtol and
    atol), its weights moved off the identity, over `time=0.5`. The eager solves and
    adjoints under a tape are most of the checks below: over 1.0 with tol 1e-9 they
    took 1.7 times this CPU, and finite differences agreed to at worst 9e-8 relative;
    here they do to 7e-8 (the gradients are 0.008 to 0.34)."""
    keras.utils.set_random_seed(0)
    layer = ContinuousFlow(hidden_units=(4,), trace=trace, eval_trace=trace, rtol=tol,
                           atol=tol, time=0.5,
                           context_dim=1 if context_encoder is None else 3, dtype="float64")
    flow = kerasflows.Flow([layer], event_dim=2, context_dim=1,
                           context_encoder=context_encoder, dtype="float64")
    flow.log_prob(np.zeros((1, 2)), context=np.zeros((1, 1)))
    from kerasflows.testing import perturb_weights
    perturb_weights(flow, 0.5, seed=1)
    return flow


X = np.random.default_rng(0).standard_normal((6, 2))
CONTEXT = np.random.default_rng(1).standard_normal((6, 1))

CONTEXT_PATHS = {
    "log_prob": lambda flow, c: tf.reduce_mean(flow.log_prob(X, context=c)),
    "log_prob, hutchinson": lambda flow, c: tf.reduce_mean(flow.log_prob(X, context=c)),
    "log_prob, shared context": lambda flow, c: tf.reduce_mean(flow.log_prob(X, context=c[:1])),
    "sample": lambda flow, c: tf.reduce_sum(tf.sin(flow.sample(6, context=c, seed=3))),
    "get_bijector forward": lambda flow, c: tf.reduce_sum(tf.sin(
        flow.get_bijector(context=c).forward(X))),
}


@pytest.fixture(scope="module")
def conditional_flows():
    """`_conditional_flow(trace)`, built once for each trace for the context-gradient
    checks below, which only read the flows."""
    flows = {}

    def get(trace):
        if trace not in flows:
            flows[trace] = _conditional_flow(trace=trace)
        return flows[trace]
    return get


@pytest.mark.parametrize("path", sorted(CONTEXT_PATHS))
def test_the_context_gets_the_gradient_of_finite_differences(path, conditional_flows):
    """TFP's adjoint returns gradients for the solver's initial state, its
    `constants` and variables only: the context, captured by the dynamics, got
    None, and a context encoder never trained (its loss fell through the dynamics)."""
    flow = conditional_flows("hutchinson" if "hutchinson" in path else "exact")
    value = CONTEXT_PATHS[path]
    c = tf.constant(CONTEXT)
    with tf.GradientTape() as tape:
        tape.watch(c)
        v = value(flow, c)
    got = tape.gradient(v, c)
    assert got is not None
    # central differences along a random direction of every context entry
    u = tf.constant(np.random.default_rng(2).standard_normal(CONTEXT.shape))
    h = 1e-5
    want = (value(flow, c + h * u) - value(flow, c - h * u)).numpy() / (2 * h)
    np.testing.assert_allclose(tf.reduce_sum(got * u).numpy(), want, rtol=1e-6, atol=1e-9)
    assert abs(want) > 1e-3


def test_a_context_encoder_gets_gradients_through_the_solve():
    keras.utils.set_random_seed(0)          # the encoder's weights too, whatever ran first
    encoder = keras.Sequential([keras.layers.Dense(3, dtype="float64")])
    flow = _conditional_flow(context_encoder=encoder, tol=1e-5)
    with tf.GradientTape() as tape:
        loss = -tf.reduce_mean(flow.log_prob(X, context=CONTEXT))
    grads = tape.gradient(loss, encoder.trainable_weights)
    assert len(grads) == 2
    for weight, grad in zip(encoder.trainable_weights, grads):
        assert grad is not None, weight.path
        assert np.abs(grad.numpy()).max() > 1e-4, weight.path


def test_eager_calls_keep_no_bijector_alive():
    """Each eager call builds a guarded bijector whose solves held their input and
    output, which TFP's process-wide cache keys by while holding the bijector: every
    call's bijector and rows were kept for good."""
    import gc
    from kerasflows.layers.rows import RowsBijector
    from kerasflows.layers.continuous import _GuardedODE
    flow = kerasflows.Flow([ContinuousFlow(hidden_units=(8,), rtol=1e-3, atol=1e-3)],
                           event_dim=2)
    x = np.random.default_rng(0).normal(size=(16, 2)).astype("float32")

    def alive():
        gc.collect()
        return sum(isinstance(o, (RowsBijector, _GuardedODE)) for o in gc.get_objects())
    before = alive()
    flow.eval_mode = "eager"
    for _ in range(3):
        flow.log_prob(x)
        flow.sample(4, seed=0)
    with tf.GradientTape() as tape:
        loss = -tf.reduce_mean(flow.log_prob(x))
    assert all(g is not None for g in tape.gradient(loss, flow.trainable_variables))
    del tape, loss
    assert alive() == before


def test_a_hutchinson_flow_scores_points_with_the_exact_trace_outside_training():
    """One fixed probe for every row and call is a bias of each point's log-density,
    not noise that averages out: a 2-D flow's density integrated to 0.42 and its NLL
    came out 0.44 nats high. Outside training the trace is exact unless
    eval_trace="hutchinson" asks for that estimate."""
    keras.utils.set_random_seed(0)
    exact = ContinuousFlow(hidden_units=(8, 8), trace="exact", dtype="float64")
    exact.ensure_built(2)
    kerasflows.testing.perturb_weights(exact, 0.6, seed=1)
    config = exact.get_config()
    assert config["eval_trace"] == "exact"
    hutchinson = ContinuousFlow.from_config({**config, "trace": "hutchinson"})
    fixed = ContinuousFlow.from_config({**config, "trace": "hutchinson",
                                        "eval_trace": "hutchinson"})
    x = np.random.default_rng(0).standard_normal((256, 2))
    nll = {}
    for name, layer in (("exact", exact), ("hutchinson", hutchinson), ("fixed", fixed)):
        layer.ensure_built(2)
        layer.set_weights(exact.get_weights())
        nll[name] = -kerasflows.Flow([layer], event_dim=2, dtype="float64").log_prob(x).numpy()
    np.testing.assert_allclose(nll["hutchinson"], nll["exact"], atol=1e-4)
    assert np.abs(nll["fixed"] - nll["exact"]).max() > 0.1, "the fixed probe is an estimate"
    assert fixed.get_config()["eval_trace"] == "hutchinson"
    with pytest.raises(ValueError, match=r"`eval_trace` must be one of .*Received: "
                                         r"eval_trace='fast'"):
        ContinuousFlow(eval_trace="fast")


def test_a_continuous_flow_saved_under_its_bare_class_name_loads(tmp_path):
    """Commits of 2026-12-06 saved ContinuousFlow as "ContinuousFlow" (their
    registration sat on another function), which later code could not load."""
    from keras_files import with_member
    keras.utils.set_random_seed(0)
    flow = kerasflows.Flow([ContinuousFlow(hidden_units=(8,))], event_dim=2)
    kerasflows.testing.perturb_weights(flow, 0.3, seed=0)
    flow.save(tmp_path / "f.keras")

    def bare_name(config):
        assert b'"kerasflows>ContinuousFlow"' in config
        return config.replace(b'"kerasflows>ContinuousFlow"', b'"ContinuousFlow"')
    old = with_member(tmp_path / "f.keras", tmp_path / "old.keras", "config.json", bare_name)
    loaded = keras.models.load_model(old)
    x = np.random.default_rng(0).standard_normal((4, 2)).astype("float32")
    np.testing.assert_array_equal(loaded.log_prob(x), flow.log_prob(x))


def test_sample_forward_and_inverse_solve_the_map_without_its_log_det(monkeypatch):
    """They read no log-det, yet every solve carried one: the exact trace's D gradients
    a step (at D = 64, a solve with the log-det took 5x the map alone's time)."""
    from kerasflows.layers import continuous
    keras.utils.set_random_seed(0)
    # solved tightly: the two solves' steps differ, and each is off by its tolerance
    layer = ContinuousFlow(hidden_units=(8,), rtol=1e-9, atol=1e-9, dtype="float64")
    layer.ensure_built(3)
    kerasflows.testing.perturb_weights(layer, 0.5, seed=0)
    flow = kerasflows.Flow([layer], event_dim=3, dtype="float64")
    x, log_p = flow.sample_and_log_prob(64, seed=1)

    def no_trace_please(*args, **kwargs):
        raise AssertionError("a trace was integrated")
    monkeypatch.setattr(continuous, "exact_trace", no_trace_please)
    for mode in ("eager", "graph", "xla"):
        flow.eval_mode = mode
        samples = flow.sample(64, seed=1)
        np.testing.assert_allclose(samples, x, atol=1e-6)
        np.testing.assert_allclose(flow.forward(flow.inverse(samples)), samples, atol=1e-6)
    with pytest.raises(AssertionError, match="a trace was integrated"):
        flow.log_prob(x)
