"""`kerasflows.files.replace_file`: a file replaced whole or not at all."""

import os
import threading

from kerasflows.files import replace_file


def test_threads_writing_one_file_each_write_their_own_file_beside_it(tmp_path):
    """The file beside was named by the process alone: two threads writing one path
    wrote one file beside it, and one's rename found it gone (FileNotFoundError)."""
    path, errors = tmp_path / "out.bin", []
    contents = [bytes([k]) * 200_000 for k in range(2)]

    def write(k):
        try:
            for _ in range(30):
                replace_file(path, lambda f: [f.write(contents[k][i:i + 1000])
                                              for i in range(0, len(contents[k]), 1000)])
        except Exception as e:      # (reported below)
            errors.append(e)
    threads = [threading.Thread(target=write, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and path.read_bytes() in contents
    assert os.listdir(tmp_path) == ["out.bin"]


def test_files_left_beside_by_killed_writers_are_removed_and_running_ones_kept(tmp_path):
    """A process killed while writing (SIGKILL runs no clean-up) left its model-sized
    `.m.keras.PID.THREAD.saving.keras` beside the model for good."""
    import subprocess
    import sys
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    left = [f".m.keras.{gone.pid}.7.saving.keras",              # a killed writer's
            f".m.keras.{os.getppid()}.7.saving.keras",           # a running one's
            f".m.keras.{gone.pid}.7.part",                       # another writer's tail
            f".n.keras.{gone.pid}.7.saving.keras",               # another file's
            ".m.keras.notes.saving.keras"]                       # the user's own
    long_ago = __import__("time").time() - 3600
    for name in left:
        (tmp_path / name).write_bytes(b"x")
        os.utime(tmp_path / name, (long_ago, long_ago))
    # one of a number not running here, written to a moment ago: a writer on another
    # host, or in another PID namespace, sharing the folder
    young = f".m.keras.{gone.pid}.8.saving.keras"
    (tmp_path / young).write_bytes(b"x")
    replace_file(tmp_path / "m.keras", lambda name: open(name, "wb").close(), by_name=True,
                 tail=".saving.keras")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["m.keras", young, *left[1:]])
