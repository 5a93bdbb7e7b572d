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
