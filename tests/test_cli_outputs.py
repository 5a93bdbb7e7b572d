"""The `kerasflows` command's outputs: `evaluate` scores points that `train` never
drew, outputs that name one path are refused before training, and the JSON it
writes is strict JSON (null, never a bare NaN)."""

import errno
import json
import os

import numpy as np
import pytest

import kerasflows
import kerasflows.distributed
from kerasflows.cli import main

TINY = ["--epochs", "1", "--layers", "1", "--hidden", "4", "--recipe", "realnvp",
        "--batch-size", "64", "--quiet"]


# tests of what `train` writes: its step as a plain graph (conftest)
pytestmark = pytest.mark.usefixtures("train_steps_without_xla")


def _run(capsys, *argv):
    status = main([str(a) for a in argv])
    out = capsys.readouterr()
    assert status == 0, out.err
    return out.out


def _strict_json(text):
    """`json.loads` that refuses NaN and Infinity, as JavaScript and jq do."""
    def refuse(constant):
        raise ValueError(f"not JSON: {constant}")
    return json.loads(text, parse_constant=refuse)


def _scored_rows(monkeypatch):
    """The rows (and contexts) each `evaluate` run goes on to score."""
    scored = []
    real = kerasflows.distributed.evaluate_nll

    def spy(flow, x, context=None, **kwargs):
        scored.append((np.asarray(x), None if context is None else np.asarray(context)))
        return real(flow, x, context=context, **kwargs)
    monkeypatch.setattr(kerasflows.distributed, "evaluate_nll", spy)
    return scored


def _shared_rows(a, b):
    return len({r.tobytes() for r in a} & {r.tobytes() for r in b})


def test_evaluate_on_a_dataset_name_scores_points_train_never_drew(tmp_path, capsys,
                                                                    monkeypatch):
    """evaluate drew a name's points with seed 0 and n=10000, train's defaults: its
    NLL was mostly over the rows the model was trained on."""
    scored = _scored_rows(monkeypatch)
    # the rows drawn do not depend on the model: a small one, fast to load
    kerasflows.models.RealNVP(2, num_layers=1, hidden_units=(4,)).save(tmp_path / "m.keras")
    for extra, train_seed in (([], 0), (["--seed", "7"], 7)):
        result = _strict_json(_run(capsys, "evaluate", tmp_path / "m.keras", "moons", "--n",
                                   "500", "--json", *extra))
        x, _ = scored.pop()
        trained_on = kerasflows.datasets.load("moons", n=500, seed=train_seed)
        assert len(x) == 500 and _shared_rows(x, trained_on) == 0, extra
        assert result["data_seed"] == 2**31 + train_seed
    np.testing.assert_array_equal(x, kerasflows.datasets.load("moons", n=500, seed=2**31 + 7))
    # a conditional set by name too
    flow = kerasflows.models.RealNVP(2, num_layers=1, hidden_units=(4,), context_dim=1)
    flow.save(tmp_path / "ring.keras")
    _run(capsys, "evaluate", tmp_path / "ring.keras", "ring_radius", "--n", "300")
    x, c = scored.pop()
    trained_x, trained_c = kerasflows.datasets.load_conditional("ring_radius", n=300, seed=0)
    assert _shared_rows(x, trained_x) == 0 and _shared_rows(c, trained_c) == 0
    with pytest.raises(SystemExit):
        main(["evaluate", "--help"])
    assert "NumPy seed 2**31 + SEED, which train never draws with: fresh points" in " ".join(
        capsys.readouterr().out.split())


@pytest.mark.parametrize("argv, says", [
    (["train", "moons", "--out", "m.keras", "--checkpoint-dir", "m.keras"],
     "--out and --checkpoint-dir both name m.keras; give each its own path."),
    (["train", "moons", "--out", "m.keras", "--checkpoint-dir", "m.json"],
     "--report and --checkpoint-dir both name m.json"),
    (["train", "moons", "--out", "m.keras", "--report", "r.json", "--tensorboard", "./r.json"],
     "--report and --tensorboard both name ./r.json"),
    (["train", "moons", "--out", "m.keras", "--tensorboard", "m.keras"],
     "--out and --tensorboard both name m.keras"),
    (["train", "moons", "--out", "m.keras", "--checkpoint-dir", "ck", "--tensorboard", "ck"],
     "--checkpoint-dir and --tensorboard both name ck"),
    (["train", "moons", "--out", "m.keras", "--report", "m.checkpoint"],   # the default folder
     "--report and --checkpoint-dir both name m.checkpoint"),
    (["fit-target", "--target", "u1", "--recipe", "planar", "--model-dir", "u1",
      "--report", "u1"], "--report and --model-dir both name u1; give each its own path."),
    (["fit-target", "--target", "u1", "--recipe", "planar", "--model-dir", "u1",
      "--report", "u1/manifest.json"], "--report and --model-dir both name u1/manifest.json"),
])
def test_output_folders_named_by_another_output_fail_before_training(
        argv, says, tmp_path, capsys, monkeypatch):
    """A --checkpoint-dir or --tensorboard naming --out or --report (or fit-target's
    --report naming what --model-dir holds) failed only after training, losing it."""
    from kerasflows.cli import fit_target

    def no_training(*args, **kwargs):
        raise AssertionError("training started")
    monkeypatch.setattr(kerasflows.distributed, "train_flow", no_training)
    monkeypatch.setattr(fit_target, "_train", no_training)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and f"kerasflows: error: {says}" in err, err
    assert os.listdir() == []           # nothing written


