"""`EpochCheckpoint`: the end-of-epoch training state in one file, written atomically.

The state is a list of arrays (model weights and optimizer variables, in a
fixed order), the number of finished epochs, the history and a fingerprint
of the training settings. It is written to a temporary file of the writing
process, flushed to disk and renamed over `checkpoint.npz`, so a crash at any
moment leaves either the previous or the new checkpoint, never a partial one.
A run holds the folder's lock (`EpochCheckpoint.lock`) while it trains, so a
second run on the same folder is refused rather than let overwrite its
checkpoints.
"""

import glob
import hashlib
import json
import os

import numpy as np

try:
    import fcntl
except ImportError:         # not POSIX: no lock (see `EpochCheckpoint.lock`)
    fcntl = None

__all__ = ["EpochCheckpoint", "CheckpointInUseError", "content_digest"]


def content_digest(array):
    """`(rows, sha256 of the shape, dtype and bytes)` of an array: what a fingerprint
    keeps of the data, so that other data of the same shape is told apart."""
    array = np.ascontiguousarray(array)
    digest = hashlib.sha256(f"{array.shape} {array.dtype.str}".encode())
    digest.update(memoryview(array).cast("B"))
    return len(array), digest.hexdigest()


class CheckpointInUseError(RuntimeError):
    """Another process holds the lock of the checkpoint folder `directory` (it is
    training there); `holder` is its process id as its lock file gives it."""

    def __init__(self, message, directory, holder):
        super().__init__(message)
        self.directory, self.holder = directory, holder


#: The folders whose lock this process holds: real path -> `_FolderLock`.
_HELD = {}


def _remove(path):
    try:
        os.remove(path)
    except FileNotFoundError:
        pass


