"""The README's examples run as written (one epoch, and fewer rows where they take many)."""

import os
import pathlib
import re

import numpy as np
import pytest

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def _example_after(marker):
    """The first Python block of the README after `marker`."""
    text = README.read_text()
    return re.search(r"```python\n(.*?)```", text[text.index(marker):], re.S).group(1)


def _first_flow_example():
    return _example_after("## A first flow")


def test_first_flow_example_runs(tmp_path, monkeypatch):
    code = _first_flow_example()
    assert "epochs=30" in code
    monkeypatch.chdir(tmp_path)
    scope = {}
    assert "n=20_000" in code
    # 5,120 rows: 9 training and 1 validation batch of 512, so that XLA compiles each
    # step for one batch size (a partial last batch is one more compilation)
    exec(compile(code.replace("epochs=30", "epochs=1").replace("n=20_000", "n=5_120"),
                 "README.md", "exec"), scope)
    assert scope["samples"].shape == (1000, 2)
    np.testing.assert_array_equal(scope["same"].log_prob(scope["samples"]), scope["log_p"])
    assert (tmp_path / "moons.keras").exists()


def test_conditional_flow_example_runs():
    code = _example_after("**Conditional flows** (`context_dim=C`)")
    assert "epochs=20" in code
    scope = {}
    exec(compile("import keras, kerasflows\n" + code.replace("epochs=20", "epochs=1")
                 .replace("n=20_000", "n=2_048"), "README.md", "exec"), scope)
    assert scope["ring"].shape == (1000, 2) and scope["log_p"].shape == (1000,)
    assert np.all(np.isfinite(scope["log_p"]))


def test_context_encoder_example_runs():
    code = _example_after("**`context_encoder`**")
    assert "epochs=20" in code
    rng = np.random.default_rng(0)
    scope = {"C": 5, "c": rng.standard_normal((256, 5)).astype("float32"),
             "x": rng.standard_normal((256, 2)).astype("float32")}
    exec(compile("import keras, kerasflows\n" + code.replace("epochs=20", "epochs=1"),
                 "README.md", "exec"), scope)
    flow = scope["flow"]
    assert flow.context_encoder is scope["encoder"]
    assert {l.context_dim for l in flow.flow_layers} - {None} == {8}
    assert np.isfinite(flow.log_prob(scope["x"], context=scope["c"]).numpy()).all()


def test_tensorboard_example_runs(tmp_path, monkeypatch):
    code = _example_after("**Watching it train in TensorBoard.**")
    assert "epochs=30" in code
    monkeypatch.chdir(tmp_path)
    import keras
    import kerasflows
    flow = kerasflows.models.RealNVP(2, num_layers=1, hidden_units=(8,))
    flow.compile(optimizer=keras.optimizers.Adam(1e-3))
    scope = {"keras": keras, "kerasflows": kerasflows, "flow": flow,
             "x": kerasflows.datasets.load("moons", n=1024, seed=0)}
    exec(compile(code.replace("epochs=30", "epochs=2"), "README.md", "exec"), scope)
    assert sorted(os.listdir(tmp_path / "runs" / "moons")) == ["flow", "train"]


def test_dequantization_example_runs():
    code = _example_after("new each epoch: **dequantization**")
    assert "epochs=20" in code
    rng = np.random.default_rng(0)
    counts = np.stack([rng.poisson(3, 1024), rng.normal(size=1024), rng.integers(0, 5, 1024)],
                      axis=1).astype(np.float32)
    import kerasflows
    flow = kerasflows.models.RealNVP(3, num_layers=2, hidden_units=(16,))
    flow.compile(optimizer="adam")
    counts_test = counts[:200].copy()
    counts_test[:, 2] = 1.0          # one value in these rows: still noised, as in training
    scope = {"flow": flow, "counts": counts, "counts_test": counts_test}
    exec(compile(code.replace("epochs=20", "epochs=1"), "README.md", "exec"), scope)
    assert scope["columns"] == [0, 2]
    from kerasflows.dequantization import dequantize
    expected = -flow.log_prob(dequantize(counts_test, [0, 2], seed=1)).numpy().mean()
    assert np.isfinite(scope["nll"]) and scope["nll"] == pytest.approx(expected, rel=1e-6)
    draws = scope["draws"]
    assert draws.shape == (1000, 3)
    assert (draws[:, [0, 2]] == np.round(draws[:, [0, 2]])).all()
