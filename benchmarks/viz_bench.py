"""Frame-budget benchmarks of the visualizer (issue 3); prints medians.

    python benchmarks/viz_bench.py [MODEL] [--repeats 20] [--json out.json] [--no-tables]

Measures, on MODEL (default: saved_models/moons/), after the app's warm-up
(XLA compiles the shapes the views use):
  * density 256x256 after a 1% zoom (every pixel evaluated) and after a 1%
    pan (the pixels the two grids share are reused, the new ones evaluated):
    ms until the first image is on screen (a coarse 64x64 preview when the
    exact pass was slow), ms until the exact 256x256 one is, the compute
    thread's ms for the exact one (TensorFlow), the pixels it reused and the
    ms to draw it; and the compute ms of the same 256x256 heatmap submitted
    straight to the compute thread, without the view (back to back, and after
    the same idle pause as each zoom);
  * samples view, continuous resampling of 10,000 points: frames/s, the
    compute thread's ms per batch and the GUI thread's ms to draw a batch;
  * layer animation (play) in the layers view, frames/s;
  * the Pairs view of 10,000 samples (every pair of up to six coordinates):
    the GUI thread's ms to redraw it and ms from a resample to the new
    samples on screen;
  * a conditional flow (e.g. saved_models/ring_radius): the density view after
    one change of the context (1% of its slider's range): ms to the first image
    on screen and to the exact 256x256 one; and while its slider is dragged (one
    step every 16 ms), the heatmaps drawn per second;
  * following a `.keras` file (File > Follow File Changes): a copy of the model
    in a temporary folder, replaced (written beside it and renamed over it) once
    per repeat, `--follow-repeats` times: s from the replacement to the reloaded
    model and to its exact 256x256 heatmap on screen (the settle time, loading the
    file and the new weights' first compilations included);
  * time from launching `python -m visualizer` to its first painted window, s.
Targets: density <= 50 ms, samples >= 30 fps, layers >= 30 fps, first window <= 1 s.
The GUI parts run offscreen unless a display is available (e.g. under Xvfb).
The 1-minute load average is printed with the results: other processes on
the machine slow every number down.
"""

import argparse
import json
import os
import statistics
import shutil
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6 import QtWidgets  # noqa: E402

from visualizer import headless, paths, theme  # noqa: E402
from visualizer.views.density import SETTLE_MS  # noqa: E402
from visualizer.window import MainWindow  # noqa: E402

SETTLE_S = (SETTLE_MS + 50) / 1000


def idle(seconds):
    """Runs the Qt event loop, doing nothing else, for `seconds`."""
    start = time.perf_counter()
    headless.wait_for(lambda: time.perf_counter() - start > seconds, seconds + 5)


def on_screen_ms(view, stamps, change):
    """Runs `change()` and waits until `view` has drawn what it asks for: `(ms to the
    first frame drawn, ms to the last)`; `stamps` collects the view's frame times."""
    stamps.clear()
    start = time.perf_counter()
    change()
    # checked as each frame is drawn, not only every 10 ms
    headless.wait_for(view.is_ready, 300, signals=(view.frame_drawn,))
    QtWidgets.QApplication.processEvents()                 # paint the last frame
    return (stamps[0] - start) * 1000, (time.perf_counter() - start) * 1000