class _FolderLock:
    """An exclusive `fcntl.flock` on `checkpoint.lock` in a folder, held from
    `acquire` to the matching `release` (re-entrant within a process). The OS
    drops it when the process dies, so a killed run leaves no lock behind; the
    file holds the holder's process id, for the refusal's message."""

    FILENAME = "checkpoint.lock"

    def __init__(self, directory):
        self.directory = directory
        self.path = os.path.join(directory, self.FILENAME)
        self.fd = None
        self.count = 0
        self.created = False        # the lock made the folder: it goes with the lock
        self.remove_folder = False  # the checkpoint was deleted: the folder goes if empty

    def acquire(self):
        self.created = not os.path.isdir(self.directory)
        os.makedirs(self.directory, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:     # held by another process
                holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
                os.close(fd)
                raise CheckpointInUseError(
                    f"The checkpoint folder {self.directory} is in use by another run "
                    f"(process {holder}, which holds {self.path}); wait for it to finish, or "
                    "give this run a checkpoint folder of its own.",
                    self.directory, holder) from None
            try:        # the previous holder removes the file as it lets go: lock a live one
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        self.fd = fd
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        except OSError:     # a full disk: the lock holds without the process id
            pass

    def release(self):
        _remove(self.path)         # while still held, so no one locks the old file
        os.close(self.fd)
        self.fd = None
        if self.created or self.remove_folder:
            try:
                os.rmdir(self.directory)
            except OSError:          # not empty (a checkpoint kept, the user's files), or gone
                pass


class _Holding:
    """`EpochCheckpoint.lock()`'s context manager."""

    def __init__(self, directory):
        self.directory = directory
        self.key = None

    def __enter__(self):
        if fcntl is None:
            return self
        key = os.path.realpath(self.directory)
        lock = _HELD.get(key)
        if lock is None:
            lock = _FolderLock(self.directory)
            lock.acquire()
            _HELD[key] = lock
        lock.count += 1
        self.key = key
        return self

    def __exit__(self, *exc):
        lock = _HELD.get(self.key)
        if lock is not None:
            lock.count -= 1
            if lock.count == 0:
                del _HELD[self.key]
                lock.release()
        self.key = None
        return False


class EpochCheckpoint:
    """Saves and loads `checkpoint.npz` in `directory`.

    Args:
        directory: the checkpoint folder (created on the first save).
        fingerprint: JSON-able settings; `load` refuses a checkpoint whose
            fingerprint differs, so a changed command never resumes a run it
            did not start, nor a run whose older kerasflows did not record
            some of them.
    """

    FILENAME = "checkpoint.npz"

    def __init__(self, directory, fingerprint):
        self.directory = os.fspath(directory)
        self.path = os.path.join(self.directory, self.FILENAME)
        self.fingerprint = json.loads(json.dumps(fingerprint))

    def lock(self):
        """A context manager holding the folder for one run: a second run (another
        process) entering it meanwhile raises `CheckpointInUseError` naming the
        folder. Re-entrant within a process (`kerasflows train` holds it around
        `train_flow`, which takes it again); the lock file goes on exit, and the
        folder with it when the lock made it, or the checkpoint was deleted, and
        nothing else is in it. The lock is an `fcntl.flock`, which the OS drops
        when the process dies; without `fcntl` (not POSIX) there is none."""
        return _Holding(self.directory)

    def save(self, epoch, values, history):
        """Writes the state after `epoch` finished epochs. On a failed write (a full
        disk) the previous checkpoint stays, the partial copy is removed, and the
        OSError names the checkpoint."""
        meta = json.dumps({"epoch": int(epoch), "history": history,
                           "fingerprint": self.fingerprint})
        arrays = {f"v{i}": np.asarray(v) for i, v in enumerate(values)}
        from kerasflows.files import replace_file   # (this module alone imports no TensorFlow)
        # beside it, this process's (never another run's), as `delete` finds leftovers
        replace_file(self.path, lambda f: np.savez(f, meta=np.array(meta), **arrays),
                     temp=f"{self.path}.{os.getpid()}.tmp", sync=True)

    def _meta(self):
        """The checkpoint's record (epoch, history, fingerprint), or None when there is
        none (or it is damaged)."""
        try:
            with np.load(self.path, allow_pickle=False) as data:
                return json.loads(str(data["meta"]))
        except Exception:  # zipfile/numpy raise many types for missing or damaged files.
            return None

    def epochs_done(self):
        """The finished epochs the checkpoint holds, whatever its fingerprint; 0 when
        there is none (or it is damaged)."""
        try:
            return int(self._meta()["epoch"])
        except (TypeError, KeyError, ValueError):
            return 0

    def found_fingerprint(self):
        """The fingerprint the checkpoint was written with, or None when there is none
        (or it is damaged)."""
        meta = self._meta()
        return meta.get("fingerprint") if isinstance(meta, dict) else None

    def load(self, check=None):
        """`(epoch, values, history)` from the checkpoint, or None when there is none.

        `check`, if given, is called as `check(fingerprint, values)` with the
        checkpoint's own before its fingerprint is compared with this one's, to
        refuse a checkpoint with a more precise message (another model's
        arrays) first.

        Raises:
            ValueError: a damaged checkpoint, one written with other settings, or
                one written by an older kerasflows that did not record some of them.
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
        if check is not None:
            check(meta["fingerprint"], values)
        if meta["fingerprint"] != self.fingerprint:
            raise ValueError(self._refusal(meta["fingerprint"]))
        return meta["epoch"], values, meta["history"]

    def _refusal(self, found):
        """Why a checkpoint whose fingerprint is `found` is not resumed. Settings that
        differ in value come from another command, which the user can rerun; when every
        differing setting is one `found` lacks, an older kerasflows wrote it, before it
        recorded them: no command resumes that safely."""
        wanted = self.fingerprint
        differing = sorted(k for k in set(found) | set(wanted)
                           if k not in found or k not in wanted or found[k] != wanted[k])
        if all(k not in found for k in differing):
            return (f"{self.path} was written by an older kerasflows, which did not record "
                    f"{', '.join(differing)}; it cannot be resumed safely: delete {self.path} "
                    "to start afresh, or use another checkpoint folder.")
        return (f"{self.path} was written by a run with other settings (differing: "
                f"{', '.join(differing)}); rerun the same command to resume it, or delete "
                f"{self.path} to start over.")

    def delete(self):
        """Removes the checkpoint (after a run has finished and been saved), and its
        folder when nothing else is left in it: a folder given for the checkpoint
        may hold the user's own files, which a removal of the whole tree took.
        While this process holds the folder's lock, the temporary files of killed
        runs go too (no other run writes there); the folder then goes with the lock."""
        lock = _HELD.get(os.path.realpath(self.directory))
        leftovers = glob.glob(glob.escape(self.path) + ".*.tmp") if lock is not None else []
        for path in (self.path, f"{self.path}.{os.getpid()}.tmp", self.path + ".tmp",
                     *leftovers):
            _remove(path)
        if lock is not None:
            lock.remove_folder = True
            return
        try:
            os.rmdir(self.directory)
        except OSError:          # not empty, or gone
            pass
