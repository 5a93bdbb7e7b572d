"""File ▸ Export view as PNG, File ▸ Export view data (the arrays a view draws, as
`.npz`), File ▸ Export layers animation (the Layers view played into a GIF) and
File ▸ Export context animation (the view shown while a conditional flow's
context sweeps its range; `visualizer.animation`); a `MainWindow` mixin."""

from pathlib import Path

import numpy as np
from PySide6 import QtCore, QtWidgets

from visualizer import animation, headless

__all__ = ["ExportActions", "MAX_ANIMATION_SIDE"]

#: The longest side of an exported animation's frames, in pixels: the Layers plot's
#: shape, scaled down to fit (a full-window plot would make frames of 1280 pixels).
MAX_ANIMATION_SIDE = 960


def with_suffix(path, suffix, allowed=None):
    """A save dialog's `path` with `suffix` added unless it ends in one of `allowed`
    (default: `suffix`), any case: a name typed without one ("mypicture") got the
    PNG bytes under no suffix, one ending ".bmp" PNG bytes under ".bmp". "" stays
    "" (the dialog cancelled)."""
    if path and Path(path).suffix.lower() not in (allowed or (suffix,)):
        path += suffix
    return path


class ExportActions:
    """`MainWindow` methods that save the current view."""

    def export_dialog(self):
        path, _ = QtWidgets.QFileDialog.getSaveFileName(
            self, "Export view as PNG", f"{self.current_view().name}.png", "PNG image (*.png)")
        path = with_suffix(path, ".png", (".png", ".jpg", ".jpeg"))
        if path:
            self._export("Could not save the image", path, self.save_view_png)

    def _export(self, title, path, save):
        """`save(path)`; an `OSError` shown as `title`, saying whether the file `path`
        named before is kept (`headless.write_replacing`)."""
        kept = "the file already there is kept" if Path(path).is_file() else \
            "nothing was written"
        try:
            save(path)
        except OSError as e:
            self.show_error(title, f"{path} could not be written ({e.strerror or e}); {kept}.")

    def save_view_png(self, path):
        """Saves the current view (controls and plot) as a PNG (a JPEG for a `.jpg` or
        `.jpeg` name), replacing the file at `path` only once it is written
        (`headless.write_replacing`); returns `path`, or raises `OSError`."""
        image = headless.image_bytes(self.current_view().export_widget().grab(), path)
        return headless.write_replacing(path, lambda f: f.write(image))

    def view_data(self):
        """The current view's arrays (`View.export_data`) with what they were drawn
        from: `view`, `model`, `dims` (the coordinates shown), `held` (the values of the
        others, for a view that draws at them: not Samples, whose scatter is of every
        sample's two coordinates, nor Pairs, whose `dims` are its own coordinates)
        and, for a conditional flow, `context`: those they were computed
        at (`View.drawn_projection`, `View.drawn_context`; the panels' may have moved on
        while the view redraws). None when nothing is drawn."""
        view = self.current_view()
        data = view.export_data() if self.info is not None else None
        if data is None:
            return None
        data = {"view": view.name, "model": self.info["path"], **data}
        if view.uses_projection:
            shown = view.drawn_projection or self.projection
            data["dims"] = np.asarray(shown.dims)
            if view.holds_values:
                data["held"] = shown.held
        if self.context is not None:
            data["context"] = view.drawn_context
        return data

    def save_view_data(self, path):
        """Saves `view_data()` as a `.npz` (loadable without pickle) named `path` as
        given (np.savez would add `.npz` to `Data.NPZ`), replacing the file there only
        once it is written (`headless.write_replacing`); returns success (False: nothing
        drawn), or raises `OSError`."""
        data = self.view_data()
        if data is None:
            return False
        arrays = {k: np.asarray(v) for k, v in data.items()}
        headless.write_replacing(path, lambda f: np.savez(f, **arrays))
        return True

    def export_data_dialog(self):
        if self.view_data() is None:
            self.show_error("Nothing to export", "This view has not drawn anything yet.")
            return
        path, _ = QtWidgets.QFileDialog.getSaveFileName(
            self, "Export view data", f"{self.current_view().name}.npz", "NumPy arrays (*.npz)")
        path = with_suffix(path, ".npz")
        if path:
            self._export("Could not save the data", path, self.save_view_data)

    def animation_size(self):
        """The frame size (width, height) of an exported animation: the Layers plot's,
        its longer side at most `MAX_ANIMATION_SIDE`."""
        plot = self.views["layers"].plot
        w, h = max(plot.width(), 16), max(plot.height(), 16)
        scale = min(1.0, MAX_ANIMATION_SIDE / max(w, h))
        return int(round(w * scale)), int(round(h * scale))

    def export_animation_dialog(self):
        view = self.views["layers"]
        if view.grid_states is None:
            why = view.message.text() if view.message.isVisibleTo(view) else \
                "The Layers view has not drawn its states yet."
            self.show_error("Nothing to animate", why)
            return
        path = self._ask_gif_path("Export layers animation", "layers.gif")
        if path:
            self.save_layers_animation(path)

    def _progress(self, title, label, path):
        """A window-modal progress dialog with Cancel, and the `progress(done, total)`
        callback that moves it (it says the file is being written once the frames are
        in, and stays up until `reset()`)."""
        dialog = QtWidgets.QProgressDialog(label, "Cancel", 0, 1, self)
        dialog.setWindowTitle(title)
        dialog.setWindowModality(QtCore.Qt.WindowModality.WindowModal)
        dialog.setMinimumDuration(400)
        dialog.setAutoReset(False)          # kept up while the file is written
        dialog.setAutoClose(False)

        def progress(done, total):
            dialog.setMaximum(total)
            if done == total:               # the frames recorded; the file takes a while
                dialog.setLabelText(f"Writing {Path(path).name}…")
                dialog.setCancelButton(None)
            dialog.setValue(done)           # (a modal dialog's setValue processes events)
            return not dialog.wasCanceled()
        return dialog, progress

    def _save_animation(self, make, title, label, path):
        """`make(progress, cancelled)` with a progress dialog (`cancelled()`: its Cancel
        was pressed); its errors shown."""
        dialog, progress = self._progress(title, label, path)
        try:
            return make(progress, dialog.wasCanceled)
        except (animation.AnimationError, OSError) as e:
            self.show_error("Could not save the animation", f"{path}: {e}")
            return None
        finally:
            dialog.reset()
            dialog.deleteLater()

    def _ask_gif_path(self, title, name):
        path, _ = QtWidgets.QFileDialog.getSaveFileName(self, title, name,
                                                        "GIF animation (*.gif)")
        return with_suffix(path, animation.ANIMATION_SUFFIX)

    def save_layers_animation(self, path, size=None):
        """Plays the Layers view's states, first to last at its speed (layers/s),
        into the animated GIF `path`, `size` (width, height) pixels (default
        `animation_size()`), with a progress dialog that can cancel it; returns
        the number of frames written, None when cancelled or on an error (shown)."""
        view = self.views["layers"]
        return self._save_animation(
            lambda progress, _: animation.save_layers_animation(
                view, path, size or self.animation_size(), view.speed.value(), progress),
            "Export layers animation", "Recording the layers…", path)

    def export_context_animation_dialog(self):
        if self.info is None or self.info["context_dim"] is None:
            self.show_error("No context to sweep", "Export context animation records a "
                            "conditional flow's view while its context sweeps its range; "
                            "the model open is not conditional.")
            return
        names = self.context_panel.names
        k = 0
        if len(names) > 1:
            name, ok = QtWidgets.QInputDialog.getItem(
                self, "Export context animation", "Sweep the context coordinate:", names,
                0, False)
            if not ok:
                return
            k = names.index(name)
        path = self._ask_gif_path("Export context animation",
                                  f"{self.current_view().name}-{names[k]}.gif")
        if path:
            self.save_context_animation(path, k)

    def save_context_animation(self, path, k=0):
        """Records the view shown into the animated GIF `path` while context coordinate
        `k` sweeps its range (`animation.save_context_animation`), with a progress
        dialog that can cancel it (also while a frame is drawn); returns the number of
        frames written, None when cancelled or on an error (shown)."""
        return self._save_animation(
            lambda progress, cancelled: animation.save_context_animation(
                self, path, k, progress, cancelled=cancelled),
            "Export context animation", "Recording the context sweep…", path)