def time_density(window, repeats, move):
    """Medians after a single small `move` ("pan": the pixels both grids share are
    reused; "zoom": a new pixel size, every pixel evaluated): ms to the first image on
    screen, ms to the exact 256x256 image, its compute ms (compute thread), the pixels
    it reused, and its draw ms (GUI thread)."""
    view = window.show_view("density")
    view.resolution.setCurrentIndex(2)
    headless.wait_for(view.is_ready, 300)
    first_ms, exact_ms, compute_ms, reused, draw_ms = [], [], [], [], []
    stamps = []
    view.frame_drawn.connect(lambda: stamps.append(time.perf_counter()))
    for i in range(repeats):
        # One move, not a drag: a move within SETTLE_MS of the last one counts as a drag,
        # whose exact heatmap waits for the view to settle.
        idle(SETTLE_S)
        (x0, x1), (y0, y1) = view.view_box.viewRange()
        sign = 1 if i % 2 else -1
        if move == "pan":       # 1% of the view: new pixels at one edge
            shift = 0.01 * (x1 - x0) * sign
            x_range, y_range = (x0 + shift, x1 + shift), (y0, y1)
        else:                   # 1% zoom about the centre: every pixel is new
            f = 1.01 if sign > 0 else 1 / 1.01
            cx, cy, hx, hy = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2 * f, (y1 - y0) / 2 * f
            x_range, y_range = (cx - hx, cx + hx), (cy - hy, cy + hy)
        first, exact = on_screen_ms(view, stamps, lambda: view.view_box.setRange(
            xRange=x_range, yRange=y_range, padding=0))
        first_ms.append(first)
        exact_ms.append(exact)
        compute_ms.append(window.latency * 1000)
        reused.append(view.left.value.get("reused", 0))
        start = time.perf_counter()
        view._draw()
        QtWidgets.QApplication.processEvents()
        draw_ms.append((time.perf_counter() - start) * 1000)
    return [statistics.median(v) for v in (first_ms, exact_ms, compute_ms, reused, draw_ms)]


def direct_density_ms(window, repeats, pause=0.0):
    """Median compute ms of a 256x256 `compute.density` submitted straight to the compute
    thread (no view involved; a new zoom each time, so every pixel is evaluated), each
    after `pause` seconds of idle."""
    from visualizer import geometry
    worker, times = window.worker, []
    projection = geometry.Projection(window.info["event_dim"])
    (x0, x1), (y0, y1) = window.views["density"].view_box.viewRange()
    got = []

    def collect(result):
        if result.kind == "direct":
            got.append(result)
    # One slot for all repeats, gone before the later measurements run.
    worker.result.connect(collect)
    try:
        for i in range(repeats):
            f = 1 + 0.003 * (i + 1)
            if pause:
                idle(pause)
            got.clear()
            worker.submit("direct", "density", (x0 * f, x1 * f, y0 * f, y1 * f), 256,
                          projection, generation=worker.thread.generation)
            headless.wait_for(lambda: got, 60)
            times.append(got[0].seconds * 1000)
    finally:
        worker.result.disconnect(collect)
    return statistics.median(times)


def time_context(window, repeats):
    """Conditional flows: medians of the ms to the first image and to the exact 256x256
    heatmap after one change of the first context coordinate (1% of its slider's
    range, alternating up and down)."""
    view = window.show_view("density")
    view.resolution.setCurrentIndex(2)
    headless.wait_for(view.is_ready, 300)
    panel = window.context_panel
    low, high = panel.ranges[0]
    first_ms, exact_ms, stamps = [], [], []
    view.frame_drawn.connect(lambda: stamps.append(time.perf_counter()))
    for i in range(repeats):
        idle(SETTLE_S)
        step = 0.01 * (high - low) * (1 if i % 2 else -1)
        first, exact = on_screen_ms(view, stamps, lambda: panel.set_value(
            0, panel.spins[0].value() + step))
        first_ms.append(first)
        exact_ms.append(exact)
    return statistics.median(first_ms), statistics.median(exact_ms)


def context_drag_fps(window, seconds=3.0):
    """Heatmaps drawn per second while the first context slider moves one step every
    16 ms (back and forth over a tenth of its range)."""
    view = window.show_view("density")
    headless.wait_for(view.is_ready, 300)
    slider = window.context_panel.sliders[0]
    origin, span = slider.value(), slider.maximum() // 10
    frames, start, k = view.frames, time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
        k += 1
        slider.setValue(origin + (k % (2 * span) if k % (2 * span) < span
                                  else 2 * span - k % (2 * span)))
        idle(0.016)
    fps = (view.frames - frames) / (time.perf_counter() - start)
    slider.setValue(origin)
    headless.wait_for(view.is_ready, 300)
    return fps


