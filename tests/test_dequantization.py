"""Uniform dequantization: the noise functions, `train_flow`'s per-epoch noise,
`Flow.fit` on a dequantized stream, and `kerasflows train --dequantize` with
`evaluate` and `sample` following the model."""

import json
import warnings

import numpy as np
import pytest

import kerasflows
from kerasflows.cli import main
from kerasflows.dequantization import (dequantize, dequantized_dataset, floor_columns,
                                       whole_number_columns)
from kerasflows.distributed import epoch_rows, train_flow
from kerasflows.loading import training_record


def _counts(n=600, seed=0):
    """Column 0: Poisson counts; column 1: continuous; column 2: whole numbers 0..4."""
    rng = np.random.default_rng(seed)
    return np.stack([rng.poisson(3.0, n), rng.normal(size=n),
                     rng.integers(0, 5, n)], axis=1).astype(np.float32)


def test_dequantize_adds_seeded_uniform_noise_to_the_whole_number_columns():
    x = _counts()
    assert whole_number_columns(x) == [0, 2]
    noisy = dequantize(x, seed=1)
    assert noisy.dtype == np.float32 and noisy is not x
    u = noisy - x
    np.testing.assert_array_equal(u[:, 1], 0.0)                  # the continuous column kept
    assert (u[:, [0, 2]] >= 0).all() and (u[:, [0, 2]] < 1).all()
    assert u[:, 0].std() == pytest.approx(np.sqrt(1 / 12), rel=0.1)   # U[0, 1)'s spread
    np.testing.assert_array_equal(noisy, dequantize(x, seed=1))  # same seed, same noise
    assert not np.array_equal(noisy, dequantize(x, seed=2))
    np.testing.assert_array_equal(floor_columns(noisy, [0, 2]), np.where(
        np.arange(3) == 1, noisy, x))                           # rounding down undoes it
    only = dequantize(x, columns=[2], seed=1)
    np.testing.assert_array_equal(only[:, :2], x[:, :2])


def test_a_bad_seed_is_refused_naming_it():
    # NumPy's "expected non-negative integer" named no argument
    for seed in (-1, 2.5, True):
        with pytest.raises(ValueError, match=r"`seed` must be an integer >= 0, a sequence of "
                                             rf"them, or None\. Received: seed={seed!r}"):
            dequantize(_counts(), [0], seed=seed)
    np.testing.assert_array_equal(dequantize(_counts(), [0], seed=[1, 0, 2]),
                                  dequantize(_counts(), [0], seed=[np.int64(1), 0, 2]))


