"""Writing a file whole or not at all: the new content goes to a file beside it,
renamed over it once written (the CLI's outputs, `kerasflows train`'s model,
training checkpoints; the visualizer, which opens SavedModels without
kerasflows installed, keeps its own, `visualizer.headless.write_replacing`)."""

import contextlib
import os
import shutil
import threading

__all__ = ["replace_file", "make_folders"]


def make_folders(path):
    """Makes the folder `path` and its missing parents; returns those it made,
    deepest first (to remove them again when what was to go in them failed)."""
    missing, folder = [], os.fspath(path)
    while folder and not os.path.exists(folder):
        missing.append(folder)
        folder = os.path.dirname(folder.rstrip(os.sep))
    os.makedirs(path, exist_ok=True)
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
    - With `sync=True` its content reaches the disk before the rename (a checkpoint
      that must outlive a power cut)."""
    target = os.path.realpath(path)
    folder, name = os.path.split(target)
    made = make_folders(folder)
    if temp is None:        # this process's and thread's own
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