def count_frames(window, view, seconds):
    frames, start = view.frames, time.perf_counter()
    headless.wait_for(lambda: time.perf_counter() - start > seconds, seconds + 5)
    return (view.frames - frames) / (time.perf_counter() - start)


def samples_fps(window, seconds=4.0, count=10_000):
    """Frames/s of continuous resampling, and the median compute ms per batch."""
    view = window.show_view("samples")
    view.count.setValue(count)
    headless.wait_for(view.is_ready, 300)
    view.continuous.setChecked(True)
    count_frames(window, view, 1.0)                            # warm-up
    latencies = []
    window.worker.result.connect(lambda r: r.kind == "samples" and latencies.append(r.seconds))
    fps = count_frames(window, view, seconds)
    view.continuous.setChecked(False)
    return fps, statistics.median(latencies) * 1000


def samples_draw_ms(window, repeats=20):
    """Median ms to set and paint a new 10,000-point cloud (the GUI thread's part of a frame)."""
    view = window.show_view("samples")
    headless.wait_for(view.is_ready, 300)
    points, times = view.points, []
    for i in range(repeats):
        start = time.perf_counter()
        view.cloud.set_points(view.projection.project(points[::-1] if i % 2 else points))
        view.plot.viewport().repaint()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def pairs_ms(window, repeats=20):
    """Median ms of the Pairs view (every pair of up to six coordinates): to redraw
    what it holds (the GUI thread's part: the scatters, the histograms, a repaint) and
    from a resample to the new samples drawn."""
    view = window.show_view("pairs")
    headless.wait_for(view.is_ready, 300)
    draws, resamples = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        view.draw()
        view.canvas.viewport().repaint()
        draws.append((time.perf_counter() - start) * 1000)
    for _ in range(repeats):
        seed = view.seed + 1
        start = time.perf_counter()
        view.resample()
        headless.wait_for(lambda: view.is_ready() and view.drawn["seed"] == seed, 300)
        view.canvas.viewport().repaint()
        resamples.append((time.perf_counter() - start) * 1000)
    return statistics.median(draws), statistics.median(resamples), len(view.cells)


def layers_fps(window, seconds=4.0):
    view = window.show_view("layers")
    headless.wait_for(view.is_ready, 300)
    view.speed.setValue(0.5)
    view.toggle_play()
    fps = count_frames(window, view, seconds)
    view.toggle_play()
    return fps


