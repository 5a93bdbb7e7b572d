"""Layers view: a grid and a sample cloud as they stand after each layer.

A slider runs across layer positions 0..L (fractional positions blend two
consecutive states linearly), play/pause animates it, and a strip of small
multiples shows every state at once. Both directions: base to data (the
forward pass, sampling) and data to base (the inverse pass, density). The
plot's range follows the state shown: all of its grid and the bulk of its
points. For an image-shaped flow, "As images" shows the first samples as
pictures instead: noise becoming digits, layer by layer (or the reverse).

A flow with D > 2 is drawn in two coordinates, the others held fixed. A
layer that only reorders coordinates (`Permute`) would move the two shown
into positions of held ones; the view follows them instead
(`permutations`): base to data, the grid is laid in the base coordinates
that end up in the data coordinates chosen; data to base, in the data
coordinates chosen, and the later states show where those went.
"""

import numpy as np
from PySide6 import QtCore, QtWidgets

from visualizer import geometry, permutations
from visualizer.views import layer_labels
from visualizer.views.base import ElidedLabel, View, labeled
from visualizer.views.layer_canvas import LayerCanvas
from visualizer.views.strip import LayerStrip

__all__ = ["LayersView", "STEPS_PER_LAYER"]

STEPS_PER_LAYER = 100
CLOUD_POINTS = 2000
FRAME_MS = 16
#: Samples drawn as pictures in the main plot ("As images"), and in each thumbnail.
IMAGE_SAMPLES, STRIP_IMAGES = 16, 4


