"""`python -m visualizer` from the command line: --screenshot, --demo without a
display, and one-line errors."""

import os
import re
import subprocess
import sys

import numpy as np
import pytest
from PySide6 import QtGui

from test_visualizer_support import make_model_folder

pytestmark = pytest.mark.gui


def run_viz(args, cwd, timeout=400, **env_vars):
    env = {k: v for k, v in os.environ.items()
           if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    for name, value in env_vars.items():      # None: not set
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return subprocess.run([sys.executable, "-m", "visualizer", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_model_folder(tmp_path_factory.mktemp("viz_cli"), "tiny", num_layers=2,
                             savedmodel=False)[0]


def test_demo_without_display_writes_one_screenshot_per_view(folder, tmp_path):
    proc = run_viz([str(folder), "--demo", "--size", "900x600"], cwd=tmp_path,
                   TF_CPP_MIN_LOG_LEVEL=None)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # TensorFlow's INFO lines and Qt's offscreen notice are left out (kerasflows_launch)
    assert not re.search(r"^I\d{4} |cuInit|absl::InitializeLog|propagateSizeHints",
                         proc.stderr, re.M), proc.stderr
    printed = proc.stdout.split()
    # its own folder: ./screenshots/ is a checkout's folder of README pictures, which
    # the README's first command overwrote
    assert [p.name for p in tmp_path.iterdir()] == ["kerasflows-demo"]
    for view in ("samples", "density", "layers", "inspector"):
        path = tmp_path / "kerasflows-demo" / f"{view}.png"
        assert str(path.relative_to(tmp_path)) in printed
        image = QtGui.QImage(str(path))
        assert (image.width(), image.height()) == (900, 600)
    from PIL import Image
    from visualizer import animation
    frames = len(animation.frame_positions(2, 3.0))             # 2 layers at 3 layers/s
    assert f"kerasflows-demo/layers.gif ({frames} frames)" in proc.stdout
    with Image.open(tmp_path / "kerasflows-demo" / "layers.gif") as gif:
        assert gif.size == (720, 600) and gif.n_frames > 2


def test_screenshot_errors_are_one_line_with_exit_code_2(tmp_path):
    proc = run_viz([str(tmp_path / "missing.keras"), "--screenshot", "x.png"], cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("kerasflows-viz: error: ")
    assert "no such file" in proc.stderr and "Traceback" not in proc.stderr
    proc = run_viz(["--screenshot", "x.png", "--view", "density", "--layer", "2"], cwd=tmp_path)
    assert proc.returncode == 2 and "--layer applies to --view layers only" in proc.stderr
    proc = run_viz(["--screenshot", "x.png", "--size", "10by10"], cwd=tmp_path)
    assert proc.returncode == 2 and "WIDTHxHEIGHT" in proc.stderr
    proc = run_viz(["--screenshot", "x.png", "--context", "1,abc"], cwd=tmp_path)
    assert proc.returncode == 2 and "finite numbers separated by commas" in proc.stderr


def one_line_error(proc):
    """The last line of stderr, after checking it is the only error, exit code 2."""
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("kerasflows-viz: error: "), last
    return last


def test_output_paths_are_checked_before_any_work(tmp_path):
    """A folder that does not exist or takes no files, a suffix that is not the format
    written: refused up front, before the model opens (so nothing is written)."""
    last = one_line_error(run_viz(["--screenshot", "/proc/nope/a.png"], cwd=tmp_path))
    assert "there is no folder /proc/nope" in last
    last = one_line_error(run_viz(["--screenshot", "/proc/a.png"], cwd=tmp_path))
    assert "/proc takes no new files" in last
    last = one_line_error(run_viz(["--screenshot", "a.png", "--data",
                                   str(tmp_path / "nodir" / "d.npz")], cwd=tmp_path))
    assert "--data: cannot write" in last and "there is no folder" in last
    last = one_line_error(run_viz(["--screenshot", "a.gif"], cwd=tmp_path))
    assert "--screenshot writes .png, .jpg or .jpeg files; received 'a.gif'." in last
    last = one_line_error(run_viz(["--screenshot", "a.png", "--data", "d.dat"], cwd=tmp_path))
    assert "--data writes .npz files" in last
    assert list(tmp_path.iterdir()) == [], "nothing was written"


def test_no_display_is_a_one_line_error_that_names_the_ways_without_one(tmp_path):
    last = one_line_error(run_viz([], cwd=tmp_path))
    assert "no display" in last and "--demo" in last and "--screenshot" in last


def test_a_context_starting_with_a_minus_sign_is_a_value():
    """Python 3.11's argparse took `-1,0.5` for an option flag ("expected one argument")."""
    from visualizer.__main__ import build_parser
    assert build_parser().parse_args(["m", "--context", "-1,0.5"]).context == [-1.0, 0.5]
    assert build_parser().parse_args(["m", "--context", "-.5"]).context == [-0.5]


def main_here(args, capsys, monkeypatch, stdout=False):
    """`main(args)` run in this process, with no display as `run_viz` has; returns
    `(exit code, stderr)`, and then stdout if `stdout`. For the errors found once the
    model has opened, and the outputs other than the demo's and --data's: they are
    main's messages, exit codes and files, and another process would only import
    TensorFlow again (8 s; the tests that run the program check that it exits 2 with
    a one-line error and writes its files without a display)."""
    from visualizer.__main__ import main
    for name in ("DISPLAY", "WAYLAND_DISPLAY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("QT_QPA_PLATFORM", "offscreen")
    capsys.readouterr()
    code = main(args)
    printed = capsys.readouterr()
    return (code, printed.err, printed.out) if stdout else (code, printed.err)


def test_context_for_an_unconditional_flow_is_a_one_line_error(folder, tmp_path, capsys,
                                                                monkeypatch):
    code, err = main_here([str(folder), "--screenshot", str(tmp_path / "x.png"),
                           "--context", "1"], capsys, monkeypatch)
    assert code == 2, err[-2000:]
    last = err.strip().splitlines()[-1]
    assert last.startswith("kerasflows-viz: error: ") and "not a conditional flow" in last
    assert last == (f"kerasflows-viz: error: Could not open the model: {folder} is not a "
                    "conditional flow, so it takes no context."), "no 'ValueError:'"
    assert not (tmp_path / "x.png").exists()


def test_screenshot_with_data_saves_the_arrays_drawn(folder, tmp_path):
    """... and leaves the user's settings (recent files, choices) as they were."""
    config = tmp_path / "config"
    (config / "kerasflows").mkdir(parents=True)
    ini = config / "kerasflows" / "visualizer.conf"
    ini.write_text("[General]\nrecent=/some/model.keras\n")
    before = ini.read_bytes()
    proc = run_viz([str(folder), "--screenshot", "d.png", "--view", "density", "--data", "d.npz",
                    "--size", "900x600"], cwd=tmp_path, XDG_CONFIG_HOME=str(config))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert ini.read_bytes() == before and sorted(p.name for p in config.rglob("*")) == \
        ["kerasflows", "visualizer.conf"]
    import kerasflows
    import numpy as np
    from visualizer import geometry
    with np.load(tmp_path / "d.npz", allow_pickle=False) as data:
        assert str(data["view"]) == "density" and str(data["model"]) == str(folder)
        n = len(data["x"])
        assert data["log_prob"].shape == (n, n) and n == 256
        flow = kerasflows.load(folder / "flow.keras")
        xy = geometry.grid_points(tuple(data["region"]), n)
        np.testing.assert_allclose(data["log_prob"].ravel(), flow.log_prob(xy).numpy(),
                                   rtol=1e-5, atol=1e-4)
        np.testing.assert_allclose(xy[:n, 0], data["x"], atol=1e-6)      # row 0: y[0], every x
        np.testing.assert_allclose(xy[::n, 1], data["y"], atol=1e-6)
        assert list(data["dims"]) == [0, 1]
    proc = run_viz([str(folder), "--data", "d.npz"], cwd=tmp_path)
    assert proc.returncode == 2 and "--data goes with --screenshot" in proc.stderr


def test_a_size_too_small_for_the_models_side_panel_is_refused_naming_the_least(
        tmp_path, capsys, monkeypatch):
    """The side panel of a flow over more than 2 coordinates widened the window:
    `--size 800x500` gave a 942-pixel-wide image without a word."""
    from PIL import Image
    four, _ = make_model_folder(tmp_path, "four", event_dim=4, num_layers=2, savedmodel=False)
    code, err = main_here([str(four), "--screenshot", str(tmp_path / "s.png"), "--size",
                           "800x500"], capsys, monkeypatch)
    assert code == 2, err[-2000:]
    last = err.strip().splitlines()[-1]
    found = re.search(r"--size 800x500 is smaller than this model's window can be "
                      r"\((\d+)x500 with its side panel\); give at least --size (\d+)x500\.$",
                      last)
    assert found and found[1] == found[2] and int(found[1]) > 800, last
    assert not (tmp_path / "s.png").exists()
    size = f"{found[1]}x500"
    code, err = main_here([str(four), "--screenshot", str(tmp_path / "s.png"), "--size", size],
                          capsys, monkeypatch)
    assert code == 0, err[-2000:]
    with Image.open(tmp_path / "s.png") as image:
        assert image.size == (int(found[1]), 500)


def test_screenshot_rows_by_context_draws_one_row_per_digit(folder, tmp_path, capsys,
                                                            monkeypatch):
    import numpy as np
    from visualizer import paths
    digits = paths.default_model_path().parent / "digits_label"
    code, err = main_here([str(digits), "--screenshot", str(tmp_path / "r.jpg"), "--view",
                           "samples", "--rows-by-context", "--data", str(tmp_path / "r.npz"),
                           "--size", "1100x700"], capsys, monkeypatch)
    assert code == 0, err[-3000:]
    assert QtGui.QImageReader(str(tmp_path / "r.jpg")).format() == b"jpeg"   # as it is named
    with np.load(tmp_path / "r.npz", allow_pickle=False) as data:
        assert data["samples"].shape == (100, 64)
        assert data["sweep_values"].tolist() == list(range(10)) and int(data["sweep_per"]) == 10
    assert QtGui.QImage(str(tmp_path / "r.jpg")).width() == 1100
    # its flow.keras alone (no manifest: 8 x 8 guessed from 64 columns, not shown as
    # pictures until asked): refused as if its context had no steps
    import shutil
    bare = tmp_path / "labels.keras"
    shutil.copy(digits / "flow.keras", bare)
    code, err = main_here([str(bare), "--screenshot", str(tmp_path / "k.png"),
                           "--view", "samples", "--rows-by-context", "--data",
                           str(tmp_path / "k.npz")], capsys, monkeypatch)
    assert code == 0, err[-3000:]
    with np.load(tmp_path / "k.npz", allow_pickle=False) as data:
        assert data["sweep_values"].tolist() == list(range(10))
    code, err = main_here([str(folder), "--screenshot", str(tmp_path / "x.png"), "--view",
                           "samples", "--rows-by-context"], capsys, monkeypatch)
    assert code == 2 and "--rows-by-context applies to --view samples" in err


def test_animation_options_are_checked_before_any_work(tmp_path):
    from visualizer import headless
    from visualizer.__main__ import _argument_problem, build_parser

    def problem(*args):
        return _argument_problem(build_parser().parse_args(list(args)), headless)

    assert problem("--animation", "a.gif", "--screenshot", "a.png") == \
        "--screenshot, --animation and --context-animation: one at a time."
    assert "--view does not apply to --animation" in problem("--animation", "a.gif",
                                                             "--view", "density")
    assert problem("--animation", "a.gif", "--view", "layers") is None
    assert "--layer does not apply" in problem("--animation", "a.gif", "--layer", "2")
    assert "--data does not apply" in problem("--animation", "a.gif", "--data", "d.npz")
    assert problem("--speed", "2") == "--speed and --frame-size go with --animation."
    assert "--direction goes with --animation or with --screenshot --view layers" in \
        problem("--screenshot", "a.png", "--direction", "inverse")
    assert problem("--screenshot", "a.png", "--view", "layers", "--direction", "inverse") is None
    assert "--follow needs the window" in problem("--animation", "a.gif", "--follow")
    assert problem("--animation", str(tmp_path / "a.webp")) == \
        f"--animation writes .gif files; received {str(tmp_path / 'a.webp')!r}."
    assert "there is no folder" in problem("--animation", str(tmp_path / "no" / "a.gif"))
    for bad, says in ((["--speed", "0"], "layers per second in [0.1, 10]"),
                      (["--speed", "fast"], "layers per second in [0.1, 10]"),
                      (["--frame-size", "100x100"], "at least 160x120"),
                      (["--frame-size", "big"], "WIDTHxHEIGHT such as 720x600")):
        last = one_line_error(run_viz(["--animation", "a.gif", *bad], cwd=tmp_path))
        assert says in last, last
    assert list(tmp_path.iterdir()) == [], "nothing was written"


def test_animation_plays_the_layers_into_a_gif_without_a_display(folder, tmp_path, capsys,
                                                                  monkeypatch):
    from PIL import Image
    from visualizer import animation
    monkeypatch.chdir(tmp_path)
    code, err, out = main_here([str(folder), "--animation", "warp.gif", "--direction",
                                "inverse", "--speed", "5", "--frame-size", "320x240"],
                               capsys, monkeypatch, stdout=True)
    assert code == 0, err[-3000:]
    states = 2 + 1                                    # the tiny flow's 2 layers
    n = len(animation.frame_positions(states - 1, 5.0))
    assert out.strip() == f"warp.gif ({n} frames)"
    with Image.open(tmp_path / "warp.gif") as image:
        assert image.size == (320, 240) and image.n_frames >= 2
        first = np.asarray(image.convert("RGB"), dtype=int)
        image.seek(image.n_frames - 1)
        last = np.asarray(image.convert("RGB"), dtype=int)
    assert np.abs(first - last).mean() > 1.0, "the data end and the base end differ"


def test_an_animation_writes_under_the_longest_name_the_file_system_takes(tmp_path):
    """Its hidden partial file was named after the GIF, 11+ bytes longer: a valid
    long name passed the checks, and the write failed after every frame was made."""
    from PIL import Image
    from visualizer import animation
    path = tmp_path / ("é" * 123 + "warp.gif")          # 131 characters, 254 bytes
    frames = [np.full((24, 32, 3), v, np.uint8) for v in (0, 128, 255)]
    animation.write_animation(frames, path, [100, 100, 100])
    assert os.listdir(tmp_path) == [path.name]
    with Image.open(path) as image:
        assert image.n_frames == 3


def test_animation_of_a_flow_without_an_inverse_backwards_is_a_one_line_error(
        tmp_path, capsys, monkeypatch):
    planar, _ = make_model_folder(tmp_path, "planar", num_layers=2, planar=True)
    code, err = main_here([str(planar), "--animation", str(tmp_path / "a.gif"),
                           "--direction", "inverse"], capsys, monkeypatch)
    assert code == 2, err[-2000:]
    last = err.strip().splitlines()[-1]
    assert last.startswith("kerasflows-viz: error: --direction inverse needs a flow with an "
                           "inverse; data → base is unavailable: Planar"), last
    assert not (tmp_path / "a.gif").exists()


def test_context_animation_sweeps_a_conditional_flow_without_a_display(tmp_path, capsys,
                                                                        monkeypatch):
    from PIL import Image
    from visualizer import headless
    from visualizer.__main__ import _argument_problem, build_parser
    conditional, _ = make_model_folder(tmp_path, "cond", num_layers=2, context_dim=1,
                                       savedmodel=False)
    code, err = main_here([str(conditional), "--context-animation", str(tmp_path / "c.gif"),
                           "--view", "density", "--size", "900x600"], capsys, monkeypatch)
    assert code == 0, err[-2000:]
    with Image.open(tmp_path / "c.gif") as image:
        assert image.n_frames == 50 and max(image.size) <= 800
    # the Layers view at the last state, the data (the base is the same at every context);
    # its first and last frames are compared, and a sweep of 3 values has the ends of 50
    from visualizer import animation
    sweep = animation.context_values
    monkeypatch.setattr(animation, "context_values",
                        lambda low, high, step=None: sweep(low, high, step, frames=3))
    frames = {}
    for layer in ([], ["--layer", "0"]):
        code, err = main_here([str(conditional), "--context-animation",
                               str(tmp_path / "l.gif"), "--view", "layers", *layer],
                              capsys, monkeypatch)
        assert code == 0, err[-2000:]
        with Image.open(tmp_path / "l.gif") as image:
            frames[len(layer)] = [np.asarray(image.convert("L"))[60:-60, 60:-200].copy()
                                  for _ in range(image.n_frames) if not image.seek(_)]
    moved = {k: np.abs(f[0].astype(int) - f[-1]).mean() for k, f in frames.items()}
    assert moved[0] > 3 * moved[2]      # the data move with the context; the base does not
    code, err = main_here([str(conditional), "--context-animation", str(tmp_path / "l.gif"),
                           "--view", "layers", "--layer", "9"], capsys, monkeypatch)
    assert code == 2 and "--layer must be in [0, 2] for this model; received 9" in err, err
    code, err = main_here([str(conditional), "--context-animation", str(tmp_path / "d.gif"),
                           "--coordinate", "2"], capsys, monkeypatch)
    assert code == 2 and "the context has 1 coordinate; received coordinate 2" in err, err
    unconditional, _ = make_model_folder(tmp_path, "plain", num_layers=1, savedmodel=False)
    code, err = main_here([str(unconditional), "--context-animation", str(tmp_path / "e.gif")],
                          capsys, monkeypatch)
    assert code == 2 and "not conditional: it has no context to sweep" in err, err
    assert not (tmp_path / "d.gif").exists() and not (tmp_path / "e.gif").exists()

    def problem(*args):
        return _argument_problem(build_parser().parse_args(list(args)), headless)

    assert problem("--coordinate", "1") == "--coordinate goes with --context-animation."
    assert problem("--context-animation", "a.gif", "--direction", "inverse") == \
        "--direction does not apply to --context-animation."
    assert problem("--context-animation", "a.gif", "--animation", "b.gif") == \
        "--screenshot, --animation and --context-animation: one at a time."
    assert "--context-animation writes .gif files" in problem("--context-animation", "a.png")


def test_demo_of_a_savedmodel_without_trace_notes_that_it_has_no_animation(tmp_path, capsys,
                                                                          monkeypatch):
    folder, _ = make_model_folder(tmp_path, "notrace", num_layers=1, with_trace=False)
    monkeypatch.chdir(tmp_path)
    code, err = main_here([str(folder / "saved_model" / "1"), "--demo", "--size", "900x600"],
                          capsys, monkeypatch)
    assert code == 0, err[-2000:]
    assert "kerasflows-viz: note: no kerasflows-demo/layers.gif: the Layers view has no " \
           "states to animate" in err, err
    assert (tmp_path / "kerasflows-demo" / "samples.png").exists()
    assert not (tmp_path / "kerasflows-demo" / "layers.gif").exists()


def test_window_options_without_their_output_and_bad_options_are_refused_on_one_line(tmp_path):
    # --view, --layer and --rows-by-context were taken, and did nothing, in the window,
    # with --report-startup or --demo; a bad option printed argparse's usage block first
    from visualizer import headless
    from visualizer.__main__ import _argument_problem, build_parser

    def problem(*args):
        return _argument_problem(build_parser().parse_args(list(args)), headless)

    assert "--view goes with --screenshot or --context-animation" in problem("--view", "layers")
    assert "--view goes with" in problem("--report-startup", "--view", "density")
    assert "--rows-by-context goes with --screenshot" in problem("--rows-by-context")
    assert "--rows-by-context goes with" in problem("--report-startup", "--rows-by-context")
    assert problem("--screenshot", "a.png", "--view", "samples", "--rows-by-context") is None
    assert problem("--context-animation", "a.gif", "--view", "density") is None
    proc = run_viz(["--bogus"], cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "kerasflows-viz: error: unrecognized arguments: --bogus (see 'kerasflows-viz --help')"]
    assert list(tmp_path.iterdir()) == []


def test_coordinate_counts_from_one_and_below_is_refused_before_any_work(tmp_path):
    # `--coordinate 0` was taken as coordinate 1
    from visualizer import headless
    from visualizer.__main__ import _argument_problem, build_parser

    def problem(*args):
        return _argument_problem(build_parser().parse_args(
            ["--context-animation", str(tmp_path / "a.gif"), *args]), headless)

    for k in ("0", "-1"):
        assert problem("--coordinate", k) == ("--coordinate counts the context's coordinates "
                                              f"from 1 (1..C); received {k}.")
    assert problem("--coordinate", "1") is None and problem() is None


def test_screenshot_with_data_of_a_view_without_arrays_writes_neither_file(tmp_path, capsys,
                                                                         monkeypatch):
    # the picture was written before the arrays were found missing
    folder, _ = make_model_folder(tmp_path, "planar", num_layers=2, planar=True)
    code, err = main_here([str(folder), "--screenshot", str(tmp_path / "i.png"), "--view",
                           "inspector", "--data", str(tmp_path / "i.npz"), "--size", "900x600"],
                          capsys, monkeypatch)
    assert code == 2, err[-2000:]
    assert err.strip().splitlines()[-1] == (f"kerasflows-viz: error: the inspector view drew "
                                            f"no arrays to save in {tmp_path / 'i.npz'}.")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["planar"]


def test_a_model_file_that_file_open_offers_opens_by_every_route(tmp_path):
    """File > Open offers saved_model.pb and manifest.json; the command line and drag
    and drop (`paths.resolve`) refused them as 'not a model'."""
    from visualizer import paths
    folder = tmp_path / "m"
    version = folder / "saved_model" / "1"
    version.mkdir(parents=True)
    (folder / "manifest.json").write_text('{"name": "m"}')
    (folder / "flow.keras").write_bytes(b"")
    for name in ("saved_model.pb", "saved_model.pbtxt"):
        (version / name).write_bytes(b"")
        source = paths.resolve(version / name)
        assert (source.path, source.kind, source.load_path) == (version, "savedmodel", version)
        assert source.manifest == {"name": "m"}
        (version / name).unlink()
    (version / "saved_model.pb").write_bytes(b"")
    for prefer_keras, load in ((True, folder / "flow.keras"), (False, version)):
        source = paths.resolve(folder / "manifest.json", prefer_keras=prefer_keras)
        assert (source.path, source.load_path) == (folder, load)
    (tmp_path / "manifest.json").write_text("{}")           # a folder with no model
    with pytest.raises(paths.ModelPathError, match="has neither flow.keras nor a SavedModel"):
        paths.resolve(tmp_path / "manifest.json")


VIZ_EXTRAS = ('the visualizer needs PySide6, pyqtgraph and pillow: '
              'pip install "kerasflows[viz]"')


@pytest.mark.parametrize("module, args", [
    ("PySide6", ["m.keras"]),
    ("pyqtgraph", ["m.keras", "--screenshot", "s.png"]),
    ("PIL", ["m.keras", "--animation", "w.gif"]),
    ("PIL", ["m.keras", "--context-animation", "w.gif"]),
    ("PIL", ["--demo"]),
])
def test_a_missing_viz_extra_is_a_one_line_error_that_names_it(module, args, tmp_path,
                                                               capsys, monkeypatch):
    """Without PySide6 or pyqtgraph a traceback ended the program; without pillow
    an animation failed once every frame was made."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(sys.modules, module, None)          # `import module` fails
    code, err = main_here(args, capsys, monkeypatch)
    assert code == 2, err[-2000:]
    [line] = err.strip().splitlines()
    assert line.startswith(f"kerasflows-viz: error: cannot import {module} (")
    assert line.endswith(VIZ_EXTRAS), line
    assert list(tmp_path.iterdir()) == [], "nothing was written"


def test_a_screenshot_needs_no_pillow(folder, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "PIL", None)
    code, err = main_here([str(folder), "--screenshot", str(tmp_path / "s.png"), "--size",
                           "900x600"], capsys, monkeypatch)
    assert code == 0, err[-2000:]
    assert QtGui.QImage(str(tmp_path / "s.png")).width() == 900


def test_an_animation_without_pillow_is_refused_before_any_frame(folder, tmp_path, capsys,
                                                                 monkeypatch):
    """File > Export layers animation without pillow: an AnimationError (shown in a
    dialog), not an ImportError out of the slot, before the frames are drawn."""
    from visualizer import animation
    monkeypatch.setitem(sys.modules, "PIL", None)
    with pytest.raises(animation.AnimationError,
                       match=r'writing a GIF needs pillow: pip install "kerasflows\[viz\]"'):
        animation.write_animation([np.zeros((4, 4, 3), np.uint8)], tmp_path / "a.gif", [100])
    with pytest.raises(animation.AnimationError, match="needs pillow"):
        animation.save_layers_animation(None, tmp_path / "a.gif", (160, 120))
    with pytest.raises(animation.AnimationError, match="needs pillow"):
        animation.save_context_animation(None, tmp_path / "a.gif")
    assert list(tmp_path.iterdir()) == []


NO_DEFAULT = ("kerasflows-viz: error: no MODEL given, and the default saved_models/moons/ "
              "ships only with a source checkout: pass a .keras file, a SavedModel or a "
              "model folder")


@pytest.mark.parametrize("args", [["--demo"], ["--screenshot", "s.png"], [],
                                  ["--animation", "a.gif"]])
def test_no_model_without_the_default_says_to_pass_one_before_anything_is_written(
        args, tmp_path, capsys, monkeypatch):
    """Installed from a wheel, the default was looked for inside site-packages:
    'Cannot open /.../saved_models/moons: no such file or directory:
    /.../saved_models/moons', and --demo left an empty ./screenshots/."""
    from visualizer import paths
    monkeypatch.setattr(paths, "default_model_path",
                        lambda: tmp_path / "site-packages" / "saved_models" / "moons")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    code, err = main_here(args, capsys, monkeypatch)
    assert code == 2, err[-2000:]
    assert err.strip().splitlines() == [NO_DEFAULT]
    assert list(work.iterdir()) == [], "nothing was written"


def test_demo_of_a_missing_model_writes_nothing_and_names_the_path_once(tmp_path, capsys,
                                                                       monkeypatch):
    monkeypatch.chdir(tmp_path)
    for args in (["missing.keras", "--demo"], ["missing.keras", "--screenshot", "x.png"]):
        code, err = main_here(args, capsys, monkeypatch)
        assert code == 2, err[-2000:]
        assert err.strip().splitlines() == [
            "kerasflows-viz: error: Could not open the model: no such file or directory: "
            "missing.keras"]
        assert list(tmp_path.iterdir()) == [], "no ./kerasflows-demo/ left behind"


def test_help_says_which_files_open_as_their_folder():
    from visualizer import paths
    from visualizer.__main__ import build_parser
    text = " ".join(build_parser().format_help().split())
    named = ", ".join(paths.FOLDER_FILES[:-1]) + f" or {paths.FOLDER_FILES[-1]}"
    assert f"(a {named} opens as its folder)" in text, text
    assert "./kerasflows-demo/" in text and "./screenshots/" not in text


def test_write_replacing_writes_through_a_link_and_keeps_the_mode(tmp_path):
    """Exports replace their file by a rename: a link was replaced by a new file (the
    file it named kept its old contents) and a private file became world-readable."""
    import os
    from visualizer.headless import write_replacing
    target = tmp_path / "target.png"
    target.write_bytes(b"old")
    os.chmod(target, 0o600)
    link = tmp_path / "link.png"
    link.symlink_to(target)
    assert write_replacing(link, lambda f: f.write(b"new")) == link
    assert link.is_symlink() and target.read_bytes() == b"new"
    assert (target.stat().st_mode & 0o777) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.png", "target.png"]