def time_follow(window, info, repeats):
    """Following a copy of the open `.keras` model: medians of the s from replacing the
    file to the reloaded model, and to its exact 256x256 heatmap on screen."""
    folder = tempfile.mkdtemp(prefix="viz_bench_follow_")
    try:
        path = os.path.join(folder, "flow.keras")
        shutil.copy(info["load_path"], path)
        headless.open_model(window, path)
        view = window.show_view("density")
        view.resolution.setCurrentIndex(2)
        headless.wait_for(window.worker.thread.idle, 600)
        window.set_following(True)
        reloaded, drawn = [], []
        window.model_reloaded.connect(reloaded.append)
        for i in range(repeats):
            reloaded.clear()
            shutil.copy(info["load_path"], path + ".new.keras")
            start = time.perf_counter()
            os.replace(path + ".new.keras", path)
            headless.wait_for(lambda: bool(reloaded), 300)
            loaded = time.perf_counter() - start
            old = view.left.value
            headless.wait_for(lambda: view.is_ready() and view.left.value is not old
                              and view.image.shape == (256, 256), 300,
                              signals=(view.frame_drawn,))
            QtWidgets.QApplication.processEvents()
            drawn.append((loaded, time.perf_counter() - start))
            headless.wait_for(window.worker.thread.idle, 600)
        window.set_following(False)
        window.model_reloaded.disconnect(reloaded.append)
        return (statistics.median(d[0] for d in drawn), statistics.median(d[1] for d in drawn))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def first_window_seconds(model, repeats):
    times = []
    for _ in range(repeats):
        out = subprocess.run([sys.executable, "-m", "visualizer", str(model), "--report-startup"],
                             capture_output=True, text=True, timeout=120)
        line = [l for l in out.stdout.splitlines() if l.startswith("first window")]
        if not line:
            raise RuntimeError(f"--report-startup printed nothing: {out.stderr[-2000:]}")
        times.append(float(line[0].split()[3]))
    return statistics.median(times)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model", nargs="?", default=str(paths.default_model_path()))
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--json", help="also write the results to this JSON file")
    p.add_argument("--follow-repeats", type=int, default=3,
                   help="replacements of a followed copy of a .keras model (0: skip)")
    p.add_argument("--no-tables", action="store_true",
                   help="run the conditioners as dense layers (no kerasflows.tabulate), "
                        "for comparison; the first-window launch is not affected")
    args = p.parse_args(argv)
    if args.no_tables:
        import kerasflows.inference
        kerasflows.inference.tabulate = lambda flow: (flow, ())
    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication([])
    theme.apply(app)
    window = MainWindow(remember=False)     # the defaults, not the user's last choices
    window.show()
    start = time.perf_counter()
    info = headless.open_model(window, args.model)
    headless.wait_for(window.worker.thread.idle, 600)
    warm_up = time.perf_counter() - start
    results = {
        "model": info["path"], "backend": info["kind"], "platform": app.platformName(),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "open_and_warm_up_s": round(warm_up, 1),
    }
    for move in ("zoom", "pan"):
        first, exact, compute, reused, draw = time_density(window, args.repeats, move)
        results.update({
            f"density_{move}_first_on_screen_ms": round(first, 1),
            f"density_{move}_256_exact_on_screen_ms": round(exact, 1),
            f"density_{move}_256_compute_ms": round(compute, 1),
            f"density_{move}_pixels_reused": int(reused),
            f"density_{move}_256_draw_ms": round(draw, 1),
        })
    results["density_direct_256_compute_ms"] = round(direct_density_ms(window, args.repeats), 1)
    # the same after as long an idle pause as the zoom measurement leaves before each move
    results["density_direct_256_after_idle_compute_ms"] = round(
        direct_density_ms(window, args.repeats, pause=SETTLE_S), 1)
    if info["context_dim"] is not None:
        first, exact = time_context(window, args.repeats)
        results.update({"density_context_first_on_screen_ms": round(first, 1),
                        "density_context_256_exact_on_screen_ms": round(exact, 1),
                        "density_context_drag_fps": round(context_drag_fps(window), 1)})
    fps, batch_ms = samples_fps(window)
    results.update({
        "samples_10k_fps": round(fps, 1),
        "samples_10k_compute_ms": round(batch_ms, 1),
        "samples_10k_draw_ms": round(samples_draw_ms(window), 1),
        "layer_animation_fps": round(layers_fps(window), 1),
    })
    draw, resample, cells = pairs_ms(window, args.repeats)
    results.update({"pairs_cells": cells, "pairs_10k_draw_ms": round(draw, 1),
                    "pairs_10k_resample_on_screen_ms": round(resample, 1)})
    if args.follow_repeats > 0 and info["kind"] == "keras":
        loaded, exact = time_follow(window, info, args.follow_repeats)
        results.update({"follow_replaced_to_reloaded_s": round(loaded, 2),
                        "follow_replaced_to_exact_256_on_screen_s": round(exact, 2)})
    window.close()
    results["first_window_s"] = round(first_window_seconds(args.model, max(3, args.repeats // 4)), 3)
    results["load_average_1min_end"] = round(os.getloadavg()[0], 2)
    for key, value in results.items():
        print(f"{key:36s} {value}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
