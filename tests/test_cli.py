"""The `kerasflows` command: a train -> evaluate -> sample -> export -> info round trip,
one-line user errors, and `--help` covering every flag."""

import argparse
import errno
import json
import os
import re
import shutil
import subprocess
import sys
import warnings

import numpy as np
import pytest

import kerasflows
from kerasflows.cli import SUBCOMMANDS, build_parser, main
from kerasflows.cli.data import read_data
from kerasflows.cli import train as train_command
from kerasflows.cli import train_data
from kerasflows.distributed import evaluate_nll
from kerasflows.loading import training_record, write_training_record

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MOONS = os.path.join(ROOT, "saved_models", "moons")
U1_PLANAR = os.path.join(ROOT, "saved_models", "u1_planar")


@pytest.fixture(autouse=True)
def _steps_without_xla(request):
    """`train_steps_without_xla` (conftest) for every test here but the round trip,
    which trains as users do, with XLA."""
    if request.node.name != "test_train_evaluate_sample_export_info_round_trip":
        request.getfixturevalue("train_steps_without_xla")


def _run(capsys, *argv):
    status = main([str(a) for a in argv])
    out = capsys.readouterr()
    assert status == 0, out.err
    return out.out


def test_train_evaluate_sample_export_info_round_trip(tmp_path, capsys):
    model = tmp_path / "m.keras"
    argv = ["train", "moons", "--n", "800", "--epochs", "2", "--recipe", "realnvp", "--layers",
            "2", "--hidden", "8", "--batch-size", "128", "--direction", "forward", "--out", model,
            "--quiet"]
    out = _run(capsys, *argv)
    assert f"Saved {model}" in out
    report = json.loads((tmp_path / "m.json").read_text())
    assert report["command"] == "kerasflows " + " ".join(map(str, argv))
    assert (report["n_train"], report["n_validation"], report["n_test"]) == (648, 72, 80)
    assert len(report["history"]["loss"]) == len(report["history"]["val_loss"]) == 2
    flow = kerasflows.load(model)
    assert report["direction"] == "forward"
    assert [l.affine_direction for l in flow.flow_layers
            if hasattr(l, "affine_direction")] == ["forward", "forward"]
    x = kerasflows.datasets.load("moons", n=800, seed=0)
    x = x[np.random.default_rng(0).permutation(800)]
    assert report["test_nll"] == pytest.approx(evaluate_nll(flow, x[:80])[0], rel=1e-6)
    assert report["validation_nll"] == pytest.approx(report["history"]["val_loss"][-1], rel=1e-6)
    assert training_record(model)["test_nll"] == report["test_nll"]
    assert report["data_path"] is None                          # a dataset name: no file
    assert not (tmp_path / "m.checkpoint").exists()

    np.save(tmp_path / "d.npy", x[:300])
    result = json.loads(_run(capsys, "evaluate", model, tmp_path / "d.npy", "--json"))
    assert result["n"] == 300
    assert result["nll"] == pytest.approx(evaluate_nll(flow, x[:300])[0], rel=1e-6)
    np.savetxt(tmp_path / "d.csv", x[:300], delimiter=",", header="a,b", comments="")
    text = _run(capsys, "evaluate", model, tmp_path / "d.csv")
    assert f"{result['nll']:.4f} nats per example" in text

    _run(capsys, "sample", model, "-n", "50", "--seed", "3", "-o", tmp_path / "s.npy")
    np.testing.assert_allclose(np.load(tmp_path / "s.npy"), flow.sample(50, seed=3).numpy(),
                               rtol=1e-6)
    _run(capsys, "sample", model, "-n", "4", "--seed", "3", "-o", tmp_path / "s.csv")
    np.testing.assert_allclose(np.loadtxt(tmp_path / "s.csv", delimiter=","),
                               np.load(tmp_path / "s.npy")[:4], rtol=1e-6)

    _run(capsys, "export", model, tmp_path / "srv", "--version", "2")
    assert (tmp_path / "srv" / "2" / "saved_model.pb").is_file()
    info = _run(capsys, "info", model)
    assert "event_dim=2" in info and "AffineCoupling" in info and "trained on: moons" in info
    assert "recipe realnvp, 2 epochs; NLL (nats) train " in info, info
    described = json.loads(_run(capsys, "info", tmp_path / "srv", "--json"))
    assert described["signatures"]["sample"]["outputs"]["samples"] == [None, 2]
    assert described["signatures"]["sample"]["input_dtypes"] == {"n": "int32", "seed": "int32"}
    assert "\ninputs: float32 (n and seed of sample: int32)\n" in _run(capsys, "info",
                                                                     tmp_path / "srv")


def test_info_on_a_shipped_model_folder(capsys):
    info = json.loads(_run(capsys, "info", MOONS, "--json"))
    assert info["manifest"]["dataset"] == "moons"
    # the command as run, and the manifest's as it reproduces the model today (a file is
    # standardized by default since the model was trained)
    assert info["manifest"]["command"] == info["training"]["command"].replace(
        "--direction inverse --out", "--direction inverse --no-standardize --out")
    # and the command as run says it would add a layer today
    printed = _run(capsys, "info", MOONS)
    assert ("--direction inverse --out saved_models/moons/flow.keras\n  (recorded before "
            "train standardized a data file by default: today this command adds a standardize "
            "layer the model does not have; add --no-standardize)\n") in printed
    assert info["parameters"] == sum(layer["parameters"] for layer in info["layers"])
    assert info["base"] == "normal" and info["base_df"] is None
    # a manifest's command naming a dataset train does not standardize gets no note (it
    # told ring_radius's to add --no-standardize); the as-run one naming files does
    printed = _run(capsys, "info", os.path.join(ROOT, "saved_models", "ring_radius"))
    manifest_line, as_run = printed.split("\nas run (the training record", 1)
    assert "kerasflows train ring_radius --n 60000" in manifest_line
    assert "standardize" not in manifest_line
    assert "_x.npy --context" in as_run and "add --no-standardize)" in as_run
    heavy = os.path.join(ROOT, "saved_models", "heavy_tails")
    info = json.loads(_run(capsys, "info", heavy, "--json"))
    assert info["base"] == "student_t" and len(info["base_df"]) == 2
    df = ", ".join(f"{v:.3g}" for v in info["base_df"])
    printed = _run(capsys, "info", os.path.join(heavy, "saved_model"))
    assert f"base: student_t (df {df})" in printed, printed


def test_info_on_a_flow_fitted_to_a_target(capsys):
    out = _run(capsys, "info", U1_PLANAR)
    assert "fitted to: target u1, recipe planar" in out and "elbo" in out
    assert re.search(r"recipe planar, \d+ epochs of \d+ steps;", out), out
    # fit-target has no data to standardize: no note on train's older default
    assert "command: kerasflows fit-target" in out and "standardize" not in out, out
    info = json.loads(_run(capsys, "info", U1_PLANAR, "--json"))
    assert info["training"]["target"] == "u1"
    # u3_nsf was fitted before --direction existed: its splines map "forward", which
    # its command, run today, does not build (info printed it as reproducing the model)
    u3 = os.path.join(os.path.dirname(U1_PLANAR), "u3_nsf")
    out = _run(capsys, "info", u3)
    assert ("--model-dir saved_models/u3_nsf --quiet\n  (its layers map with --direction "
            "forward, as every model made before --direction existed does: today this "
            "command builds 'inverse' layers; add --direction forward)") in out, out
    layers = json.loads(_run(capsys, "info", u3, "--json"))["layers"]
    assert {layer["direction"] for layer in layers} == {"forward", None}


def test_help_shows_the_defaults_once(capsys):
    with pytest.raises(SystemExit):
        main(["fit-target", "--help"])
    out = capsys.readouterr().out
    assert "(default: None)" not in out and "(default: False)" not in out
    assert "(default: 0.005)" in out


def _error_cases(tmp):
    np.save(tmp / "three.npy", np.zeros((10, 3), np.float32))
    np.save(tmp / "flat.npy", np.zeros(10, np.float32))
    np.save(tmp / "nan.npy", np.array([[0.0, np.nan]], np.float32))
    np.save(tmp / "one.npy", np.array([[0.5, 1.5]], np.float32))
    np.save(tmp / "none.npy", np.zeros((5, 0), np.float32))
    (tmp / "semi.csv").write_text("1.5;2\n")
    (tmp / "junk.keras").write_bytes(b"junk")
    damaged = tmp / "srv" / "1"
    shutil.copytree(os.path.join(MOONS, "saved_model", "1"), damaged)
    (damaged / "saved_model.pb").write_bytes(b"\x00garbage")
    return [
        (["evaluate", "nowhere.keras", "moons"], "nowhere.keras: no such file"),
        (["train", "mooons"], "'mooons' is neither a dataset name"),
        (["train", "moons", "--recipe", "fancy"], "invalid choice: 'fancy'"),
        (["train", tmp / "missing.npy"], "missing.npy: no such file"),
        (["train", tmp / "flat.npy"], "expected a 2-D array"),
        (["train", tmp / "nan.npy"], "NaN or inf"),
        (["train", tmp / "one.npy"], "one.npy: one row; a density fitted to one point has no "
                                     "maximum"),                  # it trained, to NLL -11.5
        (["train", tmp / "none.npy"], "none.npy: expected a 2-D array of shape [N, D] with "
                                      "N >= 1 and D >= 1; got shape (5, 0)"),  # "event_dim"
        (["evaluate", MOONS, tmp / "semi.csv"], "no data rows after its header line 1 (line 1 "
                                                 "was read as a header, as none of its fields "
                                                 "is a number; fields are separated by commas)"),
        (["train", "moons", "--recipe", "realnvp", "--bins", "4"],
         "--bins and --bound apply to the spline recipes (nsf, nsf_ar) only; received "
         "--recipe realnvp --bins 4."),
        (["train", "moons", "--recipe", "nice", "--direction", "forward"],
         "--direction applies to the recipes (realnvp, maf, iaf, glow, nsf, nsf_ar) only; "
         "received --recipe nice --direction forward."),
        (["train", "moons", "--direction", "sideways"], "invalid choice: 'sideways'"),
        (["train", "moons", "--hidden", "64,x"], "comma-separated positive integers"),
        (["train", "moons", "--epochs", "0"], "expected an integer >= 1"),
        (["train", "digits", "--n", "2000"], "--n 2000: digits has 1797 images"),
        (["train", "digits_label", "--n", "2000"], "--n 2000: digits has 1797 images"),
        (["train", "moons", "--validation-split", "1.5"], "fraction in [0, 1)"),
        (["train", "moons", "--out", "m.h5"], "--out must end in .keras"),
        (["train", "moons", "--strategy", "multiworker"], "TF_CONFIG"),
        (["evaluate", MOONS, tmp / "three.npy"], "has 3 columns; the model expects event_dim=2"),
        (["evaluate", tmp / "junk.keras", "moons"], "junk.keras: not a valid .keras file"),
        (["info", tmp / "srv"], "cannot load the SavedModel"),
        (["sample", MOONS, "-o", "s.txt"], "must end in .npy or .csv"),
        (["sample", MOONS, "-o", tmp / "three.npy" / "s.npy"],
         f"cannot write --out {tmp / 'three.npy' / 's.npy'}: {tmp / 'three.npy'} is a file."),
        (["plot", MOONS, "-o", tmp / "three.npy" / "p.png"],
         f"cannot write --out {tmp / 'three.npy' / 'p.png'}: {tmp / 'three.npy'} is a file."),
        (["export", MOONS, tmp / "srv"],
         f"{tmp / 'srv' / '1'} already exists; choose another --version, or give --overwrite"),
        (["export", U1_PLANAR, tmp / "planar"], "Cannot export this flow as a SavedModel: 32 of "
         "its 32 layers (Planar: 'planar', 'planar_1', 'planar_2' and 29 more) are "
         "forward-only"),
        (["evaluate", U1_PLANAR, "moons"], "gives no log-density of data: 32 of its 32 layers"),
        (["train", "moons", "--lr", "-0.5"], "expected a finite number > 0, got '-0.5'"),
        (["train", "moons", "--lr", "nan"], "expected a finite number > 0, got 'nan'"),
        (["fit-target", "--target", "u1", "--lr", "0"], "expected a finite number > 0"),
        (["train", "moons", "--tensorboard", tmp / "three.npy" / "tb"],
         f"cannot write to --tensorboard {tmp / 'three.npy' / 'tb'}: the folder cannot be made"),
        (["sample", MOONS, "-o", tmp / "s.npy", "--temperature", "inf"],
         "argument --temperature: expected a finite number > 0, got 'inf'"),
        ([], "the following arguments are required: COMMAND"),
    ]


def test_training_progress_is_plain_lines_when_stdout_is_not_a_terminal(tmp_path, capsys,
                                                                         monkeypatch):
    from kerasflows.cli.common import progress_verbosity
    common = ["--layers", "1", "--batch-size", "256", "--epochs", "2"]
    out = _run(capsys, "train", "moons", "--n", "600", "--recipe", "realnvp",
               "--out", tmp_path / "m.keras", "--hidden", "8", *common)
    assert "\x1b[" not in out and "\b" not in out          # no terminal escape codes
    epochs = [line for line in out.splitlines() if re.match(r"\d+/\d+ - \d+s - ", line)]
    assert len(epochs) == 2 and all("loss:" in l and "val_loss:" in l for l in epochs)
    out = _run(capsys, "fit-target", "--target", "u1", "--recipe", "planar", "--steps", "2",
               "--out", tmp_path / "u1.keras", *common)
    assert "\x1b[" not in out and len([l for l in out.splitlines() if "loss:" in l]) == 2
    assert progress_verbosity(quiet=True) == 0
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True, raising=False)
    assert progress_verbosity(quiet=False) == 1


def test_a_model_saves_under_the_longest_name_the_file_system_takes(tmp_path):
    """The hidden file written first was named after the model, 8 bytes longer:
    a valid name of 248-255 bytes failed after the whole training run."""
    out = tmp_path / ("m" * 249 + ".keras")            # 255 bytes
    flow = kerasflows.Flow([kerasflows.layers.Permute()], event_dim=2)
    train_command.save_atomically(flow, str(out), {"epochs": 0})
    assert os.listdir(tmp_path) == [out.name]
    assert training_record(out) == {"epochs": 0}


