"""`kerasflows-viz [MODEL]` / `python -m visualizer [MODEL]`: start the visualizer.

The window is shown before TensorFlow is imported (the compute thread
imports it), so it appears at once.
"""

import argparse
import functools
import importlib
import math
import os
import re
import sys
import tempfile
from pathlib import Path

__all__ = ["main", "build_parser"]

VIEW_NAMES = ("samples", "density", "layers", "inspector", "pairs")
#: The frames' size of `--animation` without `--frame-size`.
DEFAULT_FRAME_SIZE = (720, 600)
#: Layers per second of the Layers animation `--demo` writes without a display.
DEMO_SPEED = 3.0
#: Qt's notice, on the offscreen platform (no display), for each window it sizes.
QT_NOISE = r"This plugin does not support propagateSizeHints\(\)$"
#: Where `--demo` without a display writes its pictures (not ./screenshots/: in a
#: checkout that holds the README's pictures).
DEMO_FOLDER = Path("kerasflows-demo")
#: What the `[viz]` extras bring; pillow (PIL) writes the GIFs.
VIZ_EXTRAS = 'the visualizer needs PySide6, pyqtgraph and pillow: pip install "kerasflows[viz]"'
#: Without MODEL, where the default model is not there (an installed wheel).
NO_DEFAULT_MODEL = ("no MODEL given, and the default saved_models/moons/ ships only with a "
                    "source checkout: pass a .keras file, a SavedModel or a model folder")


def _sizes(what, example, smallest, largest):
    """An argparse type: WIDTHxHEIGHT, each within `smallest` and `largest` (w, h)."""
    def parse(text):
        try:
            w, h = (int(v) for v in text.lower().split("x"))
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT such as {example}; "
                                             f"received {text!r}") from None
        if not (smallest[0] <= w <= largest[0] and smallest[1] <= h <= largest[1]):
            raise argparse.ArgumentTypeError(
                f"{what} must be at least {smallest[0]}x{smallest[1]} and at most "
                f"{largest[0]}x{largest[1]}; received {text!r}")
        return w, h
    return parse


_size = _sizes("the size", "1280x840", (800, 500), (8000, 8000))
_frame_size = _sizes("the frame size", "720x600", (160, 120), (4000, 4000))


def _speed(text):
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0.1 <= value <= 10:
        raise argparse.ArgumentTypeError(f"expected layers per second in [0.1, 10] (the "
                                         f"Layers view's Speed); received {text!r}")
    return value


def _context(text):
    try:
        values = [float(v) for v in text.replace(",", " ").split()]
    except ValueError:
        values = []
    if not values or not all(math.isfinite(v) for v in values):
        raise argparse.ArgumentTypeError(f"expected finite numbers separated by commas, such "
                                         f"as 0.5,-1; received {text!r}")
    return values


class _Parser(argparse.ArgumentParser):
    """Reports a bad option on one line (exit code 2), like every other command-line
    error, instead of argparse's usage block before it."""

    def error(self, message):
        _fail(f"{message} (see '{self.prog} --help')")
        sys.exit(2)


