"""Visualizer compute side: path resolution, both backends against the flow's own
numbers, the compute thread's mailbox, and a SavedModel opened without kerasflows."""

import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest

from test_visualizer_support import export, make_model_folder
from visualizer import compute, geometry, opening, paths
from visualizer.backends import (CHUNK, KerasBackend, SavedModelBackend, TraceUnavailable,
                                 _padded, bucket)

RNG = np.random.default_rng(0)
X = RNG.normal(size=(37, 2)).astype(np.float32)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    root = tmp_path_factory.mktemp("viz_models")
    folder, flow = make_model_folder(root, "tiny", event_dim=2, num_layers=3)
    return folder, flow


@pytest.fixture(scope="module")
def backends(model):
    folder, _ = model
    return {"keras": KerasBackend(folder / "flow.keras"),
            "savedmodel": SavedModelBackend(folder / "saved_model" / "1")}


# -- paths -------------------------------------------------------------------------------
def test_resolve_accepts_every_layout(model):
    folder, _ = model
    src = paths.resolve(folder)
    assert (src.kind, src.load_path) == ("keras", folder / "flow.keras")
    assert src.manifest["name"] == "tiny" and src.data_sample.shape == (300, 2)
    src = paths.resolve(folder, prefer_keras=False)
    assert (src.kind, src.load_path) == ("savedmodel", folder / "saved_model" / "1")
    for path, kind in [(folder / "flow.keras", "keras"), (folder / "saved_model", "savedmodel"),
                       (folder / "saved_model" / "1", "savedmodel")]:
        src = paths.resolve(path)
        assert src.kind == kind
        assert src.manifest["name"] == "tiny", "the model folder's manifest is picked up"
        assert src.data_sample is not None


def test_resolve_rejects_bad_paths(tmp_path):
    with pytest.raises(paths.ModelPathError, match="no such file"):
        paths.resolve(tmp_path / "missing.keras")
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(paths.ModelPathError, match="not a model"):
        paths.resolve(tmp_path / "notes.txt")
    with pytest.raises(paths.ModelPathError, match="not a model directory"):
        paths.resolve(tmp_path)
    with pytest.raises(paths.ModelPathError, match="not a model: not a file or a directory"):
        paths.resolve("/dev/null")                  # was called "not a model directory"
    bad = tmp_path / "broken"
    bad.mkdir()
    (bad / "manifest.json").write_text("{not json")
    with pytest.raises(paths.ModelPathError, match="manifest.json"):
        paths.resolve(bad)


def test_a_data_sample_that_is_not_an_array_of_numbers_is_named(model, tmp_path):
    """A model folder's data_sample.npy of text, or of records (pandas' to_records):
    a message naming the file (text was called "pickled (object) data", and records
    raised a TypeError the app did not report)."""
    folder = tmp_path / "copy"
    shutil.copytree(model[0], folder)
    sample = folder / "data_sample.npy"
    sample.write_text("garbage")
    with pytest.raises(paths.ModelPathError, match=r"data_sample.npy is not a NumPy .npy file "
                                                   r"\(it lacks the format's header\)"):
        paths.resolve(folder)
    np.save(sample, np.zeros(5, dtype=[("a", "f8"), ("b", "f8")]))
    with pytest.raises(paths.ModelPathError, match=r"data_sample.npy holds an array of dtype "
                                                   r"\[\('a', '<f8'\), \('b', '<f8'\)\]; "
                                                   r"expected numbers"):
        paths.resolve(folder)
    np.save(sample, np.arange(6, dtype=np.int64).reshape(3, 2))
    assert paths.resolve(folder).data_sample.dtype == np.float32


