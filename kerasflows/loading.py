"""`load(path)`: open a trained flow, with clear errors for missing or damaged files.

A flow is stored as a `.keras` file (`flow.save(...)`), or as a model folder
such as `saved_models/moons/` holding `flow.keras`, `manifest.json` and a
SavedModel. The training record the command line writes into a `.keras`
file (what the flow was trained on, how, and its NLLs) is read back with
`training_record(path)`.

Example:

```python
flow = kerasflows.load("saved_models/moons")
flow.sample(5, seed=0)
```
"""

import json
import os
import zipfile

import keras

from kerasflows.checkpoint import EpochCheckpoint

__all__ = ["load", "training_record", "write_training_record", "model_file", "first_reason"]

_RECORD = "kerasflows/training.json"
_KERAS_MEMBERS = ("config.json", "model.weights.h5")


def model_file(path):
    """The `.keras` file behind `path`: the file itself, or `path/flow.keras` for a folder."""
    path = os.fspath(path)
    if os.path.isdir(path):
        inner = os.path.join(path, "flow.keras")
        if os.path.isfile(inner):
            return inner
        if os.path.isfile(os.path.join(path, "saved_model.pb")) or any(
                os.path.isfile(os.path.join(path, d, "saved_model.pb")) for d in os.listdir(path)):
            raise ValueError(f"{path} is a SavedModel directory (for TF Serving); open it with "
                             "kerasflows.export.load_saved_model, or give the .keras file.")
        if os.path.isfile(os.path.join(path, EpochCheckpoint.FILENAME)):
            raise ValueError(_checkpoint_not_a_model(path))
        raise ValueError(f"{path}: folder holds no flow.keras; expected a .keras file or a "
                         "model folder such as saved_models/moons.")
    if not os.path.exists(path):
        raise ValueError(f"{path}: no such file.")
    if os.path.basename(path) == EpochCheckpoint.FILENAME:
        raise ValueError(_checkpoint_not_a_model(os.path.dirname(path) or "."))
    if not path.endswith(".keras"):
        raise ValueError(f"{path}: expected a .keras model file or a model folder.")
    return path


def _checkpoint_not_a_model(folder):
    """The error for a training checkpoint's folder given as a model."""
    done = EpochCheckpoint(folder, {}).epochs_done()    # 0: none read (a damaged file)
    count = f", {done} epochs done" if done else ""
    return (f"{folder} holds a training checkpoint ({EpochCheckpoint.FILENAME}{count}), not a "
            "model: rerun the same `kerasflows train` command (or `train_flow` "
            "call) to resume from it; it saves the model when the run ends.")


def _check_archive(path):
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{path}: not a valid .keras file (not a zip archive); the file is "
                         "damaged or is not a saved Keras model.")
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            missing = [m for m in _KERAS_MEMBERS if m not in names]
            if missing:
                raise ValueError(f"{path}: not a valid .keras file; missing {missing}.")
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise ValueError(f"{path}: damaged .keras file ({e}).") from e
    if bad is not None:
        raise ValueError(f"{path}: damaged .keras file; member {bad!r} fails its checksum.")


def load(path, custom_objects=None):
    """Loads a `kerasflows.Flow` from a `.keras` file or a model folder.

    Args:
        path: a `.keras` file, or a folder holding `flow.keras` (such as
            `saved_models/moons`).
        custom_objects: as `keras.saving.load_model`'s, `{name: class}` for
            classes of the flow (a custom `context_encoder`, a custom layer)
            that are not registered with `keras.saving.register_keras_serializable`.

    Returns:
        The `Flow`.

    Raises:
        ValueError: the path does not exist, is a SavedModel directory, or
            the file is damaged or holds something other than a Flow; the
            message names the file and the problem.
    """
    from kerasflows.flow import Flow
    path = model_file(path)
    _check_archive(path)
    try:
        model = keras.saving.load_model(path, custom_objects=custom_objects)
    except Exception as e:  # Keras and h5py raise many types for damaged content.
        raise ValueError(f"{path}: cannot load the model ({type(e).__name__}: "
                         f"{first_reason(str(e))})"[:600]) from e
    if not isinstance(model, Flow):
        raise ValueError(f"{path} holds a {type(model).__name__}, not a kerasflows.Flow.")
    return model


def first_reason(text):
    """The line of a Keras loading error that says what went wrong: the innermost
    "Exception encountered:" (a class not registered: "Could not locate class
    'MyEncoder'..."), whose wrappers' first lines say only which `from_config`
    failed; else the first line."""
    inner = text.rsplit("Exception encountered:", 1)
    lines = (inner[-1].split("Full object config")[0] if len(inner) == 2 else text).strip()
    return lines.splitlines()[0].strip() if lines else ""


def training_record(path):
    """The training record stored in a `.keras` file (a dict), or None if it has none."""
    path = model_file(path)
    _check_archive(path)
    with zipfile.ZipFile(path) as archive:
        if _RECORD not in archive.namelist():
            return None
        try:
            record = json.loads(archive.read(_RECORD))
        except ValueError as e:
            raise ValueError(f"{path}: damaged training record {_RECORD} ({e}).") from e
    if not isinstance(record, dict):
        raise ValueError(f"{path}: damaged training record {_RECORD} (a JSON "
                         f"{type(record).__name__}, not an object).")
    return record


def write_training_record(path, record):
    """Stores `record` (a JSON-able dict) inside the `.keras` file at `path`.

    Keras ignores the extra archive member, so the file still loads anywhere.
    """
    with zipfile.ZipFile(path, "a", compression=zipfile.ZIP_DEFLATED) as archive:
        if _RECORD in archive.namelist():
            raise ValueError(f"{path} already holds a training record.")
        archive.writestr(_RECORD, json.dumps(record, indent=1))