def build_parser():
    p = _Parser(
        prog="kerasflows-viz",
        description="Show what a trained normalizing flow does: samples, density, "
                    "per-layer warping, a point inspector and pairs of coordinates with "
                    "their marginals.",
        epilog="Compiled code is kept in ~/.cache/kerasflows/ (XLA's persistent cache, "
               "at most 256 MB), so a model opens faster the next time; "
               "KERASFLOWS_VIZ_COMPILE_CACHE=off turns that off, =DIR puts it in DIR. "
               "With it on, TensorFlow's C++ log keeps to fatal messages "
               "(TF_CPP_MIN_LOG_LEVEL=3) unless TF_CPP_MIN_LOG_LEVEL is set.")
    p.add_argument("model", nargs="?",
                   help="a .keras file, a SavedModel directory (or its TF Serving parent), or "
                        "a saved_models/<name>/ folder (a saved_model.pb, saved_model.pbtxt "
                        "or manifest.json opens as its folder); default: the repository's "
                        "saved_models/moons/, in a source checkout")
    p.add_argument("--screenshot", metavar="PATH",
                   help="render one view to the image file PATH (.png, or .jpg / .jpeg for "
                        "JPEG; in an existing folder) without a display, then exit")
    p.add_argument("--data", metavar="PATH",
                   help="with --screenshot: also save the arrays the view draws to PATH "
                        "(.npz, in an existing folder; File > Export view data)")
    p.add_argument("--view", choices=VIEW_NAMES,
                   help="the view to render with --screenshot (default: density), or to "
                        "record with --context-animation (default: samples)")
    p.add_argument("--layer", type=int, metavar="K",
                   help="with --view layers: show the state after K layers (0..L; "
                        "--context-animation: default L, the data, which the context moves)")
    p.add_argument("--direction", choices=("forward", "inverse"),
                   help="with --view layers or --animation: base to data (forward, the "
                        "default) or data to base (inverse)")
    p.add_argument("--animation", metavar="PATH",
                   help="play the Layers view, first state to last, into the animated GIF "
                        "PATH (.gif, in an existing folder) without a display, then exit "
                        "(File > Export layers animation)")
    p.add_argument("--speed", type=_speed, metavar="LAYERS_PER_S",
                   help="with --animation: layers per second (default: 1; 25 frames a "
                        "second, the first and last state held 1 s)")
    p.add_argument("--frame-size", type=_frame_size, metavar="WxH",
                   help="with --animation: the frames' size in pixels (default: 720x600)")
    p.add_argument("--context-animation", metavar="PATH",
                   help="for a conditional flow: record --view (default: samples) into the "
                        "animated GIF PATH (.gif, in an existing folder) while a context "
                        "coordinate sweeps its range (every step of a stepped one, such as "
                        "a digit's label, else 50 values), without a display, then exit "
                        "(File > Export context animation)")
    p.add_argument("--coordinate", type=int, metavar="K",
                   help="with --context-animation: the context coordinate swept, 1..C "
                        "(default: 1)")
    p.add_argument("--rows-by-context", action="store_true",
                   help="with --view samples, for a flow drawn as pictures whose context "
                   "moves in steps (a class label): one row of pictures per value (Samples: "
                   "One row per ...)")
    p.add_argument("--context", type=_context, metavar="C1,C2,...",
                   help="for a conditional flow: the context it opens at (default: the model "
                        "folder's manifest 'context', else the training record's median context "
                        "(kerasflows train's), else zeros; "
                        "the Context panel changes it); a coordinate that moves in steps "
                        "(the manifest's context_step, e.g. a digit) takes only its values, "
                        "within its context_range; any other value outside its "
                        "context_range is taken, with a warning)")
    p.add_argument("--follow", action="store_true",
                   help="reload the model whenever its file changes on disk, e.g. a flow "
                        "being trained with `kerasflows train --save-every-epoch` or a Keras "
                        "ModelCheckpoint (File > Follow File Changes); a model that does not "
                        "exist yet is opened when it appears")
    p.add_argument("--size", type=_size, default=(1280, 840), metavar="WxH",
                   help="window size for --screenshot (default: 1280x840; at least 800x500, and "
                        "wider where the model's side panel shows: a smaller size is "
                        "refused, naming the least)")
    p.add_argument("--demo", action="store_true",
                   help="open the model in a window; with no display, write one screenshot "
                        "per view and the Layers view's animation (layers.gif) into "
                        f"./{DEMO_FOLDER}/ and print their paths")
    p.add_argument("--report-startup", action="store_true",
                   help="print the seconds from process start to the first painted window, "
                        "then exit (for benchmarks)")
    # `--context -1,0.5`: a value, not an option flag (Python 3.11's argparse took any
    # comma list starting with a minus sign for a flag; no option starts with a digit)
    p._negative_number_matcher = re.compile(r"^-\.?\d")
    return p


