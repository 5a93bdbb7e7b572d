"""The `kerasflows` command's entry point: `kerasflows.cli.main`, imported here.

Importing `kerasflows` imports TensorFlow (2-8 s); a Ctrl-C in that time
printed Python's traceback of the import and ended the process by the
signal. The import is done here, where a Ctrl-C ends the command as any
other does: one line on stderr and exit status 130. This module is outside
the `kerasflows` package, whose import is what it guards.
"""

import sys


def main():
    """Runs `kerasflows.cli.main()` and exits with its status."""
    try:
        from kerasflows.cli import main as run
    except KeyboardInterrupt:
        print("kerasflows: error: interrupted", file=sys.stderr, flush=True)
        sys.exit(130)
    sys.exit(run())


if __name__ == "__main__":
    main()
