"""The training data of a `.keras` flow that `kerasflows train` made, found again
through its training record (for a model without a model folder's
`data_sample.npy`): the views overlay them as they do a data sample.

- a dataset name (`kerasflows.datasets`) is drawn again (`SHOWN` points,
  seed 0); a conditional set is not (its points mix every context);
- a data file is read again where the record says it was (`data_path`,
  where `kerasflows train` found it), else where `data` (as typed) points
  from the model file's folder or the current one, if it is a `.npy` or
  `.csv` file of at most `FILE_LIMIT` bytes with the flow's width;
- columns the flow was trained on with uniform noise (`dequantized_columns`)
  get the same kind of noise (seed 0), so they compare with the samples.

Whatever cannot be found or read leaves the views to the flow's own samples:
opening the model never fails for it.
"""

import os

import numpy as np

__all__ = ["recorded_data", "SHOWN", "FILE_LIMIT"]

#: Points of the training data kept for the views (a random subset, seed 0).
SHOWN = 2000
#: Larger data files are not read again (reading them would hold up the opening).
FILE_LIMIT = 64 * 2 ** 20


def recorded_data(record, model_path, event_dim):
    """`(points [n, event_dim] float32, where)`: the training data the record
    names (`where` says what they are, for the views' tool tips), or
    `(None, None)`."""
    if not record:
        return None, None
    try:
        points, where = _read(record, model_path, event_dim)
    except Exception:      # a file that changed since, a module missing: no data shown
        return None, None
    if points is None:
        return None, None
    points = np.asarray(points, np.float32)
    if points.ndim != 2 or points.shape[1] != event_dim:
        return None, None
    points = points[np.all(np.isfinite(points), axis=1)]
    if not len(points):
        return None, None
    if len(points) > SHOWN:
        rows = np.random.default_rng(0).choice(len(points), SHOWN, replace=False)
        points = points[np.sort(rows)]
    columns = record.get("dequantized_columns")
    if columns:
        from kerasflows.dequantization import dequantize
        try:
            points = dequantize(points, list(columns), seed=0)
        except ValueError:  # values between whole numbers: a file that changed since
            return None, None
    return points, where


def _read(record, model_path, event_dim):
    from kerasflows import datasets
    name = record.get("dataset")
    if isinstance(name, str):
        if name not in datasets.NAMES:      # (a conditional set: its points mix contexts)
            return None, None
        n = min(SHOWN, 1797) if name == "digits" else SHOWN
        return datasets.load(name, n=n, seed=0), f"{name} (drawn again, seed 0)"
    data = record.get("data")
    candidates = [record.get("data_path")]
    if isinstance(data, str) and not os.path.isabs(data):
        candidates += [os.path.join(os.path.dirname(os.path.abspath(model_path)), data), data]
    for path in candidates:
        if (isinstance(path, str) and path.endswith((".npy", ".csv")) and os.path.isfile(path)
                and os.path.getsize(path) <= FILE_LIMIT):
            from kerasflows.cli.data import read_array
            points = read_array(path)
            if points.shape[1] == event_dim:
                return points, f"{os.path.basename(path)} (read again from {path})"
    return None, None