def _process_age():
    """Seconds since this process started (Linux /proc; 0.0 elsewhere)."""
    try:
        start_ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return uptime - start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


def _fail(message):
    print(f"kerasflows-viz: error: {message}", file=sys.stderr)
    return 2


def _output_problem(option, path, suffixes):
    """Why the file `path` given to `option` cannot be written (a suffix not among
    `suffixes`, no such folder, a folder that takes no files), or None."""
    p = Path(path).expanduser()
    if p.suffix.lower() not in suffixes:
        named = " or ".join(filter(None, [", ".join(suffixes[:-1]), suffixes[-1]]))
        return f"{option} writes {named} files; received {str(path)!r}."
    if p.is_dir():
        return f"{option}: {path} is a folder; expected a file name."
    if not p.parent.is_dir():
        return f"{option}: cannot write {path}: there is no folder {p.parent}."
    try:
        with tempfile.TemporaryFile(dir=p.parent):
            pass
    except OSError as e:
        return f"{option}: cannot write {path}: {p.parent} takes no new files ({e.strerror or e})."
    return None


def _argument_problem(args, headless):
    """What is wrong with the options together, or None: checked before any work."""
    if sum(map(bool, (args.screenshot, args.animation, args.context_animation))) > 1:
        return "--screenshot, --animation and --context-animation: one at a time."
    if args.coordinate is not None and not args.context_animation:
        return "--coordinate goes with --context-animation."
    if args.coordinate is not None and args.coordinate < 1:
        return (f"--coordinate counts the context's coordinates from 1 (1..C); received "
                f"{args.coordinate}.")
    if args.context_animation:
        for given, option in ((args.data, "--data"),
                              (args.rows_by_context, "--rows-by-context"),
                              (args.direction, "--direction")):
            if given:
                return f"{option} does not apply to --context-animation."
    if args.animation:
        for given, option in ((args.view not in (None, "layers"), "--view"),
                              (args.layer is not None, "--layer"), (args.data, "--data"),
                              (args.rows_by_context, "--rows-by-context")):
            if given:
                return f"{option} does not apply to --animation (it plays the Layers view)."
    else:
        if args.speed is not None or args.frame_size is not None:
            return "--speed and --frame-size go with --animation."
        if args.direction and not (args.screenshot and args.view == "layers"):
            return "--direction goes with --animation or with --screenshot --view layers."
    if args.layer is not None and args.view != "layers":
        return "--layer applies to --view layers only."
    if args.view and not (args.screenshot or args.animation or args.context_animation):
        return ("--view goes with --screenshot or --context-animation (in the window, "
                "click the view's tab).")
    if args.rows_by_context and not (args.screenshot or (args.demo
                                                         and not headless.has_display())):
        return ("--rows-by-context goes with --screenshot --view samples (in the window: "
                "Samples, One row per ...).")
    if args.data and not args.screenshot:
        return "--data goes with --screenshot (in the window: File > Export view data)."
    if args.follow and (args.screenshot or args.animation or args.context_animation
                        or args.report_startup or (args.demo and not headless.has_display())):
        return ("--follow needs the window; it does not apply to --screenshot, --animation, "
                "--context-animation, --report-startup or --demo without a display.")
    if args.animation:
        return _output_problem("--animation", args.animation, (".gif",))
    if args.context_animation:
        return _output_problem("--context-animation", args.context_animation, (".gif",))
    if args.screenshot:
        return (_output_problem("--screenshot", args.screenshot, tuple(headless.IMAGE_FORMATS))
                or (args.data and _output_problem("--data", args.data, (".npz",))) or None)
    if not args.demo and not headless.has_display() and not os.environ.get("QT_QPA_PLATFORM"):
        return ("there is no display to show the window on (DISPLAY and WAYLAND_DISPLAY are "
                "unset); --demo or --screenshot PATH render the views to PNG files instead.")
    return None


def _extras_problem(modules):
    """What stops the first of `modules` (of the `[viz]` extras) from importing, or None."""
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as e:
            return f"cannot import {module} ({e}): {VIZ_EXTRAS}"
    return None


