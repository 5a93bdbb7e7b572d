"""Running one measurement of a benchmark script in a fresh Python process.

A script that calls `child_result(__file__, ...)` is started again as
`python SCRIPT --child ...` (TensorFlow's C++ log quiet, no inherited
environment but PATH) and returns what that child printed as JSON on its
last line; the script's `main` hands `--child` arguments to its `child`.
"""

import json
import subprocess
import sys

__all__ = ["child_result"]


def child_result(script, *args):
    """The JSON value `python script --child args...` prints last."""
    out = subprocess.run([sys.executable, script, "--child", *map(str, args)],
                         capture_output=True, text=True, check=True,
                         env={"TF_CPP_MIN_LOG_LEVEL": "3", "PATH": "/usr/bin:/bin"})
    return json.loads(out.stdout.strip().splitlines()[-1])
