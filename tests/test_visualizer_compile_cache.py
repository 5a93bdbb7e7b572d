"""`visualizer.compile_cache`: XLA's persistent cache for the visualizer's process."""

import os
import subprocess
import sys
import time

import pytest

from visualizer import compile_cache
from test_visualizer_cli import run_viz
from test_visualizer_support import make_model_folder


@pytest.fixture(autouse=True)
def _restore_in_use(monkeypatch):
    # `enable` records the folder for this process (Help > About): restored after each test
    monkeypatch.setattr(compile_cache, "_in_use", None)


def test_enable_points_tensorflow_at_the_cache_folder(tmp_path):
    env = {"XDG_CACHE_HOME": str(tmp_path), "TF_XLA_FLAGS": "--tf_xla_auto_jit=0"}
    got = compile_cache.enable(env, tensorflow_imported=False)
    assert got == compile_cache.default_directory(env) and got.is_dir()
    assert got.parent == tmp_path / "kerasflows" and got.name.startswith("xla-tf2.")
    assert env["TF_XLA_FLAGS"] == f"--tf_xla_auto_jit=0 {compile_cache.FLAG}={got}"
    assert compile_cache.in_use() == got
    assert env["TF_CPP_MIN_LOG_LEVEL"] == compile_cache.QUIET_LOG_LEVEL
    # again (flags already name a folder): left as they are
    assert compile_cache.enable(env, tensorflow_imported=False) == got
    assert env["TF_XLA_FLAGS"].count(compile_cache.FLAG) == 1


@pytest.mark.parametrize("setting, imported, reason", [
    ("off", False, "turned off"), ("0", False, "turned off"),
    ("", True, "TensorFlow already imported: too late"),
    ("{tmp}/with space", False, "TF_XLA_FLAGS splits at spaces"),
    ("{tmp}/file/sub", False, "a file in the way: cannot be made"),
])
def test_enable_leaves_the_flags_alone_when_it_cannot_cache(tmp_path, setting, imported, reason):
    (tmp_path / "file").write_text("not a folder")
    env = {compile_cache.ENV: setting.format(tmp=tmp_path), "XDG_CACHE_HOME": str(tmp_path)}
    assert compile_cache.enable(env, tensorflow_imported=imported) is None, reason
    assert "TF_XLA_FLAGS" not in env and "TF_CPP_MIN_LOG_LEVEL" not in env


def test_enable_takes_a_folder_from_the_environment(tmp_path):
    env = {compile_cache.ENV: str(tmp_path / "mine"), "TF_CPP_MIN_LOG_LEVEL": "0"}
    assert compile_cache.enable(env, tensorflow_imported=False) == tmp_path / "mine"
    assert env["TF_XLA_FLAGS"] == f"{compile_cache.FLAG}={tmp_path / 'mine'}"
    assert env["TF_CPP_MIN_LOG_LEVEL"] == "0"          # the user's own setting kept


def test_prune_deletes_the_oldest_files_past_the_limit(tmp_path):
    now = time.time()
    for i in range(10):                       # file0 the oldest
        path = tmp_path / f"file{i}"
        path.write_bytes(ENTRY)
        os.utime(path, (now - 100 + i, now - 100 + i))
    assert compile_cache.prune(tmp_path, max_bytes=1000, keep_bytes=500) == 0   # at the limit
    (tmp_path / "file10").write_bytes(ENTRY)
    assert compile_cache.prune(tmp_path, max_bytes=1000, keep_bytes=500) == 6
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file10", "file6", "file7", "file8",
                                                          "file9"]
    (tmp_path / "file11").write_bytes(ENTRY[:60])          # cut short: deleted at once
    assert compile_cache.prune(tmp_path, max_bytes=1000, keep_bytes=500) == 1
    assert not (tmp_path / "file11").exists()


#: A serialized protobuf message of 100 bytes: field 1 (96 bytes), field 2 (varint 5).
ENTRY = bytes([0x0A, 96]) + bytes(96) + bytes([0x10, 0x05])