@pytest.mark.parametrize("columns, message", [
    ([3], "columns must be distinct column indices in 0..2; received [3]"),
    ([0, 0], "received [0, 0]"),
    ([1.0], "received [1.0]"),
])
def test_bad_columns_are_refused_by_name(columns, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        dequantize(_counts(), columns=columns)


def test_continuous_data_has_nothing_to_dequantize_by_default():
    x = np.random.default_rng(0).normal(size=(50, 2))
    with pytest.raises(ValueError, match="no column of x holds whole numbers only"):
        dequantize(x)
    with pytest.raises(ValueError, match=r"x must be a numeric array of shape \[N, D\]"):
        dequantized_dataset(x[:, 0])


def test_dequantized_dataset_draws_new_noise_each_epoch_and_repeats_with_its_seed():
    x = _counts()
    data = dequantized_dataset(x, batch_size=128, seed=3)
    first, second = (np.concatenate(list(data.as_numpy_iterator())) for _ in range(2))
    again = np.concatenate(list(dequantized_dataset(x, batch_size=128, seed=3)
                                .as_numpy_iterator()))
    np.testing.assert_array_equal(first, again)                  # reproducible from the seed
    assert not np.array_equal(first, second)                     # new order and noise
    for epoch in (first, second):                                # the same rows, noised
        assert np.array_equal(np.sort(np.floor(epoch[:, 0])), np.sort(x[:, 0]))
        np.testing.assert_array_equal(np.sort(epoch[:, 1]), np.sort(x[:, 1]))
        assert (epoch[:, 0] != np.floor(epoch[:, 0])).mean() > 0.99
    context = np.arange(len(x), dtype=np.float32)[:, None]
    rows, ctx = next(iter(dequantized_dataset(x, 64, context=context, shuffle=False)))
    np.testing.assert_array_equal(ctx.numpy(), context[:64])      # contexts get no noise
    np.testing.assert_array_equal(floor_columns(rows.numpy(), [0, 2]), x[:64])
    # no rows: named (TensorFlow's "buffer_size must be greater than zero" before)
    with pytest.raises(ValueError, match=r"dequantized_dataset: x has no rows \(shape \(0, 3\)\)"):
        dequantized_dataset(x[:0], columns=[0])
    # a bad seed: TensorFlow's TypeErrors, and -1 taken (dequantize refuses it)
    for seed, says in (("0", "seed='0'"), (1.5, "seed=1.5"), (-1, "seed=-1"),
                       (2 ** 63, r"below 2\*\*63")):
        with pytest.raises(ValueError, match=says):
            dequantized_dataset(x, columns=[0], seed=seed)


def _pipeline_ops(data):
    """The op names of `data`'s tf.data pipeline, with those of its functions."""
    import tensorflow as tf
    graph = tf.compat.v1.GraphDef.FromString(
        tf.raw_ops.DatasetToGraphV2(input_dataset=data._variant_tensor).numpy())
    return ([node.op for node in graph.node]
            + [node.op for f in graph.library.function for node in f.node_def])


def test_dequantized_dataset_shuffles_row_indices_not_a_buffer_of_the_rows():
    # shuffle(len(x)) before batch() filled a buffer of every row, one tensor each, every
    # epoch: 4e6 rows of 2 took 10.5 s an epoch and 840 MB more memory
    x = _counts(1000)
    context = np.arange(len(x), dtype=np.float32)[:, None]
    data = dequantized_dataset(x, 128, context=context, seed=4)
    assert not [op for op in _pipeline_ops(data) if "Shuffle" in op and "Dataset" in op]
    epochs = [list(data.as_numpy_iterator()) for _ in range(2)]
    for batches in epochs:
        assert [len(rows) for rows, _ in batches] == [128] * 7 + [104]
        rows, ctx = (np.concatenate(part) for part in zip(*batches))
        order = ctx[:, 0].astype(int)
        assert sorted(order) == list(range(len(x)))               # each row once
        np.testing.assert_array_equal(floor_columns(rows, [0, 2]), x[order])  # its context
        assert (rows[:, [0, 2]] - x[order][:, [0, 2]] >= 0).all()
    assert not np.array_equal(epochs[0][0][1], epochs[1][0][1])  # a new order each epoch


def test_fit_on_a_dequantized_stream_trains_without_keras_shuffle_warning():
    x = _counts()
    flow = kerasflows.models.RealNVP(3, num_layers=2, hidden_units=(16,))
    flow.compile(optimizer="adam", jit_compile=False)     # the warning was fit's, not the step's
    with warnings.catch_warnings():
        warnings.simplefilter("error")           # fit's default shuffle warned for a stream
        history = flow.fit(dequantized_dataset(x, 128, seed=0), epochs=2, verbose=0)
    assert np.isfinite(history.history["loss"]).all()


def test_fit_warning_on_whole_numbers_points_to_the_dequantized_dataset():
    flow = kerasflows.models.RealNVP(3, num_layers=1, hidden_units=(8,))
    flow.compile(optimizer="adam", jit_compile=False)
    with pytest.warns(UserWarning, match=r"column\(s\) 0, 2 .*\.dequantized_dataset\(x, "):
        flow.fit(_counts(), epochs=1, verbose=0)


def test_train_flow_noise_is_new_each_epoch_and_fixed_by_seed_and_epoch():
    x = _counts()
    (a, _), (b, _) = epoch_rows(x, None, 0, 0, [0, 2]), epoch_rows(x, None, 0, 1, [0, 2])
    np.testing.assert_array_equal(a, epoch_rows(x, None, 0, 0, [0, 2])[0])   # resumed: same
    assert not np.array_equal(np.sort(a[:, 0]), np.sort(b[:, 0]))
    np.testing.assert_array_equal(np.sort(np.floor(a[:, 0])), np.sort(x[:, 0]))
    flow, history = train_flow(
        lambda: kerasflows.models.RealNVP(3, num_layers=1, hidden_units=(8,)), x, epochs=2,
        batch_size=200, verbose=0, dequantize=[0, 2])
    assert len(history["loss"]) == 2 and np.isfinite(history["loss"]).all()
    with pytest.raises(ValueError, match=r"train_flow: columns must be .* received \[5\]"):
        train_flow(lambda: kerasflows.models.RealNVP(3, num_layers=1), x, epochs=1,
                   verbose=0, dequantize=[5])


def _run(capsys, *argv):
    status = main([str(a) for a in argv])
    out = capsys.readouterr()
    assert status == 0, out.err
    return out


@pytest.mark.usefixtures("train_steps_without_xla")   # the noise comes before the step
def test_cli_train_dequantize_then_evaluate_and_sample_follow_the_model(tmp_path, capsys):
    data = tmp_path / "visits.csv"
    np.savetxt(data, _counts(), delimiter=",", header="visits,spend,stars", comments="",
               fmt="%.6g")
    model = tmp_path / "v.keras"
    out = _run(capsys, "train", data, "--dequantize", "--recipe", "realnvp", "--layers", "2",
               "--hidden", "16", "--epochs", "2", "--batch-size", "128", "--out", model)
    assert "Dequantizing columns 1 (visits), 3 (stars): uniform noise in [0, 1)" in out.out
    assert "warning" not in out.err                     # no whole-number warning then
    record = training_record(model)
    assert record["dequantized_columns"] == [0, 2]
    assert np.isfinite([record["train_nll"], record["validation_nll"], record["test_nll"]]).all()
    # the per-epoch validation NLL and the record's are measured on the same noisy rows
    assert record["validation_nll"] == pytest.approx(record["history"]["val_loss"][-1],
                                                     rel=1e-5)
    assert "dequantized (--dequantize): columns 1 (visits), 3 (stars)" in _run(
        capsys, "info", model).out

    text = _run(capsys, "evaluate", model, data).out
    assert "trained with --dequantize: columns 1 (visits), 3 (stars) got uniform noise" in text
    runs = [json.loads(_run(capsys, "evaluate", model, data, "--json", "--seed", s).out)
            for s in (0, 0, 1)]
    assert runs[0]["dequantized_columns"] == [0, 2]
    assert runs[0]["nll"] == runs[1]["nll"] != runs[2]["nll"]     # --seed seeds the noise
    flow = kerasflows.load(model)
    exact = -flow.log_prob(dequantize(_counts(), [0, 2], seed=0)).numpy().mean()
    assert runs[0]["nll"] == pytest.approx(exact, rel=1e-5)

    out = _run(capsys, "sample", model, "-n", "200", "-o", tmp_path / "s.csv")
    assert "columns 1 (visits), 3 (stars) rounded down" in out.out
    samples = np.loadtxt(tmp_path / "s.csv", delimiter=",", skiprows=1)
    assert (samples[:, [0, 2]] == np.round(samples[:, [0, 2]])).all()
    assert (samples[:, 1] != np.round(samples[:, 1])).any()
    # an export says which columns were noised, for a client with the SavedModel alone
    _run(capsys, "export", model, tmp_path / "srv")
    meta = kerasflows.export.saved_model_metadata(tmp_path / "srv")
    assert meta["dequantized_columns"] == [0, 2] and meta["columns"][0] == "visits"
    assert "dequantized: columns 1 (visits), 3 (stars)" in _run(capsys, "info",
                                                                  tmp_path / "srv").out
    _run(capsys, "sample", model, "-n", "200", "-o", tmp_path / "c.npy", "--continuous")
    raw = np.load(tmp_path / "c.npy")
    np.testing.assert_array_equal(np.floor(raw[:, [0, 2]]), samples[:, [0, 2]])
    assert (raw[:, 0] != np.round(raw[:, 0])).all()


def test_evaluate_of_the_test_data_file_with_trains_seed_gives_trains_test_nll(tmp_path,
                                                                                 capsys):
    """train's --test-data rows got noise seeded [seed, 0, 4], evaluate's of the same file
    noise seeded --seed: 8.5688 against 8.5474 nats, a reported number no one could
    reproduce. A file's rows now get evaluate's draw."""
    counts = _counts()
    np.save(tmp_path / "train.npy", counts[:300])
    np.save(tmp_path / "test.npy", counts[300:])
    model = tmp_path / "m.keras"
    _run(capsys, "train", tmp_path / "train.npy", "--test-data", tmp_path / "test.npy",
         "--dequantize", "--seed", "3", "--recipe", "realnvp", "--layers", "1", "--hidden",
         "8", "--epochs", "1", "--out", model, "--quiet")
    reported = training_record(model)["test_nll"]
    again = json.loads(_run(capsys, "evaluate", model, tmp_path / "test.npy", "--json",
                            "--seed", "3").out)["nll"]
    assert again == pytest.approx(reported, rel=1e-6, abs=1e-6)


def _assert_user_error(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and message in err, err


def test_a_column_of_one_whole_number_is_noised_by_default_as_the_cli_noises_it():
    """An image's always-0 edge pixels: left without noise, the flow narrowed onto 0
    (raw digits, RealNVP: test NLL 107 nats where noising all 64 columns gave 121,
    and falling) while `train --dequantize` noised them; the two now agree."""
    from kerasflows.cli.train_data import _whole_columns
    x = np.concatenate([_counts(4000), np.zeros((4000, 1), np.float32),
                        np.full((4000, 1), 0.5, np.float32)], axis=1)
    assert whole_number_columns(x) == _whole_columns(x) == [0, 2, 3]
    noisy = dequantize(x, seed=0)
    assert (noisy[:, 3] > 0).mean() > 0.99 and (noisy[:, 3] < 1).all()
    np.testing.assert_array_equal(noisy[:, 4], 0.5)            # one value, not whole: kept
    batch = next(iter(dequantized_dataset(x, 4000, seed=0, shuffle=False))).numpy()
    assert (batch[:, 3] > 0).mean() > 0.99
    # a lone zero column is something to dequantize (it was "no column ... holds whole
    # numbers only")
    lone = np.c_[np.zeros(100), np.random.default_rng(0).normal(size=100)]
    assert whole_number_columns(lone) == [0]
    assert dequantize(lone, seed=0)[:, 0].std() > 0.2


@pytest.mark.usefixtures("train_steps_without_xla")
def test_cli_dequantize_needs_whole_number_columns(tmp_path, capsys):
    np.save(tmp_path / "real.npy", np.random.default_rng(0).normal(size=(300, 2)))
    for data, message in [
            (tmp_path / "real.npy", f"--dequantize: no column of {tmp_path / 'real.npy'} holds "
                                    "whole numbers only"),
            ("moons", "--dequantize adds noise to a data file's columns of whole numbers; the "
                      "dataset moons is continuous already.")]:
        _assert_user_error(["train", data, "--dequantize", "--out", tmp_path / "x.keras"],
                           message, capsys)
    # without --dequantize a whole-number file is trained on, with a warning naming it
    np.save(tmp_path / "counts.npy", _counts())
    assert main(["train", str(tmp_path / "counts.npy"), "--epochs", "1", "--layers", "1",
                 "--hidden", "8", "--recipe", "realnvp", "--out", str(tmp_path / "n.keras"),
                 "--quiet"]) == 0
    assert "Give --dequantize to add uniform noise" in capsys.readouterr().err
    assert training_record(tmp_path / "n.keras")["dequantized_columns"] is None
    # a model trained without it: evaluate still refuses --seed for a file
    _assert_user_error(["evaluate", tmp_path / "n.keras", tmp_path / "counts.npy", "--seed", 1],
                       "--seed seeds the draw of a dataset name", capsys)


def test_cli_leaves_whole_numbers_beyond_float32s_out_of_the_warning_and_the_noise(
        tmp_path, capsys):
    """The warning named a Unix-time column (1.7e9 s) among the whole-number ones and
    said to give --dequantize, which then refused that column, numbered from 0, so
    the age column beside it could not be dequantized at all."""
    rng = np.random.default_rng(0)
    x = np.stack([rng.integers(20, 70, 300), 1.7e9 + rng.integers(0, 10**6, 300),
                  rng.normal(size=300)], axis=1)
    np.savetxt(tmp_path / "t.csv", x, delimiter=",", header="age,time,z", comments="",
               fmt="%.10g")
    common = ["--epochs", "1", "--layers", "1", "--hidden", "8", "--recipe", "realnvp",
              "--quiet"]
    assert main(["train", str(tmp_path / "t.csv"), *common, "--out",
                 str(tmp_path / "a.keras")]) == 0
    err = capsys.readouterr().err
    assert "1 column of whole numbers only (column 1 (age))" in err and "time" not in err, err
    assert main(["train", str(tmp_path / "t.csv"), "--dequantize", *common, "--out",
                 str(tmp_path / "d.keras")]) == 0
    assert training_record(tmp_path / "d.keras")["dequantized_columns"] == [0]


def test_export_checks_the_dequantized_columns(tmp_path):
    flow = kerasflows.models.RealNVP(3, num_layers=1, hidden_units=(8,))
    with pytest.raises(ValueError, match=r"dequantized_columns: columns must be distinct column "
                                         r"indices in 0\.\.2; received \[3\]"):
        flow.export(tmp_path / "bad", dequantized_columns=[3])
    assert not (tmp_path / "bad").exists()
    flow.export(tmp_path / "plain")
    assert kerasflows.export.saved_model_metadata(tmp_path / "plain")["dequantized_columns"] is None


def test_large_whole_numbers_stay_in_their_cell_and_beyond_float32s_are_refused():
    """float32 rounds k + u up to k + 1 for u near 1 (1 row in 64 at 3 * 10**5, where its
    step is 2**-5): every noisy value must stay in [k, k + 1), so rounding down gives k."""
    counts = (300_000 + np.random.default_rng(0).integers(0, 1000, (20_000, 1))).astype(
        np.int64)
    noisy = dequantize(counts, seed=0)
    assert (noisy >= counts).all() and (noisy < counts + 1).all()
    np.testing.assert_array_equal(floor_columns(noisy, [0]), counts)
    assert len(np.unique(noisy - counts)) > 16                  # the noise is still there
    stream = np.concatenate([b.numpy() for b in dequantized_dataset(counts, 4096, seed=0,
                                                                    shuffle=False)])
    assert (stream >= counts).all() and (stream < counts + 1).all()
    too_large = np.array([[1.0, 3.0], [2.0, 2.0 ** 24 + 2]])
    for call in (lambda: dequantize(too_large, columns=[0, 1]),
                 lambda: dequantized_dataset(too_large, columns=[1])):
        with pytest.raises(ValueError, match=r"column 1 holds 1\.67772e\+07; .* 2\*\*24"):
            call()
    # by default such a column is not among the whole-number ones (float32 holds only
    # whole numbers there): left as it is
    assert whole_number_columns(too_large) == [0]
    np.testing.assert_array_equal(dequantize(too_large, seed=0)[:, 1],
                                  too_large[:, 1].astype(np.float32))


def test_one_row_needs_its_columns_named_and_bad_columns_are_named():
    with pytest.raises(ValueError, match=r"x has 1 row\(s\), too few .* pass columns="):
        dequantize([[1, 2]])
    assert dequantize([[1, 2]], columns=[1], seed=0)[0, 0] == 1
    with pytest.raises(ValueError, match=r"columns must be a list of column indices in 0\.\.1; "
                                         r"received 0"):
        dequantize(_counts()[:, :2], columns=0)
    for columns in ([5], [-1], 0):
        with pytest.raises(ValueError, match=r"floor_columns: columns must"):
            floor_columns(np.zeros((3, 2)), columns)


def test_values_between_whole_numbers_are_refused_not_moved():
    # noise kept below k + 1 moved 2.5 + 0.7 to 2.99999..., not 3.2: a value that is not
    # a whole number has no cell [k, k + 1) to stay in
    x = _counts()
    x[7, 2] = 2.5
    for call in (lambda: dequantize(x, columns=[0, 2]),
                 lambda: dequantized_dataset(x, columns=[2])):
        with pytest.raises(ValueError, match=r"column 2 of x holds 2\.5 in row 7, not a whole "
                                             r"number; .* Round it first"):
            call()
    np.testing.assert_array_equal(dequantize(x, columns=[0], seed=0)[:, 2], x[:, 2])


def _dequantized_model(path):
    """A flow saved with the record of `train --dequantize` on columns 1 and 3."""
    flow = kerasflows.models.RealNVP(3, num_layers=1, hidden_units=(8,))
    flow.save(path)
    from kerasflows.loading import write_training_record
    write_training_record(path, {"columns": ["visits", "spend", "stars"],
                                 "dequantized_columns": [0, 2]})
    return path


def test_cli_refuses_values_between_whole_numbers_in_the_noised_columns(tmp_path, capsys):
    model = _dequantized_model(tmp_path / "v.keras")
    x = _counts(20)
    x[5, 1] = 0.25                                  # not noised: kept as it is
    x[6, 2], x[9, 0] = 2.5, 1.75
    np.savetxt(tmp_path / "frac.csv", x, delimiter=",", header="visits,spend,stars",
               comments="# made by hand\n", fmt="%.6g")
    np.save(tmp_path / "frac.npy", x)
    why = (f"{model} was trained with --dequantize, which adds noise in [0, 1) to the whole "
           "numbers of columns 1 (visits), 3 (stars).")
    _assert_user_error(["evaluate", model, tmp_path / "frac.csv"],
                       f"{tmp_path / 'frac.csv'}: column 3 (stars) holds 2.5 in line 9, not a "
                       f"whole number; {why}", capsys)
    _assert_user_error(["evaluate", model, tmp_path / "frac.npy"],
                       f"{tmp_path / 'frac.npy'}: column 3 (stars) holds 2.5 in row 6 (from 0), "
                       f"not a whole number; {why}", capsys)
    whole = x.copy()
    whole[6, 2], whole[9, 0] = 2, 1
    np.save(tmp_path / "whole.npy", whole)
    assert np.isfinite(json.loads(_run(capsys, "evaluate", model, tmp_path / "whole.npy",
                                       "--json").out)["nll"])
    # train's --validation-data and --test-data get the noise on the same columns
    np.savetxt(tmp_path / "counts.csv", _counts(), delimiter=",", header="visits,spend,stars",
               comments="", fmt="%.6g")
    for option in ("--validation-data", "--test-data"):
        _assert_user_error(["train", tmp_path / "counts.csv", "--dequantize", option,
                            tmp_path / "frac.csv", "--out", tmp_path / "t.keras"],
                           f"{tmp_path / 'frac.csv'}: column 3 (stars) holds 2.5 in line 9, not "
                           f"a whole number; --dequantize adds noise in [0, 1) to the whole "
                           f"numbers of {tmp_path / 'counts.csv'}'s columns 1 (visits), 3 "
                           "(stars).", capsys)
    assert not (tmp_path / "t.keras").exists()


def test_a_string_of_columns_is_refused_naming_it():
    # dequantize="all" named the string's characters, 'a', 'l', 'l'
    x = _counts()
    with pytest.raises(ValueError, match=r"columns must be a list of column indices .*"
                                         r"received 'all'"):
        dequantize(x, "all")
    with pytest.raises(ValueError, match=r"received 'all'"):
        train_flow(lambda: None, x, epochs=1, batch_size=32, verbose=0, dequantize="all")
