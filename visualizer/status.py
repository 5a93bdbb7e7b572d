"""The main window's status bar: the model open, TensorFlow's state, frames per
second and the last computation's latency (a `MainWindow` mixin)."""

import time

from PySide6 import QtWidgets

from visualizer.views.base import ElidedLabel

__all__ = ["StatusReadout"]


class StatusReadout:
    """`MainWindow` methods: `_build_status` makes the status bar's labels,
    `_label_model` names the model open, and `frame_drawn` / `fps` /
    `_update_readout` keep the frame rate and latency shown."""

    def _build_status(self):
        bar = self.statusBar()
        self.model_label = ElidedLabel("no model")
        self.tf_label = QtWidgets.QLabel("TensorFlow: loading…")
        self.fps_label = QtWidgets.QLabel("– fps")
        self.latency_label = QtWidgets.QLabel("last compute –")
        self.follow_label = QtWidgets.QLabel("")
        self.follow_label.hide()
        bar.addWidget(self.model_label, 1)
        for label in (self.follow_label, self.tf_label, self.fps_label, self.latency_label):
            bar.addPermanentWidget(label)

    def _label_model(self):
        info = self.info
        if info is None:
            self.model_label.setText("no model open")
            return
        layers = info["num_layers"] if info["num_layers"] is not None else "?"
        context = "" if info["context_dim"] is None else f"  ·  context C = {info['context_dim']}"
        self.model_label.setText(f"{info['name']}  ·  {info['kind']}  ·  D = {info['event_dim']}"
                                 f"{context}  ·  {layers} layers  ·  {info['path']}")

    def frame_drawn(self, view):
        if view is self.current_view():
            self._frames.append(time.perf_counter())
            if len(self._frames) == 1:
                self._update_readout()

    def fps(self):
        """Frames per second the current view drew over the last second."""
        now = time.perf_counter()
        recent = [t for t in self._frames if now - t <= 1.0]
        if len(recent) < 2:
            return 0.0
        return (len(recent) - 1) / max(recent[-1] - recent[0], 1e-6)

    def _update_readout(self):
        fps = self.fps()
        self.fps_label.setText(f"{fps:.1f} fps" if fps else "– fps")
        if self.latency is not None:
            self.latency_label.setText(f"last compute {self.latency * 1000:.1f} ms")
