"""Small models for the visualizer tests (no tests here; imported by them).

`make_model_folder` writes a `saved_models/<name>/`-style folder: `flow.keras`,
`saved_model/1/`, `manifest.json` and `data_sample.npy`. The SavedModel comes
from `kerasflows.export`; the minimal exporter below writes one without the
trace signatures, as another program might.
"""

import functools
import json

import numpy as np


def make_flow(event_dim=2, num_layers=3, seed=0, planar=False, context_dim=None,
              encoder_features=None, permute=False):
    """A small perturbed coupling flow (nonlinear, so every layer visibly warps);
    with `planar=True`, a forward-only flow of `Planar` layers; with `context_dim`,
    a conditional coupling flow, whose context goes through a `Dense(encoder_features)`
    context encoder if that is given; with `permute=True`, a `Permute()` (reversing
    the coordinates) after each coupling but the last."""
    import keras
    import kerasflows
    from kerasflows.layers import AffineCoupling, Permute, Planar
    from kerasflows.testing import perturb_weights
    encoder = None
    if encoder_features:
        encoder = keras.layers.Dense(encoder_features, activation="tanh", name="encoder")
    layers = []
    for i in range(num_layers):
        masked = 1 + (i % (event_dim - 1)) if event_dim > 2 else 1
        layers.append(Planar(name=f"p{i}") if planar else
                      AffineCoupling(hidden_units=(16,), num_masked=masked, name=f"c{i}",
                                     context_dim=encoder_features or context_dim))
        if permute and i < num_layers - 1:
            layers.append(Permute(name=f"r{i}"))
    flow = kerasflows.Flow(layers, event_dim=event_dim, base="learned_normal",
                           context_dim=context_dim, context_encoder=encoder)
    for i, layer in enumerate(layers):
        perturb_weights(layer, 0.6 if planar else 0.15, seed=seed + i)
    flow.base_loc.assign(np.linspace(-0.3, 0.3, event_dim).astype(np.float32))
    flow.base_log_scale.assign(np.full(event_dim, 0.2, np.float32))
    return flow


def _minimal_export(flow, path, with_trace=True):
    import tensorflow as tf
    D = flow.event_dim
    spec = lambda name: tf.TensorSpec([None, D], tf.float32, name=name)
    module = tf.Module()
    module.weights = list(flow.variables)   # tracks the variables, not the flow's caches
    # No autograph, as in `kerasflows.export`: the flow's methods need no conversion,
    # and converting them took two thirds of this export (1.8 s of 2.8).
    function = functools.partial(tf.function, autograph=False)

    @function(input_signature=[spec("x")])
    def log_prob(x):
        return {"log_prob": flow.log_prob(x)}

    @function(input_signature=[tf.TensorSpec([], tf.int32, name="n"),
                               tf.TensorSpec([], tf.int32, name="seed")])
    def sample(n, seed):
        eps = tf.random.stateless_normal(tf.stack([n, D]), seed=tf.stack([seed, 0]),
                                         alg="philox")
        loc, scale = flow._base_params()
        z = loc + scale * tf.ensure_shape(eps, [None, D])
        x, ld = flow.forward_and_log_det(z)
        lp = flow.base_log_prob(z) - ld
        return {"samples": x, "log_prob": lp}

    @function(input_signature=[spec("z")])
    def forward(z):
        x, ld = flow.forward_and_log_det(z)
        return {"x": x, "log_det": ld}

    @function(input_signature=[spec("x")])
    def inverse(x):
        z, ld = flow.inverse_and_log_det(x)
        return {"z": z, "log_det": ld}

    @function(input_signature=[spec("z")])
    def trace(z):
        s, ld = flow.trace(z, return_log_dets=True)
        return {"states": tf.stack(s), "log_dets": tf.stack(ld)}

    @function(input_signature=[spec("x")])
    def trace_inverse(x):
        s, ld = flow.trace_inverse(x, return_log_dets=True)
        return {"states": tf.stack(s), "log_dets": tf.stack(ld)}

    sigs = {"serving_default": log_prob, "sample": sample, "forward": forward,
            "inverse": inverse}
    if with_trace:
        sigs.update(trace=trace, trace_inverse=trace_inverse)
    tf.saved_model.save(module, str(path), signatures=sigs)


def export(flow, path, with_trace=True):
    """Writes `flow` as a SavedModel at `path` (`.../<version>`): with the real
    `kerasflows.export`, or without the trace signatures (a SavedModel exported
    by some other program) through the minimal exporter above."""
    if with_trace:
        from kerasflows.export import export_saved_model
        export_saved_model(flow, str(path.parent), version=int(path.name))
    else:
        _minimal_export(flow, path, with_trace=False)


def make_model_folder(root, name="tiny", event_dim=2, num_layers=3, with_trace=True,
                      savedmodel=True, planar=False, target=None, context_dim=None, image=None,
                      encoder_features=None, permute=False):
    """Writes a model folder under `root`; returns `(folder, flow)`.

    `planar=True` makes a forward-only flow (no SavedModel, no data sample,
    like a flow fitted to a target); `target` is written to the manifest.
    `context_dim` makes a conditional flow (no data sample), with a context
    encoder if `encoder_features`; `image` is written to the manifest as its
    `image` entry; `permute` puts a `Permute()` between the couplings.
    """
    folder = root / name
    folder.mkdir(parents=True)
    flow = make_flow(event_dim, num_layers, planar=planar, context_dim=context_dim,
                     encoder_features=encoder_features, permute=permute)
    flow.save(str(folder / "flow.keras"))
    if savedmodel and not planar:
        export(flow, folder / "saved_model" / "1", with_trace)
    if not planar and context_dim is None:
        data = flow.sample(300, seed=7).numpy().astype(np.float32)
        np.save(folder / "data_sample.npy", data)
    manifest = {"name": name, "dataset": None, "target": target, "recipe": "test",
                "event_dim": event_dim, "num_layers": num_layers, "hidden_units": [16],
                "test_nll": None, "true_entropy": None, "command": "pytest",
                "kerasflows_version": "test", "created": "now"}
    if image is not None:
        manifest["image"] = image
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder, flow


def started_window(qapp, folder):
    """A shown, started `MainWindow` for GUI tests, with its own settings file in
    `folder`. Eager and no warm-up (so no keep-warm either): the tests make about one
    call per shape, and tracing or XLA-compiling each would cost more than it saves
    (the backend tests check the XLA numbers, test_warm_up_plan the warm-up requests,
    test_visualizer_compute the keep-warm evaluations). TensorFlow must
    have finished importing on the calling thread first (two threads importing it at
    once break it)."""
    from PySide6 import QtCore
    from visualizer import theme
    from visualizer.window import MainWindow
    theme.apply(qapp)
    settings = QtCore.QSettings(str(folder / "s.ini"), QtCore.QSettings.Format.IniFormat)
    window = MainWindow(settings=settings, warm_up=False, eval_mode="eager")
    window.resize(1280, 840)
    window.show()
    window.start()
    return window

