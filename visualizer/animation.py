"""File ▸ Export layers animation and `--animation`: the Layers view played into
an animated GIF, to show the warping outside the app; File ▸ Export context
animation and `--context-animation`: the view shown while a conditional flow's
context sweeps its range (a ring growing with its radius, the digits 0 to 9).

The Layers view already holds every state (the grid and the cloud after each
layer, or the pictures); the animation draws them on a plot of its own, of
the size asked for, at evenly spaced layer positions from the first state to
the last, as Play does at the speed chosen, grabs the plot each time (titled
with the state's name) and writes the frames with Pillow. The first and last
frames are held a moment longer. The frames share one palette, taken from
the first, middle and last frames, so colours do not flicker. The file is
written beside its final name and renamed over it, so a failure leaves no
half-written file.
"""

from pathlib import Path

import numpy as np
from PySide6 import QtCore, QtGui

from visualizer import geometry, headless
from visualizer.views.base import tick_label_width
from visualizer.views.layer_canvas import LayerCanvas

__all__ = ["ANIMATION_SUFFIX", "FPS", "HOLD_SECONDS", "MAX_FRAMES", "AnimationError",
           "frame_positions", "frame_durations", "LayerStates", "record_layers",
           "write_animation", "save_layers_animation", "check_animation_path",
           "CONTEXT_FRAMES", "MAX_CONTEXT_SIDE", "context_values", "record_context",
           "save_context_animation"]

#: The suffix of an animation's file.
ANIMATION_SUFFIX = ".gif"
#: Frames per second of the animation (GIF counts frame times in hundredths of a second).
FPS = 25
#: Seconds the first and the last state are held, on top of their frame time.
HOLD_SECONDS = 1.0
#: The most frames an animation may have (a minute at `FPS`).
MAX_FRAMES = 60 * FPS


class AnimationError(RuntimeError):
    """The animation cannot be made; the message says why."""


def _pil_image():
    """Pillow's `PIL.Image`, which writes the GIF; raises `AnimationError` without it."""
    try:
        from PIL import Image
    except ImportError as e:
        raise AnimationError(f'writing a GIF needs pillow: pip install "kerasflows[viz]" '
                             f"({e})") from None
    return Image


def check_animation_path(path):
    """Raises `AnimationError` unless `path` names a `.gif` file and pillow, which
    writes it, can be imported (checked before any frame is drawn)."""
    if Path(path).suffix.lower() != ANIMATION_SUFFIX:
        raise AnimationError(f"an animation is written as a {ANIMATION_SUFFIX} file; "
                             f"received {str(path)!r}")
    _pil_image()


def frame_positions(num_layers, layers_per_second=1.0, fps=FPS):
    """The layer positions of the frames, `[n]`: evenly spaced from 0 to
    `num_layers`, both included, `fps` frames a second at `layers_per_second`."""
    if num_layers < 1:
        raise AnimationError(f"a flow with {num_layers} layers has no layers to animate")
    if not 0 < layers_per_second <= 100:
        raise AnimationError(f"the speed must be in (0, 100] layers per second; received "
                             f"{layers_per_second}")
    steps = max(1, int(round(num_layers / layers_per_second * fps)))
    if steps + 1 > MAX_FRAMES:
        raise AnimationError(
            f"{num_layers} layers at {layers_per_second:g} layers/s would take {steps + 1} "
            f"frames, more than {MAX_FRAMES} ({MAX_FRAMES // fps} s); choose a faster speed "
            f"(at least {num_layers * fps / (MAX_FRAMES - 1):.2g} layers/s)")
    return np.linspace(0.0, float(num_layers), steps + 1)


def frame_durations(n, fps=FPS, hold=HOLD_SECONDS):
    """Milliseconds each of `n` frames is shown: `1000 / fps`, the first and the last
    `hold` seconds longer."""
    durations = [int(round(1000 / fps))] * n
    durations[0] += int(round(hold * 1000))
    durations[-1] += int(round(hold * 1000))
    return durations


