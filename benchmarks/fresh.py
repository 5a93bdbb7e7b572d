"""Running one measurement of a benchmark script in a fresh Python process.

A script that calls `child_result(__file__, ...)` is started again as
`python SCRIPT --child ...` (TensorFlow's C++ log quiet, no inherited
environment but PATH) and returns what that child printed as JSON on its
last line; the script's `main` hands `--child` arguments to its `child`.
`interleaved_results` runs the variants of an A/B that way, in turns.
"""

import json
import subprocess
import sys

__all__ = ["child_result", "interleaved_results"]


def child_result(script, *args):
    """The JSON value `python script --child args...` prints last."""
    out = subprocess.run([sys.executable, script, "--child", *map(str, args)],
                         capture_output=True, text=True, check=True,
                         env={"TF_CPP_MIN_LOG_LEVEL": "3", "PATH": "/usr/bin:/bin"})
    return json.loads(out.stdout.strip().splitlines()[-1])


def interleaved_results(script, repeats, variants):
    """`{name: [results]}` for `variants`, `{name: child args}`: `repeats` rounds,
    each running every variant once (`child_result`), so that the machine's
    drift over the run hits them alike."""
    results = {name: [] for name in variants}
    for _ in range(repeats):
        for name, args in variants.items():
            results[name].append(child_result(script, *args))
    return results