def test_truncated_or_corrupt_keras_file_is_reported_as_such(model, tmp_path):
    data = (model[0] / "flow.keras").read_bytes()
    flipped = bytearray(data)
    flipped[200:400] = bytes(b ^ 0xFF for b in flipped[200:400])   # inside the first member
    for name, content in (("truncated", data[:len(data) // 2]), ("empty", b""),
                          ("flipped", bytes(flipped))):
        path = tmp_path / f"{name}.keras"
        path.write_bytes(content)
        with pytest.raises(ValueError) as caught:
            compute.load(paths.resolve(path), eval_mode="eager")
        text = str(caught.value)
        assert text.startswith(f"{path} exists but is not a readable .keras archive"), text
        assert "truncated or corrupt" in text and "\n" not in text
    other = tmp_path / "other.keras"          # a zip of something else: a bare KeyError
    with zipfile.ZipFile(other, "w") as archive:
        archive.writestr("notes.txt", "hello")
    with pytest.raises(ValueError, match=r"other.keras is a zip file but not a Keras model "
                                         r"archive: it holds no config.json \(1 other"):
        compute.load(paths.resolve(other), eval_mode="eager")
    members = {}                              # damage inside the archive: path and reason
    with zipfile.ZipFile(model[0] / "flow.keras") as archive:
        for name in archive.namelist():
            members[name] = archive.read(name)
    for name, weights, reason in (("noweights", None, " is a Keras model archive without its "
                                   "weights: it holds no model.weights.h5"),
                                  ("halfweights", members["model.weights.h5"][:3000],
                                   ": cannot load the model \\(OSError: Unable to")):
        path = tmp_path / f"{name}.keras"
        with zipfile.ZipFile(path, "w") as archive:
            for member, content in members.items():
                if member == "model.weights.h5":
                    content = weights
                if content is not None:
                    archive.writestr(member, content)
        with pytest.raises(ValueError, match=re.escape(str(path)) + reason):
            compute.load(paths.resolve(path), eval_mode="eager")


def test_default_model_is_found_relative_to_the_package():
    assert paths.default_model_path() == Path(paths.__file__).resolve().parents[1] / \
        "saved_models" / "moons"


def expected_sample(flow, backend, n, seed, temperature):
    """What the samples view must show: the flow's own `sample` for a .keras model;
    for a SavedModel its `sample` signature (T = 1) or `forward` of the base
    scaled by T (the same Philox noise as `Flow.sample`)."""
    import tensorflow as tf
    if backend.kind == "keras":
        return flow.sample(n, seed=seed, temperature=temperature).numpy()
    if temperature == 1.0:
        out = backend.signatures["sample"](n=tf.constant(n), seed=tf.constant(seed))
        return out["samples"].numpy()
    eps = tf.random.stateless_normal([n, flow.event_dim], seed=[seed, 0], alg="philox")
    loc, scale = flow._base_params()
    return flow.forward(loc + temperature * scale * eps).numpy()


def test_base_noise_is_the_philox_noise_of_flow_sample():
    import tensorflow as tf
    from visualizer.backends import base_noise
    for n, d, seed in ((300, 3, 7), (10_000, 2, 0), (5, 64, -2)):
        want = tf.random.stateless_normal([n, d], seed=[seed, 0], alg="philox").numpy()
        got = base_noise(n, d, seed)
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, want)


# -- backends against the flow ------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["keras", "savedmodel"])
def test_backend_numbers_equal_the_flows_own(model, backends, kind):
    _, flow = model
    b = backends[kind]
    assert (b.event_dim, b.num_layers, b.has_trace) == (2, 3, True)
    if kind == "keras":      # a 2-D coupling flow runs on exact conditioner tables
        assert b.tabulated == ("c0", "c1", "c2") and b.flow is not flow
    np.testing.assert_allclose(b.log_prob(X), flow.log_prob(X).numpy(), rtol=1e-5, atol=1e-5)
    for T in (1.0, 0.6):
        np.testing.assert_allclose(b.sample(123, seed=5, temperature=T),
                                   expected_sample(flow, b, 123, 5, T), rtol=1e-4, atol=1e-4)
    states, log_dets = b.trace(X)
    want_s, want_ld = flow.trace(X, return_log_dets=True)
    np.testing.assert_allclose(states, np.stack(want_s), atol=1e-5)
    np.testing.assert_allclose(log_dets, np.stack(want_ld), atol=1e-5)
    states, log_dets = b.trace_inverse(X)
    want_s, want_ld = flow.trace_inverse(X, return_log_dets=True)
    np.testing.assert_allclose(states, np.stack(want_s), atol=1e-5)
    np.testing.assert_allclose(log_dets, np.stack(want_ld), atol=1e-5)
    z, ld = b.inverse(X)
    np.testing.assert_allclose(z, flow.inverse(X).numpy(), atol=1e-5)
    loc, scale = b.base_params()
    np.testing.assert_allclose(loc, flow.base_loc.numpy(), atol=1e-4)
    np.testing.assert_allclose(scale, np.exp(flow.base_log_scale.numpy()), atol=1e-4)


@pytest.fixture(scope="module", params=[None, 3], ids=["plain", "encoder"])
def conditional(tmp_path_factory, request):
    """A conditional flow's backends; "encoder": its context of 2 goes through a
    context encoder to the 3 features its layers see."""
    folder, flow = make_model_folder(tmp_path_factory.mktemp("viz_conditional"), "cond",
                                     context_dim=2, encoder_features=request.param)
    return flow, {"keras": KerasBackend(folder / "flow.keras"),
                  "savedmodel": SavedModelBackend(folder / "saved_model" / "1")}


def test_a_context_off_a_stepped_coordinates_values_is_refused(tmp_path):
    folder, _ = make_model_folder(tmp_path, "cond", context_dim=2, savedmodel=False)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest.update(context_names=["digit", "c2"], context_range=[[0, 9], [-1, 1]],
                    context_step=[1, None])
    (folder / "manifest.json").write_text(json.dumps(manifest))
    src = paths.resolve(folder)
    for digit in (12.0, 3.5, -1.0):
        with pytest.raises(ValueError, match=rf"digit = {digit:g} is not one of its values, "
                                             r"0 to 9 in steps of 1 \(the manifest"):
            compute.load(src, eval_mode="eager", context=[digit, 0.0])
    _, info = compute.load(src, eval_mode="eager", context=[7.0, 5.0])   # c2: any value
    assert info["context"].tolist() == [7.0, 5.0]
    ranges, steps = [(0.0, 1.0)], [0.3]                      # a step not dividing the range
    for value in (0.0, 0.3, 0.6, 0.9):
        compute.check_context([value], ["c"], ranges, steps)
    for value in (1.0, 1.2, 0.45):
        with pytest.raises(ValueError, match="0 to 0.9 in steps of 0.3"):
            compute.check_context([value], ["c"], ranges, steps)
    compute.check_context([3.5], ["c"], None, [1.0])         # no range: the panel centres it


@pytest.mark.parametrize("kind", ["keras", "savedmodel"])
def test_conditional_backend_evaluates_at_its_context(conditional, kind):
    flow, backends = conditional
    b = backends[kind]
    assert b.context_dim == 2
    np.testing.assert_array_equal(b.context, [0.0, 0.0])              # opens at zeros
    rows = lambda c, n: np.tile(np.asarray(c, np.float32), (n, 1))
    at_zero = b.log_prob(X)
    np.testing.assert_allclose(at_zero, flow.log_prob(X, context=rows([0, 0], 37)).numpy(),
                               rtol=1e-5, atol=1e-5)
    b.memo("kept", lambda: 1)
    c = [0.7, -1.2]
    b.set_context(c)
    assert "kept" not in b.__dict__.get("_memo", {}), "a new context drops the memo"
    got = b.log_prob(X)
    np.testing.assert_allclose(got, flow.log_prob(X, context=rows(c, 37)).numpy(),
                               rtol=1e-5, atol=1e-5)
    assert np.abs(got - at_zero).max() > 1e-2, "the context changes the density"
    np.testing.assert_allclose(b.sample(123, seed=5),
                               flow.sample(123, context=rows(c, 1), seed=5).numpy(),
                               rtol=1e-4, atol=1e-4)
    states, log_dets = b.trace_inverse(X)
    want_s, want_ld = flow.trace_inverse(X, context=rows(c, 37), return_log_dets=True)
    np.testing.assert_allclose(states, np.stack(want_s), atol=1e-5)
    np.testing.assert_allclose(log_dets, np.stack(want_ld), atol=1e-5)
    out = compute.inspect(b, X[3])
    assert out["log_prob"] == pytest.approx(float(got[3]), abs=1e-4)
    with pytest.raises(ValueError, match=r"context of 2 finite values; received \[1.0\]"):
        b.set_context([1.0])
    b.set_context([0.0, 0.0])


def test_a_context_of_the_wrong_length_is_refused_in_words():
    from visualizer.backends import Backend
    backend = Backend()
    backend.context_dim = 1
    with pytest.raises(ValueError, match=r"a context of 1 finite value; received \[1.0, 2.0\]"):
        backend.set_context([1.0, 2.0])


def test_errors_meant_for_the_user_are_shown_without_their_class_name():
    from visualizer.worker import _reason
    assert _reason(ValueError("expected a context of 1 finite value")) == \
        "expected a context of 1 finite value"
    assert _reason(FileNotFoundError(2, "No such file or directory", "a.keras")) == \
        "[Errno 2] No such file or directory: 'a.keras'"
    assert _reason(KeyError("layers")) == "KeyError: 'layers'"      # unexpected: named
    assert _reason(RuntimeError("first\nsecond")) == "RuntimeError: first"
    assert _reason(ValueError()) == "ValueError"


def test_permutation_steps_are_found_and_the_shown_coordinates_followed():
    from visualizer.permutations import column_sources, followed_positions
    x = RNG.normal(size=(20, 4))
    assert column_sources(x, x[:, [3, 2, 1, 0]]).tolist() == [3, 2, 1, 0]
    assert column_sources(x, x).tolist() == [0, 1, 2, 3]
    changed = x.copy()
    changed[:, 1] *= 2.0                                     # a coupling changed one
    assert column_sources(x, changed) is None
    twins = x.copy()
    twins[:, 2] = twins[:, 0]                                # two equal columns, swapped
    assert sorted(column_sources(twins, twins[:, [2, 1, 0, 3]]).tolist()) == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="one shape"):
        column_sources(x, x[:, :3])
    sources = [None, np.array([3, 2, 1, 0]), None]           # coupling, reverse, coupling
    assert followed_positions(sources, (0, 1), from_end=True).tolist() == \
        [[3, 2], [3, 2], [0, 1], [0, 1]]
    assert followed_positions(sources, (0, 1), from_end=False).tolist() == \
        [[0, 1], [0, 1], [3, 2], [3, 2]]
    cycle = np.array([2, 0, 3, 1])                           # after[:, j] = before[:, cycle[j]]
    states = [x, x[:, cycle]]
    forward = followed_positions([column_sources(*states)], (1, 3), from_end=True)
    np.testing.assert_array_equal(states[0][:, forward[0]], states[1][:, forward[1]])
    back = followed_positions([column_sources(*states)], (2, 0), from_end=False)
    np.testing.assert_array_equal(states[0][:, back[0]], states[1][:, back[1]])
    # every coordinate in its data-end place (the Layers view's pictures: a reversing
    # Permute drew the digits upside down in the states after it)
    from visualizer.permutations import column_orders
    chain = [x, x[:, cycle], x[:, cycle][:, [3, 2, 1, 0]]]
    sources = [column_sources(a, b) for a, b in zip(chain[:-1], chain[1:])]
    for from_end, end in ((True, chain[-1]), (False, chain[0])):
        orders = column_orders(sources, 4, from_end)
        for state, order in zip(chain, orders):
            np.testing.assert_array_equal(state[:, order], end)