def image_rgb(image):
    """A `QImage` as an `[h, w, 3]` uint8 array."""
    image = image.convertToFormat(QtGui.QImage.Format.Format_RGB888)
    rows = np.frombuffer(image.constBits(), np.uint8).reshape(image.height(),
                                                              image.bytesPerLine())
    return rows[:, :image.width() * 3].reshape(image.height(), image.width(), 3).copy()


def _lay_out():
    """Lays out the widgets whose layout changed (Qt does it from the event loop)."""
    QtCore.QCoreApplication.sendPostedEvents(None, QtCore.QEvent.Type.LayoutRequest)


class LayerStates:
    """What a `LayersView` shows, taken at one moment (the view replaces its arrays
    when a new trace or model arrives, so a recording keeps drawing these): the
    states `LayerCanvas` draws, their names and each state's axis labels."""

    def __init__(self, view):
        if view.grid_states is None:
            raise AnimationError("the Layers view has not drawn its states yet")
        self.grid_states, self.cloud_states = view.grid_states, view.cloud_states
        self.connect, self.regions, self.image_states = (view.connect, view.regions,
                                                         view.image_states)
        self.names = view.state_names()
        self._images = view.images_shown()
        self._labels = [view.axis_labels(k) for k in range(len(self.names))]
        if self._images:
            self._shape, self._levels = view.info["image"]["shape"], view.image_levels()

    def images_shown(self):
        return self._images

    def picture(self, rows):
        return geometry.tile_images(rows, self._shape)

    def image_levels(self):
        return self._levels

    def axis_labels(self, k=0):
        return self._labels[k]


class _Recorder:
    """A plot of its own, `size` (width, height) pixels, that draws a `LayerStates`
    (taken from `view`) at any layer position and grabs it (`frame(t)`), titled with
    the state's name. Its left axis keeps one width, wide enough for the tick labels
    of every state, so the plot does not shift sideways from frame to frame (a
    frame can still differ by the ranges drawn before it: pyqtgraph places an
    aspect-locked range from the one it had; 15 of 255 levels a pixel, on average, for
    the first state drawn first or after the last, in a probe of the test flow)."""

    def __init__(self, view, size):
        self.states = LayerStates(view)
        self.canvas = LayerCanvas()
        self.plot = self.canvas.plot
        self.plot.setAttribute(QtCore.Qt.WidgetAttribute.WA_DontShowOnScreen)
        self.plot.resize(*size)
        self.plot.show()                 # laid out at its size, never on the screen
        self.canvas.show(self.states)
        if not self.states.images_shown():
            axis = self.plot.getPlotItem().getAxis("left")
            # (an aspect-locked plot may show more than a state's region in y)
            axis.setWidth(max(tick_label_width(axis, y0 - (y1 - y0), y1 + (y1 - y0))
                              for _, _, y0, y1 in self.states.regions))

    def frame(self, t):
        """The plot drawn at layer position `t`, an `[h, w, 3]` array."""
        self.plot.getPlotItem().setTitle(self.states.names[int(round(t))])
        _lay_out()                       # (the range set next fits the plot's shape)
        self.canvas.draw(self.states, t)
        _lay_out()
        return image_rgb(self.plot.grab().toImage())

    def close(self):
        self.plot.close()
        self.plot.deleteLater()


def _recorded(recorder, positions, progress, keep):
    """`keep(frame)` of `recorder`'s frame at each position, in order, or None when
    `progress` cancelled."""
    out = []
    for i, t in enumerate(positions):
        out.append(keep(recorder.frame(t)))
        if progress is not None and not progress(i + 1, len(positions)):
            return None
    return out


def record_layers(view, positions, size, progress=None):
    """Draws the Layers `view`'s states at each layer position on a plot of its
    own, `size` (width, height) pixels, titled with the state's name, and grabs
    it; returns the frames, `[h, w, 3]` arrays, or None when `progress(done,
    total)` returned False (cancelled). The view itself is left as it was."""
    recorder = _Recorder(view, size)
    try:
        return _recorded(recorder, positions, progress, lambda frame: frame)
    finally:
        recorder.close()


def _palette(frames):
    """A 256-colour palette image for `frames` (`[h, w, 3]` arrays), without dithering."""
    Image = _pil_image()
    return Image.fromarray(np.concatenate(frames)).quantize(colors=256,
                                                           method=Image.Quantize.MEDIANCUT)


