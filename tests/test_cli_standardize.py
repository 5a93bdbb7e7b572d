"""`kerasflows train --standardize`: on by default for a data file, off for a
dataset name, recorded, and what it does for data far from a unit scale."""

import numpy as np

import kerasflows
from kerasflows.cli import main
from kerasflows.loading import training_record


def _train(tmp_path, capsys, data, name, *extra):
    out = tmp_path / f"{name}.keras"
    argv = ["train", data, "--recipe", "nsf", "--layers", "3", "--hidden", "32,32", "--epochs",
            "4", "--lr", "3e-3", "--out", out, "--quiet", *extra]
    assert main([str(a) for a in argv]) == 0, capsys.readouterr().err
    flow = kerasflows.load(out)
    return flow, training_record(out)


def test_a_data_file_is_standardized_by_default_and_a_dataset_name_is_not(tmp_path, capsys):
    x = kerasflows.datasets.load("moons", n=4096, seed=0) * 30.0 + 100.0
    np.save(tmp_path / "far.npy", x)
    flow, record = _train(tmp_path, capsys, tmp_path / "far.npy", "on")
    assert record["standardize"] is True and flow.flow_layers[-1].name == "standardize"
    _, plain = _train(tmp_path, capsys, tmp_path / "far.npy", "off", "--no-standardize")
    assert plain["standardize"] is False
    # in moons' own units (minus 2 log 30): about 2.3 nats standardized, thousands without
    shift = 2 * np.log(30.0)
    assert record["test_nll"] - shift < 3.0 < plain["test_nll"] - shift, (record, plain)

    flow, record = _train(tmp_path, capsys, "moons", "moons", "--n", "1024")
    assert record["standardize"] is False
    assert all(l.name != "standardize" for l in flow.flow_layers)
    flow, record = _train(tmp_path, capsys, "moons", "moons_std", "--n", "1024",
                          "--standardize")
    assert record["standardize"] is True and flow.flow_layers[-1].name == "standardize"