def test_covering_region_holds_the_whole_grid_and_the_bulk_of_the_points():
    grid = np.array([[-5.0, 0.0], [5.0, 1.0]])
    points = np.concatenate([RNG.normal(size=(500, 2)), [[40.0, 40.0], [np.nan, 0.0]]])
    x0, x1, y0, y1 = geometry.covering_region(grid, points)
    assert x0 < -5 and x1 > 5 and x1 - x0 < 10 * 1.1         # a small margin
    assert np.isclose(x1 - x0, y1 - y0) and y1 < 10             # square; the outlier is out
    assert geometry.covering_region(np.zeros((0, 2)), np.zeros((0, 2))) == (-3.0, 3.0, -3.0, 3.0)


def test_backend_rejects_wrong_shapes(backends):
    with pytest.raises(ValueError, match=r"expected x of shape \(N, 2\); received shape \(4, 3\)"):
        backends["keras"].log_prob(np.zeros((4, 3)))


def test_bucket_sizes_are_quarter_octaves_and_big_inputs_go_in_chunks():
    assert [bucket(n) for n in (1, 64, 65, 81, 4096, 4097, 10_000, 70_000)] == \
        [64, 64, 80, 96, 4096, 5120, 10_240, 81_920]
    seen = []

    def fn(v):
        seen.append(len(v))
        return (v.sum(1),)

    x = np.arange(2 * (CHUNK + 10), dtype=np.float32).reshape(-1, 2)
    np.testing.assert_array_equal(_padded(fn, x)[0], x.sum(1))
    assert seen == [CHUNK, 64]


# -- compute functions ------------------------------------------------------------------------
def test_density_pixels_are_log_prob_at_pixel_centres(model, backends):
    _, flow = model
    region, res = (-2.0, 1.0, -1.5, 2.5), 8
    out = compute.density(backends["keras"], region, res, geometry.Projection(2))
    img = out["image"]
    assert img.shape == (res, res)
    # The grid sits on the lattice of its pixel size, within half a pixel of the request.
    x0, x1, y0, y1 = out["region"]
    assert abs(x0 - region[0]) <= 3.0 / res / 2 and abs(y0 - region[2]) <= 4.0 / res / 2
    assert (x1 - x0, y1 - y0) == pytest.approx((3.0, 4.0))
    xs, ys = geometry.pixel_centers(x0, x1, res), geometry.pixel_centers(y0, y1, res)
    i, j = 6, 1                       # row i is the i-th y from the bottom, column j the j-th x
    want = flow.log_prob(np.array([[xs[j], ys[i]]], np.float32)).numpy()[0]
    # (float32 sums of terms up to ~50 nats: the compiled and eager sums may differ by
    # a few units in the last place; 2e-5 at -47.43 in one full run of the suite)
    assert img[i, j] == pytest.approx(want, rel=1e-6, abs=1e-5)


def test_snapped_regions_share_pixel_centres_where_they_overlap():
    a, origin_a, step = geometry.snap_region((-1.03, 2.0, 0.51, 3.5), 10)
    b, origin_b, step_b = geometry.snap_region((-0.41, 2.62, 0.2, 3.19), 10, step)
    assert step_b == step and origin_b[0] - origin_a[0] == 2 and origin_b[1] - origin_a[1] == -1
    pa, pb = (geometry.grid_points(r, 10).reshape(10, 10, 2) for r in (a, b))
    np.testing.assert_array_equal(pb[1:, :8], pa[:9, 2:])
    with pytest.raises(ValueError, match="positive width"):
        geometry.snap_region((1.0, 1.0, 0.0, 2.0), 10)


def test_panned_heatmap_reuses_shared_pixels_and_computes_the_rest(model):
    folder, flow = model
    backend = KerasBackend(folder / "flow.keras")
    calls = []
    log_prob = backend.log_prob
    backend.log_prob = lambda x: calls.append(len(x)) or log_prob(x)
    proj, res = geometry.Projection(2), 32
    first = compute.density(backend, (-3.0, 3.0, -2.0, 4.0), res, proj)
    assert first["reused"] == 0 and calls == [res * res]
    pixel = 6.0 / res
    panned = (-3.0 + 3.4 * pixel, 3.0 + 3.4 * pixel, -2.0 - 1.2 * pixel, 4.0 - 1.2 * pixel)
    calls.clear()
    out = compute.density(backend, panned, res, proj)
    assert out["reused"] == (res - 3) * (res - 1)
    assert calls == [compute.PAN_BLOCK]          # the new pixels, in one padded block
    want = flow.log_prob(geometry.grid_points(out["region"], res)).numpy().reshape(res, res)
    # float32, computed in other batches: equal up to rounding (log p reaches -200 here)
    np.testing.assert_allclose(out["image"], want, rtol=1e-5, atol=1e-5)
    # A zoom, another projection or a long pan start afresh.
    zoomed = (panned[0], panned[1] + pixel, panned[2], panned[3] + pixel)
    assert compute.density(backend, zoomed, res, proj)["reused"] == 0
    held = geometry.Projection(2, dims=(1, 0))
    assert compute.density(backend, zoomed, res, held)["reused"] == 0
    far = tuple(v + 20 * pixel for v in zoomed)
    assert compute.density(backend, far, res, held)["reused"] == 0


def test_inspect_adds_up(model, backends):
    _, flow = model
    x = X[3]
    for b in backends.values():
        d = compute.inspect(b, x)
        z = flow.inverse(x[None]).numpy()[0]
        np.testing.assert_allclose(d["z"], z, atol=1e-5)
        assert d["log_p0"] == pytest.approx(float(flow.base_log_prob(z[None])[0]), abs=1e-4)
        assert d["log_prob"] == pytest.approx(float(flow.log_prob(x[None])[0]), abs=1e-5)
        assert d["log_p0"] + d["log_dets"].sum() == pytest.approx(d["log_prob"], abs=1e-4)
        assert d["path"].shape == (4, 2)


def test_savedmodel_layers_go_by_the_names_its_export_wrote(model, backends, tmp_path):
    # kerasflows.export writes the layers' names in assets.extra/kerasflows.json: the
    # SavedModel's steps are named as the .keras flow's layers are
    names = backends["keras"].layer_names
    assert names[0].startswith("AffineCoupling (") and len(names) == 3
    assert backends["savedmodel"].layer_names == names
    folder, _ = model
    copy = tmp_path / "1"
    shutil.copytree(folder / "saved_model" / "1", copy)
    (copy / "assets.extra" / "kerasflows.json").unlink()      # exported by another program
    assert SavedModelBackend(copy).layer_names == ("step 0", "step 1", "step 2")