def test_the_file_save_every_epoch_leaves_before_the_end_carries_the_record(tmp_path, capsys,
                                                                           monkeypatch):
    """A run stopped after an epoch (killed) left --out without the training record:
    evaluate scored counts without their noise, sample wrote no header and counts with
    fractions, info knew nothing of it."""
    rng = np.random.default_rng(0)
    rows = np.column_stack([rng.poisson(4, 600), rng.normal(size=600), rng.poisson(6, 600)])
    data = tmp_path / "counts.csv"
    np.savetxt(data, rows, delimiter=",", header="a,b,c", comments="", fmt="%.6g")
    model, left = tmp_path / "m.keras", tmp_path / "left.keras"
    real = train_command.save_atomically

    def stopping(flow, out, record=None):
        real(flow, out, record)
        if record.get("epochs_done") == 2:
            shutil.copy(out, left)           # the file a kill after epoch 2 leaves
    monkeypatch.setattr(train_command, "save_atomically", stopping)
    _run(capsys, "train", data, "--dequantize", "--recipe", "realnvp", "--layers", "2",
         "--hidden", "8", "--epochs", "3", "--batch-size", "128", "--save-every-epoch",
         "--out", model, "--quiet")
    record = training_record(left)
    assert (record["epochs_done"], record["dequantized_columns"], record["columns"]) == (
        2, [0, 2], ["a", "b", "c"])
    out = _run(capsys, "info", left)
    assert "2 of 3 epochs (the file --save-every-epoch wrote after that epoch" in out
    assert "dequantized (--dequantize): columns 1 (a), 3 (c)" in out
    assert "trained with --dequantize" in _run(capsys, "evaluate", left, data)
    _run(capsys, "sample", left, "-n", "20", "--seed", "0", "-o", tmp_path / "s.csv")
    lines = (tmp_path / "s.csv").read_text().splitlines()
    samples = np.loadtxt(lines[1:], delimiter=",")
    assert lines[0] == "a,b,c" and np.array_equal(samples[:, [0, 2]],
                                                  np.floor(samples[:, [0, 2]]))
    assert "epochs_done" not in training_record(model)       # the finished run's record


def test_a_model_saved_through_a_link_replaces_the_file_it_names_or_keeps_it(tmp_path,
                                                                              monkeypatch):
    """`--out` a symbolic link: the model went over the link (a file in its place),
    and a failed save's OSError named the hidden file beside it, not `--out`."""
    flow = kerasflows.Flow([kerasflows.layers.Permute()], event_dim=2)
    real = tmp_path / "models" / "m.keras"
    train_command.save_atomically(flow, str(real), {"epochs": 1})
    link = tmp_path / "latest.keras"
    link.symlink_to(real)
    train_command.save_atomically(flow, str(link), {"epochs": 2})
    assert link.is_symlink() and training_record(real) == {"epochs": 2}

    def full(self, name, *args, **kwargs):
        with open(name, "wb") as f:
            f.write(b"half")
        raise OSError(errno.ENOSPC, "No space left on device", name)
    monkeypatch.setattr(kerasflows.Flow, "save", full)
    with pytest.raises(OSError) as caught:
        train_command.save_atomically(flow, str(link), {"epochs": 3})
    assert caught.value.filename == str(link) and caught.value.errno == errno.ENOSPC
    assert training_record(real) == {"epochs": 2}
    assert sorted(os.listdir(real.parent)) == ["m.keras"]


def test_train_save_every_epoch_writes_the_model_after_each_epoch(tmp_path, capsys,
                                                                  monkeypatch):
    model = tmp_path / "m.keras"
    seen = []
    real = train_command.save_atomically

    def recording(flow, out, record=None):
        real(flow, out, record)
        loaded = kerasflows.load(out)
        for a, b in zip(loaded.get_weights(), flow.get_weights()):
            np.testing.assert_array_equal(a, b)
        seen.append(("epochs_done" not in record, sorted(os.listdir(tmp_path)),
                     flow.get_weights()))
        if "epochs_done" in record:     # each epoch's file has the record, so far
            assert record["epochs_done"] == len(record["history"]["loss"])
            assert record["recipe"] == "realnvp" and "train_nll" not in record
    monkeypatch.setattr(train_command, "save_atomically", recording)
    argv = ["train", "moons", "--n", "600", "--epochs", "3", "--recipe", "realnvp",
            "--layers", "2", "--hidden", "8", "--batch-size", "128", "--out", str(model),
            "--save-every-epoch", "--quiet"]
    assert main(argv) == 0, capsys.readouterr().err
    assert "--follow" not in capsys.readouterr().out          # --quiet: no hint
    assert [final for final, _, _ in seen] == [False, False, False, True]
    for _, listing, _ in seen:                   # no half-written file left beside it
        assert not [n for n in listing if n.startswith(".")]
    weights = [w for _, _, w in seen]
    for before, after in zip(weights[:2], weights[1:3]):     # each epoch's own weights
        assert any(np.abs(a - b).max() > 0 for a, b in zip(before, after))
    assert training_record(model)["epochs"] == 3
    assert not (tmp_path / "m.checkpoint").exists()
    monkeypatch.setattr(train_command, "save_atomically", real)
    argv[argv.index("3")] = "1"
    out = _run(capsys, *argv[:-1])                            # not quiet: says how to watch it
    assert f"watch it with: kerasflows-viz {model} --follow" in out


def test_train_writes_tensorboard_losses_and_pictures(tmp_path, capsys):
    from test_callbacks import read_images, read_scalars, read_texts
    logs = tmp_path / "runs"
    argv = ["train", "moons", "--n", "1500", "--recipe", "realnvp", "--layers", "2",
            "--hidden", "16", "--epochs", "3", "--out", str(tmp_path / "m.keras"),
            "--tensorboard", str(logs), "--save-every-epoch", "--quiet"]
    _run(capsys, *argv)
    history = json.loads((tmp_path / "m.json").read_text())["history"]
    for run, key in (("train", "loss"), ("validation", "val_loss")):
        steps, values = zip(*read_scalars(logs / run))
        assert steps == (0, 1, 2)
        np.testing.assert_allclose(values, history[key], rtol=1e-6)
    shown = read_images(logs / "flow")
    assert [s for s, _, _ in shown["data"]] == [0]
    assert [s for s, _, _ in shown["density"]] == [s for s, _, _ in shown["samples"]] == [0, 1, 2]
    # the last pictures are the saved flow's, on a region around the training rows
    from kerasflows import pictures
    args = build_parser().parse_args(argv)
    train_x = train_data.split_parts(read_data("moons", n=1500, seed=0)[0], args)[0][0]
    region = pictures.region_of(train_x)
    flow = kerasflows.load(tmp_path / "m.keras")
    np.testing.assert_array_equal(shown["density"][-1][1],
                                  pictures.density_picture(flow, region, 128)[0])
    np.testing.assert_array_equal(shown["samples"][-1][1],
                                  pictures.samples_picture(flow.sample(20_000, seed=0), region))
    assert read_texts(logs / "flow", "density_range")[-1][1].startswith("after epoch 3: ")


def _png(path):
    import tensorflow as tf
    return tf.io.decode_png(open(path, "rb").read()).numpy()


