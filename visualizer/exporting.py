"""File ▸ Export view as PNG and File ▸ Export view data (the arrays a view draws, as
`.npz`); a `MainWindow` mixin."""

import numpy as np
from PySide6 import QtWidgets

from visualizer import headless

__all__ = ["ExportActions"]


class ExportActions:
    """`MainWindow` methods that save the current view."""

    def export_dialog(self):
        path, _ = QtWidgets.QFileDialog.getSaveFileName(
            self, "Export view as PNG", f"{self.current_view().name}.png", "PNG image (*.png)")
        if path and not self.save_view_png(path):
            self.show_error("Could not save the image",
                            f"{path}: the PNG file could not be written there (does the "
                            "folder exist, and may you write to it?)")

    def save_view_png(self, path):
        """Saves the current view (controls and plot) as a PNG (a JPEG for a `.jpg` or
        `.jpeg` name); returns success."""
        return self.current_view().export_widget().grab().save(str(path),
                                                                 headless.image_format(path))

    def view_data(self):
        """The current view's arrays (`View.export_data`) with what they were drawn
        from: `view`, `model`, `dims` (the coordinates shown), `held` (the values of the
        others; not for the Pairs view, whose `dims` are its own coordinates and which
        holds none) and, for a conditional flow, `context`. None when nothing is drawn."""
        view = self.current_view()
        data = view.export_data() if self.info is not None else None
        if data is None:
            return None
        data = {"view": view.name, "model": self.info["path"], **data}
        if view.uses_projection:
            data.update(dims=np.asarray(self.projection.dims), held=self.projection.held)
        if self.context is not None:
            data["context"] = self.context
        return data

    def save_view_data(self, path):
        """Saves `view_data()` as a `.npz` (loadable without pickle); returns success."""
        data = self.view_data()
        if data is None:
            return False
        np.savez(path, **{k: np.asarray(v) for k, v in data.items()})
        return True

    def export_data_dialog(self):
        if self.view_data() is None:
            self.show_error("Nothing to export", "This view has not drawn anything yet.")
            return
        path, _ = QtWidgets.QFileDialog.getSaveFileName(
            self, "Export view data", f"{self.current_view().name}.npz", "NumPy arrays (*.npz)")
        if path:
            try:
                self.save_view_data(path)
            except OSError as e:
                self.show_error("Could not save the data", f"{path}: {e}")
