"""Resuming `kerasflows train`: what its checkpoint must match, and what Ctrl-C leaves.

`train` checkpoints after every epoch (`kerasflows.checkpoint.EpochCheckpoint`)
and resumes when rerun with the same command. The checkpoint stores a
fingerprint of the run, the options that change the result and the row count
and SHA-256 of the data, so a run with other settings or other data at the
same path is refused rather than resumed.
"""

import os
import zipfile

from kerasflows.checkpoint import content_digest
from kerasflows.cli.common import UserError

__all__ = ["fingerprint", "check_checkpoint", "interrupted", "diverged"]


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
                        f"file: not a .npz archive of a training state); delete {folder} to "
                        "start over.")


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
    if os.path.exists(os.path.join(checkpoint_dir, EpochCheckpoint.FILENAME)):
        return (f"The checkpoint in {checkpoint_dir} keeps the last finished epoch; a rerun "
                "with another --lr starts over once that folder is deleted.")
    return "No epoch finished, so no checkpoint was kept."