def test_sample_and_plot_make_the_output_folder(tmp_path, capsys):
    model = tmp_path / "m.keras"        # a small flow: it loads and traces fast
    kerasflows.models.RealNVP(2, num_layers=1, hidden_units=(4,)).save(model)
    out = _run(capsys, "sample", model, "-n", "5", "-o", tmp_path / "new" / "deep" / "s.npy")
    assert np.load(tmp_path / "new" / "deep" / "s.npy").shape == (5, 2) and "Wrote 5" in out
    _run(capsys, "plot", model, "--what", "samples", "-n", "50", "-o", tmp_path / "pics" / "p.png")
    assert (tmp_path / "pics" / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_draws_density_and_samples_to_a_png(tmp_path, capsys):
    from kerasflows import pictures
    from kerasflows.cli.plot import GAP
    from kerasflows.testing import perturb_weights
    # a model folder with its data sample, as the shipped ones; a small flow, moved off
    # the identity, traces in a fraction of the time of their spline flows
    folder = tmp_path / "moons"
    folder.mkdir()
    small = kerasflows.models.RealNVP(2, num_layers=2, hidden_units=(8,))
    perturb_weights(small, 0.3, seed=0)
    small.save(folder / "flow.keras")
    np.save(folder / "data_sample.npy", kerasflows.datasets.load("moons", n=500, seed=0))
    out = _run(capsys, "plot", folder, "-o", tmp_path / "m.png", "--resolution", "48",
               "-n", "3000", "--seed", "2")
    flow = kerasflows.load(folder)
    region = pictures.region_of(np.load(folder / "data_sample.npy"))
    got = _png(tmp_path / "m.png")
    assert got.shape == (48, 2 * 48 + GAP, 3)
    density, (low, high) = pictures.density_picture(flow, region, 48)
    np.testing.assert_array_equal(got[:, :48], density)
    np.testing.assert_array_equal(got[:, 48 + GAP:], pictures.samples_picture(
        flow.sample(3000, seed=2).numpy(), region, 48))
    assert f"log p(x) from {low:.2f} (dark) to {high:.2f} (bright) nats" in out
    # samples only, of two chosen coordinates of a 3-D flow, on a given region
    wide = kerasflows.models.RealNVP(3, num_layers=1, hidden_units=(8,))
    wide.save(tmp_path / "w.keras")
    _run(capsys, "plot", tmp_path / "w.keras", "-o", tmp_path / "w.png", "--dims", "3,1",
         "--region", "-2,2,-3,3", "--resolution", "32", "-n", "500")   # no "=" needed
    np.testing.assert_array_equal(_png(tmp_path / "w.png"), pictures.samples_picture(
        wide.sample(500, seed=0).numpy(), (-2, 2, -3, 3), 32, dims=(2, 0)))


def test_plot_dims_turn_the_density_like_the_samples(tmp_path, capsys):
    from kerasflows.cli.plot import GAP
    flow = kerasflows.models.RealNVP(2, num_layers=1, hidden_units=(4,), base="learned_normal")
    flow.base_loc.assign(np.array([3.0, 0.0], "float32"))       # the mass near x1=3, x2=0
    flow.base_log_scale.assign(np.log(np.full(2, 0.3, "float32")))
    flow.save(tmp_path / "m.keras")
    peak = lambda picture: np.unravel_index(np.argmax(picture.sum(2)), picture.shape[:2])
    for dims, want in (("1,2", (15.5, 25.6)), ("2,1", (6.4, 15.5))):   # (row, column) of the peak
        _run(capsys, "plot", tmp_path / "m.keras", "-o", tmp_path / "p.png", "--dims", dims,
             "--region", "-5,5,-5,5", "--resolution", "32", "-n", "5000")
        got = _png(tmp_path / "p.png")
        density, samples = got[:, :32], got[:, 32 + GAP:]
        assert np.abs(np.subtract(peak(density), want)).max() <= 1.5, dims
        assert np.abs(np.subtract(peak(samples), want)).max() <= 2.5, dims


def test_plot_pairs_draws_every_pair_of_coordinates_with_their_marginals(tmp_path, capsys):
    from kerasflows import pictures
    folder = tmp_path / "table"
    folder.mkdir()
    flow = kerasflows.models.RealNVP(3, num_layers=1, hidden_units=(8,))
    flow.save(folder / "flow.keras")
    data = np.random.default_rng(0).normal(size=(300, 3)).astype(np.float32)
    np.save(folder / "data_sample.npy", data)
    out = _run(capsys, "plot", folder, "-o", tmp_path / "p.png", "--what", "pairs",
               "--dims", "3,1", "--resolution", "24", "-n", "500", "--seed", "1")
    want, ranges = pictures.pairs_picture(flow.sample(500, seed=1).numpy(), data, (2, 0),
                                          cell=24)
    np.testing.assert_array_equal(_png(tmp_path / "p.png"), want)
    assert ("every pair of x3, x1: 500 samples below the diagonal, 300 points of the data "
            "sample above it") in out and f"x3 in [{ranges[0][0]:.3g}, " in out
    _run(capsys, "plot", folder / "flow.keras", "-o", tmp_path / "all.png", "--what", "pairs",
         "--resolution", "16", "-n", "200")        # a .keras file: no data; all three
    assert _png(tmp_path / "all.png").shape == (3 * 16 + 2 * 4, 3 * 16 + 2 * 4, 3)
    for argv, message in [
            (["--dims", "1,2,3,4"], "--dims must name 1 to 6 different coordinates in 1..3; "
                                    "received 1,2,3,4."),
            (["--dims", "2,2"], "1 to 6 different coordinates in 1..3"),
            (["--dims", "a"], "expected coordinates counted from 1 separated by commas"),
            (["--region", "0,1,0,1"], "--what pairs takes each coordinate's range from the data")]:
        with pytest.raises(SystemExit) as exit_info:
            main(["plot", str(folder), "-o", str(tmp_path / "e.png"), "--what", "pairs", *argv])
        assert exit_info.value.code == 2
        assert message in capsys.readouterr().err, argv


def test_plot_draws_image_shaped_samples_as_pictures(tmp_path, capsys):
    from kerasflows import pictures
    folder = os.path.join(ROOT, "saved_models", "digits")
    out = _run(capsys, "plot", folder, "-o", tmp_path / "d.png", "-n", "64")
    flow = kerasflows.load(folder)
    with open(os.path.join(folder, "manifest.json")) as f:
        levels = json.load(f)["image"]["levels"]
    want = pictures.image_grid(flow.sample(64, seed=0).numpy(), (8, 8), levels, scale=4)
    np.testing.assert_array_equal(_png(tmp_path / "d.png"), want)
    assert "64 samples as 8x8 pictures" in out
    for argv, message in [
            (["--what", "density"], "draws 2-D flows that have an inverse; this flow has "
                                    "event_dim=64"),
            (["--image", "4x4"], "--image 4x4 holds 16 values; the flow has event_dim=64"),
            (["--image", "-8x-8"], "expected HxW, two whole numbers >= 1 such as 8x8; got "
                                   "'-8x-8'"),     # a NumPy reshape error, with 64 values
            (["--image", "8x8x1"], "expected HxW"),
            (["--dims", "1,1"], "--dims must name two different coordinates in 1..64"),
            # the region picture's options would be ignored by the pictures of samples
            (["--dims", "3,4"], "--dims applies to the region pictures of two coordinates; "
                                "this flow is drawn as 8x8 pictures"),
            (["--region", "0,1,0,1", "--span", "5"], "--region, --span apply to the region"),
            (["--what", "pairs", "--span", "5"], "--region, --span and --rows-by-context "
                                                 "apply to the other pictures")]:
        with pytest.raises(SystemExit) as exit_info:
            main(["plot", folder, "-o", str(tmp_path / "e.png"), *argv])
        assert exit_info.value.code == 2
        assert message in capsys.readouterr().err, argv
    for argv, message in [(["plot", MOONS, "-o", "x.jpg"], "--out must end in .png"),
                          (["plot", MOONS, "-o", "x.png", "--what", "samples", "--span", "3"],
                           "--span sets the density picture's range; --what samples draws "
                           "none"),
                          (["plot", MOONS, "-o", "x.png", "--region", "1,2"],
                           "expected 4 comma-separated numbers, got '1,2'")]:
        with pytest.raises(SystemExit):
            main(argv)
        assert message in capsys.readouterr().err, argv


def test_train_a_conditional_set_by_name_with_pictures_per_label(tmp_path, capsys):
    from test_callbacks import read_images
    logs = tmp_path / "runs"
    _run(capsys, "train", "digits_label", "--n", "300", "--context-classes", "10", "--recipe",
         "maf", "--layers", "1", "--hidden", "8", "--epochs", "1", "--out",
         tmp_path / "dl.keras", "--tensorboard", logs, "--quiet")
    report = json.loads((tmp_path / "dl.json").read_text())
    assert report["dataset"] == "digits_label" and report["context_dim"] == 1
    assert report["n_train"] + report["n_validation"] + report["n_test"] == 300
    assert isinstance(kerasflows.load(tmp_path / "dl.keras").context_encoder,
                      kerasflows.layers.ClassEmbedding)
    picture = read_images(logs / "flow")["samples"][0][1]
    assert picture.shape[0] == 10 * 96 + 9 * 6                 # one row per digit
    # a ring at three quantiles of its radius, left to right
    rings = tmp_path / "rings"
    _run(capsys, "train", "ring_radius", "--n", "500", "--recipe", "realnvp", "--layers", "1",
         "--hidden", "8", "--epochs", "1", "--out", tmp_path / "rr.keras", "--tensorboard",
         rings, "--quiet")
    density = read_images(rings / "flow")["density"][0]
    assert density[1].shape == (128, 3 * 128 + 2 * 8, 3) and "left to right" in density[2]
    with pytest.raises(SystemExit):
        main(["train", "ring_radius", "--context", str(tmp_path / "c.npy")])
    assert "ring_radius brings its own context" in capsys.readouterr().err
    # evaluate takes the set by name too: the same NLL as with its arrays
    x, c = kerasflows.datasets.load_conditional("digits_label", n=200, seed=2**31 + 3)
    result = json.loads(_run(capsys, "evaluate", tmp_path / "dl.keras", "digits_label",
                             "--n", "200", "--seed", "3", "--json"))
    flow = kerasflows.load(tmp_path / "dl.keras")
    assert result["nll"] == pytest.approx(-flow.log_prob(x, context=c).numpy().mean(), rel=1e-5)
    with pytest.raises(SystemExit):
        main(["evaluate", MOONS, "ring_radius"])
    assert (f"ring_radius is a conditional set (contexts of 1 value); {MOONS} is not "
            "conditional") in capsys.readouterr().err


def test_plot_a_class_conditional_flow_one_row_per_digit(tmp_path, capsys):
    from kerasflows import pictures
    from kerasflows.cli.plot import ROW
    folder = os.path.join(ROOT, "saved_models", "digits_label")
    flow = kerasflows.load(folder)
    with open(os.path.join(folder, "manifest.json")) as f:
        levels = json.load(f)["image"]["levels"]
    out = _run(capsys, "plot", folder, "-o", tmp_path / "rows.png", "--rows-by-context",
               "--seed", "3")
    rows = np.concatenate([flow.sample(ROW, context=[[d]], seed=3).numpy() for d in range(10)])
    np.testing.assert_array_equal(_png(tmp_path / "rows.png"), pictures.image_grid(
        rows, (8, 8), levels, columns=ROW, scale=4))
    assert "10 samples at each of 10 context values, one row each" in out
    # without --context: the manifest's opening context (digit 3)
    _run(capsys, "plot", folder, "-o", tmp_path / "three.png", "-n", "64")
    np.testing.assert_array_equal(_png(tmp_path / "three.png"), pictures.image_grid(
        flow.sample(64, context=[[3.0]], seed=0).numpy(), (8, 8), levels, scale=4))
    with pytest.raises(SystemExit):
        main(["plot", MOONS, "-o", str(tmp_path / "e.png"), "--rows-by-context"])
    assert "--rows-by-context draws image-shaped conditional flows" in capsys.readouterr().err
    # its SavedModel says what its context is: one column, a label 0..9
    assert "\ncontext: 1 column (digit), a class label 0..9\n" in _run(
        capsys, "info", os.path.join(folder, "saved_model"))


def test_train_a_conditional_flow_from_a_context_file(tmp_path, capsys):
    rng = np.random.default_rng(0)
    c = rng.choice([-2.0, 2.0], size=(1000, 1)).astype(np.float32)
    x = (c + 0.3 * rng.standard_normal((1000, 2))).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    np.savetxt(tmp_path / "c.csv", c, delimiter=",")
    model = tmp_path / "cond.keras"
    _run(capsys, "train", tmp_path / "x.npy", "--context", tmp_path / "c.csv", "--recipe",
         "maf", "--layers", "2", "--hidden", "16", "--epochs", "6", "--batch-size", "100",
         "--lr", "1e-2", "--out", model, "--quiet")
    report = json.loads((tmp_path / "cond.json").read_text())
    assert report["context_dim"] == 1 and (report["n_train"], report["n_test"]) == (810, 100)
    flow = kerasflows.load(model)
    assert flow.context_dim == 1
    order = np.random.default_rng(0).permutation(1000)        # the seeded split
    test_x, test_c = x[order][:100], c[order][:100]
    assert report["test_nll"] == pytest.approx(
        evaluate_nll(flow, test_x, context=test_c)[0], rel=1e-6)
    assert report["test_nll"] < 2.5                            # it learned p(x | c)
    _run(capsys, "sample", model, "-n", "500", "--context", "2", "-o", tmp_path / "s.npy")
    np.testing.assert_allclose(np.load(tmp_path / "s.npy").mean(0), [2.0, 2.0], atol=0.3)
    # a value beyond float32 is refused in one line (NumPy's overflow warning came first)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(SystemExit) as exit_info:
            main(["sample", str(model), "-n", "2", "--context", "1e40", "-o",
                  str(tmp_path / "far.npy")])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == ("kerasflows: error: --context: expected finite numbers "
                                       "within float32's range (magnitude up to 3.403e+38); "
                                       "received '1e40'.\n")
    for argv, message in [
            (["train", tmp_path / "x.npy", "--context", tmp_path / "s.npy"],
             "--context has 500 rows; " + str(tmp_path / "x.npy") + " has 1000"),
            (["train", tmp_path / "x.npy", "--context", tmp_path / "c.csv", "--test-data",
              tmp_path / "x.npy"], "with a context, the validation and test rows come from")]:
        with pytest.raises(SystemExit) as exit_info:
            main([str(a) for a in argv])
        err = capsys.readouterr().err
        assert exit_info.value.code == 2 and message in err, (argv, err)


def test_a_context_column_of_one_value_is_warned_of_and_kept_at_its_scale(tmp_path, capsys):
    # its variance 0 went to keras.layers.Normalization, whose floor of 1e-7 on the
    # deviation made 7.001 a feature of 1e4, and 8 one of 1e7: samples collapsed
    rng = np.random.default_rng(0)
    np.save(tmp_path / "x.npy", rng.normal(size=(300, 2)).astype(np.float32))
    np.save(tmp_path / "c.npy", np.c_[np.full(300, 7.0), rng.normal(size=300)].astype("f4"))
    model = tmp_path / "m.keras"
    main(["train", str(tmp_path / "x.npy"), "--context", str(tmp_path / "c.npy"), "--epochs",
          "1", "--recipe", "realnvp", "--layers", "1", "--hidden", "8", "--quiet", "--out",
          str(model)])
    err = capsys.readouterr().err
    assert ("warning: --context: 1 column 1 (7) holds one value in every row; the flow "
            "learns nothing of how the data depend on it") in err
    encoder = kerasflows.load(model).context_encoder
    features = np.asarray(encoder(np.array([[7.0, 0.0], [8.0, 0.0]], np.float32)))
    assert features[0, 0] == pytest.approx(0.0) and features[1, 0] == pytest.approx(1.0)


def test_train_a_conditional_flow_through_a_context_encoder(tmp_path, capsys):
    rng = np.random.default_rng(0)
    c = rng.standard_normal((1000, 5)).astype(np.float32)     # the sign of c1 + c2 matters
    x = (2.0 * np.sign(c[:, :2].sum(1, keepdims=True))
         + 0.3 * rng.standard_normal((1000, 2))).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "c.npy", c)
    model = tmp_path / "enc.keras"
    _run(capsys, "train", tmp_path / "x.npy", "--context", tmp_path / "c.npy",
         "--context-encoder", "16,2", "--recipe", "realnvp", "--layers", "2", "--hidden", "16",
         "--epochs", "15", "--batch-size", "50", "--lr", "3e-3", "--out", model, "--quiet",
         "--no-standardize")   # the network alone (with the Normalization: test_cli_standardize)
    report = json.loads((tmp_path / "enc.json").read_text())
    assert report["context_dim"] == 5 and report["context_encoder"] == [16, 2]
    flow = kerasflows.load(model)
    encoder = flow.context_encoder
    assert (encoder.hidden_units, encoder.out_units) == ((16,), 2)
    assert {l.context_dim for l in flow.flow_layers} - {None} == {2}
    assert report["test_nll"] < 1.04 + 0.5                     # mixture ignoring c: >= 1.73
    info = json.loads(_run(capsys, "info", model, "--json"))
    assert info["context_encoder"] == {"name": "context_encoder", "class": "MLP",
                                       "parameters": 5 * 16 + 16 + 16 * 2 + 2, "features": 2}
    assert "context_dim=5 -> 2 features" in _run(capsys, "info", model)
    _run(capsys, "sample", model, "-n", "300", "--context", "1,1,0,0,0", "-o",
         tmp_path / "s.npy")
    np.testing.assert_allclose(np.load(tmp_path / "s.npy").mean(0), [2.0, 2.0], atol=0.4)
    with pytest.raises(SystemExit) as exit_info:
        main(["train", str(tmp_path / "x.npy"), "--context-encoder", "8"])
    assert exit_info.value.code == 2
    assert "--context-encoder needs --context" in capsys.readouterr().err
    # a value where train reads a file (evaluate and sample take values): "0.5: no such file."
    _assert_user_errors([(["train", tmp_path / "x.npy", "--context", "0.5"],
                          "--context 0.5: no such file; train reads the contexts from a .npy "
                          "or .csv file of one row per data row.")], capsys)


def test_train_a_class_conditional_flow_from_labels(tmp_path, capsys):
    x, c = kerasflows.datasets.load_conditional("digits_label", n=400, seed=0)
    np.save(tmp_path / "x.npy", x[:, :16])                    # the top two rows of pixels
    np.savetxt(tmp_path / "labels.csv", c, fmt="%d", header="digit", comments="")
    model = tmp_path / "labels.keras"
    _run(capsys, "train", tmp_path / "x.npy", "--context", tmp_path / "labels.csv",
         "--context-classes", "10", "--context-encoder", "16,4", "--recipe", "maf",
         "--layers", "1", "--hidden", "16", "--epochs", "2", "--out", model, "--quiet")
    report = json.loads((tmp_path / "labels.json").read_text())
    assert report["context_classes"] == 10 and report["context_encoder"] == [16, 4]
    # the --context file's header names the context (the visualizer's Context panel)
    assert report["context_columns"] == ["digit"] and report["columns"] is None
    from visualizer import opening, paths
    source = paths.resolve(model)
    assert opening._context_names(None, 1, opening._record(source).get("context_columns")) == [
        "digit"]
    assert opening._context_names({"context_names": ["label"]}, 1, ["digit"]) == ["label"]
    flow = kerasflows.load(model)
    embedding, network = flow.context_encoder.layers
    assert isinstance(embedding, kerasflows.layers.ClassEmbedding) and embedding.num_classes == 10
    assert network.out_units == 4
    _run(capsys, "sample", model, "-n", "5", "--context", "7", "-o", tmp_path / "s.npy")
    assert np.load(tmp_path / "s.npy").shape == (5, 16)
    _assert_user_errors([(["sample", model, "--context", "10", "-o", tmp_path / "s10.npy"],
                          "--context: labels for ClassEmbedding(num_classes=10) are 0..9; "
                          "received 10.0 in row 0")], capsys)   # the embedding inside a Sequential
    bad = c.copy()
    bad[3] = 2.5
    np.save(tmp_path / "half.npy", bad)
    np.save(tmp_path / "eleven.npy", np.where(np.arange(400)[:, None] == 8, 11.0, c))
    np.save(tmp_path / "two.npy", np.concatenate([c, c], 1))
    # a CSV file's label by its line, as every other CSV problem is (it said "row 8")
    np.savetxt(tmp_path / "eleven.csv", np.load(tmp_path / "eleven.npy"), fmt="%g",
               header="digit", comments="")
    for labels, message in [
            ("half.npy", r"every label must be an integer in 0..9; row 3 \(from 0\) of "
                         "--context .*half.npy is 2.5"),
            ("eleven.npy", r"row 8 \(from 0\) of --context .*eleven.npy is 11"),
            ("eleven.csv", "line 10 of --context .*eleven.csv is 11"),
            ("two.npy", r"one label per row \(shape \[N, 1\]\); received shape \(400, 2\)")]:
        with pytest.raises(SystemExit) as exit_info:
            main(["train", str(tmp_path / "x.npy"), "--context", str(tmp_path / labels),
                  "--context-classes", "10"])
        assert exit_info.value.code == 2
        assert re.search(message, capsys.readouterr().err), labels
    with pytest.raises(SystemExit):
        main(["train", str(tmp_path / "x.npy"), "--context-classes", "10"])
    assert "--context-classes needs --context" in capsys.readouterr().err
    with pytest.raises(SystemExit):                      # a set's own context, not --context
        main(["train", "ring_radius", "--n", "200", "--context-classes", "3"])
    assert re.search(r"row 0 of ring_radius's own context is \d", capsys.readouterr().err)


