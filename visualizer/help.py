"""Help ▸ Keyboard Shortcuts (listed from the menus' own actions, so always true)
and Help ▸ About (the versions in use); a `MainWindow` mixin."""

import importlib.metadata
import re
import sys

from PySide6 import QtCore, QtGui, QtWidgets

from visualizer import compile_cache

__all__ = ["HelpActions", "ABOUT_PACKAGES", "KEY_NAMES"]

#: Key names shown in place of Qt's own, which abbreviate the two Page keys unevenly.
KEY_NAMES = {"PgUp": "Page Up", "PgDown": "Page Down"}
#: Packages whose versions Help > About lists.
ABOUT_PACKAGES = ("kerasflows", "tensorflow", "keras", "tensorflow-probability", "PySide6",
                  "pyqtgraph", "numpy")


class HelpActions:
    """`MainWindow` methods behind the Help menu; the last box shown is `info_box`."""

    def shortcuts(self):
        """`[(menu, action, shortcuts)]` of every menu action that has a shortcut."""
        out = []
        names = re.compile(r"\b(" + "|".join(KEY_NAMES) + r")\b")
        for menu_action in self.menuBar().actions():
            menu = menu_action.menu()
            for action in (menu.actions() if menu else []):
                keys = [names.sub(lambda m: KEY_NAMES[m.group(1)],
                                  k.toString(QtGui.QKeySequence.SequenceFormat.NativeText))
                        for k in action.shortcuts()]
                if keys:
                    out.append((menu_action.text().replace("&", ""),
                                action.text().replace("&", "").rstrip("…"), keys))
        return out

    def show_shortcuts(self):
        rows = "".join(f"<tr><td>{m} ▸ {a}</td><td>&nbsp;&nbsp;<b>{' or '.join(k)}</b></td></tr>"
                       for m, a, k in self.shortcuts())
        self._show_info("Keyboard shortcuts", f"<table>{rows}</table><p>The Layers keys act "
                        "while the Layers view is shown, R while the Samples or Pairs view is; a "
                        "focused check box or button keeps Space for itself. Layers view: "
                        "drag the slider or click a thumbnail; Inspector: click a point. "
                        "Mouse wheel zooms and dragging pans the plots.</p>")

    def about_text(self):
        versions = []
        for name in ABOUT_PACKAGES:
            module = sys.modules.get(name)         # PySide6 comes as pyside6-essentials
            try:
                version = getattr(module, "__version__", None) or importlib.metadata.version(name)
                versions.append(f"{name} {version}")
            except importlib.metadata.PackageNotFoundError:
                versions.append(f"{name}: not installed")
        versions.append(f"Qt {QtCore.qVersion()}")
        model = self.info["path"] if self.info else "no model open"
        cache = compile_cache.in_use()
        return ("<p><b>kerasflows visualizer</b>: what a trained normalizing flow does: "
                "samples, density, per-layer warping, a point inspector and every pair of "
                "coordinates with their marginals.</p>"
                f"<p>{'<br>'.join(versions)}</p><p>Model: {model}</p>"
                f"<p>Compiled code kept in: {cache if cache else 'nowhere (cache off)'}</p>")

    def show_about(self):
        self._show_info("About the kerasflows visualizer", self.about_text())

    def _show_info(self, title, html):
        """A non-blocking information box (kept as `info_box`)."""
        box = QtWidgets.QMessageBox(QtWidgets.QMessageBox.Icon.NoIcon, title, html,
                                    QtWidgets.QMessageBox.StandardButton.Ok, self)
        box.setTextFormat(QtCore.Qt.TextFormat.RichText)
        box.open()
        self.info_box = box
        return box
