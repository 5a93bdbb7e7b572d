"""Writing a file whole or not at all: the new content goes to a file beside it,
renamed over it once written (the CLI's outputs, `kerasflows train`'s model,
training checkpoints; the visualizer, which opens SavedModels without
kerasflows installed, keeps its own, `visualizer.headless.write_replacing`)."""

import contextlib
import os
import shutil
import threading
import time

__all__ = ["replace_file", "make_folders"]


def make_folders(path):
    """Makes the folder `path` and its missing parents; returns those it made,
    deepest first (to remove them again when what was to go in them failed). One
    that cannot be made raises its OSError with none of them left behind."""
    missing, folder = [], os.fspath(path)
    while folder and not os.path.exists(folder):
        missing.append(folder)
        folder = os.path.dirname(folder.rstrip(os.sep))
    try:
        os.makedirs(path, exist_ok=True)
    except OSError:
        for made in missing:
            with contextlib.suppress(OSError):
                os.rmdir(made)
        raise
    return missing


def replace_file(path, write, *, by_name=False, tail=".part", temp=None, sync=False):
    """Writes the file `path` through `write(f)`, `f` a new binary file beside it
    (with `by_name=True`, `write(name)`, the new file's path, for writers that
    open it themselves, such as `keras.Model.save`), renamed over `path` once
    written; `path`'s missing folders are made first. Returns `path`.

    - A write that fails (a full disk, any exception of `write`) leaves no
      half-written file and no new folder, and keeps the file `path` named before:
      a reader never sees a partial file.
    - A symbolic link is written through (the file it names is replaced, the link
      kept), and a file replaced keeps its permissions.
    - The `OSError` of a failed write names `path` (its `filename`), not the file
      beside it.
    - The file beside it is `.NAME.PID.THREAD<tail>` (hidden, this thread's own, its
      name cut to the 255 bytes a file name may have), or `temp`.
    - Such files that processes no longer running left beside `path` (killed
      while writing), not written to for `LEFT_BEHIND_AGE` seconds, are removed
      first.
    - With `sync=True` its content reaches the disk before the rename (a checkpoint
      that must outlive a power cut)."""
    target = os.path.realpath(path)
    folder, name = os.path.split(target)
    made = make_folders(folder)
    if temp is None:        # this process's and thread's own
        _remove_left_behind(folder, name, tail)
        tail = f".{os.getpid()}.{threading.get_ident()}{tail}"
        temp = os.path.join(folder, "." + name.encode()[:254 - len(tail.encode())]
                            .decode(errors="ignore") + tail)
    try:
        if by_name:
            write(temp)
        else:
            with open(temp, "wb") as f:
                write(f)
        if sync:
            with open(temp, "rb+") as f:
                os.fsync(f.fileno())
        if os.path.isfile(target):
            shutil.copymode(target, temp)
        os.replace(temp, target)
    except BaseException as e:
        with contextlib.suppress(FileNotFoundError):
            os.remove(temp)
        for new in made:
            with contextlib.suppress(OSError):
                os.rmdir(new)
        if isinstance(e, OSError) and e.errno is not None:   # not NumPy's "n requested..."
            e.filename, e.filename2 = os.fspath(path), None
        raise
    return path


#: Seconds since its last write after which `replace_file` takes a file beside its
#: path, of a process not running here, for one a killed writer left.
LEFT_BEHIND_AGE = 600


def _remove_left_behind(folder, name, tail):
    """Removes the files `.NAME.PID.THREAD<tail>` beside `NAME` in `folder` that
    processes no longer running left (killed while writing: SIGKILL runs no
    clean-up), so that a model-sized temporary file does not stay for good: those
    not written to for `LEFT_BEHIND_AGE` seconds. Those of a running process, this
    one's included, are left alone."""
    prefix = "." + name + "."
    try:
        entries = os.listdir(folder)
    except OSError:
        return
    for entry in entries:
        if not (entry.startswith(prefix) and entry.endswith(tail)):
            continue
        pid, _, thread = entry[len(prefix):len(entry) - len(tail)].partition(".")
        if not (pid.isdigit() and thread.isdigit()) or _running(int(pid)):
            continue
        path = os.path.join(folder, entry)
        with contextlib.suppress(OSError):
            # a writer on another host, or in another PID namespace (a container
            # sharing the folder), runs under a number not running here: its file,
            # written to as it goes, is younger than LEFT_BEHIND_AGE
            if time.time() - os.path.getmtime(path) > LEFT_BEHIND_AGE:
                os.remove(path)


def _running(pid):
    """Whether a process `pid` runs (one of another user's counts as running; on
    Windows, where signal 0 is CTRL_C_EVENT, every one)."""
    if pid == os.getpid() or os.name == "nt":
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:         # not ours to signal: it runs
        return True
    return True
