"""The commands' stderr filter (`kerasflows_launch.quiet_tensorflow_log`): TensorFlow's
INFO lines and CUDA probe out, every other line kept, in order."""

import os
import pathlib
import subprocess
import sys
import textwrap

import pytest

from kerasflows_launch import NOISE

ROOT = pathlib.Path(__file__).resolve().parents[1]

#: Lines TensorFlow 2.21 wrote on this machine (no GPU) in `kerasflows info`.
TENSORFLOW_LINES = [
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    "I0000 00:00:1796545184.697642   15769 port.cc:153] oneDNN custom operations are on.",
    "I0000 00:00:1796545184.698010   15769 cudart_stub.cc:31] Could not find cuda drivers on "
    "your machine, GPU will not be used.",
    "I0000 00:00:1796545184.795673   15769 cpu_feature_guard.cc:227] This TensorFlow binary is "
    "optimized to use available CPU instructions in performance-critical operations.",
    "To enable the following instructions: AVX2 FMA, in other operations, rebuild TensorFlow "
    "with the appropriate compiler flags.",
    "E0000 00:00:1796545193.490473   15769 cuda_platform.cc:52] failed call to cuInit: INTERNAL: "
    "CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)",
    "I0000 00:00:1796545210.984922   15908 device_compiler.h:208] Compiled cluster using XLA!",
]
#: Lines that must pass: TensorFlow's warnings and other errors, Python's, ours.
KEPT_LINES = [
    "W0000 00:00:1796545184.697642   15769 gpu_device.cc:2] Cannot dlopen some GPU libraries.",
    "E0000 00:00:1796545193.490473   15769 cuda_platform.cc:52] other CUDA trouble",
    "/tmp/x.py:3: UserWarning: I0000 is not a log line here",
    "kerasflows: error: x.npy: no such file.",
    "Traceback (most recent call last):",
]


def test_the_pattern_drops_tensorflows_info_lines_and_keeps_warnings_and_errors():
    assert [line for line in TENSORFLOW_LINES if not NOISE.match(line)] == []
    assert [line for line in KEPT_LINES if NOISE.match(line)] == []


SCRIPT = textwrap.dedent("""
    import os, subprocess, sys
    from kerasflows_launch import quiet_tensorflow_log
    noise, kept = {noise!r}, {kept!r}
    print("before", file=sys.stderr, flush=True)
    with quiet_tensorflow_log():
        for n, k in zip(noise, kept):
            os.write(2, (n + "\\n").encode())          # as C++ writes
            print(k, file=sys.stderr)                  # as Python writes
        subprocess.run([sys.executable, "-c", {child!r}], check=True)  # inherits the filter
        print("x" * 200_000, file=sys.stderr)          # more than a pipe holds
        {end}
    print("after", file=sys.stderr, flush=True)
""")


def _run(end="pass", **env):
    noise, kept = TENSORFLOW_LINES[:5], KEPT_LINES
    written = (TENSORFLOW_LINES[5] + "\nchild\n").encode()
    child = f"import os; os.write(2, {written!r})"
    script = SCRIPT.format(noise=noise, kept=kept, child=child, end=end)
    environ = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          cwd=ROOT, env={**environ, **env}, timeout=60)


def test_the_filter_keeps_every_other_line_in_order_from_python_cpp_and_children():
    proc = _run()
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stderr.splitlines() == ["before", *KEPT_LINES, "child", "x" * 200_000, "after"]


def test_tf_cpp_min_log_level_0_turns_the_filter_off_and_others_keep_it():
    proc = _run(TF_CPP_MIN_LOG_LEVEL="0")
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stderr.splitlines()
    assert [line for line in TENSORFLOW_LINES[:6] if line not in lines] == []
    proc = _run(TF_CPP_MIN_LOG_LEVEL="3")      # TensorFlow's first lines come before it
    assert proc.stderr.splitlines() == ["before", *KEPT_LINES, "child", "x" * 200_000, "after"]


def test_an_exit_inside_the_block_still_writes_what_came_before():
    proc = _run(end='print("last words", file=sys.stderr); sys.exit(3)')
    assert proc.returncode == 3
    assert proc.stderr.splitlines()[-2:] == ["x" * 200_000, "last words"]


def test_a_closed_stderr_neither_blocks_nor_fails_the_writers(tmp_path):
    """`kerasflows ... 2>&1 | head -1`: the reader goes; the command's writes to stderr
    inside the block neither wait on a full pipe nor raise (after it, as without it)."""
    marker = tmp_path / "went on"
    script = SCRIPT.format(noise=[], kept=[], child="pass",
                           end=f"print('y' * 200_000, file=sys.stderr); "
                               f"open({str(marker)!r}, 'w').close()")
    script = script.replace("with quiet_tensorflow_log():",          # once stderr is closed
                            "sys.stdin.readline()\nwith quiet_tensorflow_log():")
    environ = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    proc = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd=ROOT, env=environ)
    assert proc.stderr.readline() == b"before\n"
    proc.stderr.close()
    proc.stdin.write(b"go\n")
    proc.stdin.close()
    try:
        proc.wait(timeout=60)
    finally:
        proc.kill()
    assert marker.exists()


@pytest.mark.parametrize("log_level", [None, "0"])
def test_the_kerasflows_command_prints_its_own_lines_only(log_level):
    """With TF_CPP_MIN_LOG_LEVEL unset, `kerasflows info` writes no TensorFlow INFO line;
    with it at 0 TensorFlow's log is there (so the first case shows the filter)."""
    environ = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    if log_level is not None:
        environ["TF_CPP_MIN_LOG_LEVEL"] = log_level
    model = ROOT / "saved_models" / "moons" / "flow.keras"
    proc = subprocess.run([sys.executable, "-m", "kerasflows_launch", "info", str(model)],
                          capture_output=True, text=True, env=environ, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "SplineCoupling" in proc.stdout
    dropped = [line for line in proc.stderr.splitlines() if NOISE.match(line)]
    if log_level is None:
        assert dropped == [], proc.stderr
    else:
        assert any("] " in line for line in dropped), proc.stderr


def test_without_a_stderr_the_block_runs_as_written():
    """`kerasflows ... 2>&-`: no file descriptor 2 to filter."""
    code = ("from kerasflows_launch import quiet_tensorflow_log\n"
            "with quiet_tensorflow_log():\n    print('ran')")
    environ = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    proc = subprocess.run(["sh", "-c", f'"{sys.executable}" -c "$0" 2>&-', code], cwd=ROOT,
                          env=environ, capture_output=True, text=True, timeout=60)
    assert (proc.returncode, proc.stdout) == (0, "ran\n")


def test_python_dash_m_kerasflows_runs_the_command():
    """`python -m kerasflows` failed: "No module named kerasflows.__main__"."""
    model = ROOT / "saved_models" / "moons" / "flow.keras"
    proc = subprocess.run([sys.executable, "-m", "kerasflows", "info", str(model)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "SplineCoupling" in proc.stdout
    # (-X importtime: TFP imported after TensorFlow loads tfp.experimental, which
    # kerasflows does not use, ~0.5 CPU-s a command; kerasflows imports it first)
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "kerasflows", "info",
                           "nowhere.keras"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "nowhere.keras" in proc.stderr.splitlines()[-1]
    imported = [line.split("|")[-1].strip() for line in proc.stderr.splitlines()
                if line.startswith("import time:")]
    assert [m for m in imported if m.startswith("tensorflow_probability.python.bijectors.")]
    assert not [m for m in imported if m.startswith("tensorflow_probability.python.experimental")]
