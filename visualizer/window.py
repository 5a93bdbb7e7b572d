"""The main window: tabs for the views, menus, status readout, model opening."""

import collections
import time
from pathlib import Path

import numpy as np
from PySide6 import QtCore, QtWidgets

from visualizer import marginals, paths
from visualizer.context import ContextPanel
from visualizer.exporting import ExportActions
from visualizer.follow import FileFollower, Following, followed_paths, signature
from visualizer.help import HelpActions
from visualizer.keys import ViewKeys
from visualizer.menus import RECENT_LIMIT, Menus
from visualizer.preferences import RememberedUI
from visualizer.projection import ProjectionPanel
from visualizer.status import StatusReadout
from visualizer.views import VIEWS, warm_up_plan
from visualizer.worker import KEEP_WARM_S, WARM_UP_PREFIX, Worker

__all__ = ["MainWindow", "RECENT_LIMIT"]


def first_dims(info):
    """The two coordinates a model opens on: the first two, or for a flow of pictures
    (`info["image"]`) with data to tell, the two pixels that vary most in it (the
    first ones are often a blank border, as the Pairs view's are chosen)."""
    reference = info.get("reference")
    if info["event_dim"] > 2 and info.get("image") is not None and reference is not None:
        return tuple(marginals.most_varied(reference, 2))
    return (0, 1)


