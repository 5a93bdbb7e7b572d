"""The `kerasflows` command's entry point: `kerasflows.cli.main`, imported here.

Importing `kerasflows` imports TensorFlow (2-8 s); a Ctrl-C in that time
printed Python's traceback of the import and ended the process by the
signal. The import is done here, where a Ctrl-C ends the command as any
other does: one line on stderr and exit status 130. This module is outside
the `kerasflows` package, whose import is what it guards.

TensorFlow writes its INFO log to stderr (start-up notices, some before its
log level is read, and XLA's lines in the first epoch), and on a machine
without a GPU an error line for the failed CUDA probe: 9-13 lines around a
command's 2-6 of its own. `quiet_tensorflow_log` passes stderr through a
filter that drops those lines (`NOISE`) and keeps every other one, in order,
as it is written (TensorFlow writes its first INFO lines before it reads
`TF_CPP_MIN_LOG_LEVEL`, so even level 3 leaves 6 of them); with
`TF_CPP_MIN_LOG_LEVEL=0`, TensorFlow's log is left as TensorFlow writes it.
The visualizer's command uses the same filter. The module imports neither
TensorFlow nor the package.
"""

import contextlib
import faulthandler
import os
import re
import sys
import threading

__all__ = ["main", "quiet_tensorflow_log", "NOISE"]

#: The stderr lines `quiet_tensorflow_log` drops: TensorFlow's INFO lines
#: (`I<date> <time> <thread> <file>:<line>] ...`), the notice that they came
#: before its logging started, the second line of its CPU-instructions notice,
#: and the error line of the CUDA probe on a machine without a GPU.
NOISE = re.compile(
    r"I\d{4} [\d:.]+ +\d+ [\w.-]+:\d+\] "
    r"|WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR$"
    r"|To enable the following instructions: .*rebuild TensorFlow with the appropriate compiler "
    r"flags\.$"
    r"|E\d{4} [\d:.]+ +\d+ cuda_[\w.-]+:\d+\] failed call to cuInit: ")


def _pump(pipe_fd, out_fd, drop):
    """Copies the pipe's lines to `out_fd` as they come, without those `drop` matches.

    It reads to the end whatever happens to `out_fd` (closed, a reader gone),
    so that no writer ever waits on a full pipe.
    """
    with os.fdopen(pipe_fd, "rb") as pipe:
        for line in iter(pipe.readline, b""):
            if not drop.match(line.decode("utf-8", "replace")):
                with contextlib.suppress(OSError):
                    while line:
                        line = line[os.write(out_fd, line):]


@contextlib.contextmanager
def quiet_tensorflow_log(drop=NOISE, environ=os.environ):
    """Within the block, the process's stderr (file descriptor 2) without `drop`'s lines.

    Everything written to fd 2 (Python's `sys.stderr` and the C++ libraries
    alike) goes through a pipe that a thread copies, line by line, to the
    real stderr, leaving out the lines `drop` (a compiled regex, `NOISE`)
    matches from their start. Nothing is changed when `environ` has
    `TF_CPP_MIN_LOG_LEVEL=0`, TensorFlow's setting to show its INFO lines. Python's
    fault handler, when enabled, writes to the real stderr, so a crash's
    traceback is not left in the pipe.
    """
    try:
        real = None if environ.get("TF_CPP_MIN_LOG_LEVEL") == "0" else os.dup(2)
    except OSError:                 # no stderr (`2>&-`): nothing to filter
        real = None
    if real is None:
        yield
        return
    if sys.stderr is not None:
        sys.stderr.flush()
    pipe_read, pipe_write = os.pipe()
    os.dup2(pipe_write, 2)
    os.close(pipe_write)
    if faulthandler.is_enabled():
        faulthandler.enable(file=real)
    copier = threading.Thread(target=_pump, args=(pipe_read, real, drop), daemon=True,
                              name="stderr-filter")
    copier.start()
    try:
        yield
    finally:
        if sys.stderr is not None:
            sys.stderr.flush()
        os.dup2(real, 2)          # the pipe's last writer closes: the copier reads to the end
        if faulthandler.is_enabled():
            faulthandler.enable(file=2)    # fd 2: the real stderr again
        copier.join(timeout=5)
        os.close(real)


def main():
    """Runs `kerasflows.cli.main()` and exits with its status."""
    with quiet_tensorflow_log():
        try:
            from kerasflows.cli import main as run
        except KeyboardInterrupt:
            print("kerasflows: error: interrupted", file=sys.stderr, flush=True)
            status = 130
        else:
            status = run()
    sys.exit(status)


if __name__ == "__main__":
    main()
