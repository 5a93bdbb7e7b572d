"""Rendering views to image files without a display (`--screenshot`, `--demo`)."""

import os
import shutil
import sys
from pathlib import Path

from PySide6 import QtCore

__all__ = ["has_display", "use_offscreen_if_headless", "wait_for", "HeadlessError",
           "open_model", "render_view", "render_animation", "render_context_animation",
           "set_direction", "image_format", "image_bytes", "write_replacing",
           "VIEW_NAMES", "IMAGE_FORMATS", "DIRECTIONS"]

VIEW_NAMES = ("samples", "density", "layers", "inspector", "pairs")
#: The image formats a screenshot is written in, by the file's suffix (Qt's names).
IMAGE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG"}
#: The Layers view's directions: base to data, data to base.
DIRECTIONS = ("forward", "inverse")


class HeadlessError(RuntimeError):
    """A screenshot could not be made; the message says why."""


def has_display():
    """True when windows can be shown: an X11 or Wayland display is set (macOS and
    Windows always have their own)."""
    if sys.platform == "darwin" or sys.platform.startswith(("win", "cygwin")):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def image_format(path):
    """The format an image at `path` is written in: by its suffix (`IMAGE_FORMATS`),
    PNG for any other."""
    return IMAGE_FORMATS.get(Path(path).suffix.lower(), "PNG")


def image_bytes(pixmap, path):
    """`pixmap` (a `QPixmap`, such as a widget's `grab()`) encoded as the image file
    `path` names (`image_format`); raises `OSError` when it cannot be encoded."""
    data = QtCore.QByteArray()
    buffer = QtCore.QBuffer(data)
    buffer.open(QtCore.QIODevice.OpenModeFlag.WriteOnly)
    if not pixmap.save(buffer, image_format(path)):
        raise OSError(f"the picture could not be encoded as {image_format(path)}")
    buffer.close()
    return bytes(data)


def write_replacing(path, write):
    """Writes the file `path` through `write(f)` (`f` a new binary file beside it,
    renamed over `path` once written): a write that fails (a full disk) leaves no
    half-written file and keeps the file `path` named before. An `OSError` names
    `path` (its `filename`), not the file beside it. A symbolic link is written
    through (the file it names is replaced, the link kept), and a file replaced
    keeps its permissions. Returns `path`. (`kerasflows.files.replace_file` does the
    same for the library and the CLI; the app keeps its own, since it opens
    SavedModels where kerasflows is not installed.)"""
    named = Path(path)
    path = Path(os.path.realpath(named))
    # made as any new file is; its name cut to fit the 255 bytes a file name may have
    tail = f".{os.getpid()}.part"
    stem = path.name.encode()[:254 - len(tail)].decode(errors="ignore")
    temp = path.with_name(f".{stem}{tail}")
    try:
        with open(temp, "wb") as f:
            write(f)
        if path.exists():
            shutil.copymode(path, temp)
        os.replace(temp, path)
    except BaseException as e:
        temp.unlink(missing_ok=True)
        if isinstance(e, OSError):
            e.filename, e.filename2 = str(named), None
        raise
    return named


def use_offscreen_if_headless():
    """Selects Qt's offscreen platform when there is no display (before QApplication)."""
    if not has_display() and not os.environ.get("QT_QPA_PLATFORM"):
        os.environ["QT_QPA_PLATFORM"] = "offscreen"


def wait_for(predicate, timeout, signals=()):
    """Runs the Qt event loop until `predicate()` is true; returns False on timeout.

    The predicate is checked every 10 ms and, without that delay, whenever
    one of `signals` (Qt signals) is emitted.
    """
    if predicate():
        return True
    loop = QtCore.QEventLoop()
    check = lambda *_: predicate() and loop.quit()  # noqa: E731
    poll = QtCore.QTimer()
    poll.setInterval(10)
    poll.timeout.connect(check)
    for signal in signals:
        signal.connect(check)
    deadline = QtCore.QTimer()
    deadline.setSingleShot(True)
    deadline.timeout.connect(loop.quit)
    poll.start()
    deadline.start(int(timeout * 1000))
    try:
        loop.exec()
    finally:
        poll.stop()
        deadline.stop()
        for signal in signals:
            signal.disconnect(check)
    return bool(predicate())


def _watch_errors(window):
    errors = []
    window.failed.connect(errors.append)
    return errors


def open_model(window, path, timeout=300.0, context=None):
    """Starts the compute thread if needed, opens `path` (a conditional flow at
    `context`) and waits; returns its info."""
    errors = _watch_errors(window)
    opened = []
    window.model_opened.connect(opened.append)
    if window.open_path(path, context=context):
        window.start()
        wait_for(lambda: opened or errors, timeout)
    if errors:
        raise HeadlessError(errors[-1])
    if not opened:
        raise HeadlessError(f"opening {path} took longer than {timeout:.0f} s")
    return opened[-1]


