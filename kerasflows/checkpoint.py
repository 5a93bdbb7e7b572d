"""`EpochCheckpoint`: the end-of-epoch training state in one file, written atomically.

The state is a list of arrays (model weights and optimizer variables, in a
fixed order), the number of finished epochs, the history and a fingerprint
of the training settings. It is written to a temporary file, flushed to
disk and renamed over `checkpoint.npz`, so a crash at any moment leaves
either the previous or the new checkpoint, never a partial one.
"""

import hashlib
import json
import os

import numpy as np

__all__ = ["EpochCheckpoint", "content_digest"]


def content_digest(array):
    """`(rows, sha256 of the shape, dtype and bytes)` of an array: what a fingerprint
    keeps of the data, so that other data of the same shape is told apart."""
    array = np.ascontiguousarray(array)
    digest = hashlib.sha256(f"{array.shape} {array.dtype.str}".encode())
    digest.update(memoryview(array).cast("B"))
    return len(array), digest.hexdigest()


class EpochCheckpoint:
    """Saves and loads `checkpoint.npz` in `directory`.

    Args:
        directory: the checkpoint folder (created on the first save).
        fingerprint: JSON-able settings; `load` refuses a checkpoint whose
            fingerprint differs, so a changed command never resumes a run it
            did not start.
    """

    FILENAME = "checkpoint.npz"

    def __init__(self, directory, fingerprint):
        self.directory = os.fspath(directory)
        self.path = os.path.join(self.directory, self.FILENAME)
        self.fingerprint = json.loads(json.dumps(fingerprint))

    def save(self, epoch, values, history):
        """Writes the state after `epoch` finished epochs."""
        os.makedirs(self.directory, exist_ok=True)
        meta = json.dumps({"epoch": int(epoch), "history": history,
                           "fingerprint": self.fingerprint})
        arrays = {f"v{i}": np.asarray(v) for i, v in enumerate(values)}
        tmp = self.path + ".tmp"
        with open(tmp, "wb") as f:
            np.savez(f, meta=np.array(meta), **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)

    def load(self):
        """`(epoch, values, history)` from the checkpoint, or None when there is none.

        Raises:
            ValueError: a damaged checkpoint, or one written with other settings.
        """
        if not os.path.exists(self.path):
            return None
        with open(self.path, "rb") as f:
            head = f.read(4)
        if head != b"PK\x03\x04":      # what `np.savez` writes starts as a zip archive
            raise ValueError(f"{self.path}: damaged checkpoint (not the .npz archive "
                             f"EpochCheckpoint writes: it starts with {head!r}); delete it "
                             "to start over.")
        try:
            with np.load(self.path, allow_pickle=False) as data:
                meta = json.loads(str(data["meta"]))
                values = [data[f"v{i}"] for i in range(len(data.files) - 1)]
        except Exception as e:  # zipfile/numpy raise many types for damaged files.
            raise ValueError(f"{self.path}: damaged checkpoint ({type(e).__name__}: {e}); "
                             "delete it to start over.") from e
        if meta["fingerprint"] != self.fingerprint:
            changed = sorted(k for k in set(meta["fingerprint"]) | set(self.fingerprint)
                             if meta["fingerprint"].get(k) != self.fingerprint.get(k))
            raise ValueError(f"{self.path} was written by a run with other settings "
                             f"(differing: {', '.join(changed)}); rerun the same command to "
                             "resume it, or delete the checkpoint folder to start over.")
        return meta["epoch"], values, meta["history"]

    def delete(self):
        """Removes the checkpoint (after a run has finished and been saved), and its
        folder when nothing else is left in it: a folder given for the checkpoint
        may hold the user's own files, which a removal of the whole tree took."""
        for path in (self.path, self.path + ".tmp"):
            try:
                os.remove(path)
            except FileNotFoundError:
                pass
        try:
            os.rmdir(self.directory)
        except OSError:          # not empty, or gone
            pass
