"""The main window's menus, its recent files and opening a model dropped on it
(a `MainWindow` mixin)."""

from PySide6 import QtCore, QtGui

__all__ = ["Menus", "RECENT_LIMIT"]

RECENT_LIMIT = 8


class Menus:
    """`MainWindow` methods: the menu bar (`_build_menus`), its actions
    (`_action`), File ▸ Open Recent (the last `RECENT_LIMIT` models opened, in
    the window's `settings`) and drag and drop of a model file or folder (a local
    one: other URLs are refused)."""

    def _action(self, menu, text, slot, shortcuts=()):
        action = QtGui.QAction(text, self)
        action.setShortcuts([QtGui.QKeySequence(s) for s in shortcuts])
        action.setShortcutContext(QtCore.Qt.ShortcutContext.WindowShortcut)
        action.triggered.connect(slot)
        menu.addAction(action)
        return action

    def _build_menus(self):
        bar = self.menuBar()
        file = bar.addMenu("&File")
        self._action(file, "&Open…", self.open_dialog, ["Ctrl+O"])
        self.recent_menu = file.addMenu("Open &Recent")
        # as the settings file has them now (another window may have opened a model)
        self.recent_menu.aboutToShow.connect(self._reread_recent)
        # (off until they can act: `_update_model_actions`)
        self.reload_action = self._action(file, "Re&load", self.reload, ["Ctrl+R", "F5"])
        self.follow_action = self._action(file, "&Follow File Changes", self.set_following,
                                          ["Ctrl+Shift+R"])
        self.follow_action.setCheckable(True)
        self.export_png_action = self._action(file, "&Export view as PNG…", self.export_dialog,
                                              ["Ctrl+E"])
        self._action(file, "Export view &data…", self.export_data_dialog, ["Ctrl+Shift+E"])
        self._view_action("layers", file, "Export layers &animation…",
                          self.export_animation_dialog, ["Ctrl+Shift+A"])
        self.context_animation_action = self._action(
            file, "Export &context animation…", self.export_context_animation_dialog,
            ["Ctrl+Shift+C"])
        file.addSeparator()
        self._action(file, "&Quit", self.close, ["Ctrl+Q"])
        view = bar.addMenu("&View")
        for i, v in enumerate(self.views.values()):
            self._action(view, v.title, lambda _=False, i=i: self.tabs.setCurrentIndex(i),
                         [f"Ctrl+{i + 1}"])
        layers = bar.addMenu("&Layers")         # (these act in their own view only: keys.py)
        self._view_action("layers", layers, "&Previous layer",
                          lambda: self.views["layers"].step_layer(-1), ["[", "PgUp"])
        self._view_action("layers", layers, "&Next layer",
                          lambda: self.views["layers"].step_layer(1), ["]", "PgDown"])
        self._view_action("layers", layers, "Play / &Pause", self.views["layers"].toggle_play,
                          ["Space"])
        samples = bar.addMenu("&Samples")
        self._view_action("samples", samples, "&Resample", self.views["samples"].resample, ["R"])
        self._view_action("pairs", samples, "Resample &Pairs", self.views["pairs"].resample, ["R"])
        help_menu = bar.addMenu("&Help")
        self._action(help_menu, "&Keyboard Shortcuts", self.show_shortcuts, ["F1"])
        self._action(help_menu, "&About", self.show_about)
        self._rebuild_recent()
        self._update_model_actions()

    def _update_model_actions(self):
        """Enables the File actions that need a model open (Reload, Export view as PNG)
        and a conditional one (Export context animation) while there is one; Reload
        not while another model opens (it would do nothing)."""
        self.export_png_action.setEnabled(self.info is not None)
        self.reload_action.setEnabled(self.info is not None and self._open_id is None)
        self.context_animation_action.setEnabled(self.info is not None
                                                 and self.info["context_dim"] is not None)

    def _recent(self):
        value = self.settings.value("recent", [])
        value = [value] if isinstance(value, str) else value
        try:        # a damaged file's entries that are not paths (`@Invalid()`) are left out
            return [p for p in value if isinstance(p, str) and p]
        except TypeError:
            return []

    def _remember(self, path):
        """Puts `path` first in the recent files, read afresh from the settings file
        and written back at once: another window (process) may have added its own."""
        self.settings.sync()
        recent = [path] + [p for p in self._recent() if p != path]
        self.settings.setValue("recent", recent[:RECENT_LIMIT])
        self.settings.sync()
        self._rebuild_recent()

    def _reread_recent(self):
        self.settings.sync()
        self._rebuild_recent()

    def _rebuild_recent(self):
        self.recent_menu.clear()
        for p in self._recent():
            # (`&&` shows an `&`; one alone would underline the next letter)
            self.recent_menu.addAction(p.replace("&", "&&"), lambda p=p: self.open_path(p))
        self.recent_menu.setEnabled(bool(self._recent()))

    def _dropped_files(self, event):
        """The local files and folders dragged (a web or sftp URL is not one)."""
        return [u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile()]

    def dragEnterEvent(self, event):
        if self._dropped_files(event):      # else refused: the cursor says it would not open
            event.acceptProposedAction()

    def dropEvent(self, event):
        files = self._dropped_files(event)
        if files:
            self.open_path(files[0])
            event.acceptProposedAction()
