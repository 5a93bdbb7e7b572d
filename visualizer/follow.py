"""`FileFollower`: notices when the files of an open model change on disk.

Following a model file lets the window show a flow while it trains: a
Keras `ModelCheckpoint("flow.keras")` callback, or `kerasflows train
--save-every-epoch`, rewrites the file after each epoch and the window
reloads it. A change is reported once the files have stopped changing for
`settle_ms` (a `.keras` file rewritten in place is read only after the
write), and only when their size or modification time differ from what
was last reported, so one save gives one reload.

Changes are noticed two ways: a `QFileSystemWatcher` (at once, where the
file system sends events), and a poll of the files' `stat` every
`poll_ms` (file systems without events, such as some network mounts, and
files replaced by a rename, which drops a watcher's hold on them). No
TensorFlow here.
"""

import os
from pathlib import Path

from PySide6 import QtCore

__all__ = ["FileFollower", "signature", "SETTLE_MS", "POLL_MS"]

#: Quiet time, ms, after the last change before it is reported.
SETTLE_MS = 400
#: Interval, ms, of the `stat` poll.
POLL_MS = 1000


def _stat(path):
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


def _savedmodel_dirs(p):
    """`p` and its numbered version subdirectories (a TF Serving base path)."""
    try:
        versions = sorted(c for c in p.iterdir() if c.is_dir() and c.name.isdigit())
    except OSError:
        versions = []
    return [p, *versions]


def signature(paths):
    """What changes when any of `paths` is rewritten: each file's size and modification
    time; for a directory, its own entry and the `saved_model.pb` and `variables/` files
    in it and in its numbered version subdirectories (a version being written in place
    keeps changing until it is complete)."""
    out = []
    for p in paths:
        p = Path(p)
        out.append((str(p), _stat(p)))
        if p.is_dir():
            for d in _savedmodel_dirs(p):
                for child in [d / "saved_model.pb", *sorted((d / "variables").glob("*"))]:
                    out.append((str(child), _stat(child)))
    return tuple(out)


class FileFollower(QtCore.QObject):
    """Reports `changed` when the followed paths have changed and then settled.

    Args:
        settle_ms: quiet time after the last change before `changed` is emitted.
        poll_ms: interval of the `stat` poll (0: events only).

    Signals:
        changed: the followed files changed (and stayed unchanged for `settle_ms`).
    """

    changed = QtCore.Signal()

    def __init__(self, parent=None, settle_ms=SETTLE_MS, poll_ms=POLL_MS):
        super().__init__(parent)
        self.paths = ()
        self.reported = None           # the signature when following started or last reported
        self._watcher = QtCore.QFileSystemWatcher(self)
        self._watcher.fileChanged.connect(self._touched)
        self._watcher.directoryChanged.connect(self._touched)
        self._settle = QtCore.QTimer(self)
        self._settle.setSingleShot(True)
        self._settle.setInterval(int(settle_ms))
        self._settle.timeout.connect(self._settled)
        self._poll = QtCore.QTimer(self)
        self._poll.setInterval(int(poll_ms))
        self._poll.timeout.connect(self._polled)
        self._poll_ms = int(poll_ms)
        self._pending = None           # the signature seen when the settle timer last started

    @property
    def active(self):
        return bool(self.paths)

    def follow(self, paths):
        """Follows `paths` (files or SavedModel directories) from their current state;
        an empty list stops following."""
        self.stop()
        self.paths = tuple(str(p) for p in paths)
        if not self.paths:
            return
        self.reported = signature(self.paths)
        self._rewatch()
        if self._poll_ms > 0:
            self._poll.start()

    def stop(self):
        self.paths = ()
        self._settle.stop()
        self._poll.stop()
        watched = self._watcher.files() + self._watcher.directories()
        if watched:
            self._watcher.removePaths(watched)

    def _rewatch(self):
        """Watches every followed path that exists (a file replaced by a rename is a
        new file, which the watcher must be given again)."""
        watched = set(self._watcher.files() + self._watcher.directories())
        extra = []
        for p in self.paths:
            if Path(p).is_dir():
                extra += [str(Path(p) / "saved_model.pb"), str(Path(p) / "variables")]
        missing = [p for p in (*self.paths, *extra) if p not in watched and os.path.exists(p)]
        if missing:
            self._watcher.addPaths(missing)

    def _touched(self, *_):
        if self.paths:
            self._rewatch()
            self._pending = signature(self.paths)
            self._settle.start()            # restarts: report once the writes have stopped

    def _polled(self):
        if not self.paths or self._settle.isActive():
            return
        now = signature(self.paths)
        if now != self.reported:
            self._touched()

    def _settled(self):
        if not self.paths:
            return
        now = signature(self.paths)
        if now != self._pending:            # still being written: wait again
            self._pending = now
            self._settle.start()
            return
        self._rewatch()
        if not all(os.path.exists(p) for p in self.paths):
            return                          # removed (mid-replace?): the poll sees it return
        if now != self.reported:
            self.reported = now
            self.changed.emit()
