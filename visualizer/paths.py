"""Finding the model behind a path: `.keras` file, SavedModel or model folder.

No TensorFlow and no Qt here: the GUI resolves paths (and reads a model
folder's `manifest.json` and `data_sample.npy`) before the compute thread
loads anything.
"""

import dataclasses
import importlib.util
import json
import os
from pathlib import Path

import numpy as np

__all__ = ["ModelSource", "ModelPathError", "resolve", "default_model_path",
           "kerasflows_importable", "FOLDER_FILES"]

#: Files that stand for the folder they are in (File ▸ Open offers them): a
#: SavedModel's graph, a model folder's manifest.
FOLDER_FILES = ("saved_model.pb", "saved_model.pbtxt", "manifest.json")


class ModelPathError(ValueError):
    """The path is not something the visualizer can open; the message says why."""


@dataclasses.dataclass
class ModelSource:
    """Where a model lives and what came with it.

    Attributes:
        path: the path the user gave (the folder, for one of `FOLDER_FILES`).
        kind: `"keras"` (a `.keras` file) or `"savedmodel"` (a SavedModel dir).
        load_path: the file or directory the backend loads.
        manifest: the model folder's `manifest.json` as a dict, or None.
        data_sample: `[n, D]` float32 training-data sample, or None.
    """

    path: Path
    kind: str
    load_path: Path
    manifest: dict = None
    data_sample: np.ndarray = None

    @property
    def name(self):
        if self.manifest and self.manifest.get("name"):
            return str(self.manifest["name"])
        p = self.path
        return p.stem if p.suffix == ".keras" else p.name

    @property
    def target(self):
        return (self.manifest or {}).get("target")


def kerasflows_importable():
    """True when `import kerasflows` would succeed (without importing it)."""
    try:
        return importlib.util.find_spec("kerasflows") is not None
    except (ImportError, ValueError):
        return False


def default_model_path():
    """`saved_models/moons/` of the repository this package lives in."""
    return Path(__file__).resolve().parent.parent / "saved_models" / "moons"


def _is_savedmodel(d):
    return (d / "saved_model.pb").is_file() or (d / "saved_model.pbtxt").is_file()


def _serving_version(d):
    """The highest numbered version directory `d/<int>/` holding a SavedModel."""
    versions = [c for c in d.iterdir() if c.is_dir() and c.name.isdigit() and _is_savedmodel(c)]
    return max(versions, key=lambda c: int(c.name)) if versions else None


def _find_manifest(load):
    """The model folder (with `manifest.json`) that `load` belongs to, if any.

    The layout is `<folder>/flow.keras` and `<folder>/saved_model/<version>/`.
    """
    if load.is_file():
        candidates = [load.parent]
    else:
        candidates = [load, load.parent]
        if load.parent.name == "saved_model":
            candidates.append(load.parent.parent)
    for d in candidates:
        if (d / "manifest.json").is_file():
            return d
    return None


def _read_folder(folder):
    try:
        manifest = json.loads((folder / "manifest.json").read_text())
    except (OSError, ValueError) as e:
        raise ModelPathError(f"cannot read {folder / 'manifest.json'}: {e}") from None
    if not isinstance(manifest, dict):
        raise ModelPathError(f"{folder / 'manifest.json'} is not a JSON object.")
    sample = folder / "data_sample.npy"
    return manifest, (_read_sample(sample) if sample.is_file() else None)


def _read_sample(path):
    """A model folder's data sample as float32; a file that is not a NumPy array
    of numbers raises `ModelPathError` naming it."""
    try:
        with open(path, "rb") as f:
            is_npy = f.read(6) == b"\x93NUMPY"        # every .npy file's first bytes
        sample = np.load(path) if is_npy else None
    except (OSError, ValueError) as e:
        raise ModelPathError(f"cannot read {path}: {e}") from None
    if sample is None:
        raise ModelPathError(f"{path} is not a NumPy .npy file (it lacks the format's "
                             "header); expected an array of numbers [rows, D].")
    if sample.dtype.kind not in "biuf":
        raise ModelPathError(f"{path} holds an array of dtype {sample.dtype}; expected numbers "
                             "[rows, D].")
    return sample.astype(np.float32)


def _savedmodel_in(d):
    if _is_savedmodel(d):
        return d
    if d.is_dir():
        return _serving_version(d)
    return None


def _folder_model(folder, prefer_keras):
    keras_file = folder / "flow.keras"
    sm = _savedmodel_in(folder / "saved_model") or _savedmodel_in(folder)
    if keras_file.is_file() and (prefer_keras or sm is None):
        return keras_file
    if sm is not None:
        return sm
    raise ModelPathError(f"model folder {folder} has neither flow.keras nor a SavedModel "
                         "(saved_model/<version>/saved_model.pb).")


def resolve(path, prefer_keras=None):
    """Returns the `ModelSource` for `path`, or raises `ModelPathError`.

    Accepts a `.keras` file, a SavedModel directory (`saved_model.pb`
    inside), a TF Serving parent (`DIR/<version>/saved_model.pb`, highest
    version wins), or a model folder with `manifest.json` (its `flow.keras`
    when kerasflows is importable, else its `saved_model/<version>/`).
    One of `FOLDER_FILES` (`saved_model.pb`, `manifest.json`) stands for its
    folder. A manifest in the model folder around the path is picked up too.
    The source's `path` is absolute.
    """
    p = Path(path).expanduser()
    if not p.exists():
        raise ModelPathError(f"no such file or directory: {p}")
    # absolute (a recent file or a reload opens from any working folder); links kept
    p = Path(os.path.abspath(p))
    if p.is_file() and p.name in FOLDER_FILES:
        p = p.parent
    if prefer_keras is None:
        prefer_keras = kerasflows_importable()
    if p.is_file():
        if p.suffix != ".keras":
            raise ModelPathError(f"{p} is not a model: expected a .keras file, a SavedModel "
                                 "directory or a saved_models/<name>/ folder (or their "
                                 f"{', '.join(FOLDER_FILES)}).")
        load = p
    elif (p / "manifest.json").is_file():
        _read_folder(p)                       # a broken manifest is reported first
        load = _folder_model(p, prefer_keras)
    elif _savedmodel_in(p) is not None:
        load = _savedmodel_in(p)
    elif (p / "flow.keras").is_file():
        load = p / "flow.keras"
    elif not p.is_dir():                      # a device, a socket, a pipe: /dev/null
        raise ModelPathError(f"{p} is not a model: not a file or a directory; expected a "
                             ".keras file, a SavedModel directory or a saved_models/<name>/ "
                             "folder.")
    else:
        raise ModelPathError(f"{p} is not a model directory: expected saved_model.pb, "
                             "<version>/saved_model.pb, flow.keras or manifest.json inside.")
    kind = "keras" if load.suffix == ".keras" else "savedmodel"
    folder = _find_manifest(load)
    manifest, sample = _read_folder(folder) if folder is not None else (None, None)
    return ModelSource(path=p, kind=kind, load_path=load, manifest=manifest, data_sample=sample)
