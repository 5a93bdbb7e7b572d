"""`kerasflows train --standardize`: on by default for a data file, off for a
dataset name, recorded, and what it does for data far from a unit scale."""

import numpy as np
import pytest

import kerasflows
from kerasflows.cli import main
from kerasflows.loading import training_record


# For the runs that only check which layers the flow got: the smallest flow.
LIGHT = ("--recipe", "realnvp", "--layers", "1", "--hidden", "4")


# what is checked is the data's scale: `train`'s step as a plain graph (conftest)
pytestmark = pytest.mark.usefixtures("train_steps_without_xla")


def _train(tmp_path, capsys, data, name, *extra):
    out = tmp_path / f"{name}.keras"
    # RealNVP, not the default NSF, and a small one for an epoch: what is checked is
    # the data's scale (standardized, the flow starts as a Gaussian fit of the data,
    # each column's mean and deviation), and it traces in a fraction of the time
    argv = ["train", data, "--recipe", "realnvp", "--layers", "1", "--hidden", "8",
            "--epochs", "1", "--lr", "3e-3", "--out", out, "--quiet", *extra]
    assert main([str(a) for a in argv]) == 0, capsys.readouterr().err
    flow = kerasflows.load(out)
    return flow, training_record(out)


def test_a_data_file_is_standardized_by_default_and_a_dataset_name_is_not(tmp_path, capsys):
    x = kerasflows.datasets.load("moons", n=4096, seed=0) * 30.0 + 100.0
    np.save(tmp_path / "far.npy", x)
    flow, record = _train(tmp_path, capsys, tmp_path / "far.npy", "on")
    assert record["standardize"] is True and flow.flow_layers[-1].name == "standardize"
    _, plain = _train(tmp_path, capsys, tmp_path / "far.npy", "off", "--no-standardize",
                      "--epochs", "1")      # 15 epochs still 11,756: standardize_study.py
    assert plain["standardize"] is False
    # in moons' own units (minus 2 log 30): about 3.4 nats standardized, thousands without
    shift = 2 * np.log(30.0)
    assert record["test_nll"] - shift < 4.0 < 100 < plain["test_nll"] - shift, (record, plain)

    flow, record = _train(tmp_path, capsys, "moons", "moons", "--n", "512", "--epochs", "1",
                          *LIGHT)
    assert record["standardize"] is False
    assert all(l.name != "standardize" for l in flow.flow_layers)
    flow, record = _train(tmp_path, capsys, "moons", "moons_std", "--n", "512", "--epochs",
                          "1", "--standardize", *LIGHT)
    assert record["standardize"] is True and flow.flow_layers[-1].name == "standardize"


def test_a_context_file_goes_through_a_normalization_to_the_training_contexts(tmp_path,
                                                                             capsys):
    x, c = kerasflows.datasets.load_conditional("ring_radius", n=2048, seed=0)
    far = c * 1000.0 + 5000.0                   # radii in millimetres, say
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "c.npy", far)
    flow, record = _train(tmp_path, capsys, tmp_path / "x.npy", "ctx", "--context",
                          tmp_path / "c.npy")
    norm = flow.context_encoder
    assert record["standardize"] is True and norm.name == "context_standardize"
    n_test = round(0.1 * len(far))                       # the default splits: test, then
    n_held = n_test + round(0.1 * (len(far) - n_test))   # validation, from the seeded order
    train_rows = far[np.random.default_rng(0).permutation(len(far))][n_held:]
    np.testing.assert_allclose(np.ravel(norm.mean), train_rows.mean(0), rtol=1e-5)
    np.testing.assert_allclose(np.ravel(norm.variance), train_rows.var(0), rtol=1e-4)
    _, plain = _train(tmp_path, capsys, tmp_path / "x.npy", "ctx_off", "--context",
                      tmp_path / "c.npy", "--no-standardize", "--epochs", "1")
    # the conditioners see contexts near 5000 without it, and learn little
    assert record["test_nll"] + 5 < plain["test_nll"], (record["test_nll"], plain["test_nll"])
    flow, _ = _train(tmp_path, capsys, tmp_path / "x.npy", "ctx_net", "--context",
                     tmp_path / "c.npy", "--context-encoder", "8,4", "--epochs", "1", *LIGHT)
    assert [l.name for l in flow.context_encoder.layers] == ["context_standardize",
                                                             "context_network"]
    labels = np.random.default_rng(0).integers(0, 3, (2048, 1))
    np.save(tmp_path / "labels.npy", labels)
    flow, _ = _train(tmp_path, capsys, tmp_path / "x.npy", "ctx_labels", "--context",
                     tmp_path / "labels.npy", "--context-classes", "3", "--epochs", "1",
                     *LIGHT)
    assert flow.context_encoder.name == "label_embedding"     # labels are not standardized
