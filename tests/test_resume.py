"""Crash-safe training: kill `kerasflows train` mid-run, rerun the same command, and it
continues from the last finished epoch to the same result as an uninterrupted run."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import kerasflows
from kerasflows.checkpoint import EpochCheckpoint
from kerasflows.cli import main

EPOCHS = 10


def _arguments(tmp_path, name):
    return ["train", str(tmp_path / "data.npy"),
            "--recipe", "realnvp", "--layers", "2", "--hidden", "16", "--epochs", str(EPOCHS),
            "--batch-size", "32", "--lr", "3e-3", "--lr-decay", "cosine", "--seed", "5",
            "--out", str(tmp_path / f"{name}.keras")]


def _start(tmp_path, name):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.Popen([sys.executable, "-m", "kerasflows.cli", *_arguments(tmp_path, name)],
                            env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _finished_epochs(path):
    try:
        with np.load(path) as data:
            return json.loads(str(data["meta"]))["epoch"]
    except (OSError, ValueError, KeyError):
        return 0


def test_killed_run_resumes_from_last_finished_epoch(tmp_path, capsys, monkeypatch):
    """The run killed is a process of its own (SIGKILL: nothing of it runs after);
    the rerun and the uninterrupted reference run `main` in the test's process."""
    np.save(tmp_path / "data.npy", kerasflows.datasets.load("moons", n=1500, seed=1))
    monkeypatch.chdir(tmp_path)
    crashed = _start(tmp_path, "resumed")
    checkpoint = tmp_path / "resumed.checkpoint" / "checkpoint.npz"
    deadline = time.time() + 300
    while _finished_epochs(checkpoint) < 2 and crashed.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert crashed.poll() is None, "the run ended before it could be killed"
    crashed.send_signal(signal.SIGKILL)
    crashed.wait()
    done = _finished_epochs(checkpoint)
    assert 2 <= done < EPOCHS and not (tmp_path / "resumed.keras").exists()

    capsys.readouterr()
    assert main(_arguments(tmp_path, "resumed")) == 0
    assert f"{done} of {EPOCHS} epochs done" in capsys.readouterr().out
    assert main(_arguments(tmp_path, "reference")) == 0

    resumed = json.loads((tmp_path / "resumed.json").read_text())
    uninterrupted = json.loads((tmp_path / "reference.json").read_text())
    assert len(resumed["history"]["loss"]) == EPOCHS
    np.testing.assert_allclose(resumed["history"]["loss"], uninterrupted["history"]["loss"],
                               rtol=1e-5)
    for a, b in zip(kerasflows.load(tmp_path / "resumed.keras").get_weights(),
                    kerasflows.load(tmp_path / "reference.keras").get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert not checkpoint.parent.exists()


def test_checkpoint_refuses_other_settings_and_damaged_files(tmp_path):
    values = [np.arange(3.0), np.int64(7)]
    EpochCheckpoint(tmp_path / "c", {"lr": 0.1, "epochs": 3}).save(2, values, {"loss": [1, 2]})
    epoch, loaded, history = EpochCheckpoint(tmp_path / "c", {"epochs": 3, "lr": 0.1}).load()
    assert epoch == 2 and history == {"loss": [1, 2]}
    np.testing.assert_array_equal(loaded[0], values[0])
    assert int(loaded[1]) == 7
    with pytest.raises(ValueError, match=r"other settings \(differing: lr\)"):
        EpochCheckpoint(tmp_path / "c", {"lr": 0.2, "epochs": 3}).load()
    path = tmp_path / "c" / "checkpoint.npz"
    whole = path.read_bytes()
    path.write_bytes(b"partial")
    with pytest.raises(ValueError, match=r"damaged checkpoint \(not the .npz archive .*b'part'"):
        EpochCheckpoint(tmp_path / "c", {}).load()
    path.write_bytes(whole[:len(whole) // 2])                  # a zip cut short
    with pytest.raises(ValueError, match="damaged checkpoint"):
        EpochCheckpoint(tmp_path / "c", {}).load()
    assert EpochCheckpoint(tmp_path / "none", {}).load() is None


def test_ctrl_c_while_tensorflow_imports_ends_the_command_in_one_line_with_130(tmp_path):
    """The `kerasflows` script imported the package (and TensorFlow, 2-8 s) before
    `main`: a Ctrl-C then printed the import's traceback and the process died by
    the signal. The script's module (`kerasflows_launch`) imports it itself."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "kerasflows_launch", "train", "moons", "--epochs", "500",
         "--out", str(tmp_path / "m.keras")], env=env, cwd=tmp_path, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    time.sleep(0.8)           # in the imports (TensorFlow alone takes longer)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, (proc.returncode, err[-3000:])
    assert "Traceback" not in err, err[-3000:]
    assert err.strip().splitlines()[-1].startswith("kerasflows: error: interrupted"), err
    assert not (tmp_path / "m.keras").exists()
    assert time.perf_counter() - started < 60


def test_train_flow_refuses_another_models_checkpoint_before_writing_a_weight(tmp_path):
    """Without a fingerprint (library use) a checkpoint of another model was assigned
    array by array until Keras failed on an Adam slot, the weights half overwritten.
    The default fingerprint names the model's difference; a caller's own fingerprint
    of equal settings, the first array that differs."""
    from kerasflows.distributed import train_flow
    x = kerasflows.datasets.load("moons", n=512, seed=0)
    wider = kerasflows.models.RealNVP(2, num_layers=1, hidden_units=(32,))
    before = [w.copy() for w in wider.get_weights()]
    for own, says in [(None, r"its config.layers\[0\].config.hidden_units\[0\] is 16 where "
                             r"this model's is 32"),
                      ({"run": 1}, r"array 0 is \(1, 16\) where .*kernel is \(1, 32\)")]:
        folder = tmp_path / f"checkpoint-{own is None}"
        train_flow(lambda: kerasflows.models.RealNVP(2, num_layers=1, hidden_units=(16,)), x,
                   epochs=1, batch_size=256, checkpoint_dir=folder, verbose=0,
                   jit_compile=False, fingerprint=own)
        with pytest.raises(ValueError, match=rf"The checkpoint in {folder} does not fit this "
                                             rf"model \({says}\): .*; delete "):
            train_flow(lambda: wider, x, epochs=2, batch_size=256, checkpoint_dir=folder,
                       verbose=0, fingerprint=own)
        for a, b in zip(wider.get_weights(), before):
            np.testing.assert_array_equal(a, b)


def test_train_flow_resumes_only_its_own_run(tmp_path):
    """Without a fingerprint (library use) any checkpoint of the same model was resumed:
    a call with other data and epochs=1 returned the earlier flow untrained, with the
    earlier 3-epoch history."""
    from kerasflows.distributed import train_flow
    build = lambda: kerasflows.models.RealNVP(2, num_layers=1, hidden_units=(8,))
    moons = kerasflows.datasets.load("moons", n=256, seed=0)
    folder = tmp_path / "checkpoint"
    run = dict(batch_size=128, checkpoint_dir=folder, verbose=0, jit_compile=False)
    _, first = train_flow(build, moons, epochs=2, **run)
    # the same run asked for more epochs goes on from the checkpoint
    _, longer = train_flow(build, moons, epochs=3, **run)
    assert longer["loss"][:2] == first["loss"] and len(longer["loss"]) == 3
    with pytest.raises(ValueError, match=r"has 3 epochs done, more than epochs=1"):
        train_flow(build, moons, epochs=1, **run)
    rings = kerasflows.datasets.load("rings", n=256, seed=0)
    for data, kwargs, differing in ((rings, {}, "train_flow_data_sha256"),
                                    (moons, {"learning_rate": 3e-3}, "train_flow_learning_rate"),
                                    (moons, {"seed": 1}, "train_flow_seed")):
        with pytest.raises(ValueError, match=rf"other settings \(differing: .*{differing}"):
            train_flow(build, data, epochs=4, **run, **kwargs)


def test_train_flow_refuses_a_checkpoint_of_an_older_kerasflows_naming_what_it_lacks(tmp_path):
    """train_flow's checkpoints recorded no settings before its fingerprint existed: the
    same script rerun was told 'other settings ... rerun the same command'."""
    from kerasflows.distributed import train_flow
    build = lambda: kerasflows.models.RealNVP(2, num_layers=1, hidden_units=(4,))
    moons = kerasflows.datasets.load("moons", n=256, seed=0)
    folder = tmp_path / "checkpoint"

    def crash(epoch, flow, history):
        raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        train_flow(build, moons, epochs=2, batch_size=128, checkpoint_dir=folder, verbose=0,
                   on_epoch_end=crash, jit_compile=False)
    path = folder / "checkpoint.npz"
    with np.load(path) as data:       # as an older kerasflows wrote it: no fingerprint
        arrays = {name: data[name] for name in data.files}
    meta = json.loads(str(arrays["meta"]))
    arrays["meta"] = np.array(json.dumps({**meta, "fingerprint": {}}))
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match=rf"^{path} was written by an older kerasflows, which "
                                         r"did not record train_flow_batch_size, .*; it cannot "
                                         rf"be resumed safely: delete {path} to start afresh"):
        train_flow(build, moons, epochs=2, batch_size=128, checkpoint_dir=folder, verbose=0)


def test_sigterm_ends_train_as_ctrl_c_does_with_status_143(tmp_path, capsys, monkeypatch,
                                                             train_steps_without_xla):
    """SIGTERM (what a batch scheduler sends) ended `train` at once: no message of what
    the checkpoint keeps, and a model being saved was left beside --out."""
    import kerasflows.distributed
    real = kerasflows.distributed.train_flow

    def stopped_after_one_epoch(*args, on_epoch_end=None, **kwargs):
        def hook(done, flow, history):
            if on_epoch_end is not None:
                on_epoch_end(done, flow, history)
            if done == 1:
                os.kill(os.getpid(), signal.SIGTERM)
        return real(*args, on_epoch_end=hook, **kwargs)
    monkeypatch.setattr(kerasflows.distributed, "train_flow", stopped_after_one_epoch)
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(SystemExit) as ended:
        main(["train", "moons", "--n", "300", "--epochs", "3", "--batch-size", "100",
              "--layers", "1", "--hidden", "4", "--out", str(tmp_path / "m.keras"), "--quiet"])
    assert ended.value.code == 143
    assert capsys.readouterr().err.strip() == (
        f"kerasflows: error: interrupted; the checkpoint in {tmp_path / 'm.checkpoint'} keeps "
        "the last finished epoch: rerun the same command to resume from it.")
    assert _finished_epochs(tmp_path / "m.checkpoint" / "checkpoint.npz") == 1
    assert signal.getsignal(signal.SIGTERM) is before
