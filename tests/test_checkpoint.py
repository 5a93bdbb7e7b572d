"""`EpochCheckpoint`: one run a checkpoint folder (its lock), a temporary file of the
writing process's own, and refusals that name the checkpoint file, not its folder."""

import errno
import os
import re
import subprocess
import sys

import numpy as np
import pytest

import kerasflows
from kerasflows import checkpoint as checkpoint_module
from kerasflows.checkpoint import CheckpointInUseError, EpochCheckpoint
from kerasflows.cli import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Another run holding a folder's lock: checkpoint.py loaded on its own (no TensorFlow
# to import), the lock held until the test closes the process' stdin or kills it.
_HOLDER = """
import importlib.util, sys
spec = importlib.util.spec_from_file_location("checkpoint", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
with module.EpochCheckpoint(sys.argv[2], {}).lock():
    print("held", flush=True)
    sys.stdin.read()
"""


@pytest.fixture
def other_run():
    """`hold(folder)`: a process of its own that holds `folder`'s lock (returned once it
    does); killed at the end of the test."""
    started = []

    def hold(folder):
        proc = subprocess.Popen(
            [sys.executable, "-c", _HOLDER, checkpoint_module.__file__, str(folder)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        started.append(proc)
        assert proc.stdout.readline().strip() == "held"
        return proc
    yield hold
    for proc in started:
        proc.kill()
        proc.wait()


def test_a_second_run_on_a_held_folder_is_refused_until_the_holder_dies(tmp_path, other_run):
    """Two runs on one folder wrote the same checkpoint.npz.tmp and checkpoint.npz, each
    resuming the other's state; the lock is the OS's, so a killed holder leaves none."""
    folder = tmp_path / "ck"
    holder = other_run(folder)
    with pytest.raises(CheckpointInUseError,
                       match=rf"The checkpoint folder {folder} is in use by another run "
                             rf"\(process {holder.pid}, which holds .*checkpoint.lock\)"):
        with EpochCheckpoint(folder, {}).lock():
            pass
    holder.kill()           # as a crash leaves it: no chance to let go
    holder.wait()
    with EpochCheckpoint(folder, {}).lock():
        with EpochCheckpoint(folder, {}).lock():      # re-entrant in one process
            assert (folder / "checkpoint.lock").read_text() == f"{os.getpid()}\n"
    assert os.listdir(folder) == []       # the lock file goes with the lock


def test_train_flow_and_train_refuse_a_folder_another_run_trains_in(tmp_path, capsys,
                                                                     other_run):
    x = kerasflows.datasets.load("moons", n=256, seed=0)
    folder = tmp_path / "m.checkpoint"
    EpochCheckpoint(folder, {"the other run's": 1}).save(3, [np.ones(2)], {"loss": [1, 2, 3]})
    before = (folder / "checkpoint.npz").read_bytes()
    holder = other_run(folder)
    with pytest.raises(CheckpointInUseError, match=f"{folder} is in use by another run"):
        kerasflows.distributed.train_flow(
            lambda: kerasflows.models.RealNVP(2, num_layers=1, hidden_units=(4,)), x,
            epochs=1, batch_size=128, checkpoint_dir=folder, verbose=0)
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "moons", "--n", "200", "--layers", "1", "--hidden", "4", "--epochs",
              "1", "--quiet", "--out", str(tmp_path / "m.keras")])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == (
        f"kerasflows: error: --checkpoint-dir {folder} is in use by another run (process "
        f"{holder.pid}), whose checkpoints this run would overwrite; wait for it to finish, "
        "or give this run its own --checkpoint-dir (by default --out with .checkpoint).\n")
    assert (folder / "checkpoint.npz").read_bytes() == before
    assert not (tmp_path / "m.keras").exists()


def test_the_lock_leaves_the_folder_as_it_found_it(tmp_path):
    """The lock file goes with the lock; a folder of one's own stays, a folder the lock
    made goes, and so does one whose checkpoint a finished run deleted, when empty."""
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    checkpoint = EpochCheckpoint(mine, {})
    with checkpoint.lock():
        checkpoint.save(1, [np.zeros(2)], {"loss": [1.0]})
        (mine / "checkpoint.npz.12345.tmp").write_bytes(b"left by a killed run")
        checkpoint.delete()
    assert sorted(os.listdir(mine)) == ["notes.txt"]
    empty = tmp_path / "empty"
    empty.mkdir()
    with EpochCheckpoint(empty, {}).lock():
        EpochCheckpoint(empty, {}).save(1, [np.zeros(2)], {"loss": [1.0]})
    assert sorted(os.listdir(empty)) == ["checkpoint.npz"]     # kept, as after a crash
    with EpochCheckpoint(empty, {}).lock():
        EpochCheckpoint(empty, {}).delete()
    assert not empty.exists()


