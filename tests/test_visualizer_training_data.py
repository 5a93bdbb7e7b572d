"""The training data of a `.keras` flow found again through its training record
(`visualizer.training_data`), and the views' reference points taken from them."""

import shutil

import numpy as np

from kerasflows import datasets
from kerasflows.loading import write_training_record
from test_visualizer_support import make_flow
from visualizer import compute, paths, training_data


def test_a_dataset_name_is_drawn_again():
    points, where = training_data.recorded_data({"dataset": "moons", "data": "moons"},
                                                "m.keras", 2)
    np.testing.assert_array_equal(points, datasets.load("moons", n=2000, seed=0))
    assert where == "moons (drawn again, seed 0)"
    assert training_data.recorded_data({"dataset": "moons"}, "m.keras", 3) == (None, None)
    # a conditional set's points mix every context: none shown
    assert training_data.recorded_data({"dataset": "ring_radius"}, "m.keras", 2) == (None, None)


def test_a_data_file_is_read_where_it_was_or_beside_the_model(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    table = rng.normal(size=(2500, 3)).astype(np.float32)
    path = tmp_path / "t.csv"
    np.savetxt(path, table, delimiter=",", header="a,b,c", comments="")
    record = {"dataset": None, "data": "t.csv", "data_path": str(path)}
    points, where = training_data.recorded_data(record, "/elsewhere/m.keras", 3)
    assert points.shape == (training_data.SHOWN, 3)
    rows = {tuple(r) for r in np.round(table, 4)}
    assert all(tuple(r) in rows for r in np.round(points, 4)), "a subset of the file's rows"
    assert where == f"t.csv (read again from {path})"
    # moved with the model, the file is found beside it by the name that was typed
    moved = tmp_path / "moved"
    moved.mkdir()
    shutil.copy(path, moved / "t.csv")
    again, _ = training_data.recorded_data(
        {"dataset": None, "data": "t.csv", "data_path": "/gone/t.csv"}, moved / "m.keras", 3)
    np.testing.assert_array_equal(again, points)
    for bad in [{"dataset": None, "data": "t.csv", "data_path": str(path)},     # width 3
                {"dataset": None, "data": "missing.csv", "data_path": "/gone/missing.csv"},
                {"dataset": None, "data": "t.txt"}, {}, None]:
        assert training_data.recorded_data(bad, tmp_path / "m.keras", 2) == (None, None)
    monkeypatch.setattr(training_data, "FILE_LIMIT", 100)             # too large to read
    assert training_data.recorded_data(record, "m.keras", 3) == (None, None)


def test_dequantized_columns_get_the_same_kind_of_noise(tmp_path):
    counts = np.random.default_rng(1).integers(0, 5, size=(300, 2)).astype(np.float32)
    counts[:, 1] += np.linspace(0.1, 0.9, 300, dtype=np.float32)          # not whole
    np.save(tmp_path / "c.npy", counts)
    record = {"dataset": None, "data": "c.npy", "data_path": str(tmp_path / "c.npy"),
              "dequantized_columns": [0]}
    points, _ = training_data.recorded_data(record, "m.keras", 2)
    np.testing.assert_array_equal(np.floor(points[:, 0]), counts[:, 0])
    assert len(np.unique(points[:, 0])) > 250, "noise in [0, 1) on the whole numbers"
    np.testing.assert_array_equal(points[:, 1], counts[:, 1])


def test_a_keras_file_without_a_folder_shows_its_recorded_training_data(tmp_path):
    flow = make_flow(2, 2)
    data = datasets.load("moons", n=600, seed=4)
    np.save(tmp_path / "d.npy", data)
    flow.save(tmp_path / "f.keras")
    write_training_record(tmp_path / "f.keras", {"dataset": None, "data": "d.npy",
                                                 "data_path": str(tmp_path / "d.npy")})
    backend, info = compute.load(paths.resolve(tmp_path / "f.keras"), eval_mode="eager")
    assert info["reference_is_data"] and info["reference_source"].startswith("d.npy")
    np.testing.assert_array_equal(info["reference"], data)
    (tmp_path / "d.npy").unlink()                   # gone: the flow's own samples instead
    _, info = compute.load(paths.resolve(tmp_path / "f.keras"), eval_mode="eager")
    assert not info["reference_is_data"]
    assert info["reference_source"] == "the flow's own samples (2000, seed 0)"


def test_a_data_file_no_longer_whole_in_a_dequantized_column_shows_no_data(tmp_path):
    # dequantize refuses values between whole numbers: opening must not fail for it
    counts = np.random.default_rng(1).integers(0, 5, size=(50, 2)).astype(np.float32)
    counts[3, 0] = 2.5                                  # edited since training
    np.save(tmp_path / "c.npy", counts)
    record = {"dataset": None, "data": "c.npy", "data_path": str(tmp_path / "c.npy"),
              "dequantized_columns": [0]}
    assert training_data.recorded_data(record, "m.keras", 2) == (None, None)