def test_savedmodel_without_trace_signatures(model, tmp_path):
    _, flow = model
    export(flow, tmp_path / "1", with_trace=False)
    b = SavedModelBackend(tmp_path / "1")
    assert not b.has_trace and b.num_layers is None
    with pytest.raises(TraceUnavailable, match="no trace"):
        compute.layers(b, "forward", X)
    d = compute.inspect(b, X[0])
    assert d["log_dets"] is None and d["path"] is None
    assert d["log_prob"] == pytest.approx(float(flow.log_prob(X[:1])[0]), abs=1e-5)
    info = compute.describe(b, paths.resolve(tmp_path / "1"))
    assert info["has_trace"] is False and info["reference_is_data"] is False


def test_a_savedmodel_not_exported_by_kerasflows_is_named_as_such(tmp_path):
    import tensorflow as tf
    module = tf.Module()
    module.f = tf.function(lambda inp: {"y": inp * 2.0},
                           input_signature=[tf.TensorSpec([None, 2], tf.float32, "inp")])
    tf.saved_model.save(module, str(tmp_path / "1"),
                        signatures={"serving_default": module.f.get_concrete_function()})
    with pytest.raises(ValueError, match=r"serving_default takes \['inp'\]; a flow exported by "
                       r"kerasflows .* takes 'x'\. Is this SavedModel a kerasflows export\?"):
        SavedModelBackend(tmp_path / "1")
    # one that takes 'x' as many models do: named with its path and what it has (it was
    # "this SavedModel has no 'forward' signature", without the path, as the app drew)
    module.g = tf.function(lambda x: {"y": x * 2.0},
                           input_signature=[tf.TensorSpec([None, 2], tf.float32, "x")])
    tf.saved_model.save(module, str(tmp_path / "2"),
                        signatures={"serving_default": module.g.get_concrete_function()})
    with pytest.raises(ValueError, match=re.escape(str(tmp_path / "2")) + r": not a flow "
                       r"exported by kerasflows .* this one's serving_default gives \['y'\] and "
                       r"its signatures are \['serving_default'\]\. Is this SavedModel a "
                       r"kerasflows export\?"):
        SavedModelBackend(tmp_path / "2")


def test_a_damaged_savedmodel_is_named_with_the_reason(model, tmp_path):
    damaged = tmp_path / "1"
    shutil.copytree(model[0] / "saved_model" / "1", damaged)
    shutil.rmtree(damaged / "variables")
    with pytest.raises(ValueError, match=re.escape(str(damaged)) + r": cannot load the "
                       r"SavedModel \(damaged or incomplete: \w+: .*variables"):
        SavedModelBackend(damaged)


def test_a_one_dimensional_flow_is_refused_naming_its_file(tmp_path):
    import kerasflows
    flow = kerasflows.models.MAF(1, num_layers=1, hidden_units=(4,))
    flow.save(tmp_path / "line.keras")
    source = paths.resolve(tmp_path / "line.keras")
    with pytest.raises(ValueError, match=r"line\.keras: the visualizer shows flows with "
                       r"event_dim >= 2; this one has event_dim=1"):
        opening.load(source)


