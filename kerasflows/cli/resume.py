"""Resuming `kerasflows train`: what its checkpoint must match, and what Ctrl-C leaves.

`train` checkpoints after every epoch (`kerasflows.checkpoint.EpochCheckpoint`)
and resumes when rerun with the same command. The checkpoint stores a
fingerprint of the run, the options that change the result and the row count
and SHA-256 of the data, so a run with other settings or other data at the
same path is refused rather than resumed. A run holds its checkpoint folder
(`holding`), and an output it cannot write (a full disk) is named with what the
checkpoint keeps (`writing`).
"""

import contextlib
import errno
import os
import zipfile

from kerasflows.checkpoint import content_digest
from kerasflows.cli.common import UserError, plural

__all__ = ["fingerprint", "spelled_as_checkpoint", "check_checkpoint", "interrupted",
           "diverged", "holding", "writing", "write_failed"]

#: The options that only name an array, by the array whose rows and content hash the
#: fingerprint holds too: DATA and --n (a dataset name's row count), --context,
#: --validation-data and --test-data. The same array spelled otherwise (`./d.npy` for
#: `d.npy`, `--n 10000` for the default) is the same run.
NAMING = {"data": "data", "n": "data", "context": "context",
          "validation_data": "validation_data", "test_data": "test_data"}


def fingerprint(args, x, context, parts):
    """The settings a checkpoint must have been made with to be resumed: the options
    that change the result, and the row count and content hash of DATA, the context
    and --validation-data/--test-data, so that other data at the same path (or other
    contexts) is refused."""
    skip = {"out", "report", "checkpoint_dir", "quiet", "strategy", "run", "argv", "command",
            "save_every_epoch", "tensorboard"}
    settings = {k: v for k, v in sorted(vars(args).items()) if k not in skip}
    arrays = {"data": x, "context": context,
              "validation_data": parts[1][0] if args.validation_data else None,
              "test_data": parts[2][0] if args.test_data else None}
    for name, array in arrays.items():
        if array is not None:
            settings[f"{name}_rows"], settings[f"{name}_sha256"] = content_digest(array)
    return settings


def spelled_as_checkpoint(checkpoint_dir, settings, defaults=None):
    """`settings` (a `fingerprint`) with the checkpoint's spelling of each option the
    two spell otherwise for the same run, so that a rerun naming the same run in
    other words resumes (it was refused as "other settings (differing: data)"):
    an option that only names an array (`NAMING`) whose rows and content hash the
    checkpoint in `checkpoint_dir` holds alike, and an option of `defaults` (option
    -> what its None means, such as `--bins` -> 8) given there as its default and
    left out here, or the other way round. Everything else (and no checkpoint, or a
    damaged one) is left for `EpochCheckpoint.load` to judge."""
    from kerasflows.checkpoint import EpochCheckpoint
    found = EpochCheckpoint(checkpoint_dir, {}).found_fingerprint()
    if not isinstance(found, dict):
        return settings
    settings = dict(settings)
    for option, array in NAMING.items():
        digests = (f"{array}_rows", f"{array}_sha256")
        if (option in found and option in settings and digests[1] in settings
                and all(found.get(k) == settings[k] for k in digests)):
            settings[option] = found[option]
    for option, default in (defaults or {}).items():
        meant = lambda value: default if value is None else value
        if (option in found and option in settings
                and meant(found[option]) == meant(settings[option])):
            settings[option] = found[option]
    return settings


def check_checkpoint(folder):
    """Refuses a checkpoint file that `train` did not write (not a .npz archive of its
    state), which NumPy would report as pickled data."""
    from kerasflows.checkpoint import EpochCheckpoint
    path = os.path.join(folder, EpochCheckpoint.FILENAME)
    if not os.path.exists(path):
        return
    try:
        with zipfile.ZipFile(path) as archive:
            written_by_train = "meta.npy" in archive.namelist()
    except (zipfile.BadZipFile, OSError):
        written_by_train = False
    if not written_by_train:
        raise UserError(f"{path}: not a checkpoint of `kerasflows train` (damaged, or another "
                        f"file: not a .npz archive of a training state); delete {path} to "
                        "start over.")


@contextlib.contextmanager
def holding(checkpoint_dir):
    """Holds `--checkpoint-dir`'s lock (`EpochCheckpoint.lock`) for the whole run: a
    second `train` on the same folder, which would overwrite this run's checkpoints
    (and delete them as it finished), is refused naming the folder."""
    from kerasflows.checkpoint import CheckpointInUseError, EpochCheckpoint
    with contextlib.ExitStack() as held:
        try:
            held.enter_context(EpochCheckpoint(checkpoint_dir, {}).lock())
        except CheckpointInUseError as e:
            raise UserError(f"--checkpoint-dir {checkpoint_dir} is in use by another run "
                            f"(process {e.holder}), whose checkpoints this run would "
                            "overwrite; wait for it to finish, or give this run its own "
                            "--checkpoint-dir (by default --out with .checkpoint).") from None
        except OSError as e:
            raise write_failed("--checkpoint-dir", checkpoint_dir, e, checkpoint_dir) from None
        yield


@contextlib.contextmanager
def writing(option, path, checkpoint_dir):
    """Turns an OSError of writing `option`'s output `path` (a full disk) into a
    UserError naming both and what the checkpoint keeps (`write_failed`)."""
    try:
        yield
    except OSError as e:
        raise write_failed(option, path, e, checkpoint_dir) from None


def write_failed(option, path, error, checkpoint_dir):
    """The UserError for an output of `train` that could not be written: the option,
    the path and why (`error`, an OSError), and, as after Ctrl-C, what the checkpoint
    keeps and how to go on."""
    from kerasflows.checkpoint import EpochCheckpoint
    full = error.errno in (errno.ENOSPC, errno.EDQUOT)
    remedy = "free space" if full else "fix that"
    kept = EpochCheckpoint(checkpoint_dir, {}).epochs_done()
    if kept:
        advice = (f"the checkpoint in {checkpoint_dir} keeps {plural(kept, 'finished epoch')}: "
                  f"{remedy} and rerun the same command to resume from it.")
    else:
        advice = f"no checkpoint was kept: {remedy} and rerun the command to start again."
    return UserError(f"cannot write {option} {path}: {error.strerror or error}; {advice}")


def interrupted(checkpoint_dir):
    """What Ctrl-C during training leaves, and how to go on."""
    from kerasflows.checkpoint import EpochCheckpoint
    if os.path.exists(os.path.join(checkpoint_dir, EpochCheckpoint.FILENAME)):
        return (f"interrupted; the checkpoint in {checkpoint_dir} keeps the last finished "
                "epoch: rerun the same command to resume from it.")
    return ("interrupted before the first epoch finished (no checkpoint yet); rerun the "
            "command to start again.")


def diverged(checkpoint_dir):
    """What a diverged run leaves, and how to rerun it with another `--lr` (which the
    checkpoint of the run, made with the old one, refuses)."""
    from kerasflows.checkpoint import EpochCheckpoint
    path = os.path.join(checkpoint_dir, EpochCheckpoint.FILENAME)
    if os.path.exists(path):
        return (f"The checkpoint in {checkpoint_dir} keeps the last finished epoch; a rerun "
                f"with another --lr starts over once {path} is deleted.")
    return "No epoch finished, so no checkpoint was kept."
