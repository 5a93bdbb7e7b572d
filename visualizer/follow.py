"""`FileFollower`: notices when the files of an open model change on disk.

Following a model file lets the window show a flow while it trains: a
Keras `ModelCheckpoint("flow.keras")` callback, or `kerasflows train
--save-every-epoch`, rewrites the file after each epoch and the window
reloads it. A change is reported once the files have stopped changing for
`settle_ms` (a `.keras` file rewritten in place is read only after the
write), or, while they go on changing (epochs saved more often than that),
`max_wait_ms` after the first change not reported; and only when their size
or modification time differ from what was last reported, so one save gives
one reload.

Changes are noticed two ways: a `QFileSystemWatcher` (at once, where the
file system sends events), and a poll of the files' `stat` every
`poll_ms` (file systems without events, such as some network mounts, and
files replaced by a rename, which drops a watcher's hold on them). No
TensorFlow here.
"""

import os
import time
from pathlib import Path

from PySide6 import QtCore

from visualizer import paths

__all__ = ["FileFollower", "Following", "signature", "followed_paths", "SETTLE_MS", "POLL_MS",
           "MAX_WAIT_SETTLES"]

#: Quiet time, ms, after the last change before it is reported.
SETTLE_MS = 400
#: Interval, ms, of the `stat` poll.
POLL_MS = 1000
#: Longest wait from a change to its report while the files go on changing, in settle
#: times (the default `max_wait_ms`: 1.6 s of the app's 0.4 s settle time).
MAX_WAIT_SETTLES = 4


def _stat(path):
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns, st.st_ino     # (a rename keeps the size and time)


def _savedmodel_dirs(p):
    """`p` and its numbered version subdirectories (a TF Serving base path)."""
    try:
        versions = sorted(c for c in p.iterdir() if c.is_dir() and c.name.isdigit())
    except OSError:
        versions = []
    return [p, *versions]


def followed_paths(path, load_path):
    """The paths followed for a model opened from `path` that loads `load_path` (a
    model folder's `flow.keras`): both, once each, as strings."""
    return list(dict.fromkeys([str(path), str(load_path)]))


def signature(paths):
    """What changes when any of `paths` is rewritten: each file's size and modification
    time; for a directory, those of the `saved_model.pb` and `variables/` files in it
    and in its numbered version subdirectories (a version being written in place keeps
    changing until it is complete; a new version adds files)."""
    out = []
    for p in paths:
        p = Path(p)
        if not p.is_dir():
            out.append((str(p), _stat(p)))
            continue
        # Not the directory's own time: other entries (an exporter's hidden partial
        # version) come and go in it without a new model to read.
        out.append((str(p), "directory"))
        for d in _savedmodel_dirs(p):
            for child in [d / "saved_model.pb", *sorted((d / "variables").glob("*"))]:
                out.append((str(child), _stat(child)))
    return tuple(out)


class FileFollower(QtCore.QObject):
    """Reports `changed` when the followed paths have changed and then settled.

    Args:
        settle_ms: quiet time after the last change before `changed` is emitted.
        poll_ms: interval of the `stat` poll (0: events only).
        max_wait_ms: longest wait from a change to `changed` while the files keep
            changing (default `MAX_WAIT_SETTLES` x `settle_ms`): saves closer together than
            `settle_ms` restarted the wait until they stopped, so a fast training
            run showed nothing until it ended. A file read mid-write is then
            read again at its next save (`Following`).

    Signals:
        changed: the followed files changed (and stayed unchanged for `settle_ms`,
            or kept changing for `max_wait_ms`).
    """

    changed = QtCore.Signal()

    def __init__(self, parent=None, settle_ms=SETTLE_MS, poll_ms=POLL_MS, max_wait_ms=None):
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
        self._max_wait = (MAX_WAIT_SETTLES * int(settle_ms) if max_wait_ms is None
                          else int(max_wait_ms)) / 1e3
        self._since = None             # time.monotonic() of the first change not reported

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
        self._since = None
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

    def _overdue(self):
        return self._since is not None and time.monotonic() - self._since >= self._max_wait

    def _touched(self, *_):
        if self.paths:
            self._rewatch()
            self._pending = signature(self.paths)
            if self._since is None:
                self._since = time.monotonic()
            if not (self._overdue() and self._settle.isActive()):
                self._settle.start()        # restarts: report once the writes have stopped

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
        if now != self._pending and not self._overdue():    # still being written: wait again
            self._pending = now
            self._settle.start()
            return
        self._rewatch()
        if not all(os.path.exists(p) for p in self.paths):
            return                          # removed (mid-replace?): the poll sees it return
        self._since = None
        if now != self.reported:
            self.reported = now
            self.changed.emit()