def _writes_gif(args, headless):
    """True when the run writes a GIF (pillow's): an animation, or the demo without
    a display."""
    return bool(args.animation or args.context_animation
                or (args.demo and not headless.has_display()))


def _headless_run(args, headless):
    """True when the views are rendered to files without the window shown."""
    return bool(args.screenshot) or _writes_gif(args, headless)


def _model_problem(args, model, headless, paths):
    """Why `model` cannot be opened, found before anything is written, or None: no MODEL
    where the default is not there, or a path `paths.resolve` refuses (checked for a
    run without the window; the window shows its error dialog)."""
    if args.model is None and not Path(model).exists():
        return NO_DEFAULT_MODEL
    if _headless_run(args, headless):
        try:
            paths.resolve(model)
        except paths.ModelPathError as e:
            return f"Could not open the model: {e}"
    return None


def _demo_folder_problem():
    """Makes `DEMO_FOLDER`; why it cannot be made or written, or None."""
    try:
        DEMO_FOLDER.mkdir(exist_ok=True)
    except OSError as e:
        return (f"--demo without a display writes into ./{DEMO_FOLDER}/, which cannot be "
                f"made: {e}")
    return _output_problem("--demo", DEMO_FOLDER / "samples.png", (".png",))


def _problem(args):
    """What stops the command before any work: a missing `[viz]` extra, bad options, a
    model that cannot be opened, a demo folder that cannot be made; or None."""
    problem = _extras_problem(("PySide6", "pyqtgraph"))
    if problem:
        return problem
    from visualizer import headless, paths
    model = args.model or str(paths.default_model_path())
    return (_argument_problem(args, headless)
            or (_writes_gif(args, headless) and _extras_problem(("PIL",)))
            or _model_problem(args, model, headless, paths)
            or (args.demo and not headless.has_display() and _demo_folder_problem())
            or None)


def _make_app(window_size=None, one_shot=False):
    """The application and its main window. `one_shot` (screenshots): each view is
    computed once, so the flow runs op by op, without tracing, compiling or warm-up."""
    from PySide6 import QtWidgets
    from visualizer import theme
    from visualizer.window import MainWindow
    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication(["kerasflows-viz"])
    theme.apply(app)
    window = MainWindow(warm_up=not one_shot, eval_mode="eager" if one_shot else "xla",
                        remember=not one_shot)
    if window_size:
        window.resize(*window_size)
    return app, window


def _check_view_data(window, data, view):
    """Raises `HeadlessError` when the `view` shown (default: density) drew no arrays to
    save in `data`."""
    from visualizer import headless
    if window.view_data() is None:
        raise headless.HeadlessError(f"the {view or 'density'} view drew no arrays to save "
                                     f"in {data}.")


