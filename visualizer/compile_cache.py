"""XLA's persistent compilation cache, for the visualizer's own process.

A `.keras` flow is evaluated through XLA-compiled functions, one compilation
per function and input shape (a 16-bin spline kernel takes about a second).
TensorFlow can keep the compiled code on disk
(`TF_XLA_FLAGS=--tf_xla_persistent_cache_directory=DIR`) and read it back
the next time the same function meets the same shape, so a second launch on
a model, or on another model of the same shapes, skips most of the
compilation. `kerasflows-viz` turns this on before TensorFlow is imported,
in `~/.cache/kerasflows/xla-tf<version>/` (`$XDG_CACHE_HOME` if set), and
keeps that folder under `MAX_BYTES` by deleting its oldest files.

`KERASFLOWS_VIZ_COMPILE_CACHE=off` turns it off; `=PATH` uses another
folder; a `TF_XLA_FLAGS` that already names a cache folder is left as it is.
This module does not import TensorFlow.
"""

import importlib.metadata
import os
import sys
from pathlib import Path

__all__ = ["ENV", "FLAG", "MAX_BYTES", "KEEP_BYTES", "default_directory", "enable", "prune",
           "in_use"]

ENV = "KERASFLOWS_VIZ_COMPILE_CACHE"
FLAG = "--tf_xla_persistent_cache_directory"
#: Past this size the oldest files go, down to `KEEP_BYTES` (a compiled heatmap
#: function is about 0.5 MB; opening moons and compiling its views writes about 5 MB).
MAX_BYTES = 256 * 2**20
KEEP_BYTES = 192 * 2**20
_OFF = ("0", "off", "no", "false")
#: The folder `enable` pointed XLA at in this process (None: no cache).
_in_use = None


def in_use():
    """The cache folder this process uses (set by `enable`), or None."""
    return _in_use


def default_directory(environ=os.environ):
    """`~/.cache/kerasflows/xla-tf<version>` (under `$XDG_CACHE_HOME` if set): one
    folder per TensorFlow version, so an upgrade never reads another's code."""
    base = environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    try:
        version = importlib.metadata.version("tensorflow")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    return Path(base) / "kerasflows" / f"xla-tf{version}"


def _named_directory(flags):
    for part in flags.split():
        if part.startswith(FLAG + "="):
            return Path(part.split("=", 1)[1])
    return None


def enable(environ=os.environ, tensorflow_imported=None):
    """Points XLA's persistent cache at the visualizer's cache folder.

    Call it before TensorFlow is imported (TensorFlow reads `TF_XLA_FLAGS`
    once; `tensorflow_imported` defaults to whether it is). Returns the
    folder in use, or None when the cache is off: turned off by `ENV`,
    TensorFlow already imported, or a folder that cannot be made or whose
    path has a space (`TF_XLA_FLAGS` is split at spaces). It never raises:
    a missing cache only makes compiling slower.
    """
    global _in_use
    setting = environ.get(ENV, "").strip()
    if setting.lower() in _OFF:
        return None
    flags = environ.get("TF_XLA_FLAGS", "")
    named = _named_directory(flags)
    if named is not None:
        _in_use = named
        return named
    if "tensorflow" in sys.modules if tensorflow_imported is None else tensorflow_imported:
        return None
    directory = Path(setting).expanduser() if setting else default_directory(environ)
    if any(ch.isspace() for ch in str(directory)):
        return None
    try:
        directory.mkdir(parents=True, exist_ok=True)
        prune(directory)
    except OSError:
        return None
    environ["TF_XLA_FLAGS"] = f"{flags} {FLAG}={directory}".strip()
    _in_use = directory
    return directory


def prune(directory, max_bytes=MAX_BYTES, keep_bytes=KEEP_BYTES):
    """Deletes the oldest files of `directory` once it holds more than `max_bytes`,
    until it holds at most `keep_bytes`; returns the number of files deleted."""
    files = []
    for entry in os.scandir(directory):
        try:
            if entry.is_file(follow_symlinks=False):
                info = entry.stat(follow_symlinks=False)
                files.append((info.st_mtime, info.st_size, entry.path))
        except OSError:
            continue
    total = sum(size for _, size, _ in files)
    if total <= max_bytes:
        return 0
    deleted = 0
    for _, size, path in sorted(files):
        if total <= keep_bytes:
            break
        try:
            os.remove(path)
        except OSError:
            continue
        total -= size
        deleted += 1
    return deleted