def set_direction(view, direction):
    """Sets the Layers `view`'s direction ("forward": base to data, "inverse": data
    to base); raises `HeadlessError` for a flow that has no inverse."""
    if direction not in DIRECTIONS:
        raise HeadlessError(f"unknown direction {direction!r}; expected one of "
                            f"{', '.join(DIRECTIONS)}")
    index = view.direction.findData(direction)
    if not view.direction.model().item(index).isEnabled():
        raise HeadlessError("--direction inverse needs a flow with an inverse; "
                            + view.note.text())
    view.direction.setCurrentIndex(index)


def _wait_drawn(view, errors, timeout):
    if not wait_for(lambda: view.is_ready() or errors, timeout):
        raise HeadlessError(f"the {view.name} view did not finish drawing in {timeout:.0f} s")
    if errors:
        raise HeadlessError(errors[-1])
    QtCore.QCoreApplication.processEvents()


def _set_layer(window, view, layer):
    """Shows the Layers `view` at layer position `layer`, checked against the model's
    layers (0..L)."""
    L = window.info["num_layers"] or 0
    if not 0 <= layer <= L:
        raise HeadlessError(f"--layer must be in [0, {L}] for this model; received {layer}.")
    view.set_layer(layer)


def render_view(window, view_name, path, layer=None, timeout=300.0, by_context=False,
                direction=None, before_saving=None):
    """Shows `view_name` (at layer position `layer` for the layers view, in
    `direction`; with `by_context`, the samples' pictures one row per context
    value), waits until it has drawn, and saves the whole window as an image at
    `path` (a JPEG for a `.jpg` / `.jpeg` name, else a PNG; missing folders are
    made; a write that fails keeps the file there before: `write_replacing`).
    `before_saving()` is called once the view has drawn, before anything is
    written: a `HeadlessError` it raises leaves no picture."""
    if view_name not in VIEW_NAMES:
        raise HeadlessError(f"unknown view {view_name!r}; expected one of {', '.join(VIEW_NAMES)}")
    errors = _watch_errors(window)
    view = window.show_view(view_name)
    if direction is not None:
        if view_name != "layers":
            raise HeadlessError("--direction applies to --view layers only.")
        set_direction(view, direction)
    if layer is not None:
        if view_name != "layers":
            raise HeadlessError("--layer applies to --view layers only.")
        _set_layer(window, view, layer)
    if by_context:
        if view_name == "samples" and window.info["image"] and not view.as_images.isChecked():
            # rows of pictures: a shape guessed from D (a bare .keras of 64 columns) too;
            # the Samples view shows them as points until asked ("As images")
            view.as_images.setChecked(True)
        if view_name != "samples" or not view.by_context.isVisibleTo(view):
            raise HeadlessError("--rows-by-context applies to --view samples of a flow drawn "
                                "as pictures (a manifest image shape, or a square number of "
                                "columns) whose context moves in steps (manifest "
                                "context_step, or a class label's).")
        view.by_context.setChecked(True)
    _wait_drawn(view, errors, timeout)
    if before_saving is not None:
        before_saving()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        image = image_bytes(window.grab(), path)
        return write_replacing(path, lambda f: f.write(image))
    except OSError as e:
        raise HeadlessError(f"could not write {path}: {e.strerror or e}") from None


def render_animation(window, path, size, layers_per_second=1.0, direction=None,
                     timeout=300.0):
    """Shows the Layers view (in `direction`), waits until it has drawn its states,
    and plays them into the animated GIF `path` (`size` (width, height) pixels;
    `visualizer.animation`); returns the number of frames written."""
    from visualizer import animation
    errors = _watch_errors(window)
    view = window.show_view("layers")
    if direction is not None:
        set_direction(view, direction)
    _wait_drawn(view, errors, timeout)
    if view.grid_states is None:             # (a SavedModel without the trace signatures)
        raise HeadlessError(f"the Layers view has no states to animate: {view.message.text()}")
    try:
        return animation.save_layers_animation(view, path, size, layers_per_second)
    except animation.AnimationError as e:
        raise HeadlessError(str(e)) from None


def render_context_animation(window, path, view_name, coordinate=0, timeout=300.0,
                             layer=None):
    """Shows `view_name`, waits until it has drawn, and records it into the animated
    GIF `path` while context coordinate `coordinate` (0-based) of the conditional
    flow sweeps its range (`visualizer.animation.save_context_animation`); returns
    the number of frames written. The Layers view is shown at layer position `layer`
    (default: the last, the data; the base, position 0, is the same at every context)."""
    from visualizer import animation
    if view_name not in VIEW_NAMES:
        raise HeadlessError(f"unknown view {view_name!r}; expected one of {', '.join(VIEW_NAMES)}")
    errors = _watch_errors(window)
    view = window.show_view(view_name)
    if view_name == "layers":
        last = window.info["num_layers"] or 0       # the data, which the context moves
        _set_layer(window, view, last if layer is None else layer)
    _wait_drawn(view, errors, timeout)
    try:
        return animation.save_context_animation(window, path, coordinate)
    except animation.AnimationError as e:
        raise HeadlessError(str(e)) from None