def test_is_whole_entry_reads_each_fields_length_to_the_end_of_the_file(tmp_path):
    path = tmp_path / "entry"
    cases = {ENTRY: True, ENTRY[:-1]: False, ENTRY[:50]: False, b"": False,
             ENTRY + bytes([0x1D, 1, 2, 3, 4]): True,          # a fixed32 field
             ENTRY + bytes([0x1D, 1, 2]): False, bytes([0x0F]): False}   # wire type 7
    for data, whole in cases.items():
        path.write_bytes(data)
        assert compile_cache.is_whole_entry(path) is whole, data[-8:]
    assert compile_cache.is_whole_entry(tmp_path / "missing") is False


STABLE_NAMES_CHILD = r"""
import sys
from visualizer import compile_cache
assert compile_cache.enable() is not None
from visualizer import backends            # names traces stably
import tensorflow as tf
extra = [tf.constant(float(i)) for i in range(int(sys.argv[1]))]
double = tf.function(lambda x: 2.0 * x + 1.0, jit_compile=True)
print(float(tf.reduce_sum(double(tf.ones([3])))))
triple = tf.function(lambda x: 3.0 * x - 1.0, jit_compile=True)
print(float(tf.reduce_sum(triple(tf.ones([3])))))
"""


def test_more_eager_tensors_before_a_trace_still_find_its_compiled_code_and_damaged_code_is_compiled_again(tmp_path):
    # every eager tensor advances the counter TensorFlow names traces after: 300 more
    # before the trace gave the function another name, and XLA's cache missed (this
    # test failed without `name_functions_stably`). Two functions, so that one launch
    # after the first finds the first's code and meets the second's damaged (a launch
    # killed mid-write): a third launch for the damage took another 4 s.
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    env.pop("TF_XLA_FLAGS", None)
    env[compile_cache.ENV] = str(tmp_path)

    def launch(extra):
        out = subprocess.run([sys.executable, "-c", STABLE_NAMES_CHILD, str(extra)], env=env,
                             capture_output=True, text=True, timeout=300)
        assert out.returncode == 0 and out.stdout.split()[-2:] == ["9.0", "6.0"], \
            out.stderr[-2000:]
        return {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()}

    written = launch(0)
    assert len(written) == 2
    doubled, tripled = sorted(written, key=written.get)      # compiled in that order
    (tmp_path / tripled).write_bytes((tmp_path / tripled).read_bytes()[:100])   # damaged
    again = launch(300)
    assert sorted(again) == sorted(written)
    assert again[doubled] == written[doubled], "read back, not compiled again"
    assert (tmp_path / tripled).stat().st_size > 100, "compiled again"


@pytest.mark.gui
def test_a_second_launch_reads_the_compiled_code_the_first_wrote(tmp_path):
    folder = make_model_folder(tmp_path, "tiny", num_layers=2, savedmodel=False)[0]
    cache = tmp_path / "cache"
    os.environ[compile_cache.ENV] = str(cache)
    try:
        first = run_viz([str(folder), "--screenshot", str(tmp_path / "a.png")], cwd=tmp_path)
        assert first.returncode == 0, first.stderr[-3000:]
        written = {p.name: p.stat().st_mtime for p in cache.iterdir()}
        assert written and all(n.startswith("xla_compile_cache") for n in written)
        # TensorFlow's log left as a user's shell leaves it: reading entries back
        # logged two false alarms an entry ("not supported on the host machine
        # ... SIGILL", a text parse of the binary entry) until `enable` quietened it
        second = run_viz([str(folder), "--screenshot", str(tmp_path / "b.png")], cwd=tmp_path,
                         TF_CPP_MIN_LOG_LEVEL=None)
        assert second.returncode == 0, second.stderr[-3000:]
        assert "cpu_aot_loader" not in second.stderr and "text_format" not in second.stderr, \
            second.stderr[-3000:]
        # the same functions and shapes: everything read back, nothing compiled anew
        assert {p.name: p.stat().st_mtime for p in cache.iterdir()} == written
        assert (tmp_path / "b.png").stat().st_size > 10_000
    finally:
        os.environ[compile_cache.ENV] = "off"