def _headless(args, model, shots, data=None, optional_animation=False):
    """Renders `shots` [(view, layer, path, by_context)] of `model` (and saves the last
    view's arrays to `data`), and with `--animation` the Layers animation (with
    `optional_animation`, a note on stderr where it cannot be made); returns the exit
    code."""
    from visualizer import headless
    headless.use_offscreen_if_headless()
    app, window = _make_app(args.size, one_shot=True)
    # The view to render first is shown before the model opens, which computes the view
    # shown: the first tab's, Samples, was thrown away (10,000 samples of moons: 2-3 s).
    window.show_view(shots[0][0] if shots else
                     (args.view or "samples") if args.context_animation else "layers")
    window.show()
    try:
        headless.open_model(window, model, context=args.context)
        if shots and window.size().toTuple() != tuple(args.size):
            # a side panel (Context, Dimensions shown) widens the smallest window
            w, h = window.size().toTuple()
            return _fail(f"--size {args.size[0]}x{args.size[1]} is smaller than this "
                         f"model's window can be ({w}x{h} with its side panel); give at "
                         f"least --size {w}x{max(h, args.size[1])}.")
        outside = window.context_panel.outside_text()
        if outside:
            print(f"kerasflows-viz: note: {outside}", file=sys.stderr)
        for i, (view, layer, path, by_context) in enumerate(shots):
            check = None
            if data and i == len(shots) - 1:
                # the arrays for `data` are checked before the picture is written: a
                # failed command writes nothing
                check = functools.partial(_check_view_data, window, data, args.view)
            print(headless.render_view(window, view, path, layer, by_context=by_context,
                                       direction=args.direction, before_saving=check))
        if args.animation:
            try:
                frames = headless.render_animation(window, args.animation,
                                                   args.frame_size or DEFAULT_FRAME_SIZE,
                                                   args.speed or 1.0, args.direction)
                print(f"{args.animation} ({frames} frames)")
            except headless.HeadlessError as e:
                if not optional_animation:
                    raise
                print(f"kerasflows-viz: note: no {args.animation}: {e}", file=sys.stderr)
        if args.context_animation:
            frames = headless.render_context_animation(
                window, args.context_animation, args.view or "samples",
                (args.coordinate or 1) - 1, layer=args.layer)
            print(f"{args.context_animation} ({frames} frames)")
        if data:
            _check_view_data(window, data, args.view)
            window.save_view_data(data)
            print(data)
    except headless.HeadlessError as e:
        return _fail(str(e))
    except OSError as e:         # (the folder was checked; the disk may still fail)
        return _fail(f"cannot write {e.filename or 'the output'}: {e.strerror or e}")
    finally:
        window.close()
    return 0


def _report_startup(app, window):
    from PySide6 import QtCore

    class FirstPaint(QtCore.QObject):
        def eventFilter(self, obj, event):
            if event.type() == QtCore.QEvent.Type.Paint:
                print(f"first window painted {_process_age():.3f} s after launch", flush=True)
                QtCore.QTimer.singleShot(0, app.quit)
            return False

    watcher = FirstPaint(window)
    window.installEventFilter(watcher)
    window.show()
    return app.exec()


def main(argv=None):
    """Runs the visualizer with `argv` (default: `sys.argv[1:]`); returns the exit status.

    TensorFlow's INFO lines and Qt's offscreen-platform notice are left out of
    stderr (`QT_NOISE`, `kerasflows_launch.NOISE`; all of it with `TF_CPP_MIN_LOG_LEVEL=0`).
    """
    try:
        from kerasflows_launch import NOISE, quiet_tensorflow_log
    except ImportError:             # a checkout on the path without the launcher: as written
        return _main(argv)
    with quiet_tensorflow_log(re.compile(f"{NOISE.pattern}|{QT_NOISE}")):
        return _main(argv)


def _main(argv):
    args = build_parser().parse_args(argv)
    problem = _problem(args)
    if problem:
        return _fail(problem)
    from visualizer import compile_cache, headless, paths
    compile_cache.enable()          # before the compute thread imports TensorFlow
    model = args.model or str(paths.default_model_path())
    if args.screenshot:
        return _headless(args, model, [(args.view or "density", args.layer, args.screenshot,
                                        args.rows_by_context)], args.data)
    if args.animation or args.context_animation:
        return _headless(args, model, [])
    if args.demo and not headless.has_display():
        shots = [(v, None, DEMO_FOLDER / f"{v}.png",
                  args.rows_by_context and v == "samples") for v in VIEW_NAMES]
        # and the layer-by-layer warping as a GIF (a flow without the trace signatures
        # has none: a note, not an error)
        args.animation, args.speed = str(DEMO_FOLDER / "layers.gif"), DEMO_SPEED
        return _headless(args, model, shots, optional_animation=True)
    app, window = _make_app()
    if args.report_startup:
        return _report_startup(app, window)
    window.show()
    from PySide6 import QtCore
    QtCore.QTimer.singleShot(0, lambda: window.start(model, context=args.context,
                                                       follow=args.follow))
    return app.exec()


if __name__ == "__main__":
    sys.exit(main())
