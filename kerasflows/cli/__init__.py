"""The `kerasflows` command: train, evaluate, sample, plot, export and inspect flows from a shell.

Each subcommand lives in `kerasflows/cli/<name>.py` and exposes
`add_parser(subparsers)` and `run(args) -> int`. User errors (a missing
file, a wrong shape, an unknown dataset or recipe, a bad flag) print one
line `kerasflows: error: ...` to stderr and exit with status 2, without a
traceback; Ctrl-C exits with status 130 (`train` says what its checkpoint
keeps).

Example:

```bash
kerasflows train moons --epochs 5 --out moons.keras
kerasflows evaluate moons.keras moons      # 10,000 fresh points, none of train's
kerasflows export moons.keras serving/moons
```
"""

import argparse
import contextlib
import signal
import sys
import threading

from kerasflows.cli import evaluate, export, fit_target, info, plot, sample, train
from kerasflows.cli.common import NEGATIVE_VALUE, UserError

__all__ = ["main", "SUBCOMMANDS", "build_parser"]

#: The subcommand modules, in the order `--help` lists them.
SUBCOMMANDS = [train, evaluate, sample, plot, export, info, fit_target]


class _Parser(argparse.ArgumentParser):
    """Reports bad flags on one line, like every other user error."""

    def error(self, message):
        _fail(f"{message} (see '{self.prog} --help')")


def _fail(message, status=2):
    print(f"kerasflows: error: {message}", file=sys.stderr, flush=True)
    sys.exit(status)


def build_parser():
    """The argument parser of the `kerasflows` command, with every subcommand."""
    parser = _Parser(prog="kerasflows", description="Normalizing flows for Keras 3: train, "
                     "evaluate, sample, plot, export and inspect flows.")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in SUBCOMMANDS:
        sub = module.add_parser(subparsers)
        sub.set_defaults(run=module.run)
        sub._negative_number_matcher = NEGATIVE_VALUE     # --region -2,3,-1.5,2
    return parser


def _check_not_empty(args):
    """Refuses an empty MODEL, DATA, DIR or --context (`""`, a shell variable
    unset), which otherwise failed as ": no such file." or an OSError of ''."""
    for name, what in (("model", "MODEL needs a path"),
                       ("data", "DATA needs a path or a dataset name"),
                       ("dir", "DIR needs a path"), ("context", "--context needs a value")):
        value = getattr(args, name, None)
        if isinstance(value, str) and not value.strip():
            raise UserError(f"{what}; received {value!r}.")


class Terminated(KeyboardInterrupt):
    """SIGTERM (a batch scheduler's or `kill`'s stop) received while a command runs:
    it ends as Ctrl-C does (`train` saying what its checkpoint keeps, no file left
    half-written), with exit status 143."""


def _terminate(signum, frame):
    raise Terminated()


@contextlib.contextmanager
def _sigterm_as_interrupt():
    """Turns SIGTERM into `Terminated` while the command runs (the default handler
    ended the process at once: no message, a temporary file of the model left
    beside --out); the handler before is put back after."""
    if threading.current_thread() is not threading.main_thread():
        yield           # (signal handlers are set in the main thread only)
        return
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv=None):
    """Runs the command with `argv` (default: `sys.argv[1:]`); returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    with _sigterm_as_interrupt():
        return _main(argv)


def _main(argv):
    try:
        args, extra = build_parser().parse_known_args(argv)
        if extra:       # after a subcommand: its --help lists the flags it takes
            where = f"kerasflows {args.command}"
            _fail(f"unrecognized arguments: {' '.join(extra)} (see '{where} --help')")
        args.argv = argv
        _check_not_empty(args)
        return args.run(args)
    except (UserError, ValueError, OSError) as e:
        _fail(" ".join(str(e).split()) or type(e).__name__)
    except FloatingPointError as e:
        _fail(str(e), status=1)
    except KeyboardInterrupt as e:      # `train` says what its checkpoint keeps
        terminated = isinstance(e, Terminated)
        _fail(str(e) or ("terminated" if terminated else "interrupted"),
              status=143 if terminated else 130)