def test_checkpoint_dir_named_like_the_report_loses_nothing_when_refused(tmp_path, capsys,
                                                                         monkeypatch):
    """The reviewer's run: training finished, then the report could not be written."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit):
        main(["train", "moons", "--n", "256", *TINY, "--out", "m.keras",
              "--checkpoint-dir", "m.json"])
    assert "both name m.json" in capsys.readouterr().err and os.listdir() == []


def test_json_outputs_write_null_for_a_standard_error_of_one_row(tmp_path, capsys):
    """One row has no standard error: evaluate --json and the train report wrote a
    bare NaN, which strict JSON readers refuse."""
    np.save(tmp_path / "x.npy", np.random.default_rng(0).normal(size=(40, 2)).astype("float32"))
    np.save(tmp_path / "t.npy", np.array([[0.1, 0.2]], np.float32))
    out = _run(capsys, "train", tmp_path / "x.npy", "--test-data", tmp_path / "t.npy", *TINY,
               "--out", tmp_path / "m.keras")
    report = _strict_json((tmp_path / "m.json").read_text())
    assert report["n_test"] == 1 and report["test_nll_se"] is None
    assert np.isfinite(report["test_nll"]) and f"test {report['test_nll']:.4f}" in out
    record = kerasflows.loading.training_record(tmp_path / "m.keras")
    assert record["test_nll_se"] is None
    # evaluate of one row, with the model just trained (a small one: it loads fast)
    np.save(tmp_path / "one.npy", np.array([[0.5, -0.25]], np.float32))
    result = _strict_json(_run(capsys, "evaluate", tmp_path / "m.keras", tmp_path / "one.npy",
                               "--json"))
    assert result["n"] == 1 and result["nll_se"] is None and np.isfinite(result["nll"])
    text = _run(capsys, "evaluate", tmp_path / "m.keras", tmp_path / "one.npy")
    assert f"{result['nll']:.4f} nats per example (no s.e. from one row, n=1)" in text


@pytest.mark.parametrize("at_epoch, said", [
    (1, "keeps the last finished epoch; a rerun with another --lr starts over once "
        "{checkpoint} is deleted"),       # the file, not the folder (which may hold others)
    (0, "No epoch finished, so no checkpoint was kept")])
def test_a_diverged_run_says_what_its_checkpoint_keeps(tmp_path, capsys, monkeypatch, at_epoch,
                                                        said):
    # "lower the learning rate" alone: the rerun with another --lr was then refused
    real = kerasflows.distributed._run_epoch

    def diverging(step, data, steps, epoch, *args, **kwargs):
        if epoch == at_epoch:
            raise FloatingPointError(f"Training diverged: loss nan at epoch {epoch + 1}, "
                                     "step 1; lower the learning rate.")
        return real(step, data, steps, epoch, *args, **kwargs)
    monkeypatch.setattr(kerasflows.distributed, "_run_epoch", diverging)
    out = tmp_path / "m.keras"
    with pytest.raises(SystemExit) as failed:
        main(["train", "moons", "--n", "400", *TINY, "--epochs", "2", "--out", str(out)])
    err = capsys.readouterr().err
    said = said.format(checkpoint=tmp_path / "m.checkpoint" / "checkpoint.npz")
    assert failed.value.code == 1 and said in err and "lower the learning rate" in err
    assert os.path.exists(tmp_path / "m.checkpoint" / "checkpoint.npz") == (at_epoch == 1)


def test_marginals_threshold_counts_only_the_finite_samples():
    # the gaps leave out samples that are not finite; the threshold counted them
    import tensorflow as tf
    from kerasflows import marginals
    from kerasflows.cli.evaluate import column_marginals

    class Flow:         # what column_marginals asks of a flow: samples, 300 of 1000 NaN
        def sample(self, n, context=None, seed=0):
            x = np.random.default_rng(seed).normal(size=(n, 2))
            x[:300, 1] = np.nan
            return tf.constant(x)
    x = np.random.default_rng(9).normal(size=(1000, 2))
    found = column_marginals(Flow(), x)
    assert found["ks_threshold"] == pytest.approx(marginals.ks_threshold(700, 1000, 0.025))
    assert found["ks_threshold"] > marginals.ks_threshold(1000, 1000, 0.025)


def _full_disk(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.mark.parametrize("fails, option, kept", [
    ("checkpoint 2", "--checkpoint-dir", 1),
    ("checkpoint 1", "--checkpoint-dir", 0),
    ("model", "--out", 2),
    ("model", "--out --save-every-epoch", 1),
    ("report", "--report", 2)])
def test_a_full_disk_names_the_output_and_what_the_checkpoint_keeps(tmp_path, capsys,
                                                                     monkeypatch, fails,
                                                                     option, kept):
    """A full disk gave a bare `[Errno 28] No space left on device`, naming neither the
    output nor the checkpoint a rerun goes on from."""
    import kerasflows.checkpoint
    from kerasflows.checkpoint import EpochCheckpoint
    saves = []
    if fails.startswith("checkpoint"):
        real_savez = np.savez

        def savez(*args, **kwargs):
            saves.append(1)
            if len(saves) == int(fails.split()[1]):
                _full_disk()
            return real_savez(*args, **kwargs)
        monkeypatch.setattr(kerasflows.checkpoint.np, "savez", savez)
    elif fails == "model":
        monkeypatch.setattr(kerasflows.Flow, "save", _full_disk)
    else:                   # the report's bytes fail to go to disk
        import kerasflows.cli.train
        real_write = kerasflows.cli.train.write_output
        monkeypatch.setattr(kerasflows.cli.train, "write_output", lambda path, write: (
            real_write(path, _full_disk) if path == str(tmp_path / "m.json")
            else real_write(path, write)))
    checkpoint = tmp_path / "m.checkpoint"
    paths = {"--checkpoint-dir": checkpoint, "--out": tmp_path / "m.keras",
             "--report": tmp_path / "m.json"}
    argv = ["train", "moons", "--n", "300", *TINY, "--epochs", "2",
            "--out", str(tmp_path / "m.keras"), *option.split()[1:]]
    with pytest.raises(SystemExit) as failed:
        main(argv)
    advice = (f"the checkpoint in {checkpoint} keeps {kept} finished "
              f"epoch{'s' if kept > 1 else ''}: free space and rerun the same command to "
              "resume from it." if kept else
              "no checkpoint was kept: free space and rerun the command to start again.")
    assert capsys.readouterr().err == (
        f"kerasflows: error: cannot write {option.split()[0]} {paths[option.split()[0]]}: No "
        f"space left on device; {advice}\n")
    assert failed.value.code == 2
    assert EpochCheckpoint(checkpoint, {}).epochs_done() == kept
    assert [p.name for p in tmp_path.iterdir()
            if any(part in p.name for part in (".tmp", "saving", ".part"))] == []
    if fails == "model" and kept == 2:      # space freed: the rerun saves the trained flow
        monkeypatch.undo()
        def trained(*args, **kwargs):
            raise AssertionError("the rerun trained again")
        monkeypatch.setattr(kerasflows.distributed, "_run_epoch", trained)
        _run(capsys, *argv)
        assert (tmp_path / "m.keras").exists() and not checkpoint.exists()


# -- sample, plot and export: what a failed write leaves ------------------------------------
@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny") / "t.keras"
    kerasflows.models.RealNVP(2, num_layers=1, hidden_units=(4,)).save(path)
    return path


def _refused(capsys, *argv):
    with pytest.raises(SystemExit) as failed:
        main([str(a) for a in argv])
    assert failed.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("kerasflows: error: "), lines
    return lines[0]


def _half_written(f, *args, **kwargs):
    f.write(b"half a file")
    _full_disk()


@pytest.mark.parametrize("command, out", [("sample", "s.npy"), ("sample", "s.csv"),
                                          ("plot", "p.png")])
def test_a_full_disk_keeps_the_output_there_before_and_leaves_no_part(
        tmp_path, capsys, monkeypatch, tiny_model, command, out):
    """sample and plot wrote straight onto --out: a full disk left a truncated file
    (an .npy NumPy could not load, a CSV whose last row was cut) in place of a good
    one, and said only `[Errno 28] ...` or `400000 requested and 255968 written`."""
    import kerasflows.cli.common
    argv = [command, tiny_model, "-n", "50", *(["--resolution", "16"] if command == "plot"
                                              else []), "-o", tmp_path / out]
    _run(capsys, *argv)
    before = (tmp_path / out).read_bytes()
    real_write = kerasflows.cli.common.write_output
    monkeypatch.setattr(kerasflows.cli.common, "write_output",
                        lambda path, write: real_write(path, _half_written))
    if command == "plot":
        import kerasflows.cli.plot
        monkeypatch.setattr(kerasflows.cli.plot, "write_output",
                            kerasflows.cli.common.write_output)
    said = _refused(capsys, *argv[:-1], tmp_path / "new" / "sub" / out)
    assert said == (f"kerasflows: error: cannot write --out {tmp_path / 'new' / 'sub' / out}: "
                    "No space left on device; nothing was written.")
    said = _refused(capsys, *argv)
    assert said == (f"kerasflows: error: cannot write --out {tmp_path / out}: No space left "
                    "on device; the file there before is kept.")
    assert (tmp_path / out).read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [out]     # no part file, no folder


def test_refused_sample_and_plot_runs_make_no_folder(tmp_path, capsys, tiny_model):
    """Their --out folders were made before the model was opened and the context read."""
    _refused(capsys, "sample", tmp_path / "missing.keras", "-o", tmp_path / "a" / "b" / "s.npy")
    _refused(capsys, "sample", tiny_model, "--context", "1", "-o", tmp_path / "c" / "s.npy")
    _refused(capsys, "plot", tmp_path / "missing.keras", "-o", tmp_path / "d" / "p.png")
    (tmp_path / "s.npy").mkdir()
    assert _refused(capsys, "sample", tiny_model, "-o", tmp_path / "s.npy").endswith(
        f"--out {tmp_path / 's.npy'} is a folder; expected a file name.")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.npy"]


def test_export_names_dir_when_tensorflow_cannot_write_and_keeps_the_model_it_reads(
        tmp_path, capsys, monkeypatch, tiny_model):
    import shutil
    import tensorflow as tf
    served = tmp_path / "srv"
    (served / "1").mkdir(parents=True)
    inside = served / "1" / "flow.keras"
    shutil.copy(tiny_model, inside)
    said = _refused(capsys, "export", inside, served, "--overwrite")
    assert said == (f"kerasflows: error: {inside} is inside {served / '1'}, which the export "
                    "replaces; write the SavedModel to another DIR or --version.")
    assert inside.exists()

    def full_disk(*args, **kwargs):     # TensorFlow's file errors are OpErrors, no OSError
        raise tf.errors.ResourceExhaustedError(None, None, "saved_model.pb; No space left")
    monkeypatch.setattr(tf.saved_model, "save", full_disk)
    said = _refused(capsys, "export", tiny_model, tmp_path / "new")
    assert said == (f"kerasflows: error: cannot write the SavedModel to DIR {tmp_path / 'new'}: "
                    "saved_model.pb; No space left; DIR is as it was.")
    assert not (tmp_path / "new").exists()
    # a folder of DIR that cannot be made (under /proc, say) is named, and none of
    # those made before it is left: it was "[Errno 2] No such file or directory: ..."
    import errno
    import os
    mkdir = os.mkdir

    def refusing(path, *args, **kwargs):
        if os.path.basename(path) == "b":
            raise OSError(errno.ENOENT, "No such file or directory", path)
        return mkdir(path, *args, **kwargs)
    monkeypatch.setattr(os, "mkdir", refusing)
    said = _refused(capsys, "export", tiny_model, tmp_path / "a" / "b" / "c")
    assert said == (f"kerasflows: error: cannot write the SavedModel to DIR "
                    f"{tmp_path / 'a' / 'b' / 'c'}: No such file or directory "
                    f"({tmp_path / 'a' / 'b'}); DIR is as it was.")
    assert not (tmp_path / "a").exists()


def test_fit_target_on_a_full_disk_keeps_the_model_before_and_leaves_no_half_folder(
        tmp_path, capsys, monkeypatch):
    """fit-target saved with `flow.save(out)` straight over --out: a full disk left a
    .keras of no weights in place of the good one and said only `[Errno 28] ...`;
    a --model-dir write that failed left a broken flow.keras, and the rerun was
    refused ("already holds a flow.keras")."""
    import keras
    argv = ["fit-target", "--target", "u1", "--recipe", "realnvp", "--layers", "1",
            "--hidden", "4", "--epochs", "1", "--steps", "2", "--batch-size", "16",
            "--eval-samples", "50", "--quiet"]
    out = tmp_path / "u1.keras"
    _run(capsys, *argv, "--out", out)
    before = out.read_bytes()
    real_save = keras.Model.save

    def save_then_fill(model, path, *args, **kwargs):
        with open(path, "wb") as f:
            f.write(b"PK half a zip")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(keras.Model, "save", save_then_fill)
    said = _refused(capsys, *argv, "--out", out)
    assert said == (f"kerasflows: error: cannot write --out {out}: No space left on "
                    "device; the file there before is kept.")
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["u1.json", "u1.keras"]
    folder = tmp_path / "u1_dir"
    said = _refused(capsys, *argv, "--model-dir", folder)
    assert said == (f"kerasflows: error: cannot write --model-dir {folder / 'flow.keras'}: "
                    f"No space left on device; what this run wrote in {folder} is removed.")
    assert list(folder.iterdir()) == []
    monkeypatch.setattr(keras.Model, "save", real_save)
    # the SavedModel, written first: TensorFlow's file errors are no OSError (a traceback)
    import tensorflow as tf
    import kerasflows.export

    def full_disk_export(flow, path, **kwargs):
        os.makedirs(path)
        raise tf.errors.ResourceExhaustedError(None, None, f"{path}/1/saved_model.pb; No "
                                                           "space left on device")
    monkeypatch.setattr(kerasflows.export, "export_saved_model", full_disk_export)
    said = _refused(capsys, *argv, "--model-dir", folder)
    assert said.startswith(f"kerasflows: error: cannot write --model-dir {folder / 'saved_model'}"
                           f": {folder / 'saved_model'}/1/saved_model.pb; No space left on "
                           "device; what this run wrote"), said
    assert list(folder.iterdir()) == []
    monkeypatch.undo()
    _run(capsys, *argv, "--model-dir", folder)               # the rerun is not refused
    assert sorted(p.name for p in folder.iterdir()) == ["flow.keras", "manifest.json",
                                                        "saved_model"]


def test_a_float64_models_data_contexts_and_samples_keep_their_digits(tmp_path, capsys):
    """The commands read every data and context file as float32: `evaluate` of a float64
    flow scored data of spread 2e-5 about 300 rounded to float32's 7 digits (0.2 nats
    off, said nowhere), and `sample -o s.csv` wrote its float64 samples with 9 digits."""
    from kerasflows.testing import perturb_weights
    rng = np.random.default_rng(0)
    x = 300 + 2e-5 * rng.standard_normal((400, 2))
    c = 1 + 1e-9 * rng.standard_normal((400, 1))
    flow = kerasflows.models.MAF(2, num_layers=2, hidden_units=(8,), context_dim=1,
                                 dtype="float64", standardize=True)
    flow.initialize(x, context=c)                  # the standardizing ActNorm
    for layer in flow.flow_layers:
        if layer.name != "standardize":
            perturb_weights(layer, 0.3, seed=0)
    flow.save(tmp_path / "m.keras")
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "c.npy", c)
    want = -float(np.mean(flow.log_prob(x, context=c)))
    rounded = -float(np.mean(flow.log_prob(x.astype("float32"), context=c.astype("float32"))))
    assert abs(want - rounded) > 0.05        # float32 would show
    out = _strict_json(_run(capsys, "evaluate", tmp_path / "m.keras", tmp_path / "x.npy",
                            "--context", tmp_path / "c.npy", "--json"))
    assert out["nll"] == pytest.approx(want, abs=1e-6)
    _run(capsys, "sample", tmp_path / "m.keras", "-n", 5, "--seed", 1, "--context", "1.000000001",
         "-o", tmp_path / "s.csv")
    written = np.loadtxt(tmp_path / "s.csv", delimiter=",")
    drawn = flow.sample(5, context=np.full((5, 1), 1.000000001), seed=1).numpy()
    np.testing.assert_array_equal(written, drawn)
    # integers float64 cannot tell apart (2^60 and 2^60 + 1) are refused, as float32's are
    big = np.array([[2**60, 1], [2**60 + 1, 2]], np.int64)
    np.save(tmp_path / "big.npy", big)
    with pytest.raises(SystemExit):
        main(["evaluate", str(tmp_path / "m.keras"), str(tmp_path / "big.npy"), "--context",
              "1"])
    assert ("column 1's values differ only beyond float64's 16 significant digits"
            in capsys.readouterr().err)