def test_sample_and_evaluate_a_conditional_flow_at_given_contexts(tmp_path, capsys):
    from kerasflows.testing import perturb_weights
    flow = kerasflows.models.RealNVP(2, num_layers=2, hidden_units=(8,), context_dim=2)
    for layer in flow.flow_layers:
        perturb_weights(layer, 0.3)
    model = tmp_path / "cond.keras"
    flow.save(model)
    c = np.array([[0.5, -1.0]], np.float32)
    _run(capsys, "sample", model, "-n", "40", "--seed", "3", "--context", "0.5,-1",
         "-o", tmp_path / "s.npy")
    want = flow.sample(40, context=c, seed=3).numpy()
    np.testing.assert_allclose(np.load(tmp_path / "s.npy"), want, rtol=1e-5, atol=1e-5)
    rows = np.random.default_rng(1).normal(size=(40, 2)).astype(np.float32)
    np.save(tmp_path / "c.npy", rows)
    _run(capsys, "sample", model, "-n", "40", "--seed", "3", "--context", tmp_path / "c.npy",
         "-o", tmp_path / "s2.csv")
    np.testing.assert_allclose(np.loadtxt(tmp_path / "s2.csv", delimiter=","),
                               flow.sample(40, context=rows, seed=3).numpy(), rtol=1e-5,
                               atol=1e-5)
    x = np.load(tmp_path / "s.npy")
    np.save(tmp_path / "x.npy", x)
    result = json.loads(_run(capsys, "evaluate", model, tmp_path / "x.npy", "--context",
                             tmp_path / "c.npy", "--json"))
    assert result["nll"] == pytest.approx(-flow.log_prob(x, context=rows).numpy().mean(),
                                          rel=1e-5)
    shared = json.loads(_run(capsys, "evaluate", model, tmp_path / "x.npy", "--context",
                             "0.5,-1", "--json"))
    assert shared["nll"] == pytest.approx(
        -flow.log_prob(x, context=np.repeat(c, 40, 0)).numpy().mean(), rel=1e-5)
    errors = [
        (["sample", model, "-o", tmp_path / "e.npy"], "conditional flow (context_dim=2): give "
                                                      "--context"),
        (["sample", model, "--context", "1", "-o", tmp_path / "e.npy"],
         "--context has 1 value per row; the model expects context_dim=2"),
        (["sample", model, "-n", "7", "--context", tmp_path / "c.npy", "-o", tmp_path / "e.npy"],
         "--context has 40 rows; expected 1 or 7 (one per sample)"),
        (["evaluate", model, tmp_path / "x.npy", "--context", "a,b"],
         "expected 2 comma-separated numbers"),
        (["evaluate", MOONS, "moons", "--context", "1,2"], "this flow is not conditional"),
    ]
    for argv, message in errors:
        with pytest.raises(SystemExit) as exit_info:
            main([str(a) for a in argv])
        err = capsys.readouterr().err
        assert exit_info.value.code == 2 and message in err, (argv, err)


def _assert_user_errors(cases, capsys):
    """Each `(argv, message)` exits 2 with one line `kerasflows: error: ...message...`."""
    for argv, message in cases:
        with pytest.raises(SystemExit) as exit_info:
            main([str(a) for a in argv])
        err = capsys.readouterr().err
        assert exit_info.value.code == 2, (argv, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("kerasflows: error: "), (argv, err)
        assert message in lines[0], (argv, lines[0])
        assert "pickle" not in lines[0] and "overwrite=True" not in lines[0], lines[0]


def test_a_training_record_of_the_wrong_shape_is_named_as_damaged(tmp_path, capsys):
    """A record that was JSON but not an object gave a traceback in info, sample
    and evaluate (`'list' object has no attribute 'get'`), and a number field holding
    a string an f-string's error."""
    import zipfile
    source = tmp_path / "source.keras"      # a small flow: its layers load and trace fast
    kerasflows.models.RealNVP(2, num_layers=1, hidden_units=(4,)).save(source)
    write_training_record(source, {"data": "moons"})

    def with_record(name, text):
        path = tmp_path / name
        with zipfile.ZipFile(source) as src, \
                zipfile.ZipFile(path, "w") as dst:
            for item in src.infolist():
                if item.filename != "kerasflows/training.json":
                    dst.writestr(item, src.read(item.filename))
            dst.writestr("kerasflows/training.json", text)
        return path
    listed = with_record("list.keras", "[1, 2]")
    _assert_user_errors([(["info", listed], "list.keras: damaged training record "
                          "kerasflows/training.json (a JSON list, not an object).")], capsys)
    _run(capsys, "sample", listed, "-n", "3", "-o", tmp_path / "s.npy")     # no record needed
    _run(capsys, "evaluate", listed, "moons", "--n", "50")
    odd = with_record("odd.keras", json.dumps({"data": "moons", "train_nll": "abc",
                                               "test_nll": 1.25}))
    out = _run(capsys, "info", odd)
    assert "trained on: moons" in out and "NLL (nats) test 1.2500" in out


def test_user_errors_print_one_line_and_exit_2(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TF_CONFIG", raising=False)
    _assert_user_errors(_error_cases(tmp_path), capsys)
    for config, says in (("{bad json", "TF_CONFIG is not valid JSON (Expecting property name"),
                         ('{"cluster": {}}', "TF_CONFIG must name the cluster and this "
                                             "worker's task, such as {\"cluster\"")):
        monkeypatch.setenv("TF_CONFIG", config)     # TensorFlow's message named neither
        _assert_user_errors([(["train", "moons", "--strategy", "multiworker"], says)], capsys)
    assert not (tmp_path / "planar").exists()     # a refused export makes no empty DIR


def test_resuming_refuses_a_checkpoint_made_on_other_data(tmp_path, capsys, monkeypatch):
    """The checkpoint's fingerprint holds the row count and a hash of DATA and of the
    context: other data at the same path is refused; the same data resumes."""
    from kerasflows.checkpoint import EpochCheckpoint
    monkeypatch.setattr(EpochCheckpoint, "delete", lambda self: None)   # kept, as after a crash
    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 2)).astype(np.float32)
    c = rng.normal(size=(120, 1)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "c.npy", c)
    argv = ["train", tmp_path / "x.npy", "--context", tmp_path / "c.npy", "--recipe", "realnvp",
            "--layers", "1", "--hidden", "4", "--epochs", "1", "--out", tmp_path / "m.keras"]
    _run(capsys, *argv, "--quiet")
    assert (tmp_path / "m.checkpoint" / "checkpoint.npz").is_file()
    for new_x, new_c, differing in [
            (x[::-1], c, "data_sha256"),                   # the same rows in another order
            (x, c + 1.0, "context_sha256"),
            (x[:100], c[:100], "context_rows, context_sha256, data_rows, data_sha256")]:
        np.save(tmp_path / "x.npy", new_x)
        np.save(tmp_path / "c.npy", new_c)
        _assert_user_errors([(argv, f"m.checkpoint/checkpoint.npz was written by a run with "
                                    f"other settings (differing: {differing})")], capsys)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "c.npy", c)
    # another model: its options named (the arrays' shapes said "array 0 is (1, 4)")
    wider = [*argv]
    wider[wider.index("--hidden") + 1] = "8"
    _assert_user_errors([(wider, "m.checkpoint/checkpoint.npz was written by a run with "
                                 "other settings (differing: hidden)")], capsys)
    assert "Resuming from the checkpoint in" in _run(capsys, *argv)


def test_the_same_data_spelled_otherwise_resumes(tmp_path, capsys, monkeypatch):
    """The fingerprint held DATA and --context as typed: `./x.npy` for `x.npy`, or `--n
    1000` for a name's default, was refused as "other settings (differing: data)". The
    rows and content hash decide; other data at either spelling is still refused."""
    from kerasflows.checkpoint import EpochCheckpoint
    monkeypatch.setattr(EpochCheckpoint, "delete", lambda self: None)   # kept, as after a crash
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    np.save("x.npy", rng.normal(size=(120, 2)).astype(np.float32))
    np.save("c.npy", rng.normal(size=(120, 1)).astype(np.float32))
    tiny = ["--recipe", "realnvp", "--layers", "1", "--hidden", "4", "--epochs", "1"]
    _run(capsys, "train", "x.npy", "--context", "c.npy", *tiny, "--out", "m.keras", "--quiet")
    again = ["train", "./x.npy", "--context", str(tmp_path / "c.npy"), *tiny, "--out", "m.keras"]
    assert "Resuming from the checkpoint in" in _run(capsys, *again)
    np.save("x.npy", rng.normal(size=(120, 2)).astype(np.float32))      # other data
    _assert_user_errors([(again, "other settings (differing: data, data_sha256)")], capsys)
    # a dataset name: its default row count (10,000) given
    _run(capsys, "train", "moons", *tiny, "--out", "n.keras", "--quiet")
    assert "Resuming from the checkpoint in" in _run(
        capsys, "train", "moons", "--n", "10000", *tiny, "--out", "n.keras")
    _assert_user_errors([(["train", "moons", "--n", "900", *tiny, "--out", "n.keras"],
                          "other settings (differing: data_rows, data_sha256, n)")], capsys)


def test_a_rerun_giving_the_defaults_resumes(tmp_path, capsys, monkeypatch):
    """The fingerprint held --standardize, --mask, --direction, --bins and --bound as
    typed: a rerun giving one's default (or leaving out the default the first run
    gave) was refused as "other settings (differing: standardize)". Another value
    is still refused."""
    from kerasflows.checkpoint import EpochCheckpoint
    monkeypatch.setattr(EpochCheckpoint, "delete", lambda self: None)   # kept, as after a crash
    monkeypatch.chdir(tmp_path)
    np.save("x.npy", np.random.default_rng(0).normal(size=(120, 4)).astype(np.float32))
    tiny = ["--recipe", "nsf", "--layers", "1", "--hidden", "4", "--epochs", "1",
            "--out", "m.keras"]
    spelled = ["--standardize", "--mask", "halves", "--direction", "inverse", "--bins", "8",
               "--bound", "5"]
    _run(capsys, "train", "x.npy", *tiny, "--quiet")
    assert "Resuming from the checkpoint in" in _run(capsys, "train", "x.npy", *tiny, *spelled)
    for option, other in [("--standardize", "--no-standardize"), ("--mask", "checkerboard"),
                          ("--bins", "6"), ("--bound", "4")]:
        changed = [*spelled]
        if option == "--standardize":
            changed[0] = other
        else:
            changed[changed.index(option) + 1] = other
        _assert_user_errors([(["train", "x.npy", *tiny, *changed], "other settings (differing: "
                              f"{option[2:]})")], capsys)
    # the other way round: the defaults given first, left out in the rerun
    _run(capsys, "train", "x.npy", *tiny[:-1], "n.keras", *spelled, "--quiet")
    assert "Resuming from the checkpoint in" in _run(capsys, "train", "x.npy", *tiny[:-1],
                                                     "n.keras")


def test_a_damaged_checkpoint_is_named_without_numpy_advice(tmp_path, capsys, monkeypatch):
    import kerasflows.distributed

    def no_training(*args, **kwargs):
        raise AssertionError("training started")
    monkeypatch.setattr(kerasflows.distributed, "train_flow", no_training)
    folder = tmp_path / "m.checkpoint"
    folder.mkdir()
    (folder / "checkpoint.npz").write_bytes(np.random.default_rng(0).bytes(500))
    _assert_user_errors([(["train", "moons", "--n", "100", "--layers", "1", "--out",
                           tmp_path / "m.keras"],
                          f"{folder / 'checkpoint.npz'}: not a checkpoint of `kerasflows train` "
                          f"(damaged, or another file: not a .npz archive of a training state); "
                          f"delete {folder / 'checkpoint.npz'} to start over.")], capsys)


def test_interrupted_training_says_what_the_checkpoint_keeps(tmp_path, capsys, monkeypatch):
    import kerasflows.distributed
    from kerasflows.checkpoint import EpochCheckpoint

    def interrupted(*args, checkpoint_dir, fingerprint, epochs, **kwargs):
        if epochs == 2:                     # Ctrl-C in the second epoch
            EpochCheckpoint(checkpoint_dir, fingerprint).save(1, [], {"loss": [1.0]})
        raise KeyboardInterrupt
    monkeypatch.setattr(kerasflows.distributed, "train_flow", interrupted)
    checkpoint = tmp_path / "m.checkpoint"
    for epochs, message in [
            ("1", "interrupted before the first epoch finished (no checkpoint yet); rerun the "
                  "command to start again."),
            ("2", f"interrupted; the checkpoint in {checkpoint} keeps the last finished epoch: "
                  "rerun the same command to resume from it.")]:
        with pytest.raises(SystemExit) as exit_info:
            main(["train", "moons", "--n", "100", "--layers", "1", "--epochs", epochs,
                  "--out", str(tmp_path / "m.keras")])
        assert exit_info.value.code == 130
        assert capsys.readouterr().err == f"kerasflows: error: {message}\n"


def test_ctrl_c_after_the_last_epoch_says_the_checkpoint_keeps_it(tmp_path, capsys,
                                                                  monkeypatch):
    """During the final evaluation and save the checkpoint is still there: the message
    said only "interrupted"."""
    from kerasflows.cli import train as train_command

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(train_command, "_record", interrupted)
    checkpoint = tmp_path / "m.checkpoint"
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "moons", "--n", "200", "--recipe", "realnvp", "--layers", "1", "--hidden",
              "8", "--epochs", "1", "--quiet", "--out", str(tmp_path / "m.keras")])
    assert exit_info.value.code == 130
    assert capsys.readouterr().err == (
        f"kerasflows: error: interrupted; the checkpoint in {checkpoint} keeps the last "
        "finished epoch: rerun the same command to resume from it.\n")
    assert (checkpoint / "checkpoint.npz").exists() and not (tmp_path / "m.keras").exists()


