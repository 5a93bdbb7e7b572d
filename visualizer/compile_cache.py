"""XLA's persistent compilation cache, for the visualizer's own process.

A `.keras` flow is evaluated through XLA-compiled functions, one compilation
per function and input shape (a 16-bin spline kernel takes about a second).
TensorFlow can keep the compiled code on disk
(`TF_XLA_FLAGS=--tf_xla_persistent_cache_directory=DIR`) and read it back
the next time the same function meets the same shape, so a second launch on
a model, or on another model of the same shapes, skips most of the
compilation. `kerasflows-viz` turns this on before TensorFlow is imported,
in `~/.cache/kerasflows/xla-tf<version>/` (`$XDG_CACHE_HOME` if set), and
keeps that folder under `MAX_BYTES` by deleting its oldest files (and
any file that is not a whole entry: TensorFlow fails a call whose entry is
cut short, at every launch).

`KERASFLOWS_VIZ_COMPILE_CACHE=off` turns it off; `=PATH` uses another
folder; a `TF_XLA_FLAGS` that already names a cache folder is left as it is.

Reading an entry back, TensorFlow 2.21 logs two false alarms at error
level, each line about 3 KB: that the entry does not parse as text (it is
binary, and is then read as such), and that the code was compiled for
"+prefer-no-gather" and "+prefer-no-scatter", tuning hints the loader
takes for CPU features the host lacks ("could lead to ... SIGILL"; the
entry was written on this very machine). A second launch on the moons
demo printed 73 such lines (level 2 keeps them). So `enable` also sets
`TF_CPP_MIN_LOG_LEVEL=3` (`QUIET_LOG_LEVEL`) unless it is set already:
TensorFlow's C++ log then keeps to fatal messages. What goes wrong in a
computation still reaches the app, as the Python exception TensorFlow
raises with its message; the few lines TensorFlow prints as it loads,
before its log is set up, still print.

XLA files an entry under the traced function's name, and TensorFlow names
a traced function after a process-wide counter that every eager tensor
also advances: how many tensors came before a trace, which the order of
the user's requests decides, changed the name and the next launch missed
the entry (2 of 3 screenshot launches did). `name_functions_stably`, run
where TensorFlow is imported, numbers each name on its own instead.
Importing this module does not import TensorFlow.
"""

import collections
import importlib.metadata
import os
import sys
import threading
from pathlib import Path

__all__ = ["ENV", "FLAG", "QUIET_LOG_LEVEL", "MAX_BYTES", "KEEP_BYTES", "default_directory",
           "enable", "prune", "is_whole_entry", "in_use", "name_functions_stably"]

ENV = "KERASFLOWS_VIZ_COMPILE_CACHE"
FLAG = "--tf_xla_persistent_cache_directory"
#: Past this size the oldest files go, down to `KEEP_BYTES` (a compiled heatmap
#: function is about 0.5 MB; opening moons and compiling its views writes about 5 MB).
MAX_BYTES = 256 * 2**20
KEEP_BYTES = 192 * 2**20
#: `TF_CPP_MIN_LOG_LEVEL` while the cache is on, unless set (module notes).
QUIET_LOG_LEVEL = "3"
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
    a missing cache only makes compiling slower. Turning the cache on also
    sets `TF_CPP_MIN_LOG_LEVEL` to `QUIET_LOG_LEVEL` where it is not set
    (module notes).
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
    environ.setdefault("TF_CPP_MIN_LOG_LEVEL", QUIET_LOG_LEVEL)
    _in_use = directory
    return directory


def _varint(f):
    """A protobuf varint read from `f`, or None at the end of the file."""
    value = shift = 0
    while True:
        byte = f.read(1)
        if not byte:
            return None
        value |= (byte[0] & 0x7F) << shift
        if byte[0] < 0x80:
            return value
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def is_whole_entry(path):
    """Whether the file at `path` is a whole serialized protobuf message, as XLA's
    cache entries (`XlaSerializedCacheEntry`) are: each top-level field's length
    read, and the last ending at the end of the file. A truncated entry (a disk
    full, a copy cut short) fails this; TensorFlow would fail the call that
    reads it ("Read less bytes than requested"), on every launch."""
    try:
        size = os.path.getsize(path)
        if size == 0:
            return False
        with open(path, "rb") as f:
            while f.tell() < size:
                tag = _varint(f)
                kind = None if tag is None else tag & 7
                if tag is None or tag >> 3 == 0 or kind not in (0, 1, 2, 5):
                    return False
                if kind == 0 and _varint(f) is None:
                    return False
                if kind in (1, 5):
                    f.seek(8 if kind == 1 else 4, os.SEEK_CUR)
                if kind == 2:
                    length = _varint(f)
                    if length is None:
                        return False
                    f.seek(length, os.SEEK_CUR)
            return f.tell() == size
    except (OSError, ValueError):
        return False


def prune(directory, max_bytes=MAX_BYTES, keep_bytes=KEEP_BYTES):
    """Deletes the files of `directory` that are not whole entries
    (`is_whole_entry`), then the oldest once it holds more than `max_bytes`,
    until it holds at most `keep_bytes`; returns the number of files deleted."""
    files, deleted = [], 0
    for entry in os.scandir(directory):
        try:
            if entry.is_file(follow_symlinks=False):
                if not is_whole_entry(entry.path):
                    os.remove(entry.path)
                    deleted += 1
                    continue
                info = entry.stat(follow_symlinks=False)
                files.append((info.st_mtime, info.st_size, entry.path))
        except OSError:
            continue
    total = sum(size for _, size, _ in files)
    if total <= max_bytes:
        return deleted
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


def name_functions_stably():
    """Names the functions TensorFlow traces from here on `__inference_<name>_<k>`,
    `k` counting the traces of `<name>` (k = 0 for its first), instead of after
    the process-wide counter (module notes); returns whether it did. Only while
    the cache is in use (`in_use`), once per process, and only where
    TensorFlow still names traces through `concrete_function._inference_name`
    (a private function, checked for); elsewhere nothing changes, and entries
    are only read back less often. A name taken already (a function traced
    before this ran) is skipped. A name can never load the wrong code: XLA
    also keys an entry on the compiled program and compares it when reading.
    """
    if _in_use is None:
        return False
    try:
        from tensorflow.python.eager import context
        from tensorflow.python.eager.polymorphic_function import concrete_function
    except ImportError:
        return False
    original = getattr(concrete_function, "_inference_name", None)
    if original is None or getattr(original, "stable", False):
        return False
    counts = collections.Counter()
    lock = threading.Lock()

    def _inference_name(n):
        with lock:
            while True:
                name = f"__inference_{n}_{counts[n]}"
                counts[n] += 1
                if not context.context().has_function(name):
                    return name

    _inference_name.stable = True
    concrete_function._inference_name = _inference_name
    return True