def _indexed(frame, palette):
    Image = _pil_image()
    return Image.fromarray(frame).quantize(palette=palette, dither=Image.Dither.NONE)


def _write_gif(images, path, durations):
    """Writes palette `images` to `path` as a looping GIF, atomically
    (`headless.write_replacing`)."""
    return headless.write_replacing(
        path, lambda f: images[0].save(f, format="GIF", save_all=True,
                                       append_images=images[1:], duration=list(durations),
                                       loop=0))


def write_animation(frames, path, durations):
    """Writes `frames` (`[h, w, 3]` uint8 arrays) to `path` as an animated GIF,
    each shown `durations[i]` ms, looping; atomically. The frames share one
    palette, taken from the first, middle and last."""
    check_animation_path(path)
    if not frames:
        raise AnimationError("there are no frames to write")
    palette = _palette([frames[0], frames[len(frames) // 2], frames[-1]])
    return _write_gif([_indexed(f, palette) for f in frames], path, durations)


def save_layers_animation(view, path, size, layers_per_second=1.0, progress=None, fps=FPS):
    """Plays the Layers `view` from its first state to its last at
    `layers_per_second` into the animated GIF `path` of `size` (width, height)
    pixels; returns the number of frames written, or None when cancelled (see
    `record_layers`; nothing is written then). Each frame is reduced to the
    palette (of the first, middle and last frames, drawn first) as it is
    grabbed, so a long animation holds a byte a pixel, not three."""
    check_animation_path(path)
    # The palette's frames on a recorder of their own: an aspect-locked pyqtgraph plot
    # can place a range by the ranges set before it, so the recording proper starts
    # fresh, and its frames are `record_layers`' own.
    recorder = _Recorder(view, size)
    try:
        positions = frame_positions(len(recorder.states.names) - 1, layers_per_second, fps)
        palette = _palette([recorder.frame(t) for t in
                            (positions[0], positions[len(positions) // 2], positions[-1])])
    finally:
        recorder.close()
    recorder = _Recorder(view, size)
    try:
        images = _recorded(recorder, positions, progress, lambda f: _indexed(f, palette))
    finally:
        recorder.close()
    if images is None:
        return None
    _write_gif(images, path, frame_durations(len(images), fps))
    return len(images)


# -- a context swept -------------------------------------------------------------------
#: Frames of a context coordinate swept over its range (a coordinate with a step, such
#: as a class label: one frame a step).
CONTEXT_FRAMES = 50
#: The longest side of a context animation's frames (the view is scaled down to fit).
MAX_CONTEXT_SIDE = 800


def context_values(low, high, step=None, frames=CONTEXT_FRAMES):
    """The values of a context coordinate swept from `low` to `high`: every `step`,
    or `frames` evenly spaced values."""
    if not high > low:
        raise AnimationError(f"the context's range [{low:g}, {high:g}] is empty: nothing "
                             "to sweep")
    if step:
        return geometry.stepped_values(low, high, step)
    return np.linspace(low, high, frames)


def _captioned(image, text):
    """`image` (a `QImage`) with `text` written on it, top right, over a dark band."""
    image = image.convertToFormat(QtGui.QImage.Format.Format_RGB888)
    painter = QtGui.QPainter(image)
    font = painter.font()
    font.setPointSize(12)
    font.setBold(True)
    painter.setFont(font)
    box = painter.fontMetrics().boundingRect(text).adjusted(-8, -4, 8, 4)
    box.moveTopRight(QtCore.QPoint(image.width() - 6, 6))
    painter.fillRect(box, QtGui.QColor(0, 0, 0, 170))
    painter.setPen(QtGui.QColor(240, 240, 240))
    painter.drawText(box, QtCore.Qt.AlignmentFlag.AlignCenter, text)
    painter.end()
    return image


def _check_coordinate(window, k):
    """Raises `AnimationError` unless a conditional flow is open with a coordinate `k`."""
    if window.info is None or window.info["context_dim"] is None:
        raise AnimationError("the model open is not conditional: it has no context to sweep")
    count = len(window.context_panel.spins)
    if not 0 <= k < count:
        raise AnimationError(f"the context has {count} coordinate{'s' * (count != 1)}; "
                             f"received coordinate {k + 1}")


def record_context(window, k, values, progress=None, timeout=120.0, cancelled=None):
    """Sets context coordinate `k` of the conditional flow open in `window` to each of
    `values` in turn, waits until the view shown has drawn it, and grabs the view
    (scaled to at most `MAX_CONTEXT_SIDE` a side), captioned with the value; returns
    the frames, `[h, w, 3]` arrays, or None when `progress(done, total)` returned
    False, or `cancelled()` returned True while a frame was waited for. A
    coordinate playing in the Context panel (its ▶) stops for the recording (it
    would move the context away from the values swept). The coordinate is put back
    where it was, the playing one played on and the view's continuous drawing
    resumed (`View.held_still`), whatever happens."""
    panel, view = window.context_panel, window.current_view()
    _check_coordinate(window, k)
    errors = []
    window.failed.connect(errors.append)
    playing = panel.playing
    panel.stop()
    spin = panel.spins[k]
    start = float(spin.value())
    generation = window.generation
    try:
        with view.held_still():
            return _record_values(window, k, values, progress, timeout, errors, cancelled,
                                  generation)
    finally:
        window.failed.disconnect(errors.append)
        # (a model opened meanwhile rebuilt the panel for its own context, unless it has
        # the same coordinates: the same file reloaded)
        if k < len(panel.spins) and panel.spins[k] is spin:
            panel.set_value(k, start)
            if playing is not None:
                panel.play(playing)


def _record_values(window, k, values, progress, timeout, errors, cancelled, generation):
    """`record_context`'s frames, recorded while the view holds still; `errors`: the
    error dialogs shown meanwhile. Another model opening meanwhile (`window.generation`
    moves on) ends the recording with an `AnimationError`: the frames after it would
    show that model (or its other context) under this one's caption."""
    from visualizer.headless import wait_for
    panel, view = window.context_panel, window.current_view()
    stop = cancelled or (lambda: False)
    name = panel.names[k]
    size = None
    frames = []
    for i, value in enumerate(values):
        if window.generation == generation:
            panel.set_value(k, float(value))
        reopened = lambda: window.generation != generation
        if not wait_for(lambda: view.is_ready() or errors or stop() or reopened(), timeout):
            raise AnimationError(f"the {view.title} view did not finish drawing "
                                 f"{name} = {value:g} in {timeout:.0f} s")
        if reopened():
            raise AnimationError(f"{window.info['name']} was opened while the sweep of "
                                 f"{name} was recorded; nothing was written")
        if errors:
            raise AnimationError(errors[-1])
        if stop():
            return None
        image = view.export_widget().grab().toImage()
        if size is None:
            scale = min(1.0, MAX_CONTEXT_SIDE / max(image.width(), image.height()))
            size = QtCore.QSize(int(image.width() * scale), int(image.height() * scale))
        image = image.scaled(size, QtCore.Qt.AspectRatioMode.IgnoreAspectRatio,
                             QtCore.Qt.TransformationMode.SmoothTransformation)
        shown = panel.spins[k].value()       # (as its box rounds it)
        frames.append(image_rgb(_captioned(image, f"{panel.names[k]} = {shown:g}")))
        if progress is not None and not progress(i + 1, len(values)):
            return None
    return frames


def save_context_animation(window, path, k=0, progress=None, fps=FPS, cancelled=None):
    """Sweeps context coordinate `k` of the conditional flow open in `window` across
    its range (the Context panel's: every step of a stepped one, else
    `CONTEXT_FRAMES` values), recording the view shown, into the animated GIF
    `path`; returns the number of frames written, or None when cancelled (see
    `record_context`)."""
    check_animation_path(path)
    panel = window.context_panel
    _check_coordinate(window, k)
    (low, high), step = panel.ranges[k], panel.steps[k]
    frames = record_context(window, k, context_values(low, high, step), progress,
                            cancelled=cancelled)
    if frames is None:
        return None
    # a stepped coordinate's frames each held a beat (a class label is read, not watched)
    durations = ([500] * len(frames) if step else frame_durations(len(frames), fps))
    write_animation(frames, path, durations)
    return len(frames)