def test_csv_column_names_travel_with_the_model(tmp_path, capsys):
    # a CSV header's names go into the training record; `sample` writes them as the
    # header of a .csv, `info` lists them, and `evaluate` refuses a file whose header
    # names the columns otherwise (a swapped pair would be read as the wrong coordinates)
    rng = np.random.default_rng(0)
    x = np.stack([rng.normal(size=600), rng.gamma(2.0, size=600)], axis=1)
    np.savetxt(tmp_path / "d.csv", x, delimiter=",", header="height, weight", comments="")
    model = tmp_path / "m.keras"
    out = _run(capsys, "train", tmp_path / "d.csv", "--epochs", "1", "--recipe", "realnvp",
               "--layers", "2", "--hidden", "8", "--out", model, "--quiet")
    record = training_record(model)
    assert record["columns"] == ["height", "weight"]
    # the test split column by column (`evaluate --marginals`'s table), by name
    found = record["test_marginals"]
    height, weight = found["columns"]
    assert (height["column"], weight["column"]) == ("height", "weight")
    assert abs(height["data_mean"]) < 0.4 and abs(weight["data_mean"] - 2.0) < 0.6
    assert "Test split, column by column: " in out
    assert record["data_path"] == str(tmp_path / "d.csv")      # (the visualizer reads it again)
    described = _run(capsys, "info", model)
    assert "columns: height, weight" in described
    assert "recipe realnvp, 1 epoch; NLL" in described, described     # not "1 epochs"
    plotted = _run(capsys, "plot", model, "-o", tmp_path / "hw.png", "--resolution", "64")
    assert "samples on height in [" in plotted and ", weight in [" in plotted, plotted
    _run(capsys, "sample", model, "-n", "3", "-o", tmp_path / "s.csv")
    lines = (tmp_path / "s.csv").read_text().splitlines()
    assert lines[0] == "height,weight" and len(lines) == 4
    _run(capsys, "sample", model, "-n", "3", "-o", tmp_path / "s.npy")
    np.testing.assert_allclose(np.loadtxt(tmp_path / "s.csv", delimiter=",", skiprows=1),
                               np.load(tmp_path / "s.npy"), rtol=1e-6)
    assert "nats per example" in _run(capsys, "evaluate", model, tmp_path / "s.csv")
    np.savetxt(tmp_path / "plain.csv", x[:50], delimiter=",")        # no header: taken as is
    assert "nats per example" in _run(capsys, "evaluate", model, tmp_path / "plain.csv")
    np.savetxt(tmp_path / "swapped.csv", x[:50, ::-1], delimiter=",", header="weight,height",
               comments="")
    for argv in (["evaluate", model, tmp_path / "swapped.csv"],
                 ["train", tmp_path / "d.csv", "--test-data", tmp_path / "swapped.csv",
                  "--out", tmp_path / "n.keras"]):
        with pytest.raises(SystemExit) as exit_info:
            main([str(a) for a in argv])
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        assert "swapped.csv's columns are weight, height;" in err, err
        assert "columns height, weight (the same names in another order)" in err, err
    # an export names them in the SavedModel's assets.extra/kerasflows.json, where
    # `info` and the visualizer (without kerasflows) read them
    _run(capsys, "export", model, tmp_path / "srv")
    meta = json.loads((tmp_path / "srv" / "1" / "assets.extra" / "kerasflows.json").read_text())
    assert meta["columns"] == ["height", "weight"] and meta["event_dim"] == 2
    described = _run(capsys, "info", tmp_path / "srv")
    assert "columns: height, weight" in described
    assert "layers (4): AffineCoupling (" in described, described
    assert "ActNorm (standardize)" in described, described      # a file's flow: standardized
    from visualizer import opening, paths
    source = paths.resolve(tmp_path / "srv")
    assert opening._data_names(source.manifest, opening._record(source), 2) == ["height",
                                                                                 "weight"]
    # a model trained on a dataset name or a .npy file has no names: plain CSV out
    np.save(tmp_path / "d.npy", x)
    _run(capsys, "train", tmp_path / "d.npy", "--epochs", "1", "--recipe", "realnvp",
         "--layers", "2", "--hidden", "8", "--out", tmp_path / "p.keras", "--quiet")
    assert training_record(tmp_path / "p.keras")["columns"] is None
    _run(capsys, "sample", tmp_path / "p.keras", "-n", "2", "-o", tmp_path / "p.csv")
    assert len((tmp_path / "p.csv").read_text().splitlines()) == 2


def test_a_blank_header_name_takes_the_name_a_headerless_column_has(tmp_path, capsys):
    # "a,,c": column 2 is x2, as in a file without a header line, from train to export
    x = np.random.default_rng(0).normal(size=(300, 3))
    np.savetxt(tmp_path / "d.csv", x, delimiter=",", header="a,,c", comments="")
    model = tmp_path / "m.keras"
    _run(capsys, "train", tmp_path / "d.csv", "--epochs", "1", "--recipe", "realnvp",
         "--layers", "1", "--hidden", "8", "--out", model, "--quiet")
    assert training_record(model)["columns"] == ["a", "x2", "c"]
    _run(capsys, "export", model, tmp_path / "srv")
    meta = json.loads((tmp_path / "srv" / "1" / "assets.extra" / "kerasflows.json").read_text())
    assert meta["columns"] == ["a", "x2", "c"]
    # a record written with the blank name (before) exports under the same names
    flow = kerasflows.load(model)
    flow.save(tmp_path / "old.keras")
    write_training_record(tmp_path / "old.keras", {"columns": ["a", "", "c"]})
    _run(capsys, "export", tmp_path / "old.keras", tmp_path / "old")
    meta = json.loads((tmp_path / "old" / "1" / "assets.extra" / "kerasflows.json").read_text())
    assert meta["columns"] == ["a", "x2", "c"]
    # ... unless x2 is another column's name
    np.savetxt(tmp_path / "clash.csv", x, delimiter=",", header="x2,,c", comments="")
    _assert_user_errors([(["train", tmp_path / "clash.csv", "--out", tmp_path / "c.keras"],
                          f"{tmp_path / 'clash.csv'}: line 1: column 2 has no name and cannot "
                          "take the default x2, column 1's name. Name column 2.")], capsys)
    assert not (tmp_path / "c.keras").exists()


def test_a_failed_export_leaves_dir_as_it_was(tmp_path, capsys, monkeypatch):
    flow = kerasflows.models.RealNVP(3, num_layers=1, hidden_units=(8,))
    flow.save(tmp_path / "m.keras")
    write_training_record(tmp_path / "m.keras", {"columns": ["a", "b"]})    # damaged
    _assert_user_errors([(["export", tmp_path / "m.keras", tmp_path / "srv" / "m"],
                          "m.keras: its training record names 2 data columns (a, b); the flow "
                          "has event_dim=3. To export it, call kerasflows.export."
                          "export_saved_model(flow, DIR) in Python")], capsys)
    assert not (tmp_path / "srv").exists()
    flow.save(tmp_path / "n.keras")
    import tensorflow as tf

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(tf.saved_model, "save", full_disk)
    _assert_user_errors([(["export", tmp_path / "n.keras", tmp_path / "srv" / "m"],
                          "No space left on device")], capsys)
    assert not (tmp_path / "srv").exists()
    (tmp_path / "file").write_text("")
    _assert_user_errors([(["export", tmp_path / "n.keras", tmp_path / "file" / "m"],
                          f"cannot write to DIR {tmp_path / 'file' / 'm'}: "
                          f"{tmp_path / 'file'} is a file.")], capsys)


def test_constant_columns_are_refused_and_whole_numbers_warned_of(tmp_path, capsys):
    # maximum likelihood has no optimum on a constant column, nor on whole numbers
    # once the flow resolves them: the first is refused, the second said
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 3))
    x[:, 2] = 3.0
    np.savetxt(tmp_path / "const.csv", x, delimiter=",", header="a,b,c", comments="")
    _assert_user_errors([(["train", tmp_path / "const.csv", "--out", tmp_path / "c.keras"],
                          f"{tmp_path / 'const.csv'}: column 3 (c) holds one value, 3, in every "
                          "row; a density over it has no maximum (the NLL falls without bound "
                          "as the flow narrows onto that value). Drop the column.")], capsys)
    # a header naming fewer columns than the rows hold names none of them (this raised
    # an IndexError before)
    np.savetxt(tmp_path / "short.csv", x, delimiter=",", header="a,b", comments="")
    _assert_user_errors([(["train", tmp_path / "short.csv", "--out", tmp_path / "c.keras"],
                          f"{tmp_path / 'short.csv'}: column 3 holds one value, 3, in every "
                          "row;")], capsys)
    x[:, 2] = rng.integers(0, 5, size=400)
    x[:, 0] = np.round(x[:, 0] * 10)
    np.save(tmp_path / "counts.npy", x)
    assert main([str(a) for a in ("train", tmp_path / "counts.npy", "--epochs", "1", "--recipe",
                                  "realnvp", "--layers", "1", "--hidden", "8", "--out",
                                  tmp_path / "n.keras", "--quiet")]) == 0
    err = capsys.readouterr().err
    assert (f"kerasflows: warning: {tmp_path / 'counts.npy'}: 2 columns of whole numbers only "
            "(column 1, column 3)") in err, err
    assert (tmp_path / "n.keras").is_file()
    # with --dequantize a column of one whole number (an image's always-0 edge pixel) is
    # noised with the others, uniform on [k, k + 1), which has a density; it was refused
    x[:, 1] = 0.0
    np.save(tmp_path / "edge.npy", x)
    assert main([str(a) for a in ("train", tmp_path / "edge.npy", "--dequantize", "--epochs",
                                  "1", "--recipe", "realnvp", "--layers", "1", "--hidden", "8",
                                  "--out", tmp_path / "e.keras", "--quiet")]) == 0
    assert training_record(tmp_path / "e.keras")["dequantized_columns"] == [0, 1, 2]
    evaluated = _run(capsys, "evaluate", tmp_path / "e.keras", tmp_path / "edge.npy")
    assert "nats per example" in evaluated, evaluated
    x[:, 1] = 0.5                       # one value between whole numbers: still refused
    np.save(tmp_path / "half.npy", x)
    _assert_user_errors([(["train", tmp_path / "half.npy", "--dequantize", "--out",
                           tmp_path / "h.keras"],
                          f"{tmp_path / 'half.npy'}: column 2 holds one value, 0.5, in every "
                          "row;")], capsys)
    np.save(tmp_path / "real.npy", rng.normal(size=(400, 3)))
    assert main([str(a) for a in ("train", tmp_path / "real.npy", "--epochs", "1", "--recipe",
                                  "realnvp", "--layers", "1", "--hidden", "8", "--out",
                                  tmp_path / "r.keras", "--quiet")]) == 0
    assert "warning" not in capsys.readouterr().err


def test_csv_line_one_is_a_header_only_when_none_of_its_fields_is_a_number(tmp_path, capsys):
    from kerasflows.cli.data import read_array
    files = {"header.csv": "x,y\n0.5,0.2\n1.0,-0.3\n",
             "plain.csv": "0.5,0.2\n1.0,-0.3\n",
             "commented.csv": "\ufeff# made by hand\n\nx,y\n0.5,0.2\n\n1.0,-0.3\n",
             "bom.csv": "\ufeff0.5,0.2\n1.0,-0.3\n"}
    for name, text in files.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
        np.testing.assert_array_equal(read_array(str(tmp_path / name)),
                                      np.float32([[0.5, 0.2], [1.0, -0.3]]), err_msg=name)
    bad = {"typo_first.csv": ("1.5,2x\n0.5,0.2\n1.0,-0.3\n",
                              "line 1, column 2: '2x' is not a number (line 1 is read as data, "
                              "not as a header line, as it has a number in it)."),
           "typo_later.csv": ("# made by hand\nx,y\n0.5,0.2\n1.0,oops\n",
                              "line 4, column 2: 'oops' is not a number."),
           "ragged.csv": ("x,y\n1,2\n3,4,5\n", "line 3 has 3 fields; line 2 has 2."),
           "semicolons.csv": ("1;2\n3;4\n", "line 2, column 1: '3;4' is not a number "
                                              "(fields are separated by commas)."),
           "nan.csv": ("x,y\n\n1,2\nnan,4\n", "1 NaN or inf value (first in line 4)."),
           "header_only.csv": ("x,y\n", "no data rows after its header line 1."),
           "empty.csv": ("\n", "no data (the file holds no rows).")}
    model = tmp_path / "m.keras"     # evaluate loads it first: a small one loads fast
    kerasflows.models.RealNVP(2, num_layers=1, hidden_units=(4,)).save(model)
    cases = []
    for name, (text, message) in bad.items():
        (tmp_path / name).write_text(text)
        cases.append((["evaluate", model, tmp_path / name], f"{tmp_path / name}: {message}"))
    _assert_user_errors(cases, capsys)


def test_bad_npy_files_say_what_is_wrong(tmp_path, capsys):
    rng = np.random.default_rng(0)
    (tmp_path / "random.npy").write_bytes(rng.bytes(500))
    np.savez(tmp_path / "two.npz", x=np.zeros((3, 2)), y=np.ones(3))
    os.rename(tmp_path / "two.npz", tmp_path / "renamed.npy")
    np.save(tmp_path / "complex.npy", np.ones((4, 2)) * (1 + 2j))
    np.save(tmp_path / "big.npy", np.array([[0.0, 1.0], [2.0, 3.0], [5.0, -1e300]]))
    np.save(tmp_path / "objects.npy", np.array([[1, "a"]], dtype=object), allow_pickle=True)
    np.save(tmp_path / "text.npy", np.array([["1", "2"]]))
    (tmp_path / "folder.npy").mkdir()
    model = tmp_path / "m.keras"     # evaluate loads it first: a small one loads fast
    kerasflows.models.RealNVP(2, num_layers=1, hidden_units=(4,)).save(model)
    cases = [(["evaluate", model, tmp_path / name], f"{tmp_path / name}{message}") for name,
             message in [
                 ("random.npy", ": not a valid .npy array file (it does not start with the "
                                ".npy header; damaged, or another format)."),
                 ("renamed.npy", ": a .npz archive of arrays, not a .npy array; save the one "
                                 "array with numpy.save."),
                 ("complex.npy", ": holds complex numbers (dtype complex128); expected real "
                                 "numbers."),
                 ("big.npy", ": 1 value overflow float32 (largest 3.403e+38); the first, "
                             "-1e+300, is in row 2 (from 0)."),
                 ("objects.npy", ": holds Python objects (dtype object); expected real "
                                 "numbers."),
                 ("text.npy", ": holds strings (dtype <U1); expected real numbers."),
                 ("folder.npy", " is a directory, not a .npy or .csv file.")]]
    with warnings.catch_warnings():
        warnings.simplefilter("error")          # no ComplexWarning, no overflow warning
        _assert_user_errors(cases, capsys)


def test_evaluate_marginals_compares_each_column_with_the_flows_samples(tmp_path, capsys):
    from kerasflows import marginals
    flow = kerasflows.load(MOONS)
    x = kerasflows.datasets.load("moons", n=3000, seed=2**31 + 5)     # evaluate's draw
    found = json.loads(_run(capsys, "evaluate", MOONS, "moons", "--n", "3000", "--seed", "5",
                            "--marginals", "--json"))["marginals"]
    table = marginals.compare_marginals(flow.sample(3000, seed=5).numpy(), x)
    assert [c["column"] for c in found["columns"]] == ["x1", "x2"] and found["seed"] == 5
    for d, c in enumerate(found["columns"]):
        for key in table:
            assert c[key] == pytest.approx(table[key][d], rel=1e-6), key
    # chance puts either column above the threshold 5% of the time: 2.5% each
    assert found["alpha_per_column"] == 0.025
    assert found["ks_threshold"] == pytest.approx(marginals.ks_threshold(3000, 3000, 0.025))
    # a file of another distribution: its columns are flagged; --seed seeds the samples
    np.save(tmp_path / "far.npy", x * [1.0, 0.5] + [0.0, 1.0])
    out = _run(capsys, "evaluate", MOONS, tmp_path / "far.npy", "--marginals", "--seed", "1")
    lines = out.splitlines()
    assert lines[1] == "Marginals: 3000 samples of the flow (seed 1) against the 3000 rows:"
    assert lines[3].startswith("x1 ") and not lines[3].endswith("*")
    assert lines[4].startswith("x2 ") and lines[4].endswith("  *")
    assert f"* above {found['ks_threshold']:.4f}, where chance alone puts any of the 2 " \
           "columns 5% of the time" in lines[5]