@pytest.mark.parametrize("context_dim", [None, 2], ids=["plain", "conditional"])
def test_savedmodel_of_a_float64_flow_gives_the_flows_own_numbers(tmp_path, context_dim):
    """A float64 flow's export takes float64 (x, z, context): the backend sends each
    input as its signature declares (it sent float32, which the signature refused) and
    returns float64, as the .keras backend does for that flow."""
    import kerasflows
    from kerasflows.testing import perturb_weights
    flow = kerasflows.models.RealNVP(2, num_layers=2, hidden_units=(8,), dtype="float64",
                                     context_dim=context_dim)
    perturb_weights(flow, 0.2, seed=0)
    export(flow, tmp_path / "1", True)
    b = SavedModelBackend(tmp_path / "1")
    context = None
    if context_dim:
        b.set_context([0.5, -1.0])
        context = np.tile([0.5, -1.0], (len(X), 1))
    log_p = b.log_prob(X)
    assert log_p.dtype == np.float64
    np.testing.assert_allclose(log_p, flow.log_prob(X, context=context).numpy(), rtol=1e-12)
    states, log_dets = b.trace(X)
    want_s, want_ld = flow.trace(X, context=context, return_log_dets=True)
    assert states.dtype == log_dets.dtype == np.float64
    np.testing.assert_allclose(states, np.stack(want_s), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(log_dets, np.stack(want_ld), rtol=1e-12, atol=1e-12)
    z, _ = b.inverse(X)
    np.testing.assert_allclose(z, flow.inverse(X, context=context).numpy(), atol=1e-12)
    rows = None if context is None else context[:1]
    np.testing.assert_allclose(b.sample(50, seed=3), flow.sample(50, seed=3, context=rows),
                               rtol=1e-12, atol=1e-12)
    loc, scale = b.base_params()                   # the flow's dtype, as the .keras backend's
    assert loc.dtype == scale.dtype == np.float64
    np.testing.assert_allclose(loc, [0, 0], atol=1e-9)
    np.testing.assert_allclose(scale, [1, 1], atol=1e-9)


def test_float64_flows_samples_are_flow_sample_in_both_backends(tmp_path):
    """A float64 flow draws its base noise in float64 (`Flow.sample`): the backends
    drew float32 noise, so the cloud shown was not `Flow.sample(n, seed)` and the
    .keras and SavedModel backends drew different ones."""
    import kerasflows
    import tensorflow as tf
    from kerasflows.testing import perturb_weights
    from visualizer.backends import base_noise
    want = tf.random.stateless_normal([300, 3], seed=[7, 0], dtype=tf.float64, alg="philox")
    got = base_noise(300, 3, 7, dtype=np.float64)
    assert got.dtype == np.float64
    np.testing.assert_array_equal(got, want.numpy())
    flow = kerasflows.models.RealNVP(2, num_layers=2, hidden_units=(8,), dtype="float64")
    perturb_weights(flow, 0.2, seed=0)
    flow.save(tmp_path / "f64.keras")
    export(flow, tmp_path / "saved" / "1", True)
    backends = (KerasBackend(tmp_path / "f64.keras", "eager"),
                SavedModelBackend(tmp_path / "saved" / "1"))
    for b in backends:
        x = b.sample(200, seed=3)
        assert x.dtype == np.float64, b.kind
        np.testing.assert_allclose(x, flow.sample(200, seed=3).numpy(), rtol=1e-12,
                                   atol=1e-12, err_msg=b.kind)
    # at another temperature, the base noise scaled by T and sent forward, as Flow.sample
    cooler = [b.sample(200, seed=3, temperature=0.6) for b in backends]
    np.testing.assert_allclose(cooler[0], cooler[1], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(cooler[0], flow.sample(200, seed=3, temperature=0.6).numpy(),
                               rtol=1e-12, atol=1e-12)
    # a learned base's loc and scale in float64 too (they were rounded to float32)
    flow = kerasflows.models.RealNVP(2, num_layers=1, hidden_units=(8,), dtype="float64",
                                     base="learned_normal")
    perturb_weights(flow, 0.2, seed=1)
    flow.save(tmp_path / "learned.keras")
    export(flow, tmp_path / "learned" / "1", True)
    want = flow.sample(50, seed=2, temperature=0.6).numpy()
    for backend in (KerasBackend(tmp_path / "learned.keras", "eager"),
                    SavedModelBackend(tmp_path / "learned" / "1")):
        assert backend.base_params()[1].dtype == np.float64, backend.kind
        # (the SavedModel's loc and scale are read off its log_prob: to its rounding)
        np.testing.assert_allclose(backend.sample(50, seed=2, temperature=0.6), want,
                                   rtol=1e-10, atol=1e-10, err_msg=backend.kind)


def test_savedmodel_of_a_mixed_float16_flow_still_opens(tmp_path):
    """A mixed_float16 flow's export takes and gives float32."""
    import kerasflows
    from kerasflows.testing import perturb_weights
    flow = kerasflows.models.RealNVP(2, num_layers=2, hidden_units=(8,), dtype="mixed_float16")
    perturb_weights(flow, 0.2, seed=0)
    export(flow, tmp_path / "1", True)
    b = SavedModelBackend(tmp_path / "1")
    log_p = b.log_prob(X)
    assert log_p.dtype == np.float32
    np.testing.assert_allclose(log_p, flow.log_prob(X).numpy(), rtol=1e-5, atol=1e-5)
    assert b.sample(20, seed=1).dtype == np.float32


def test_reference_points_are_the_finite_rows_of_the_data_sample(model, backends):
    """A data sample with a non-finite row shows its finite rows (the Inspector
    starts at the first one); one with no finite row, or no row at all (which
    left the window half-opened), gives way to the flow's own samples."""
    folder, _ = model
    src = paths.resolve(folder)
    data = src.data_sample.copy()
    data[0] = [np.nan, 1.0]
    data[5] = [np.inf, 0.0]
    info = compute.describe(backends["keras"], dataclasses.replace(src, data_sample=data))
    assert info["reference_is_data"] and len(info["reference"]) == len(data) - 2
    np.testing.assert_array_equal(info["reference"][0], data[1])
    assert np.isfinite(info["data_mean"]).all()
    for bad in (np.zeros((0, 2), np.float32), np.full((4, 2), np.nan, np.float32)):
        info = compute.describe(backends["keras"], dataclasses.replace(src, data_sample=bad))
        assert not info["reference_is_data"]
        assert len(info["reference"]) == compute.REFERENCE_POINTS
        assert np.isfinite(info["reference"]).all()
    # drawn at the Samples view's default count, whose shape the views compile anyway
    # (2000 rows compiled one of their own); the same first rows as 2000 rows' draw
    from visualizer import opening
    from visualizer.views import samples
    assert opening.REFERENCE_DRAW == samples.DEFAULT_COUNT
    np.testing.assert_array_equal(info["reference"],
                                  backends["keras"].sample(compute.REFERENCE_POINTS, seed=0))


# -- the compute thread --------------------------------------------------------------------------
def run_behind_a_blocking_density(folder, monkeypatch, submit, last_kind):
    """Opens `folder` on a `ComputeThread` whose density request blocks; calls
    `submit(thread)` while it is in flight, releases it and returns every
    delivered result, once one whose kind starts with `last_kind` arrived."""
    from visualizer.worker import ComputeThread
    started, release, done = threading.Event(), threading.Event(), threading.Event()
    results = []

    def blocking_density(backend, *args):
        started.set()
        release.wait(30)
        return "density"

    def deliver(r):
        results.append(r)
        if r.kind.startswith(last_kind):
            done.set()

    monkeypatch.setattr(compute, "density", blocking_density)
    thread = ComputeThread(deliver)
    thread.submit("open", "load", paths.resolve(folder))
    thread.start()
    thread.submit("density", "density", generation=1)
    assert started.wait(60), "the density request never started"
    submit(thread)
    release.set()
    assert done.wait(60)
    thread.stop()
    thread.join(10)
    return results


def test_newest_request_replaces_a_waiting_one(model, monkeypatch):
    monkeypatch.setattr(compute, "samples", lambda backend, n, seed, t: seed)

    def submit(thread):
        for seed in (1, 2, 3):                     # all wait while density is in flight
            thread.submit("samples", "samples", 10, seed, 1.0, generation=1)

    results = run_behind_a_blocking_density(model[0], monkeypatch, submit, "samples")
    kinds = [(r.kind, r.value if r.kind != "open" else None) for r in results]
    assert kinds == [("ready", None), ("open", None), ("density", "density"), ("samples", 3)]
    assert all(r.error is None for r in results)


def test_warm_up_requests_wait_until_nothing_else_does(model, monkeypatch):
    monkeypatch.setattr(compute, "samples", lambda backend, seed: seed)
    monkeypatch.setattr(compute, "warm_up", lambda backend, method, rows: method)

    def submit(thread):
        thread.submit("warm_up/log_prob", "warm_up", "log_prob", 4096, generation=1)
        thread.submit("samples", "samples", 7, generation=1)

    results = run_behind_a_blocking_density(model[0], monkeypatch, submit, "warm_up")
    order = [(r.kind, r.value if r.kind != "open" else None) for r in results]
    assert order[2:] == [("density", "density"), ("samples", 7),
                         ("warm_up/log_prob", "log_prob")]


@pytest.mark.parametrize("keep_warm", [0.0, 0.4])
def test_keep_warm_runs_small_evaluations_for_a_while_after_a_request(model, monkeypatch,
                                                                       keep_warm):
    import time
    from visualizer.worker import KEEP_WARM_ROWS, ComputeThread
    calls, results = [], []
    monkeypatch.setattr(compute, "samples", lambda backend, seed: seed)
    monkeypatch.setattr(compute, "warm_up", lambda backend, method, rows: calls.append(
        (time.perf_counter(), method, rows)))
    thread = ComputeThread(results.append, keep_warm=keep_warm)
    thread.submit("open", "load", paths.resolve(model[0]))
    thread.start()
    thread.submit("samples", "samples", 5, generation=1)
    deadline = time.perf_counter() + 60
    while len(results) < 3 and time.perf_counter() < deadline:
        time.sleep(0.01)
    answered = time.perf_counter()
    assert thread.idle()                      # a keep-warm evaluation is not a request
    time.sleep(keep_warm + 0.3)
    thread.stop()
    thread.join(10)
    assert [r.kind for r in results] == ["ready", "open", "samples"]     # none delivered
    if not keep_warm:
        assert calls == [] and thread.keep_warm_runs == 0
        return
    assert len(calls) >= 10 and thread.keep_warm_runs == len(calls)
    assert {(m, r) for _, m, r in calls} == {("log_prob", KEEP_WARM_ROWS)}
    assert calls[-1][0] < answered + keep_warm + 0.1     # and then they stop
    gaps = np.diff([t for t, _, _ in calls])
    assert np.median(gaps) < 0.05


# -- a process where kerasflows cannot be imported ------------------------------------------------
BLOCKER = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "kerasflows" or name.startswith("kerasflows."):
            raise ModuleNotFoundError("No module named 'kerasflows' (blocked by the test)")
sys.meta_path.insert(0, Block())
"""

CHILD = """
import json, sys
import numpy as np
from visualizer import compute, geometry, paths
try:
    import kerasflows
    raise SystemExit("kerasflows should not be importable here")
except ImportError:
    pass
src = paths.resolve(sys.argv[1])
backend, info = compute.load(src)
x = np.load(sys.argv[2])
out = {"kind": src.kind, "layers": info["num_layers"],
       "log_prob": compute.density(backend, (-1, 1, -1, 1), 4, geometry.Projection(2))["image"]
       .ravel().tolist(),
       "sample": compute.samples(backend, 5, 3)["points"].tolist(),
       "trace": compute.layers(backend, "inverse", x)["states"].tolist(),
       "modules": sorted(m for m in sys.modules if m.startswith(("kerasflows", "PySide6")))}
print(json.dumps(out))
"""


def test_savedmodel_opens_where_kerasflows_is_not_importable(model, backends, tmp_path):
    folder, flow = model
    (tmp_path / "sitecustomize.py").write_text(BLOCKER)
    np.save(tmp_path / "x.npy", X[:5])
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.run([sys.executable, "-c", CHILD, str(folder), str(tmp_path / "x.npy")],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["kind"] == "savedmodel" and out["layers"] == 3
    assert out["modules"] == [], "neither kerasflows nor Qt may be imported by the compute side"
    grid = geometry.grid_points((-1, 1, -1, 1), 4)
    np.testing.assert_allclose(out["log_prob"], flow.log_prob(grid).numpy(), atol=1e-5)
    np.testing.assert_allclose(out["sample"], expected_sample(flow, backends["savedmodel"], 5, 3, 1.0),
                               atol=1e-4)
    np.testing.assert_allclose(out["trace"], np.stack(flow.trace_inverse(X[:5])), atol=1e-5)


# -- forward-only flows and target densities --------------------------------------------------
def test_pixel_log_mean_averages_p_per_pixel():
    pts = np.array([[0.1, 0.1], [0.2, 0.3], [0.9, 0.1], [5.0, 5.0], [0.6, 0.7]])
    log_v = np.log([1.0, 3.0, 4.0, 100.0, 0.5])
    image, inside = geometry.pixel_log_mean(pts, log_v, (0, 1, 0, 1), 2)
    assert inside == 4, "the point outside the region is not counted"
    # row 0 is the bottom row (y in [0, 0.5)); column 1 is x in [0.5, 1).
    np.testing.assert_allclose(np.exp(image), [[2.0, 4.0], [0.0, 0.5]])
    assert image[1, 0] == -np.inf


@pytest.fixture(scope="module")
def planar(tmp_path_factory):
    folder, flow = make_model_folder(tmp_path_factory.mktemp("viz_planar"), "planar",
                                     num_layers=4, planar=True, target="u1")
    return folder, flow, KerasBackend(folder / "flow.keras")


def test_forward_only_flow_samples_and_density_from_its_samples(planar):
    folder, flow, b = planar
    assert not b.invertible and b.forward_only_layers == ("Planar",)
    x, log_p = b.sample_and_log_prob(500, seed=3)
    want_x, want_lp = flow.sample_and_log_prob(500, seed=3)
    np.testing.assert_allclose(x, want_x.numpy(), atol=1e-5)
    np.testing.assert_allclose(log_p, want_lp.numpy(), atol=1e-4)
    np.testing.assert_allclose(b.sample(300, seed=4), flow.sample(300, seed=4).numpy(), atol=1e-4)
    region = (-3.0, 3.0, -2.0, 4.0)
    out = compute.sampled_density(b, region, 16, n=4000, seed=1)
    x, log_p = b.sample_and_log_prob(4000, seed=1)
    flow_x, flow_log_p = flow.sample_and_log_prob(4000, seed=1)
    np.testing.assert_allclose(x, flow_x.numpy(), atol=1e-4)
    np.testing.assert_allclose(log_p, flow_log_p.numpy(), atol=1e-3)
    assert np.allclose(out["region"], region, atol=6.0 / 16 / 2)       # on its pixel lattice
    # Binned from the backend's own samples: the eager flow's agree to ~1e-6,
    # which can still move a sample on a pixel edge into the next pixel.
    want, inside = geometry.pixel_log_mean(x, log_p, out["region"], 16)
    np.testing.assert_allclose(out["image"], want, rtol=1e-5, atol=1e-5)
    assert (out["samples"], out["samples_in_view"]) == (4000, inside) and inside > 1000
    info = compute.describe(b, paths.resolve(folder))
    assert info["invertible"] is False and info["forward_only_layers"] == ["Planar"]
    assert info["target"] == "u1" and info["reference_is_data"] is False
    with pytest.raises(NotImplementedError, match="forward-only"):
        compute.inspect(b, np.zeros(2, np.float32))


def test_target_density_is_the_normalised_target(planar, tmp_path):
    import kerasflows.targets
    _, _, b = planar
    region = (-4.0, 4.0, -3.0, 3.0)
    out = compute.target_density(b, "u3", region, 8)
    u3 = kerasflows.targets.get("u3")
    want = u3(geometry.grid_points(out["region"], 8)).numpy() - u3.log_z
    np.testing.assert_allclose(out["image"].ravel(), want, rtol=1e-5, atol=1e-5)
    assert out["target"] == "u3"
    src = paths.ModelSource(path=tmp_path, kind="keras", load_path=tmp_path,
                            manifest={"target": "no_such"})
    assert compute.describe(b, src)["target"] is None, "unknown targets are not offered"


def test_a_keras_file_fit_target_wrote_offers_its_recorded_target(planar, tmp_path):
    """`fit-target --out u.keras` records the target in the file; only a model folder's
    manifest was read for it, so the README's first fit-target example opened without
    its target."""
    import shutil
    from kerasflows.loading import write_training_record
    folder, _, b = planar
    bare = tmp_path / "u.keras"
    shutil.copy(folder / "flow.keras", bare)
    assert compute.describe(b, paths.resolve(bare))["target"] is None
    for name, offered in (("u1", "u1"), ("no_such", None)):
        recorded = tmp_path / f"{name}.keras"
        shutil.copy(bare, recorded)
        write_training_record(recorded, {"target": name, "recipe": "planar"})
        assert compute.describe(b, paths.resolve(recorded))["target"] == offered


def test_warm_up_runs_the_backend_on_that_shape(backends):
    out = compute.warm_up(backends["keras"], "log_prob", 100)
    assert out == {"method": "log_prob", "rows": 100}


def test_tile_images_lays_pictures_out_as_they_are_read():
    rows = np.arange(5 * 6, dtype=np.float32).reshape(5, 6)      # five 2x3 pictures
    picture = geometry.tile_images(rows, (2, 3), columns=3, gap=1, fill=-1)
    assert picture.shape == (2 * 2 + 1, 3 * 3 + 2)
    top_down = picture[::-1]                  # the array's first row is drawn at the bottom
    np.testing.assert_array_equal(top_down[0:2, 0:3], rows[0].reshape(2, 3))
    np.testing.assert_array_equal(top_down[0:2, 4:7], rows[1].reshape(2, 3))
    np.testing.assert_array_equal(top_down[3:5, 4:7], rows[4].reshape(2, 3))
    assert (top_down[2] == -1).all() and (top_down[:, 3] == -1).all()
    assert (top_down[3:5, 8:11] == -1).all()                      # no sixth picture
    with pytest.raises(ValueError, match=r"shape \[n, 6\]"):
        geometry.tile_images(rows[:, :4], (2, 3))
    assert geometry.image_shape_for(64) == (8, 8) and geometry.image_shape_for(784) == (28, 28)
    assert geometry.image_shape_for(2) is None and geometry.image_shape_for(48) is None


def test_image_description_comes_from_the_manifest_or_a_square_guess():
    reference = np.linspace(-3, 3, 64 * 50, dtype=np.float32).reshape(50, 64)
    declared = opening._image({"image": {"shape": [4, 16], "levels": [-1, 2]}}, 64, reference)
    assert declared == {"shape": (4, 16), "levels": (-1.0, 2.0), "declared": True}
    guessed = opening._image({}, 64, reference)
    assert guessed["shape"] == (8, 8) and not guessed["declared"]
    lo, hi = np.quantile(reference, [0.005, 0.995])
    assert guessed["levels"] == pytest.approx((lo, hi))
    # a manifest entry that does not fit D (or has no levels) is not trusted
    assert opening._image({"image": {"shape": [3, 3]}}, 64, reference)["declared"] is False
    partial = opening._image({"image": {"shape": [8, 8]}}, 64, reference)
    assert partial["declared"] and partial["levels"] == pytest.approx((lo, hi))
    assert opening._image({}, 2, reference[:, :2]) is None
    assert opening._image({"image": "8x8"}, 3, reference[:, :3]) is None


def test_side_by_side_pictures_are_top_aligned():
    left = np.ones((5, 3), np.float32)
    right = np.full((3, 2), 2.0, np.float32)
    both = geometry.side_by_side(left, right, gap=1)
    assert both.shape == (5, 6)
    np.testing.assert_array_equal(both[:, :3], left)
    assert np.isnan(both[:, 3]).all()
    np.testing.assert_array_equal(both[2:, 4:], right)      # the top rows (drawn last)
    assert np.isnan(both[:2, 4:]).all()


def test_tile_index_finds_the_picture_under_a_point():
    n, shape, columns = 5, (2, 3), 3
    picture = geometry.tile_images(np.arange(n * 6, dtype=np.float32).reshape(n, 6), shape,
                                   columns, fill=-1)
    H, W = picture.shape
    for y in range(H):                         # every pixel centre, against the drawn values
        for x in range(W):
            k = geometry.tile_index(x + 0.5, y + 0.5, n, shape, columns)
            value = picture[y, x]
            if value == -1:
                assert k is None, (x, y)
            else:
                assert k == int(value) // 6, (x, y)
    assert geometry.tile_index(-0.5, 1, n, shape, columns) is None
    assert geometry.tile_index(1, H + 0.5, n, shape, columns) is None
    assert geometry.tile_index(W + 2, 1, n, shape, columns) is None



def test_coordinates_on_different_scales_get_a_region_of_their_own_shape():
    rng = np.random.default_rng(0)
    unit = rng.normal(size=(2000, 2))
    assert geometry.equal_scales(unit) and geometry.equal_scales(unit * [1.0, 3.5])
    x0, x1, y0, y1 = geometry.robust_region(unit * [1.0, 3.5])
    assert geometry.is_square((x0, x1, y0, y1)) and x1 - x0 == pytest.approx(y1 - y0)
    # age in years against income in dollars: each axis spans its own bulk
    people = np.stack([rng.normal(45, 12, 2000), np.exp(rng.normal(10.5, 0.6, 2000))], 1)
    assert not geometry.equal_scales(people)
    region = geometry.robust_region(people)
    x0, x1, y0, y1 = region
    assert not geometry.is_square(region)
    lo, hi = np.quantile(people, [0.01, 0.99], axis=0)
    assert x0 < lo[0] < hi[0] < x1 and x1 - x0 < 2 * (hi[0] - lo[0])
    assert y0 < lo[1] < hi[1] < y1 and y1 - y0 < 2 * (hi[1] - lo[1])
    assert geometry.is_square(geometry.robust_region(people, square=True))   # when asked
    grid = np.stack(np.meshgrid(np.linspace(-3, 3, 5), np.linspace(-3, 3, 5)), -1).reshape(-1, 2)
    assert geometry.is_square(geometry.covering_region(grid, unit))
    assert not geometry.is_square(geometry.covering_region(grid * [10, 1e4], people))
    # a coordinate with a single value (no spread), or too few points: one scale
    assert geometry.equal_scales(np.zeros((10, 2))) and geometry.equal_scales(people[:1])
    assert geometry.equal_scales(np.stack([people[:, 1], np.full(2000, 3.0)], 1))
    # data in small units (minute returns) keep their own width, not a floor of 1e-3
    returns = rng.normal(size=(10_000, 2)) * [3e-5, 5e-5]
    x0, x1, y0, y1 = geometry.robust_region(returns, square=False)
    lo, hi = np.quantile(returns, [0.01, 0.99], axis=0)
    assert x0 < lo[0] and x1 - x0 < 2 * (hi[0] - lo[0]) and y1 - y0 < 2 * (hi[1] - lo[1])
    # a single value gets a width float32 can draw: 1e-3, or 1e-3 of a large value
    x0, x1, y0, y1 = geometry.pad_region((55000.0, 55000.0, 0.0, 0.0), pad=0, square=False)
    assert (x1 - x0, y1 - y0) == (pytest.approx(55.0), pytest.approx(1e-3))


def test_state_names_keep_the_layer_names_that_say_something():
    from visualizer.views.layer_labels import short_layer_name, state_names
    assert short_layer_name("ActNorm (standardize)") == "ActNorm (standardize)"
    assert short_layer_name("Permute (checkerboard)") == "Permute (checkerboard)"
    for numbered in ("SplineCoupling (spline_0)", "InvertibleLinear (linear_12)",
                     "AffineCoupling (affine_coupling)", "Permute"):
        assert short_layer_name(numbered) == numbered.split(" (")[0]
    names = ["SplineCoupling (spline_0)", "ActNorm (standardize)"]
    assert state_names(names, 2, True) == [
        "0 · base z", "1 · after SplineCoupling", "2 · after ActNorm (standardize) = data x"]
    assert state_names(names, 2, False) == [
        "0 · data x", "1 · undo ActNorm (standardize)", "2 · undo SplineCoupling = base z"]


def test_a_student_t_base_is_drawn_from_in_both_backends(tmp_path):
    """The base noise of a Student-t base (the SavedModel's degrees of freedom read
    from its kerasflows.json) is the flow's own: samples at any temperature, the
    base's loc and scale, and the opened model's `base_df`."""
    import kerasflows
    from kerasflows.testing import perturb_weights
    from visualizer.backends import base_noise
    flow = kerasflows.models.RealNVP(2, num_layers=2, hidden_units=(8,), base="student_t")
    perturb_weights(flow, 0.2, seed=0)
    flow.base_log_df.assign(np.log([1.5, 6.0]).astype(np.float32))
    flow.save(tmp_path / "t.keras")
    export(flow, tmp_path / "t_saved" / "1", True)
    backends = {"keras": KerasBackend(tmp_path / "t.keras"),
                "savedmodel": SavedModelBackend(tmp_path / "t_saved" / "1")}
    for kind, b in backends.items():
        np.testing.assert_allclose(b.base_df, flow.base_df, rtol=1e-6, err_msg=kind)
        loc, scale = b.base_params()
        assert loc.tolist() == [0, 0] and scale.tolist() == [1, 1], kind
        for T in (1.0, 0.6):
            np.testing.assert_allclose(b.sample(500, seed=4, temperature=T),
                                       flow.sample(500, seed=4, temperature=T).numpy(),
                                       rtol=1e-4, atol=1e-4, err_msg=f"{kind} T={T}")
        info = opening.describe(b, paths.resolve(tmp_path / ("t.keras" if kind == "keras"
                                                             else "t_saved")))
        np.testing.assert_allclose(info["base_df"], flow.base_df, rtol=1e-6)
    noise = base_noise(20_000, 2, 1, df=flow.base_df)
    assert np.abs(noise[:, 0]).max() > 100, "df 1.5: heavy tails"
    import tensorflow as tf
    np.testing.assert_array_equal(noise, flow._base_sample(20_000, tf.constant(1), 1.0).numpy())
    # a kerasflows.json that names a Student-t base without its degrees of freedom
    meta = tmp_path / "t_saved" / "1" / "assets.extra" / "kerasflows.json"
    record = json.loads(meta.read_text())
    meta.write_text(json.dumps({**record, "base_df": [1.0]}))
    with pytest.raises(ValueError, match=r"names a Student-t base but gives base_df=\[1.0\]; "
                                         r"expected 2 positive numbers"):
        SavedModelBackend(tmp_path / "t_saved" / "1")


def test_a_class_label_flow_takes_only_its_labels(tmp_path):
    """A label a flow's ClassEmbedding does not know gives NaN everywhere: it opened with
    every view blank (or, exported, blamed the weights); a fraction was rounded to a
    label. The labels are now the context's values, 0..K-1 in steps of 1."""
    import kerasflows
    from kerasflows.layers import ClassEmbedding
    flow = kerasflows.models.RealNVP(2, num_layers=2, hidden_units=(8,), context_dim=1,
                                     context_encoder=ClassEmbedding(4))
    flow.log_prob(X[:2], context=np.zeros((2, 1), "float32"))
    flow.save(tmp_path / "f.keras")
    for label in (5.0, 1.5, -1.0):
        with pytest.raises(ValueError, match=rf"= {label:g} is not one of its values, 0 to 3 "
                                             r"in steps of 1 .*class labels"):
            opening.load(paths.resolve(tmp_path / "f.keras"), eval_mode="eager",
                         context=[label])
    _, info = opening.load(paths.resolve(tmp_path / "f.keras"), eval_mode="eager",
                           context=[3.0])
    assert info["context_ranges"] == [(0.0, 3.0)] and info["context_steps"] == [1.0]
    assert info["context"].tolist() == [3.0]
    export(flow, tmp_path / "1", True)           # an export says its labels too
    with pytest.raises(ValueError, match=r"= 5 is not one of its values, 0 to 3 in steps of 1 "
                                         r".*class labels"):
        opening.load(paths.resolve(tmp_path / "1"), context=[5.0])
    _, info = opening.load(paths.resolve(tmp_path / "1"), context=[2.0])
    assert info["context_ranges"] == [(0.0, 3.0)] and info["context_steps"] == [1.0]


def test_a_reload_of_the_same_architecture_keeps_the_flow_and_its_compiled_code(tmp_path):
    """Each reload (`--follow`) made a new flow whose XLA code TensorFlow never frees
    (moons4d: ~60 MB and ~2.5 s a reload): a flow of the same configuration, untabulated, in the
    same eval_mode, takes the new file's weights in the flow already open."""
    from kerasflows import models
    from kerasflows.testing import perturb_weights
    flow = models.MAF(2, num_layers=2, hidden_units=(8,))
    flow.build((None, 2))
    flow.save(tmp_path / "a.keras")
    perturb_weights(flow, 0.3, seed=1)
    flow.save(tmp_path / "b.keras")
    x = np.random.default_rng(0).normal(size=(50, 2)).astype("float32")
    first = KerasBackend(tmp_path / "a.keras", "graph")
    before = first.flow.log_prob(x).numpy()
    traces = len(first.flow._compiled)
    second = KerasBackend(tmp_path / "b.keras", "graph", previous=first)
    assert second.flow is first.flow and second.tabulated == ()
    np.testing.assert_allclose(second.flow.log_prob(x), flow.log_prob(x), rtol=1e-6, atol=1e-6)
    assert len(second.flow._compiled) == traces                   # traced once, in `first`
    assert np.abs(before - flow.log_prob(x).numpy()).max() > 1e-3  # new weights drawn
    # another configuration, another eval_mode or a tabulated flow: a flow of its own
    models.MAF(2, num_layers=3, hidden_units=(8,)).save(tmp_path / "c.keras")
    assert KerasBackend(tmp_path / "c.keras", "graph", previous=second).flow is not first.flow
    assert KerasBackend(tmp_path / "b.keras", "eager", previous=second).flow is not first.flow
    models.RealNVP(2, num_layers=2, hidden_units=(8,)).save(tmp_path / "r.keras")
    table = KerasBackend(tmp_path / "r.keras", "graph")
    assert table.tabulated
    assert KerasBackend(tmp_path / "r.keras", "graph", previous=table).flow is not table.flow
    # through the worker's path: compute.load hands the open backend over
    again, _ = compute.load(paths.resolve(tmp_path / "b.keras"), eval_mode="graph",
                            previous=second)
    assert again.flow is first.flow
    # an open that fails after taking the flow over gives its weights back
    kept = [w.copy() for w in first.flow.get_weights()]
    with pytest.raises(ValueError, match="not a conditional flow"):
        compute.load(paths.resolve(tmp_path / "a.keras"), eval_mode="graph", previous=again,
                     context=[1.0])
    for a, b in zip(first.flow.get_weights(), kept):
        np.testing.assert_array_equal(a, b)


def test_a_cli_trained_conditional_flow_opens_at_its_median_context_on_its_range(tmp_path,
                                                                                capsys):
    """A `kerasflows train --context` flow opened at context 0 with sliders on [-3, 3],
    whatever its contexts (here a temperature of 10-30): the record now keeps where
    they lie."""
    from kerasflows.cli import main
    rng = np.random.default_rng(0)
    temperature = rng.uniform(10.0, 30.0, size=(400, 1))
    np.savetxt(tmp_path / "c.csv", temperature, header="temperature", comments="", fmt="%.4f")
    np.savetxt(tmp_path / "x.csv", rng.normal(size=(400, 2)) + temperature / 10, delimiter=",",
               header="a,b", comments="", fmt="%.4f")
    assert main(["train", str(tmp_path / "x.csv"), "--context", str(tmp_path / "c.csv"),
                 "--recipe", "realnvp", "--layers", "1", "--hidden", "8", "--epochs", "1",
                 "--out", str(tmp_path / "m.keras"), "--quiet"]) == 0, capsys.readouterr().err
    capsys.readouterr()
    assert main(["info", str(tmp_path / "m.keras")]) == 0
    assert re.search(r"context columns: temperature \(training contexts 10\.\d*\.\.29\.\d*\)",
                     capsys.readouterr().out)
    _, info = opening.load(paths.resolve(tmp_path / "m.keras"), eval_mode="eager")
    (low, high), = info["context_ranges"]
    assert 10.0 <= low < 10.5 and 29.5 < high <= 30.0
    assert 15.0 < float(info["context"][0]) < 25.0
    assert info["context_names"] == ["temperature"]