class Following:
    """`MainWindow` methods for File ▸ Reload and File ▸ Follow File Changes.

    The window's state they use: `follower` (a `FileFollower`), `following`,
    `reloads`, `reload_error`, and the ids of the open / reload requests in
    flight (`_open_id`, `_reload_id`, `_reload_ids`, `_reload_again`) and the
    model awaited before it exists (`_awaited`, `(path, context)`; the open in
    flight while set is the awaited one); `MainWindow._on_result` routes the
    answers.
    """

    def _await(self, path, context=None, reason=None, read_from=None):
        """Following a model that does not exist yet (a training run about to write
        it), or that could not be read (caught mid-write): opens it at its next save,
        quietly trying again while it cannot be read. `read_from`: the `(paths,
        signature)` the failed open read, so a save that landed meanwhile is read."""
        self._awaited = (str(path), context)
        why = f" ({reason})" if reason else ""
        what = (f"the next save of {path}" if Path(path).expanduser().exists()
                else f"{path} to appear")
        self.model_label.setText(f"waiting for {what}{why} …")
        files, before = read_from or ([Path(path).expanduser()], None)
        self.follower.follow(files)
        if before is not None:
            self.follower.reported = before

    def _followed_change(self):
        if self._awaited is None:
            self.reload(quiet=True)
        elif self._open_id is None:     # not opening it already
            path, context = self._awaited   # (open_path awaits it again while following)
            if not (Path(path).expanduser().exists() and self.open_path(path, context=context)):
                self._await(path, context)  # gone again: keep waiting

    def reload(self, _checked=False, quiet=False):
        """Opens the current model's path again (asynchronously): new weights, same
        views. `quiet` (following file changes): a failure is shown in the status bar,
        not in a dialog. One reload runs at a time: asked for while one runs, the
        next starts when it has been answered (after the views have asked for their
        new drawings, which run first). Returns False when there is nothing to reload
        (no model, or another one is opening)."""
        if self.info is None or self._open_id is not None:
            return False
        if not quiet and self._awaited is not None:
            self._stop_waiting()
        if self._reload_id is not None:
            self._reload_again = quiet if self._reload_again is None else \
                (quiet and self._reload_again)
            return True
        try:
            source = paths.resolve(self.info["path"])
        except paths.ModelPathError as e:
            self._reload_failed(str(e), quiet)
            return False
        self._reload_quiet = quiet
        self._reload_id = self.worker.submit("open", "load", source, eval_mode=self.eval_mode)
        self._reload_ids.add(self._reload_id)
        return True

    def _stop_waiting(self):
        """The user reloads the model shown while a file that could not be read was
        awaited: that file is no longer opened at its next save, and following goes
        back to the shown model's files."""
        self._awaited = None
        self._label_model()
        if self.following:
            self.follower.follow(self._follow_paths(self.info))

    def set_following(self, on=True):
        """Reloads the open model whenever its files change on disk (on), or stops."""
        self.following = bool(on)
        self.follow_action.setChecked(self.following)
        if self.following and self.info is not None:
            self.follower.follow(self._follow_paths(self.info))
        elif not self.following:
            self.follower.stop()
            if self._awaited is not None:   # no longer waiting for a model to appear
                self._awaited = None
                self._label_model()
        self._label_follow()

    @staticmethod
    def _follow_paths(info):
        return followed_paths(info["path"], info["load_path"])

    def _reload_failed(self, reason, quiet):
        self.reload_error = reason
        self._label_follow()
        if not quiet:
            self.show_error("Could not reload the model", reason)

    def _label_follow(self):
        parts = ["following file changes"] if self.following else []
        if self.reloads:
            parts.append(f"reloaded {self.reloads}× (last {self._reloaded_at})")
        if self.reload_error:
            parts.append("last reload failed, previous model kept")
        self.follow_label.setText("  ·  ".join(parts))
        self.follow_label.setToolTip(f"Last reload failed: {self.reload_error}"
                                     if self.reload_error else "")
        self.follow_label.setVisible(bool(parts))