class LayersView(View):
    """Per-layer warping of space, animated."""

    name, title = "layers", "Layers"
    kinds = ("layers", "layers_reference")

    def __init__(self, host):
        super().__init__(host)
        self.direction = QtWidgets.QComboBox()
        self.direction.addItem("base → data (forward)", "forward")
        self.direction.addItem("data → base (inverse)", "inverse")
        self.play_button = QtWidgets.QPushButton("Play  (Space)")
        self.play_button.setCheckable(True)
        self.speed = QtWidgets.QDoubleSpinBox()
        self.speed.setRange(0.1, 10.0)
        self.speed.setValue(1.0)
        self.speed.setSuffix(" layers/s")
        self.slider = QtWidgets.QSlider(QtCore.Qt.Orientation.Horizontal)
        self.slider.setPageStep(STEPS_PER_LAYER)
        self.slider.setTickPosition(QtWidgets.QSlider.TickPosition.TicksBelow)
        self.slider.setTickInterval(STEPS_PER_LAYER)
        self.slider.setMinimumWidth(160)
        self.as_images = QtWidgets.QCheckBox("As images")
        self.as_images.setVisible(False)        # shown for image-shaped flows
        self.layer_label = ElidedLabel("")
        for w in (labeled("Direction", self.direction), self.play_button,
                  labeled("Speed", self.speed), self.slider, self.as_images):
            self.controls.addWidget(w)
        self.controls.addWidget(self.layer_label, 1)
        self.canvas = LayerCanvas()
        self.plot, self.grid, self.cloud, self.image_item = (
            self.canvas.plot, self.canvas.grid, self.canvas.cloud, self.canvas.image_item)
        self.layout().addWidget(self.plot, 1)
        self.strip = LayerStrip(self._jump_to)
        self.layout().addWidget(self.strip)
        self.plot.installEventFilter(self)     # the strip's height follows the plot's
        self.grid_states = self.cloud_states = self.connect = None
        self.image_states = None   # [L+1, IMAGE_SAMPLES, D]: the first samples, every coordinate
        self.regions = None        # [L+1, 4]: the plot's range for each state
        self.positions = None      # [L+1, 2]: the columns of each state drawn
        self.states_direction = None   # the direction the states were traced in
        self._sources = {}         # direction -> each step's `permutations.column_sources`
        self._notes = {}           # what the note under the controls says, by topic
        self._laid_at = None       # the start state's columns the grid was laid in
        self.timer = QtCore.QTimer(self)
        self.timer.setInterval(FRAME_MS)
        self.timer.timeout.connect(self._advance)
        self._clock = QtCore.QElapsedTimer()
        self.direction.currentIndexChanged.connect(lambda _: self.invalidate())
        self.slider.valueChanged.connect(lambda _: self.draw_frame())
        self.play_button.toggled.connect(self._play)
        self.as_images.toggled.connect(lambda _: self._show_states())
        self.as_images.toggled.connect(lambda _: self.mode_changed.emit())

    def eventFilter(self, watched, event):
        """On the plot's resize, sizes the strip for the height the two share
        (`LayerStrip.fit`): its own, and the plot's with it, settle at once."""
        if watched is self.plot and event.type() == QtCore.QEvent.Type.Resize:
            shared = self.plot.height()
            if self.strip.isVisibleTo(self):
                shared += self.strip.height() + self.layout().spacing()
            self.strip.fit(shared)
        return super().eventFilter(watched, event)

    # -- state ------------------------------------------------------------
    @property
    def position(self):
        """The fractional layer position shown, in [0, L]."""
        return self.slider.value() / STEPS_PER_LAYER

    def set_layer(self, k):
        self.slider.setValue(int(round(k * STEPS_PER_LAYER)))

    def model_changed(self):
        self.grid_states = self.cloud_states = self.image_states = None
        self.regions = self.positions = self.states_direction = None
        self._sources, self._notes = {}, {}
        image = self.info["image"]
        self.as_images.blockSignals(True)
        self.as_images.setChecked(bool(image and image["declared"]))
        self.as_images.setVisible(image is not None)
        self.as_images.blockSignals(False)
        # data -> base starts from the data sample, or flow samples (drawn at the context
        # a conditional flow opened at; redrawn here at the current one when it changes)
        self.reference, self.reference_context = self.info["reference"], self.info["context"]
        self._allow_inverse(self.info["invertible"])
        L = self.info["num_layers"] or 0
        self.slider.blockSignals(True)
        self.slider.setRange(0, L * STEPS_PER_LAYER)
        self.slider.setValue(0)
        self.slider.blockSignals(False)
        self.play_button.setChecked(False)

    def model_reloaded(self):
        if self.slider.maximum() != (self.info["num_layers"] or 0) * STEPS_PER_LAYER:
            self.model_changed()
            return
        self._sources, self._notes = {}, {}    # (set_model cleared the note)
        self.reference, self.reference_context = self.info["reference"], self.info["context"]
        self._allow_inverse(self.info["invertible"])
        if self.info["image"] is None:
            self.as_images.setChecked(False)
        self.as_images.setVisible(self.info["image"] is not None)

    def images_shown(self):
        """True when the states are drawn as pictures."""
        return bool(self.info and self.info["image"] and self.as_images.isChecked())

    def _allow_inverse(self, allowed):
        """Enables the data → base direction, or disables it (forward-only flows) with a note."""
        self.direction.blockSignals(True)
        if not allowed:
            self.direction.setCurrentIndex(0)
        self.direction.model().item(1).setEnabled(allowed)
        self.direction.blockSignals(False)
        text = ""
        if not allowed:
            layers = ", ".join(self.info["forward_only_layers"]) or "some layers"
            text = (f"data → base is unavailable: {layers} layers have no inverse, so only the "
                    "forward pass (base → data) can be traced.")
        self._note("inverse", text)

    def _note(self, topic, text):
        """Sets what the note says about `topic` ("" for nothing) and shows them all."""
        self._notes[topic] = text
        self.show_note("\n".join(t for t in self._notes.values() if t))

    def deactivate(self):
        super().deactivate()
        self.play_button.setChecked(False)

    def _following(self):
        """True when the view follows the coordinates shown through reorderings (D > 2)."""
        return self.info["event_dim"] > 2

    def _positions(self, direction):
        """`[L+1, 2]`: the columns of each state drawn (`permutations`), as far as known
        (before a first trace in this direction: the coordinates chosen, throughout)."""
        sources = self._sources.get(direction) if self._following() else None
        if sources is None:
            states = (self.info["num_layers"] or 0) + 1
            return np.tile(np.asarray(self.projection.dims), (states, 1))
        return permutations.followed_positions(sources, self.projection.dims,
                                               from_end=direction == "forward")

    def _inputs(self):
        """Grid lines and cloud in the space the chosen direction starts from."""
        p, info = self.projection, self.info
        rng = np.random.default_rng(0)
        if self.direction.currentData() == "forward":
            loc, scale = info["base_loc"], info["base_scale"]
            d = [int(v) for v in self._positions("forward")[0]]  # ending in the dims chosen
            region = (loc[d[0]] - 3 * scale[d[0]], loc[d[0]] + 3 * scale[d[0]],
                      loc[d[1]] - 3 * scale[d[1]], loc[d[1]] + 3 * scale[d[1]])
            held = geometry.Projection(p.event_dim, d, loc)
            shape = (CLOUD_POINTS, p.event_dim)
            df = info["base_df"]
            cloud = loc + scale * (rng.standard_normal(shape) if df is None
                                   else rng.standard_t(df, shape))
        else:
            region = geometry.robust_region(p.project(self.reference), pad=0.05)
            held = p
            cloud = self.reference[:CLOUD_POINTS]
        xy, connect = geometry.grid_lines(region)
        return held.embed(xy), connect, np.asarray(cloud, np.float32)

    def refresh(self):
        if not self.info["has_trace"]:
            self.show_message("This SavedModel has no trace / trace_inverse signatures, so "
                              "the per-layer states cannot be shown. The other views work.")
            self.drew()
            return
        context = self.host.context
        if (self.direction.currentData() == "inverse" and context is not None
                and not self.info["reference_is_data"]
                and not np.array_equal(context, self.reference_context)):
            self._drawing_at = np.array(context)     # samples of p(x | c) to start from
            self.submit("layers_reference", "samples", CLOUD_POINTS, 0)
            return
        grid, self.connect, cloud = self._inputs()
        self._split = len(grid)
        self._laid_at = self._positions(self.direction.currentData())[0].tolist()
        self.submit("layers", "layers", self.direction.currentData(),
                    np.concatenate([grid, cloud]))

    def on_result(self, result):
        if result.kind == "layers_reference":
            self.reference, self.reference_context = result.value["points"], self._drawing_at
            self.refresh()
            return
        direction = result.value["direction"]
        if direction != self.direction.currentData():
            return                      # traced before the direction was changed
        full = result.value["states"]
        latest = result.request_id == self._latest.get("layers")
        if self._following() and direction not in self._sources and latest:
            self._sources[direction] = [permutations.column_sources(a, b)
                                        for a, b in zip(full[:-1], full[1:])]
            if self._positions(direction)[0].tolist() != self._laid_at:
                self.refresh()          # the grid again, in the coordinates that end up shown
                return
        self.positions = self._positions(direction)
        states = np.stack([state[:, list(shown)] for state, shown in zip(full, self.positions)])
        self.grid_states, self.cloud_states = states[:, :self._split], states[:, self._split:]
        self.states_direction = direction
        self.keep_drawn(projection=True)
        # every coordinate, each in its data pixel: a Permute reversing them drew the
        # digits upside down in the states after it
        images = full[:, self._split:self._split + IMAGE_SAMPLES]
        sources = self._sources.get(direction) if self._following() else None
        if sources is not None:
            orders = permutations.column_orders(sources, images.shape[-1],
                                                from_end=direction == "forward")
            images = np.stack([state[:, order] for state, order in zip(images, orders)])
        self.image_states = images
        self.regions = np.array([geometry.covering_region(g, c)
                                 for g, c in zip(self.grid_states, self.cloud_states)])
        self._show_states()

    def _note_positions(self):
        """Says, when the coordinates shown move between positions, which ones are drawn
        (not while pictures are shown: they show every coordinate)."""
        text = ""
        if self._moved() and not self.images_shown():
            text = layer_labels.positions_note(self.positions, self._forward(), self.axis_name)
        self._note("positions", text)

    def _forward(self):
        """True when the states in hand go base to data (they stay until the trace of a
        direction newly chosen arrives; before any, the direction chosen)."""
        return (self.states_direction or self.direction.currentData()) == "forward"

    def picture(self, rows):
        """Samples `[n, D]` of an image-shaped flow tiled into one picture."""
        return geometry.tile_images(rows, self.info["image"]["shape"])

    def image_levels(self):
        """The values drawn black and white in the pictures."""
        return self.info["image"]["levels"]

    def _show_states(self):
        """Sets the plot and the strip up for the states in hand, as points or pictures."""
        if self.grid_states is None:
            return
        on = self.images_shown()
        self.canvas.show(self)
        self._note_positions()
        pictures = None
        if on:
            pictures = [self.picture(s[:STRIP_IMAGES]) for s in self.image_states]
        self.strip.show_states(self.grid_states, self.cloud_states, self.connect,
                               self.state_names(), self.regions, pictures=pictures,
                               levels=self.image_levels() if on else None)
        self.draw_frame()

    def export_data(self):
        """The states drawn, in the two coordinates shown: `grid_states [L+1, G, 2]`
        (grid polylines, cut where `grid_connect [G]` is False), `cloud_states
        [L+1, C, 2]`, `state_names [L+1]`, `shown_positions [L+1, 2]` (the columns of
        each state drawn: the coordinates shown, followed through reorderings), the
        direction and the slider position; drawn as pictures, also `image_states
        [L+1, n, D]` (every coordinate, in the data end's order through reorderings,
        as the pictures show them) and `image_shape`."""
        if self.grid_states is None:
            return None
        out = {"grid_states": self.grid_states, "grid_connect": self.connect,
               "cloud_states": self.cloud_states, "state_names": np.array(self.state_names()),
               "shown_positions": self.positions,
               "direction": self.states_direction, "position": self.position}
        if self.images_shown():     # the pictures' samples, every coordinate
            out.update(image_states=self.image_states,
                       image_shape=np.array(self.info["image"]["shape"]))
        return out

    def _moved(self):
        """True when the coordinates shown sit at other positions in some states."""
        return self.positions is not None and layer_labels.moved(self.positions)

    def axis_labels(self, k=0):
        """`[bottom, left]`: each axis the coordinate it starts as → the one it ends as
        (and, when they move, the position drawn in state `k`)."""
        return layer_labels.axis_labels(self.positions, k, self._forward(), self.axis_name)

    def state_names(self):
        """A short name for each of the L+1 states, in the direction they were traced."""
        return layer_labels.state_names(self.info["layer_names"], self.info["num_layers"],
                                        self._forward())

    # -- drawing ------------------------------------------------------------------
    def draw_frame(self):
        if self.grid_states is None:
            return
        t = self.position
        self.canvas.draw(self, t)
        k = int(round(t))
        names = self.state_names()
        self.layer_label.setText(f"layer position {t:.2f} / {len(names) - 1}   ·   "
                                 f"{names[k]}")
        self.strip.highlight(k)
        self.drew()

    def step_layer(self, delta):
        """To the `delta`-th state on (back, for a negative `delta`); from between two
        states (where Play paused), the first step goes to the one on that side."""
        self.play_button.setChecked(False)
        below = self.slider.value() // STEPS_PER_LAYER          # the states either side
        above = -(-self.slider.value() // STEPS_PER_LAYER)
        self.set_layer(int(np.clip((below if delta > 0 else above) + delta, 0,
                                   self.info["num_layers"] if self.info else 0)))

    def toggle_play(self):
        self.play_button.setChecked(not self.play_button.isChecked())

    def _play(self, on):
        self.play_button.setText("Pause  (Space)" if on else "Play  (Space)")
        if on:
            if self.slider.value() >= self.slider.maximum():
                self.slider.setValue(0)
            self._clock.start()
            self.timer.start()
        else:
            self.timer.stop()

    def _advance(self):
        dt = self._clock.restart() / 1000.0
        step = max(1, int(round(dt * self.speed.value() * STEPS_PER_LAYER)))
        value = self.slider.value() + step
        if value >= self.slider.maximum():
            value = 0 if self.slider.value() >= self.slider.maximum() else self.slider.maximum()
        self.slider.setValue(value)

    def _jump_to(self, k):
        self.play_button.setChecked(False)
        self.set_layer(k)