def test_a_save_writes_a_temporary_file_of_its_own_and_a_failed_one_keeps_the_last(
        tmp_path, monkeypatch):
    folder = tmp_path / "ck"
    checkpoint = EpochCheckpoint(folder, {"seed": 1})
    checkpoint.save(1, [np.arange(3.0)], {"loss": [1.0]})
    others = folder / "checkpoint.npz.tmp"        # what another run was writing
    others.write_bytes(b"another run's state, half written")
    checkpoint.save(2, [np.arange(3.0) + 1], {"loss": [1.0, 0.5]})
    assert others.read_bytes() == b"another run's state, half written"
    others.unlink()

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(checkpoint_module.np, "savez", full)
    with pytest.raises(OSError, match=rf"No space left on device: '{folder}/checkpoint.npz'"):
        checkpoint.save(3, [np.arange(3.0) + 2], {"loss": [1.0, 0.5, 0.4]})
    monkeypatch.undo()
    assert sorted(os.listdir(folder)) == ["checkpoint.npz"]       # no partial copy left
    epoch, values, _ = checkpoint.load()
    assert epoch == 2 and values[0].tolist() == [1.0, 2.0, 3.0]


def test_refusals_name_the_checkpoint_file_not_its_folder(tmp_path):
    """The folder may hold the user's own files (`delete` keeps them): the refusals
    said to delete the folder."""
    folder = tmp_path / "runs"
    EpochCheckpoint(folder, {"seed": 1}).save(3, [np.zeros(2)], {"loss": [1, 2, 3]})
    path = folder / "checkpoint.npz"
    with pytest.raises(ValueError) as refused:
        EpochCheckpoint(folder, {"seed": 2}).load()
    assert str(refused.value) == (
        f"{path} was written by a run with other settings (differing: seed); rerun the same "
        f"command to resume it, or delete {path} to start over.")
    from kerasflows.cli.common import UserError
    from kerasflows.cli.resume import check_checkpoint
    path.write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(UserError, match=rf"; delete {path} to start over\.$"):
        check_checkpoint(str(folder))


def test_a_checkpoint_without_todays_settings_is_refused_as_an_older_kerasflows(tmp_path):
    """Settings the checkpoint does not record at all (an older kerasflows wrote it):
    'rerun the same command to resume it' sent the user back to the command that had
    just been refused. Settings that differ in value keep that advice."""
    folder = tmp_path / "ck"
    EpochCheckpoint(folder, {"seed": 1}).save(3, [np.zeros(2)], {"loss": [1, 2, 3]})
    path = folder / "checkpoint.npz"
    with pytest.raises(ValueError) as refused:
        EpochCheckpoint(folder, {"seed": 1, "base": "normal", "standardize": True}).load()
    assert str(refused.value) == (
        f"{path} was written by an older kerasflows, which did not record base, standardize; "
        f"it cannot be resumed safely: delete {path} to start afresh, or use another "
        "checkpoint folder.")
    with pytest.raises(ValueError, match=r"other settings \(differing: base, seed\); rerun "):
        EpochCheckpoint(folder, {"seed": 2, "base": "normal"}).load()
    assert EpochCheckpoint(folder, {"seed": 1}).load()[0] == 3


def test_a_checkpoint_given_as_a_model_is_named_as_one(tmp_path, capsys):
    """`info m.checkpoint` (all a killed run without --save-every-epoch leaves) said the
    folder holds no flow.keras, and `info m.checkpoint/checkpoint.npz` that a .keras file
    was expected: neither said what the file is or how to get a model from it."""
    folder = tmp_path / "m.checkpoint"
    EpochCheckpoint(str(folder), {}).save(3, [np.zeros(2, "float32")], {"loss": [1.0] * 3})
    for given in (folder, folder / "checkpoint.npz"):
        with pytest.raises(ValueError, match=rf"^{re.escape(str(folder))} holds a training "
                                             r"checkpoint \(checkpoint.npz, 3 epochs done\), "
                                             r"not a model: rerun the same `kerasflows train`"):
            kerasflows.load(given)
        samples = str(tmp_path / "s.npy")
        for command in (["info"], ["evaluate"], ["sample", "-n", "2", "-o", samples]):
            with pytest.raises(SystemExit) as exit_info:
                main([*command[:1], str(given), *command[1:]]
                     + (["moons"] if command == ["evaluate"] else []))
            err = capsys.readouterr().err
            assert exit_info.value.code == 2 and "holds a training checkpoint" in err, err