class MainWindow(Following, ExportActions, HelpActions, RememberedUI, ViewKeys, Menus,
                 StatusReadout, QtWidgets.QMainWindow):
    """The visualizer window; computations go to one `worker.Worker`.

    Args:
        settings: a `QSettings` for recent files (default: the user's).
        warm_up: after a model opens, compile the shapes the views use
            (`views.warm_up_plan`) while the compute thread is idle, and keep
            TensorFlow's threads warm after each request (`worker` notes). Off
            (screenshots), neither: the keep-warm shape would not be compiled
            beforehand, so its first evaluation would compile it between two
            requests (3 s for the moons model; `--demo` took 33 s instead of 25).
        eval_mode: how a `.keras` flow runs (`kerasflows.Flow.eval_mode`):
            `"xla"` is fastest once each shape is compiled.
        remember: restore the window's size, docks, last view and the
            `REMEMBERED` controls from `settings`, save them on close, and add
            each model opened to the recent files (off for screenshots and
            benchmarks, which must not depend on or change the user's choices).

    File ▸ Reload opens the current model's path again, and File ▸ Follow
    file changes does so whenever its files change on disk (a flow being
    trained with a per-epoch checkpoint): the views keep their region, layer,
    point, context and dimensions, and the new weights replace the old ones
    as they are computed. A reload that fails (a file caught mid-write) keeps
    the previous model; when following, it says so in the status bar instead
    of a dialog, and the next change is tried again. So is a model opened while
    following that cannot be read (caught mid-write): the window follows its
    path, keeps the model shown before, and opens it at its next save.

    Signals:
        model_opened(dict): a model finished opening (its `compute.describe` info).
        model_reloaded(dict): the open model was reloaded (new info; the views kept
            their state). `model_opened` is emitted too.
        failed(str): an error was shown to the user.
    """

    model_opened = QtCore.Signal(object)
    model_reloaded = QtCore.Signal(object)
    failed = QtCore.Signal(str)

    def __init__(self, settings=None, warm_up=True, eval_mode="xla", remember=True):
        super().__init__()
        self.remember = remember
        self.settings = settings or QtCore.QSettings("kerasflows", "visualizer")
        self.warm_up, self.eval_mode = warm_up, eval_mode
        self.info = self.projection = self.error_box = self.info_box = self.context = None
        self.generation = 0
        self.tf_ready = False
        self.following = False
        self.reloads = 0            # reloads of the open model so far
        self.reload_error = None    # why the last reload failed, or None
        self._open_id = self._reload_id = None     # the open / reload being answered
        self._reload_ids = set()    # reloads submitted and not answered (or replaced)
        self._reload_quiet = False
        self._reload_again = None   # None, or the `quiet` of a reload asked for meanwhile
        # (path, context) to open once it exists; while it opens, `_open_id` is its request
        self._awaited = None
        self._opened_from = ((), None)  # the files an open read, and their signature then
        self.follower = FileFollower(self)
        self.follower.changed.connect(self._followed_change)
        self._frames = collections.deque(maxlen=240)
        self.latency = None
        self.worker = Worker(self, keep_warm=KEEP_WARM_S if warm_up else 0.0)
        self.worker.result.connect(self._on_result)
        self.views = {name: cls(self) for name, cls in VIEWS.items()}
        for view in self.views.values():
            view.mode_changed.connect(lambda: self._update_dock())
        self._routes = {kind: v for v in self.views.values() for kind in v.kinds}
        self.tabs = QtWidgets.QTabWidget()
        for view in self.views.values():
            self.tabs.addTab(view, view.title)
        self.tabs.currentChanged.connect(self._tab_changed)
        self.setCentralWidget(self.tabs)
        self._build_docks()
        self._build_status()
        self._view_actions = {}     # view name -> its menu actions (`keys.ViewKeys`)
        self._share_docks = False   # the docks' heights to be set at the next `_update_dock`
        self._build_menus()
        self.setAcceptDrops(True)
        self.setWindowTitle("kerasflows visualizer")
        self.resize(1280, 840)
        self._readout = QtCore.QTimer(self)
        self._readout.setInterval(250)
        self._readout.timeout.connect(self._update_readout)
        self._readout.start()
        if remember:
            self._restore_ui()

    # -- construction ----------------------------------------------------------
    def _build_docks(self):
        self.panel = ProjectionPanel()
        self.panel.changed.connect(self._projection_changed)
        self.dock = self._side_dock("Dimensions shown", self.panel)
        self.context_panel = ContextPanel()
        self.context_panel.changed.connect(self.set_context)
        self.context_dock = self._side_dock("Context", self.context_panel)

    def _side_dock(self, title, widget):
        """A movable dock on the right holding `widget`, hidden until a model needs it."""
        dock = QtWidgets.QDockWidget(title, self)
        dock.setObjectName(f"dock: {title}")        # named, so saveState can place it
        dock.setWidget(widget)
        dock.setFeatures(QtWidgets.QDockWidget.DockWidgetFeature.DockWidgetMovable)
        self.addDockWidget(QtCore.Qt.DockWidgetArea.RightDockWidgetArea, dock)
        dock.hide()
        return dock

    # -- opening models ----------------------------------------------------------------
    def start(self, path=None, context=None, follow=False):
        """Starts the compute thread (which imports TensorFlow) and opens `path` (a
        conditional flow at `context`); `follow`: reload it whenever its files change."""
        self.worker.start()
        if follow:
            self.set_following(True)
        if path is not None and follow and not Path(path).expanduser().exists():
            self._await(path, context)
        elif path is not None:
            self.open_path(path, context=context)

    def open_path(self, path, context=None):
        """Opens a model (asynchronously); bad paths give the error dialog at once.
        A conditional flow opens at `context` (`[C]`; default zeros)."""
        try:
            source = paths.resolve(path)
        except paths.ModelPathError as e:
            self.show_error("Could not open the model", str(e))     # (e names the path)
            return False
        except Exception as e:          # a case the checks miss: said, and the app goes on
            self.show_error("Could not open the model", f"{path}: {type(e).__name__}: {e}")
            return False
        self.model_label.setText(f"opening {source.path} …")
        self.follower.stop()             # the new model is followed once it has opened,
        # from the files as they were before it was read: a save while it opens is a change
        followed = followed_paths(source.path, source.load_path)
        self._opened_from = (followed, signature(followed))
        # Following, a file that cannot be read yet (mid-write) is opened at its next save.
        self._awaited = (str(source.path), context) if self.following else None
        self._reload_id = self._reload_again = None
        self._open_id = self.worker.submit("open", "load", source, eval_mode=self.eval_mode,
                                           context=context)
        self._update_model_actions()
        return True

    def open_dialog(self):
        path, _ = QtWidgets.QFileDialog.getOpenFileName(
            self, "Open a flow", "", "Keras flows (*.keras);;SavedModel (saved_model.pb);;"
            "Model folder (manifest.json);;All files (*)")
        if path:
            self.open_path(path)        # (a saved_model.pb or manifest.json: its folder)

    def _opened(self, result, reload=False):
        info, old = result.value, self.info
        # A reload keeps what the user set unless the model's shape changed.
        same = (reload and old is not None and info["path"] == old["path"]
                and info["event_dim"] == old["event_dim"]
                and info["context_dim"] == old["context_dim"])
        self.info, self.generation = info, result.generation
        if not same:
            self.projection = self.panel.set_model(info["event_dim"], info["data_mean"],
                                                  info.get("data_names"), first_dims(info))
            conditional = info["context_dim"] is not None
            self.context = (self.context_panel.set_model(info["context"], info["context_names"],
                                                         info["context_ranges"],
                                                         info["context_steps"])
                            if conditional else None)
            if not conditional:         # a coordinate still playing would send contexts
                self.context_panel.stop()
            self.context_dock.setVisible(conditional)
            self._share_docks = conditional     # new controls: share the height anew
        self._label_model()
        self.setWindowTitle(f"kerasflows visualizer — {info['name']}")
        if reload:
            self.reloads += 1
            self._reloaded_at = time.strftime("%H:%M:%S")
            self.reload_error = None
        else:
            self.reloads, self.reload_error = 0, None
            if self.remember:       # (screenshots and benchmarks leave the settings alone)
                self._remember(info["path"])
        if self.following and list(self.follower.paths) != self._follow_paths(info):
            self.follower.follow(self._follow_paths(info))
            if not reload and self._opened_from[0] == self._follow_paths(info):
                self.follower.reported = self._opened_from[1]   # the poll sees a later save
        self._label_follow()
        for view in self.views.values():
            view.set_model(info, self.projection, reload=same)
        self._update_dock()
        self._update_view_actions()
        self._update_model_actions()
        self.current_view().activate()
        # Not after the reloads of a followed file: the next save replaces the functions
        # the warm-up would compile, and it would take the cores from the training run.
        if self.warm_up and not (reload and self.following):
            self._submit_warm_up(info)
        if reload:
            self.model_reloaded.emit(info)
        self.model_opened.emit(info)

    def _submit_warm_up(self, info):
        for method, rows in warm_up_plan(info):
            self.submit(f"{WARM_UP_PREFIX}/{method}/{rows}", "warm_up", method, rows)

    # -- results --------------------------------------------------------------------------
    def submit(self, kind, func, *args, **kwargs):
        """Queues a computation for the current model (at the current context, for a
        conditional flow); returns its request id."""
        if self.context is not None:
            kwargs["context"] = self.context
        return self.worker.submit(kind, func, *args, generation=self.generation, **kwargs)

    def _on_result(self, result):
        if result.kind == "ready":
            self.tf_ready = result.error is None
            self.tf_label.setText("TensorFlow ready" if self.tf_ready else "TensorFlow failed")
            if result.error:
                self.show_error("TensorFlow could not be imported", result.error)
        elif result.kind == "open":
            # Every model that opened is shown, in order (the compute thread now runs
            # it), even when a later open is on its way.
            reload = result.request_id in self._reload_ids
            self._reload_ids = {i for i in self._reload_ids if i > result.request_id}
            opened = result.request_id == self._open_id
            awaited = self._awaited if opened else None
            if opened:
                self._open_id = self._awaited = None
                self._update_model_actions()
            if result.error and reload:
                self._reload_failed(result.error, self._reload_quiet)
            elif result.error and awaited:      # caught mid-write: wait for the next change
                self._await(awaited[0], awaited[1], reason=result.error,
                            read_from=self._opened_from)
            elif result.error:
                self._label_model()
                self.show_error("Could not open the model", result.error)
            else:
                self._opened(result, reload=reload)
            if reload and result.request_id == self._reload_id:
                self._reload_id = None
                again, self._reload_again = self._reload_again, None
                if again is not None:
                    self.reload(quiet=again)
        elif result.generation == self.generation and result.kind in self._routes:
            view = self._routes[result.kind]
            if view is self.current_view():
                self.latency = result.seconds
            view.receive(result)

    # -- views and projection ---------------------------------------------------------------
    def current_view(self):
        return self.tabs.currentWidget()

    def show_view(self, name):
        self.tabs.setCurrentWidget(self.views[name])
        return self.views[name]

    def _update_dock(self):
        """The *Dimensions shown* dock is there for a flow with D > 2 while the
        current view draws the two coordinates it chooses (`View.shows_projection`:
        not pictures, not the Pairs view's marginals). Shown
        with the *Context* dock, it takes the height the context's controls leave."""
        shown = (self.info is not None and self.info["event_dim"] > 2
                 and self.current_view().shows_projection())
        appears = shown and not self.dock.isVisible()
        self.panel.set_holds(self.current_view().holds_values)
        self.dock.setVisible(shown)
        if (appears or self._share_docks) and self.context_dock.isVisible():
            self._share_docks = False
            context = self.context_dock.sizeHint().height()
            gap = self.style().pixelMetric(
                QtWidgets.QStyle.PixelMetric.PM_DockWidgetSeparatorExtent, None, self)
            rest = self.centralWidget().height() - context - gap     # (docks span its height)
            self.resizeDocks([self.dock, self.context_dock],
                             [max(rest, self.dock.minimumSizeHint().height()), context],
                             QtCore.Qt.Orientation.Vertical)

    def _tab_changed(self, index):
        self._frames.clear()
        self._update_dock()
        self._update_view_actions()
        for view in self.views.values():
            if view is not self.current_view():
                view.deactivate()
        if self.info is not None:
            self.current_view().activate()

    def inspect_point(self, x):
        """Shows the Inspector's numbers for the point `x [D]` (e.g. a sample picture
        clicked in the Samples view)."""
        view = self.views["inspector"]
        view.point = np.asarray(x, np.float32)
        view.invalidate()           # its refresh inspects `point`: now, or when shown
        self.show_view("inspector")

    def set_context(self, context):
        """Shows a conditional flow at `context` `[C]`: every view recomputes. Ignored
        while no conditional flow is open (an unconditional flow takes no context)."""
        if self.info is None or self.info["context_dim"] is None:
            return
        self.context = np.asarray(context, np.float32).reshape(-1)
        for view in self.views.values():
            view.set_context(self.context)

    def _projection_changed(self, projection):
        self.projection = projection
        for view in self.views.values():
            view.set_projection(projection)

    # -- errors and closing ----------------------------------------------------
    def show_error(self, title, text):
        """Shows a non-blocking error dialog (kept as `error_box`) and emits `failed`."""
        if self.error_box is not None:
            self.error_box.close()
        self.error_box = QtWidgets.QMessageBox(QtWidgets.QMessageBox.Icon.Warning, title, text,
                                               QtWidgets.QMessageBox.StandardButton.Ok, self)
        self.error_box.open()
        self.failed.emit(f"{title}: {text}")

    def closeEvent(self, event):
        if self.remember:
            self.save_ui()
        # Not waited for: the window goes at once. The compute thread ends after its
        # request in flight, and the process waits for that at exit (worker module notes).
        self.worker.stop()
        super().closeEvent(event)