def test_options_name_themselves_and_the_range_they_take(tmp_path, capsys):
    np.save(tmp_path / "d.npy", np.zeros((5, 2), np.float32))
    expected = "expected an integer in 0..2147483647 (2**31-1), got"
    _assert_user_errors([
        (["train", "moons", "--seed", "99999999999999"], f"argument --seed: {expected} "
                                                         "'99999999999999'"),
        (["train", "moons", "--seed", "-5"], f"argument --seed: {expected} '-5'"),
        (["sample", MOONS, "--seed", "3000000000", "-o", tmp_path / "s.npy"],
         f"argument --seed: {expected} '3000000000'"),
        (["evaluate", MOONS, "moons", "--seed", "-1"], f"argument --seed: {expected} '-1'"),
        (["fit-target", "--target", "u1", "--seed", "2147483648"],
         f"argument --seed: {expected} '2147483648'"),
        (["plot", MOONS, "-o", tmp_path / "p.png", "--span", "0"],
         "argument --span: expected a finite number > 0, got '0'"),
        (["plot", MOONS, "-o", tmp_path / "p.png", "--span", "-5"],
         "argument --span: expected a finite number > 0, got '-5'"),
        # empty paths (an unset shell variable): named, not ": no such file." or [Errno 2] ''
        (["export", MOONS, ""], "DIR needs a path; received ''."),
        (["info", ""], "MODEL needs a path; received ''."),
        (["evaluate", "", "moons"], "MODEL needs a path; received ''."),
        (["evaluate", MOONS, " "], "DATA needs a path or a dataset name; received ' '."),
        (["sample", MOONS, "--context", "", "-o", tmp_path / "s.npy"],
         "--context needs a value; received ''."),
        (["plot", MOONS, "-o", tmp_path / "p.png", "--resolution", "1"],   # (pictures': 2..4096)
         "argument --resolution: expected an integer in 2..4096, got '1'"),
        (["plot", MOONS, "-o", tmp_path / "p.png", "--resolution", "0"],      # (not ">= 1")
         "argument --resolution: expected an integer in 2..4096, got '0'"),
        (["plot", MOONS, "-o", tmp_path / "p.png", "--resolution", "5000"],
         "argument --resolution: expected an integer in 2..4096, got '5000'"),
        # a 2-D flow without an inverse: named as such (it blamed its dimension)
        (["plot", os.path.join(os.path.dirname(MOONS), "u1_planar"), "-o", tmp_path / "p.png",
          "--span", "5"], "this flow has none (a density is drawn for 2-D flows that have an "
                          "inverse; it has event_dim=2 and a forward-only layer)."),
        (["plot", MOONS, "-o", tmp_path / "p.png", "--region", "-1e40,1e40,-1,1"],
         "--region: expected numbers within float32's range (magnitude up to 3.403e+38); "
         "received -1e+40,1e+40,-1,1."),
        (["plot", MOONS, "-o", tmp_path / "p.png", "--region", "3,1,-1,1"],
         "--region: expected finite XMIN,XMAX,YMIN,YMAX with XMIN < XMAX and YMIN < YMAX; "
         "received 3,1,-1,1."),
        (["train", "moons", "--bound", "-1"],
         "argument --bound: expected a finite number > 0, got '-1'"),
        (["train", "moons", "--bins", "1"], "argument --bins: expected an integer >= 2, got '1'"),
        (["evaluate", MOONS, tmp_path / "d.npy", "--n", "5"],
         f"--n draws points of a dataset name; {tmp_path / 'd.npy'} is a file"),
        (["evaluate", MOONS, tmp_path / "d.npy", "--seed", "3"],
         f"--seed seeds the draw of a dataset name; {tmp_path / 'd.npy'} is a file"),
        (["train", tmp_path / "d.npy", "--n", "5"], "--n draws points of a dataset name"),
        (["evaluate", os.path.join(MOONS, "saved_model"), "moons"],
         "saved_model is an exported SavedModel (for TF Serving): `kerasflows info` lists its "
         "signatures; evaluate, sample, plot and export take the .keras model"),
        (["export", MOONS, tmp_path / "d.npy"],
         f"{tmp_path / 'd.npy'} is a file; DIR is the folder the SavedModel's versions go in"),
    ], capsys)
    assert (tmp_path / "d.npy").is_file() and not (tmp_path / "p.png").exists()


def test_a_dataset_name_is_the_dataset_even_beside_a_folder_of_that_name(tmp_path, capsys,
                                                                       monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "moons").mkdir()
    (tmp_path / "pinwheels").mkdir()
    result = json.loads(_run(capsys, "evaluate", MOONS, "moons", "--n", "100", "--json"))
    assert result["n"] == 100
    _assert_user_errors([(["evaluate", MOONS, "pinwheels"],
                          "'pinwheels' is a directory; DATA is a dataset name (moons, ")],
                        capsys)


def test_plot_names_a_damaged_model_folder_file(tmp_path, capsys):
    folders = {}
    for name in ("manifest", "sample"):
        folders[name] = tmp_path / name
        folders[name].mkdir()
        shutil.copy(os.path.join(MOONS, "flow.keras"), folders[name])
    (folders["manifest"] / "manifest.json").write_text("{oops")
    good = open(os.path.join(MOONS, "data_sample.npy"), "rb").read()
    (folders["sample"] / "data_sample.npy").write_bytes(good[:200])
    _assert_user_errors([
        (["plot", folders["manifest"], "-o", tmp_path / "p.png", "-n", "100"],
         f"{folders['manifest'] / 'manifest.json'}: not valid JSON (Expecting property name"),
        (["plot", folders["sample"], "-o", tmp_path / "p.png", "-n", "100"],
         f"{folders['sample'] / 'data_sample.npy'}: cannot read the data (")], capsys)
    # a conditional model's context fields, hand-edited: a raw TypeError traceback, or
    # "could not convert string to float: 'abc'" naming no file
    flow = kerasflows.models.RealNVP(2, num_layers=1, hidden_units=(4,), context_dim=1)
    folder = tmp_path / "conditional"
    folder.mkdir()
    flow.save(folder / "flow.keras")
    for manifest, message in [
            ({"context_step": 1, "context_range": [[0, 3]]},
             "context_step is 1; expected a list of 1 step > 0 (or null"),
            ({"context_step": [1], "context_range": [[3, 0]]},
             "context_range is [[3, 0]]; expected a list of 1 [low, high] pair of numbers"),
            ({"context": "abc"}, "context is 'abc'; expected a list of 1 number (the flow's "
                                 "context_dim), the context it opens at."),
            ({"context": [1, 2]}, "context is [1, 2]; expected a list of 1 number")]:
        (folder / "manifest.json").write_text(json.dumps(manifest))
        _assert_user_errors([(["plot", folder, "-o", tmp_path / "p.png", "-n", "50",
                               "--rows-by-context", "--image", "1x2"],
                              f"{folder / 'manifest.json'}: {message}")], capsys)
    # a --context given: the manifest's, not used, is not held against it
    (folder / "manifest.json").write_text(json.dumps({"context": [1, 2]}))
    _run(capsys, "plot", folder, "--context", "0.5", "-o", tmp_path / "given.png", "-n", "50",
         "--resolution", "16")
    assert (tmp_path / "given.png").is_file()
    # steps past the range's end stop at its last step inside: 0 to 2.5 in steps of 1
    (folder / "manifest.json").write_text(json.dumps({"context_step": [1],
                                                      "context_range": [[0, 2.5]]}))
    from kerasflows.cli import build_parser
    from kerasflows.cli.plot import _stepped_values
    args = build_parser().parse_args(["plot", str(folder), "-o", "p.png"])
    assert _stepped_values(args, flow, json.loads((folder / "manifest.json").read_text()))[
        1].tolist() == [0, 1, 2]


def test_a_class_label_model_takes_only_labels_it_knows(tmp_path, capsys):
    from kerasflows import pictures
    from kerasflows.cli.plot import ROW
    from kerasflows.layers import ClassEmbedding
    flow = kerasflows.models.RealNVP(2, num_layers=1, hidden_units=(4,), context_dim=1,
                                     context_encoder=ClassEmbedding(3))
    model = tmp_path / "labels.keras"
    flow.save(model)
    np.save(tmp_path / "x.npy", np.zeros((6, 2), np.float32))
    np.savetxt(tmp_path / "c.csv", [0, 1, 2, 2, 7, 1], fmt="%d")
    known = "--context: labels for ClassEmbedding(num_classes=3) are 0..2; received"
    _assert_user_errors([
        (["sample", model, "--context", "12", "-o", tmp_path / "s.npy"], f"{known} 12.0 in row 0"),
        (["sample", model, "--context", "1.6", "-o", tmp_path / "s.npy"],
         "--context: labels for ClassEmbedding(num_classes=3) are the integers 0..2; received 1.6 "
         "in row 0 (labels are not rounded)."),
        (["evaluate", model, tmp_path / "x.npy", "--context", tmp_path / "c.csv"],
         f"--context {tmp_path / 'c.csv'}: labels for ClassEmbedding(num_classes=3) are 0..2; "
         "received 7.0 in line 5"),
        (["plot", model, "-o", tmp_path / "p.png", "--image", "1x2", "--context", "-1"],
         f"{known} -1.0 in row 0")], capsys)
    assert not (tmp_path / "s.npy").exists()
    # --rows-by-context steps the label itself: a bare .keras file needs no --context
    out = _run(capsys, "plot", model, "-o", tmp_path / "rows.png", "--rows-by-context",
               "--image", "1x2")
    assert f"{ROW} samples at each of 3 context values, one row each" in out
    rows = np.concatenate([flow.sample(ROW, context=[[k]], seed=0).numpy() for k in range(3)])
    np.testing.assert_array_equal(_png(tmp_path / "rows.png"), pictures.image_grid(
        rows, (1, 2), None, columns=ROW, scale=256 // 16))


def test_info_shows_the_manifest_command_that_reproduces_the_model(capsys):
    folder = os.path.join(ROOT, "saved_models", "ring_radius")
    with open(os.path.join(folder, "manifest.json")) as f:
        command = json.load(f)["command"]
    out = _run(capsys, "info", folder)
    assert f"\ncommand (manifest.json; reproduces the model): {command}\n" in out
    assert re.search(r"\nas run \(the training record in the model file\): kerasflows train "
                     r"\S+ring_radius_x\.npy ", out)
    assert re.search(r"\ntrained on: \S+ring_radius_x\.npy \(no longer there; it held x, "
                     r"context = kerasflows\.datasets\.load_conditional\('ring_radius', "
                     r"n=60000, seed=0\), as 'command' draws it\) \(48600 rows\)", out)
    moons4d = os.path.join(ROOT, "saved_models", "moons4d")
    out = _run(capsys, "info", moons4d)                   # the same command: said once
    with open(os.path.join(moons4d, "manifest.json")) as f:
        assert f"\ncommand: {json.load(f)['command']}\n" in out
    assert "as run" not in out


def test_help_shows_defaults_as_the_options_take_them(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    assert "(default: 64,64)" in out and "[64, 64]" not in out
    assert "(default: default)" not in out and "default (one process;" in out
    description = out.split("\n\n")[1]
    assert description.startswith("fit a flow by maximum likelihood"), description
    assert "an integer in 0..2**31-1 (default: 0)" in " ".join(out.split())


def test_console_script_reports_user_error_without_traceback(tmp_path):
    script = os.path.join(os.path.dirname(sys.executable), "kerasflows")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run([script, "evaluate", MOONS, "pinwheels"], capture_output=True,
                          text=True, env=env, cwd=tmp_path, timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    ours = [line for line in proc.stderr.splitlines() if line.startswith("kerasflows:")]
    assert ours == ["kerasflows: error: 'pinwheels' is neither a dataset name (moons, "
                    "eight_gaussians, checkerboard, rings, pinwheel, two_spirals, moons4d, "
                    "heavy_tails, digits; with a context: ring_radius, digits_label) nor a "
                    ".npy/.csv file."]


def test_a_bad_flag_points_to_the_help_that_lists_the_flags(capsys):
    """The help of the subcommand it follows, not the top-level one (which lists none)."""
    for argv, where in ((["train", "--bogus", "moons"], "kerasflows train --help"),
                        (["info", MOONS, "--x", "1"], "kerasflows info --help"),
                        (["--bogus"], "kerasflows --help")):
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        assert err.startswith("kerasflows: error: ") and f"(see '{where}')" in err, err


def test_help_documents_every_flag(capsys):
    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    modules = sorted(m.__name__.rsplit(".", 1)[1] for m in SUBCOMMANDS)
    assert sorted(c.replace("-", "_") for c in subparsers.choices) == modules
    for name, sub in subparsers.choices.items():
        with pytest.raises(SystemExit) as exit_info:
            main([name, "--help"])
        assert exit_info.value.code == 0
        text = capsys.readouterr().out
        for action in sub._actions:
            assert action.help, (name, action.dest)
            for option in action.option_strings:
                assert option in text, (name, option)


def test_shipped_manifests_name_what_their_command_trains_on():
    # The command in each manifest reruns as it stands: its data is a dataset name or
    # the benchmark's fixed files, never a temporary file (the conditional sets once were).
    import shlex
    from kerasflows import datasets
    parser = build_parser()
    names = sorted(os.listdir(os.path.join(ROOT, "saved_models")))
    checked = 0
    for name in names:
        path = os.path.join(ROOT, "saved_models", name, "manifest.json")
        if not os.path.isfile(path):
            continue
        with open(path) as f:
            argv = shlex.split(json.load(f)["command"])
        assert argv[0] == "kerasflows", name
        args = parser.parse_args(argv[1:])          # a command line `kerasflows` accepts
        if argv[1] != "train":
            continue
        files = [a for a in (args.data, args.validation_data, args.test_data, args.context)
                 if a is not None and a not in datasets.NAMES + datasets.CONDITIONAL_NAMES]
        assert all("shared/bench/data/" in a for a in files), (name, files)
        assert args.out == f"saved_models/{name}/flow.keras"
        checked += 1
    assert checked >= 9


def test_unwritable_outputs_fail_before_any_training(tmp_path, capsys, monkeypatch):
    """`train` and `fit-target` check every output's folder first: a training run
    would otherwise be lost when its result (or first checkpoint) cannot be written."""
    import kerasflows.distributed
    from kerasflows.cli import fit_target

    def no_training(*args, **kwargs):
        raise AssertionError("training started")
    monkeypatch.setattr(kerasflows.distributed, "train_flow", no_training)
    monkeypatch.setattr(fit_target, "_train", no_training)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    # each names its option (the path alone before)
    cases = [
        (["train", "moons", "--out", blocker / "m.keras"], "--out", blocker / "m.keras"),
        (["train", "moons", "--out", tmp_path / "m.keras", "--report", blocker / "r.json"],
         "--report", blocker / "r.json"),
        (["train", "moons", "--out", tmp_path / "m.keras",
          "--checkpoint-dir", blocker / "ckpt"], "--checkpoint-dir", blocker / "ckpt"),
        (["fit-target", "--target", "u1", "--recipe", "planar", "--out", blocker / "u.keras"],
         "--out", blocker / "u.keras"),
        (["fit-target", "--target", "u1", "--recipe", "planar", "--out", tmp_path / "u.keras",
          "--report", blocker / "u.json"], "--report", blocker / "u.json"),
        (["fit-target", "--target", "u1", "--recipe", "planar",
          "--model-dir", blocker / "u1"], "--model-dir", blocker / "u1" / "flow.keras"),
    ]
    for argv, option, path in cases:
        with pytest.raises(SystemExit) as exit_info:
            main([str(a) for a in argv])
        err = capsys.readouterr().err
        assert exit_info.value.code == 2, (argv, err)
        assert f"kerasflows: error: cannot write {option} {path}: its folder" in err, (argv, err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]   # nothing written


def test_outputs_that_are_folders_or_would_overwrite_an_input_fail_before_training(
        tmp_path, capsys, monkeypatch):
    """A --report equal to --out or to DATA was written over the model or the data
    after a run that said it succeeded; an --out or --report that is a folder, or a
    --checkpoint-dir that is a file, failed after the training (errno 21 / 17)."""
    import kerasflows.distributed
    from kerasflows.cli import fit_target

    def no_training(*args, **kwargs):
        raise AssertionError("training started")
    monkeypatch.setattr(kerasflows.distributed, "train_flow", no_training)
    monkeypatch.setattr(fit_target, "_train", no_training)
    monkeypatch.chdir(tmp_path)
    np.save("x.npy", np.random.default_rng(0).normal(size=(50, 2)).astype("float32"))
    np.save("c.npy", np.zeros((50, 1), "float32"))
    np.save("v.npy", np.zeros((10, 2), "float32"))
    os.mkdir("dir.keras")
    os.mkdir("dir.json")
    with open("a-file", "w") as f:
        f.write("mine")
    planar = ["fit-target", "--target", "u1", "--recipe", "planar"]
    cases = [
        (["train", "x.npy", "--out", "m.keras", "--report", "m.keras"],
         "--out and --report both name m.keras; give each its own file."),
        (["train", "x.npy", "--out", "m.keras", "--report", "x.npy"],
         "--report x.npy would overwrite DATA x.npy, which this command reads"),
        (["train", "x.npy", "--context", "c.npy", "--out", "m.keras", "--report", "./c.npy"],
         "--report ./c.npy would overwrite --context c.npy, which this command reads"),
        (["train", "x.npy", "--out", "m.keras", "--report", "v.npy", "--validation-data",
          "v.npy"], "--report v.npy would overwrite --validation-data v.npy"),
        (["train", "x.npy", "--out", "dir.keras"], "--out dir.keras is a folder; expected a "
                                                    "file name."),
        (["train", "x.npy", "--out", "m.keras", "--report", "dir.json"],
         "--report dir.json is a folder"),
        (["train", "x.npy", "--out", "m.keras", "--checkpoint-dir", "a-file"],
         "--checkpoint-dir a-file is a file; expected a folder"),
        (["train", "x.npy", "--out", ""], "--out needs a path; received ''."),
        (planar + ["--out", "u.keras", "--report", "u.keras"],
         "--out and --report both name u.keras"),
        (planar + ["--out", "dir.keras"], "--out dir.keras is a folder"),
        (["sample", "m.keras", "--context", "c.npy", "-o", "./c.npy"],   # wrote the samples
         "--out ./c.npy would overwrite --context c.npy, which this command reads"),
    ]
    for argv, says in cases:
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        err = capsys.readouterr().err
        assert exit_info.value.code == 2, (argv, err)
        assert f"kerasflows: error: {says}" in err, (argv, err)
    assert sorted(os.listdir()) == ["a-file", "c.npy", "dir.json", "dir.keras", "v.npy", "x.npy"]
    assert open("a-file").read() == "mine"


def test_a_checkpoint_folder_of_ones_own_keeps_its_other_files(tmp_path, capsys):
    """The checkpoint folder was removed whole once the model was saved: a
    --checkpoint-dir naming a folder of one's own took the data in it."""
    work = tmp_path / "work"
    work.mkdir()
    np.save(work / "x.npy", np.random.default_rng(0).normal(size=(200, 2)).astype("float32"))
    (work / "notes.txt").write_text("mine")
    _run(capsys, "train", work / "x.npy", "--epochs", "1", "--recipe", "realnvp", "--layers",
         "1", "--hidden", "4", "--out", tmp_path / "m.keras", "--checkpoint-dir", work, "--quiet")
    assert sorted(p.name for p in work.iterdir()) == ["notes.txt", "x.npy"]
    assert not (tmp_path / "m.checkpoint").exists()
    _run(capsys, "train", work / "x.npy", "--epochs", "1", "--recipe", "realnvp", "--layers",
         "1", "--hidden", "4", "--out", tmp_path / "m.keras",
         "--quiet")                                  # its own folder goes, as before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json", "m.keras", "work"]


def test_train_mask_sets_how_a_coupling_recipe_splits_the_columns(tmp_path, capsys):
    model = tmp_path / "m.keras"
    _run(capsys, "train", "moons4d", "--n", "400", "--epochs", "1", "--layers", "2",
         "--hidden", "8", "--mask", "checkerboard", "--out", model, "--quiet")
    flow = kerasflows.load(model)
    assert training_record(model)["mask"] == "checkerboard"
    assert flow.flow_layers[-1].name == "checkerboard"              # evens, then odds
    assert [l.num_masked for l in flow.flow_layers if hasattr(l, "num_masked")] == [2, 2]
    _assert_user_errors([(["train", "moons4d", "--recipe", "maf", "--mask", "halves"],
                          "--mask applies to the coupling recipes (realnvp, nice, nsf) only; "
                          "received --recipe maf --mask halves.")], capsys)


def test_train_says_which_test_columns_are_beyond_chance(capsys):
    from kerasflows.cli.evaluate import marginals_line
    columns = [{"column": f"c{k}", "ks": 0.1 + k / 100} for k in range(8)]
    found = {"ks_threshold": 0.115, "columns": columns}
    assert marginals_line(found) == (
        "Test split, column by column: c2 (0.1200), c3 (0.1300), c4 (0.1400), c5 (0.1500), "
        "c6 (0.1600) and 1 more beyond chance (Kolmogorov-Smirnov gap > 0.1150); "
        "`kerasflows evaluate MODEL DATA --marginals` shows every column.")
    found["ks_threshold"] = 0.5
    assert "every column's distribution is within chance" in marginals_line(found)
    # a threshold above 1 (a test split of a few rows) flags nothing: it says so ("gap <=
    # 2.0933" read as a test passed)
    found["ks_threshold"] = 2.0933
    assert marginals_line(found).startswith("Test split, column by column: too few rows to "
                                            "tell any column's distribution")
    from kerasflows.cli.evaluate import _print_marginals
    found.update(seed=0, columns=[dict(c, data_mean=0.0, flow_mean=0.0, data_std=1.0,
                                       flow_std=1.0) for c in columns])
    _print_marginals(found, 2)
    printed = capsys.readouterr().out
    assert "2 rows are too few to tell any gap from chance" in printed and "* above" not in printed


def test_train_base_student_t_learns_heavy_tails_and_info_shows_them(tmp_path, capsys):
    x = np.random.default_rng(0).standard_t(2.0, (3000, 2)).astype("float32")
    np.save(tmp_path / "heavy.npy", x)
    model = tmp_path / "m.keras"
    _run(capsys, "train", tmp_path / "heavy.npy", "--base", "student_t", "--recipe", "maf",
         "--layers", "1", "--hidden", "8", "--epochs", "3", "--lr", "0.02",
         "--no-standardize", "--out", model, "--quiet")
    flow = kerasflows.load(model)
    assert flow.base == "student_t" and training_record(model)["base"] == "student_t"
    assert np.all(flow.base_df < 10.0), flow.base_df           # from 10, toward 2
    out = _run(capsys, "info", model)
    df = ", ".join(f"{v:.3g}" for v in flow.base_df)
    assert f"base=student_t (df {df})" in out, out
    with pytest.raises(SystemExit):
        main(["train", "moons", "--base", "laplace"])
    assert "argument --base: invalid choice: 'laplace'" in capsys.readouterr().err


def test_train_standardizes_heavy_tails_as_it_does_a_data_file(tmp_path, capsys):
    model = tmp_path / "h.keras"
    _run(capsys, "train", "heavy_tails", "--n", "600", "--epochs", "1", "--recipe", "realnvp",
         "--layers", "1", "--hidden", "8", "--out", model, "--quiet")
    assert training_record(model)["standardize"] is True
    assert kerasflows.load(model).flow_layers[-1].name == "standardize"
    _run(capsys, "train", "moons", "--n", "600", "--epochs", "1", "--recipe", "realnvp",
         "--layers", "1", "--hidden", "8", "--out", tmp_path / "m.keras", "--quiet")
    assert training_record(tmp_path / "m.keras")["standardize"] is False


def _csv_error(path):
    """The UserError message `read_array` gives for the CSV file `path`."""
    from kerasflows.cli.common import UserError
    from kerasflows.cli.data import read_array
    with pytest.raises(UserError) as error:
        read_array(str(path))
    return str(error.value)


def test_csv_non_ascii_digits_and_white_space_lines_are_named_by_line_and_column(tmp_path):
    # Python's float() reads '１' and '١', and str.strip() empties a line of a form feed;
    # NumPy reads neither, and its message counted rows from 0 after the header
    files = {"fullwidth.csv": ("alpha,beta\n\uff11,2\n3,4\n",
                               "line 2, column 1: '\uff11' is not a number."),
             "arabic.csv": ("alpha,beta\n\u0661,10\n2,3\n",
                            "line 2, column 1: '\u0661' is not a number."),
             "formfeed.csv": ("alpha,beta\n1,2\n3,4\n\f\n",
                              "line 4 holds only white space (before any # comment), which "
                              "NumPy reads as a row of one blank field; leave such a line "
                              "empty."),
             "spaces.csv": ("alpha,beta\n1,2\n  \n3,4\n",
                            "line 3 holds only white space")}
    for name, (text, message) in files.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
        assert _csv_error(tmp_path / name).startswith(f"{tmp_path / name}: {message}")
    # white space around a number is NumPy's to strip, no-break space included
    (tmp_path / "nbsp.csv").write_text("alpha,beta\n1.5\u00a0,10\n \t2, 3 \n",
                                       encoding="utf-8")
    from kerasflows.cli.data import read_array
    np.testing.assert_array_equal(read_array(str(tmp_path / "nbsp.csv")),
                                  np.float32([[1.5, 10], [2, 3]]))


def test_csv_that_is_not_utf8_is_named_by_its_line_and_byte(tmp_path):
    # the offset was one in Python's decoding buffer (2135 for a byte at 34903)
    body = "alpha,beta\n" + "".join(f"{i}.25,{i % 7}.5\n" for i in range(3000))
    data = body.encode() + "größe,1\n".encode("latin-1")
    (tmp_path / "latin1.csv").write_bytes(data)
    offset = data.index("ö".encode("latin-1"))
    assert _csv_error(tmp_path / "latin1.csv") == (
        f"{tmp_path / 'latin1.csv'}: not UTF-8 text (line 3002: byte 0xf6 at offset {offset} "
        "of the file, invalid start byte). Save it as UTF-8.")
    (tmp_path / "bom.csv").write_bytes(b"\xef\xbb\xbfx,y\r\n1,2\r\n\xff,3\n")
    assert _csv_error(tmp_path / "bom.csv") == (
        f"{tmp_path / 'bom.csv'}: not UTF-8 text (line 3: byte 0xff at offset 13 of the file, "
        "invalid start byte). Save it as UTF-8.")


def test_an_empty_line_among_the_rows_of_a_one_column_csv_is_refused_as_a_missing_value(
        tmp_path):
    """A one-column file's missing value written as an empty line (as some tools
    write one), which NumPy skips: 300 values with 3 missing trained on 297 rows
    without a word (two columns give ',', refused as a field that is not a number)."""
    from kerasflows.cli.data import read_array
    cases = {"middle.csv": ("r\n1\n2\n\n3\n", 4), "first.csv": ("r\n\n1\n2\n", 2),
             "headerless.csv": ("1\n\n2\n", 2), "trailing.csv": ("r\n1\n2\n\n\n", None),
             "leading.csv": ("\n1\n2\n", None), "commented.csv": ("r\n1\n# note\n2\n", None),
             "two_columns.csv": ("a,b\n1,2\n\n3,4\n", None)}
    for name, (text, line) in cases.items():
        (tmp_path / name).write_text(text)
        if line is None:
            assert len(read_array(str(tmp_path / name))) == 2, name
        else:
            with pytest.raises(kerasflows.cli.common.UserError,
                               match=rf"{name}: line {line} is empty, between rows of this "
                                     r"one-column file: a missing value"):
                read_array(str(tmp_path / name))


def test_csv_header_names_may_hold_a_hash_or_a_quoted_comma(tmp_path, capsys):
    from kerasflows.cli.data import read_array, read_column_names
    files = {"hash.csv": ("id,# visits,age\n1.5,3,40\n2.5,4,41\n", ["id", "# visits", "age"]),
             "quoted.csv": ('"income, USD",age\n1000,40\n2000,41\n', ["income, USD", "age"]),
             # a piece between its commas a number: the header was read as data
             "pieces.csv": ('id,"sales, 2020, USD"\n0.1,1.5\n0.7,2.5\n',
                            ["id", "sales, 2020, USD"]),
             "hashed.csv": ('"n#1, 2",b\n1,2\n3,4\n', ["n#1, 2", "b"]),
             "commented.csv": ("\ufeff# made by hand\n \"a\" , b\n1,2\n3,4\n", ["a", "b"])}
    for name, (text, names) in files.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
        assert read_column_names(str(tmp_path / name)) == names, name
        assert read_array(str(tmp_path / name)).shape == (2, len(names))
    # a quote in a header's comment, or a stray one in a row of numbers, is no quoted name
    (tmp_path / "remark.csv").write_text('a,b  # from "survey", 2020\n1,2\n3,4\n')
    assert read_array(str(tmp_path / "remark.csv")).tolist() == [[1, 2], [3, 4]]
    (tmp_path / "stray.csv").write_text('"0.5,1.2\n3,4\n5,6\n')
    with pytest.raises(kerasflows.cli.common.UserError, match=r"line 1, column 1: '\"0\.5' is "
                       "not a number"):
        read_array(str(tmp_path / "stray.csv"))
    # `sample` writes such names back quoted, so they read as they were written
    from kerasflows.cli.common import write_array
    names = ["# visits", "income, USD", 'say "hi"', "age"]
    write_array(str(tmp_path / "s.csv"), np.ones((2, 4)), names)
    assert read_column_names(str(tmp_path / "s.csv")) == names
    # in UTF-8, as the files read are: "Âge" came back as Latin-1, which read_array
    # refused, and "收入 (€)" could not be written at all
    names = ["Âge (ans)", "收入 (€)"]
    write_array(str(tmp_path / "u.csv"), np.ones((2, 2)), names)
    assert read_column_names(str(tmp_path / "u.csv")) == names
    assert read_array(str(tmp_path / "u.csv")).shape == (2, 2)
    # names that read as numbers ("1", "2" of a quoted header): written bare, the
    # header came back as a row of data
    written = np.random.default_rng(0).normal(size=(500, 2)).astype(np.float32)
    write_array(str(tmp_path / "n.csv"), written, ["1", "2e3"])
    assert read_column_names(str(tmp_path / "n.csv")) == ["1", "2e3"]
    # and every float32 reads back as itself (8 significant digits changed some)
    np.testing.assert_array_equal(read_array(str(tmp_path / "n.csv")), written)
    (tmp_path / "swapped.csv").write_text('age,"income, USD"\n1,2\n', encoding="utf-8")
    with pytest.raises(kerasflows.cli.common.UserError, match=r"swapped\.csv's columns are "
                       r'age, "income, USD"; m was trained on columns "income, USD", age \(the'):
        kerasflows.cli.data.check_column_names(str(tmp_path / "swapped.csv"),
                                               ["income, USD", "age"], "m was trained on")
    # a header naming another number of columns than the rows hold: train says so
    rng = np.random.default_rng(0)
    np.savetxt(tmp_path / "short.csv", rng.normal(size=(50, 3)), delimiter=",",
               header="a,b", comments="")
    args = build_parser().parse_args(["train", str(tmp_path / "short.csv")])
    train_data.read_inputs(args)
    err = capsys.readouterr().err
    assert err == (f"kerasflows: warning: {tmp_path / 'short.csv'}: its header line names 2 "
                   "columns (a, b); its rows have 3: the model keeps no column names.\n")
    # and so a --validation-data file's own names are not held to it (it was refused:
    # "v.csv's columns are a, b, c; short.csv has columns a, b")
    np.savetxt(tmp_path / "v.csv", rng.normal(size=(20, 3)), delimiter=",", header="a,b,c",
               comments="")
    args = build_parser().parse_args(["train", str(tmp_path / "short.csv"),
                                      "--validation-data", str(tmp_path / "v.csv")])
    x, _, context = train_data.read_inputs(args)
    assert train_data.split_parts(x, args, context)[1][0].shape == (20, 3)

    # `info` lists them as a header gives them: "a, b, c" read as four columns
    flow = kerasflows.models.RealNVP(3, num_layers=1, hidden_units=(8,))
    flow.save(tmp_path / "m.keras")
    write_training_record(tmp_path / "m.keras", {"columns": ["id", "# visits", "income, USD"]})
    assert 'columns: id, "# visits", "income, USD"\n' in _run(capsys, "info",
                                                               tmp_path / "m.keras")


def test_a_context_file_whose_header_names_the_context_otherwise_is_refused(tmp_path, capsys):
    # DATA's header was checked against the model's columns; a --context file's was not,
    # and its columns in another order were read silently as the wrong coordinates
    flow = kerasflows.models.RealNVP(2, num_layers=1, hidden_units=(8,), context_dim=2)
    model = tmp_path / "c.keras"
    flow.save(model)
    write_training_record(model, {"columns": ["x", "y"], "context_columns": ["age", "income"]})
    np.savetxt(tmp_path / "x.csv", np.zeros((3, 2)), delimiter=",", header="x,y", comments="")
    for name, header in (("right.csv", "age,income"), ("swapped.csv", "income,age"),
                         ("plain.csv", None)):
        np.savetxt(tmp_path / name, np.ones((3, 2)), delimiter=",", header=header or "",
                   comments="")
    _run(capsys, "evaluate", model, tmp_path / "x.csv", "--context", tmp_path / "right.csv")
    _run(capsys, "evaluate", model, tmp_path / "x.csv", "--context", tmp_path / "plain.csv")
    refused = (f"{tmp_path / 'swapped.csv'}'s columns are income, age; {model} was trained on "
               "context columns age, income (the same names in another order).")
    _assert_user_errors([
        (["evaluate", model, tmp_path / "x.csv", "--context", tmp_path / "swapped.csv"],
         refused),
        (["sample", model, "-n", "3", "--context", tmp_path / "swapped.csv", "-o",
          tmp_path / "s.npy"], refused),
        (["plot", model, "-o", tmp_path / "p.png", "--context", tmp_path / "swapped.csv"],
         refused)], capsys)


def test_export_names_the_context_columns_from_the_record_or_the_model_folders_manifest(
        tmp_path, capsys):
    """The export's kerasflows.json named the data's columns but not the context's: a
    client of the SavedModel could not tell which context column was which (the CLI
    refuses a --context file naming them in another order; the export said nothing),
    and the visualizer showed an export's context as c1, c2."""
    from kerasflows.export import saved_model_metadata
    from visualizer import opening
    flow = kerasflows.models.RealNVP(2, num_layers=1, hidden_units=(8,), context_dim=2)
    model = tmp_path / "c.keras"
    flow.save(model)
    write_training_record(model, {"columns": ["x", "y"], "context_columns": ["age", "income"]})
    _run(capsys, "export", model, tmp_path / "served")
    meta = saved_model_metadata(tmp_path / "served")
    assert meta["context_columns"] == ["age", "income"] and meta["columns"] == ["x", "y"]
    assert "context: 2 columns (age, income)\n" in _run(capsys, "info", tmp_path / "served")
    from visualizer import paths
    assert opening._context_names(None, 2, opening._record(paths.resolve(
        tmp_path / "served")).get("context_columns")) == ["age", "income"]
    # a model folder (saved_models/<name>/) names them in its manifest
    folder = tmp_path / "folder"
    folder.mkdir()
    flow.save(folder / "flow.keras")
    (folder / "manifest.json").write_text(json.dumps({"context_names": ["p", "q"]}))
    _run(capsys, "export", folder, tmp_path / "from_folder")
    assert saved_model_metadata(tmp_path / "from_folder")["context_columns"] == ["p", "q"]
    _run(capsys, "export", folder / "flow.keras", tmp_path / "unnamed")
    assert saved_model_metadata(tmp_path / "unnamed")["context_columns"] is None


def test_plot_says_what_it_draws_of_one_column_and_how_many_context_rows_it_takes(tmp_path,
                                                                                 capsys):
    one = kerasflows.models.MAF(1, num_layers=1, hidden_units=(8,))
    one.save(tmp_path / "one.keras")
    said = ("this flow has one column (event_dim=1), and --what {} draws two of a flow's "
            "coordinates; --what pairs draws the column's samples as a histogram.")
    conditional = kerasflows.models.RealNVP(2, num_layers=1, hidden_units=(8,), context_dim=2)
    conditional.save(tmp_path / "c.keras")
    np.save(tmp_path / "three.npy", np.ones((3, 2), np.float32))
    _assert_user_errors([
        (["plot", tmp_path / "one.keras", "-o", tmp_path / "p.png", "--region", "0,1,0,1"],
         said.format("both")),
        (["plot", tmp_path / "one.keras", "-o", tmp_path / "p.png", "--what", "samples",
          "--dims", "1,2"], said.format("samples")),
        (["plot", tmp_path / "c.keras", "-o", tmp_path / "p.png", "--context",
          tmp_path / "three.npy"], "--context has 3 rows; expected 1 row (one per picture).")],
        capsys)
    out = _run(capsys, "plot", tmp_path / "one.keras", "-o", tmp_path / "p.png", "--what",
               "pairs", "--resolution", "32", "-n", "200")
    # (it said "every pair of x1: 200 samples below the diagonal (2-D histograms)")
    assert re.search(r"Wrote .*p\.png \(32x32\): a histogram of 200 samples of x1 \(filled "
                     r"orange\) on \[-?\d", out) and "pair" not in out, out
    assert _png(tmp_path / "p.png").shape[:2] == (32, 32)
    # the default, both, falls back to that histogram (it refused, its help saying it
    # falls back for other flows)
    out = _run(capsys, "plot", tmp_path / "one.keras", "-o", tmp_path / "d.png",
               "--resolution", "32", "-n", "200")
    assert "a histogram of 200 samples of x1" in out
    np.testing.assert_array_equal(_png(tmp_path / "d.png"), _png(tmp_path / "p.png"))


def test_splits_that_leave_one_training_row_are_refused_as_a_one_row_file_is(tmp_path, capsys):
    """Three rows with --test-split and --validation-split 0.34 trained on one row, with
    a raw UserWarning from the library (0-based columns, Python advice), where a file
    of one row is refused."""
    np.savetxt(tmp_path / "three.csv", [[1.5, 2.1], [0.3, 0.9], [2.2, 1.7]], delimiter=",",
               header="a,b", comments="")
    base = ["train", tmp_path / "three.csv", "--out", tmp_path / "t.keras"]
    _assert_user_errors([
        (base + ["--test-split", "0.34", "--validation-split", "0.34"],
         f"{tmp_path / 'three.csv'}: one training row left after the test and validation "
         "splits (3 rows, 1 to test, 1 to validate); a density fitted to one point has no "
         "maximum."),
        (base + ["--test-split", "0.5", "--validation-split", "0.9"],
         "no training rows left after the test and validation splits")], capsys)
    assert not (tmp_path / "t.keras").exists()


def test_a_column_that_float32_reads_as_one_value_is_named_as_such(tmp_path):
    # 1e8 + 0.001 k are 200 values, one in float32: train said the column "holds one
    # value in every row" and to drop it
    stamps = 1e8 + 0.001 * np.arange(200)
    table = np.column_stack([np.random.default_rng(0).normal(size=200), stamps])
    np.savetxt(tmp_path / "t.csv", table, delimiter=",", fmt="%.3f")
    assert _csv_error(tmp_path / "t.csv") == (
        f"{tmp_path / 't.csv'}: column 2's values differ only beyond float32's 7 significant "
        "digits, which the flow computes in: they all read as 100000000. Subtract an offset "
        "from the column (or rescale it) so that its differences show.")
    np.save(tmp_path / "t.npy", table)                    # float64 .npy files alike
    assert "column 2's values differ only beyond" in _csv_error(tmp_path / "t.npy")
    # and integers beyond 2**24 (called "one value, 1.67772e+07, in every row")
    counts = np.column_stack([np.arange(200), 2 ** 24 + np.arange(200) % 2]).astype(np.int64)
    np.save(tmp_path / "i.npy", counts)
    assert ("column 2's values differ only beyond float32's 7 significant digits, which the "
            "flow computes in: they all read as 16777216.") in _csv_error(tmp_path / "i.npy")
    table[:, 1] -= 1e8                                    # the offset taken off: read
    np.savetxt(tmp_path / "ok.csv", table, delimiter=",", fmt="%.3f")
    from kerasflows.cli.data import read_array
    assert len(np.unique(read_array(str(tmp_path / "ok.csv"))[:, 1])) == 200


def test_train_tensorboard_on_one_column_logs_the_losses_and_says_pictures_need_two(
        tmp_path, capsys):
    """A one-column file with --tensorboard died after epoch 1 ("FlowImages draws flows
    of 2 or more dimensions") and wrote no model."""
    from test_callbacks import read_scalars
    np.save(tmp_path / "col1.npy", np.random.default_rng(0).standard_normal((300, 1)))
    logs = tmp_path / "tb"
    out = _run(capsys, "train", tmp_path / "col1.npy", "--recipe", "maf", "--layers", "1",
               "--hidden", "4", "--epochs", "2", "--out", tmp_path / "c.keras",
               "--tensorboard", logs)
    assert out.count("pictures need 2 or more columns") == 1
    history = json.loads((tmp_path / "c.json").read_text())["history"]
    for run, key in (("train", "loss"), ("validation", "val_loss")):
        steps, values = zip(*read_scalars(logs / run))
        assert steps == (0, 1)
        np.testing.assert_allclose(values, history[key], rtol=1e-6)
    assert not (logs / "flow").exists()
    assert kerasflows.load(tmp_path / "c.keras").event_dim == 1


def test_train_one_column_with_a_coupling_recipe_names_the_recipes_that_take_it(
        tmp_path, capsys):
    np.save(tmp_path / "col1.npy", np.random.default_rng(0).standard_normal((300, 1)))
    says = ("--recipe {} needs data of 2 or more columns: its coupling layers split the "
            "columns in two; received 1 column. Use --recipe maf, iaf or nsf_ar.")
    _assert_user_errors([(["train", tmp_path / "col1.npy", *flags], says.format(recipe))
                         for flags, recipe in (([], "nsf"), (["--recipe", "glow"], "glow"),
                                               (["--recipe", "realnvp"], "realnvp"),
                                               (["--recipe", "nice"], "nice"))], capsys)
    _run(capsys, "train", tmp_path / "col1.npy", "--recipe", "nsf_ar", "--layers", "1",
         "--hidden", "4", "--epochs", "1", "--out", tmp_path / "ar.keras", "--quiet")
