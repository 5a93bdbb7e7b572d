"""The one long-lived compute thread, and its bridge to the GUI thread.

A plain `threading.Thread` imports TensorFlow (through `compute`) and then
serves requests from a small mailbox with one slot per kind of request
(`"density"`, `"samples"`, ...): a new request replaces a waiting one of the
same kind, so a view that asks faster than the flow answers only ever
waits for its newest question, and one request is in flight at a time.
Warm-up requests (kinds starting with `WARM_UP_PREFIX`) wait until no
other request does.

For `keep_warm` seconds after each answered request the thread keeps
TensorFlow's worker threads busy with a small evaluation every
`KEEP_WARM_EVERY_S` while it waits (results not delivered). Left idle for a
fraction of a second, TensorFlow's second thread is slow to take up work
again here: a 256x256 heatmap of the shipped moons model took 40-51 ms after
0.2 s of rest against 31-35 ms back to back, and 34-48 ms with the small
evaluation every 5 ms (throwaway A/B scripts, same process; the
after-idle figure of `benchmarks/viz_bench.py` measures it). The cost is
about 1 ms of work per small evaluation, only while the user is interacting.
Results reach the GUI thread through a queued Qt signal. (TensorFlow driven
from a worker object moved onto a default `QThread`, or from short
`QThreadPool` jobs, segfaulted here; a plain thread with a queue holds up.)

Stopping (the window closing) does not wait: the thread finishes the request
in flight, delivers nothing more and ends. The process waits for that at exit
(`finish_at_exit`, an `atexit` handler, up to `EXIT_WAIT_S`): TensorFlow torn
down under a running computation could crash the exiting interpreter.
"""

import atexit
import dataclasses
import itertools
import threading
import time
import traceback
import weakref

from PySide6 import QtCore

__all__ = ["Request", "Result", "ComputeThread", "Worker", "WARM_UP_PREFIX", "keep_warm_call",
           "finish_at_exit", "EXIT_WAIT_S", "USER_ERRORS"]

#: Requests whose kind starts with this run only when nothing else waits.
WARM_UP_PREFIX = "warm_up"
#: Seconds after an answered request during which the idle thread keeps TensorFlow warm.
KEEP_WARM_S = 1.0
#: Interval of the small keep-warm evaluations, seconds.
KEEP_WARM_EVERY_S = 0.005
#: Rows of a keep-warm evaluation (the views' warm-up compiles this shape).
KEEP_WARM_ROWS = 64
#: Seconds the exiting process waits for each compute thread's request in flight.
EXIT_WAIT_S = 60.0

#: Every compute thread started (to stop and wait for at exit).
_started = weakref.WeakSet()


def finish_at_exit(timeout=EXIT_WAIT_S):
    """Stops every compute thread and waits up to `timeout` seconds for each to end
    (run at exit, before the interpreter and TensorFlow are torn down)."""
    threads = list(_started)
    for thread in threads:
        thread.stop()
    for thread in threads:
        if thread.is_alive():
            thread.join(timeout)


atexit.register(finish_at_exit)


def keep_warm_call(invertible):
    """The keep-warm evaluation, `(backend method, rows)`: `log_prob`, or `forward`
    for a flow without an inverse."""
    return ("log_prob" if invertible else "forward"), KEEP_WARM_ROWS

#: What `_next` returns when it is time for a keep-warm evaluation.
_KEEP_WARM = object()


@dataclasses.dataclass
class Request:
    kind: str
    func: str
    args: tuple
    kwargs: dict
    generation: int
    request_id: int


@dataclasses.dataclass
class Result:
    """What a request produced.

    Attributes:
        kind, request_id: as submitted.
        value: the `compute` function's return value (None on error).
        error: a one-line reason, or None.
        seconds: wall time of the computation.
        generation: which opened model it was computed with.
    """

    kind: str
    request_id: int
    value: object = None
    error: str = None
    seconds: float = 0.0
    generation: int = 0


#: Errors whose message is written for the user (a bad file, a context the flow does not
#: take): shown alone. Any other exception is unexpected and keeps its class name.
USER_ERRORS = (ValueError, OSError)


def _reason(exc):
    """The first line of `exc`'s message, after its class name unless it is a `USER_ERRORS`."""
    text = str(exc).strip().splitlines()
    first = text[0] if text else ""
    if isinstance(exc, USER_ERRORS) and first:
        return first
    return f"{type(exc).__name__}: {first}".rstrip(": ")


class ComputeThread(threading.Thread):
    """Runs `visualizer.compute` functions one at a time, newest request per kind first.

    Args:
        deliver: called on this thread with each `Result`; the first one has
            kind `"ready"` (TensorFlow imported) or carries the import error.
        keep_warm: seconds after each answered request during which the
            waiting thread runs a small evaluation every `KEEP_WARM_EVERY_S`
            (see the module notes); 0 turns that off.
    """

    def __init__(self, deliver, keep_warm=KEEP_WARM_S):
        super().__init__(name="kerasflows-viz-compute", daemon=True)
        self._deliver = deliver
        self.keep_warm = float(keep_warm)
        self._warm_until = 0.0
        self.keep_warm_runs = 0     # keep-warm evaluations so far
        self._cond = threading.Condition()
        self._pending = {}
        self._ids = itertools.count(1)
        self._stopping = False
        self._in_flight = False
        self.backend = None
        self.generation = 0

    def submit(self, kind, func, *args, generation=None, **kwargs):
        """Queues `compute.<func>(backend, *args, **kwargs)`; returns the request id.

        A `context=` keyword is not passed on: the backend's context is set to it
        first (a conditional flow; see `backends.Backend.set_context`).
        `func="load"` opens a model (`args=(source,)`); on success later
        requests run on it and results carry the next generation number.
        Requests made for an older generation are dropped.
        """
        with self._cond:
            req = Request(kind, func, args, kwargs, generation, next(self._ids))
            self._pending.pop(kind, None)
            self._pending[kind] = req
            self._cond.notify()
            return req.request_id

    def start(self):
        _started.add(self)
        super().start()

    def stop(self):
        """Ends the thread after the request in flight, whose result is not delivered;
        returns at once."""
        with self._cond:
            self._stopping = True
            self._cond.notify()

    def _send(self, result):
        """Delivers `result`, unless stopping: whoever asked may be gone (a closed
        window's `Worker`). Under the lock, so no result follows `stop()`."""
        with self._cond:
            if not self._stopping:
                self._deliver(result)

    def _next(self):
        """The next request, `_KEEP_WARM` when a keep-warm evaluation is due, or None
        once stopping."""
        with self._cond:
            while not self._pending and not self._stopping:
                if time.perf_counter() >= self._warm_until or self.backend is None:
                    self._cond.wait()
                elif not self._cond.wait(KEEP_WARM_EVERY_S) and not self._pending \
                        and not self._stopping:
                    return _KEEP_WARM
            if self._stopping:
                return None
            self._in_flight = True
            kinds = list(self._pending)
            urgent = [k for k in kinds if not k.startswith(WARM_UP_PREFIX)]
            return self._pending.pop((urgent or kinds)[0])

    def run(self):
        start = time.perf_counter()
        try:
            from visualizer import compute
        except Exception as exc:  # noqa: BLE001 (report any import failure to the GUI)
            self._send(Result("ready", 0, error=_reason(exc)))
            return
        self._send(Result("ready", 0, seconds=time.perf_counter() - start))
        while (req := self._next()) is not None:
            if req is _KEEP_WARM:
                self._run_keep_warm(compute)
                continue
            result = self._handle(compute, req)
            with self._cond:
                self._in_flight = False
                if result.error is None and req.func != "load" \
                        and not req.kind.startswith(WARM_UP_PREFIX):
                    self._warm_until = time.perf_counter() + self.keep_warm
            self._send(result)

    def _run_keep_warm(self, compute):
        """One small evaluation of the open model; a failure ends keep-warm until the
        next request (it never reaches the GUI)."""
        try:
            compute.warm_up(self.backend, *keep_warm_call(self.backend.invertible))
            self.keep_warm_runs += 1
        except Exception:  # noqa: BLE001 (keep-warm is an optimisation; the next request reports)
            self._warm_until = 0.0

    def idle(self):
        """True when no request is waiting or running (e.g. the warm-up has finished)."""
        with self._cond:
            return not self._pending and not self._in_flight

    def _handle(self, compute, req):
        start = time.perf_counter()
        result = Result(req.kind, req.request_id, generation=self.generation)
        try:
            if req.func == "load":
                backend, result.value = compute.load(*req.args, previous=self.backend,
                                                     **req.kwargs)
                self.backend, self.generation = backend, self.generation + 1
                result.generation = self.generation
            elif req.generation is not None and req.generation != self.generation:
                result.error = "stale"
            elif self.backend is None:
                result.error = "no model is open"
            else:
                kwargs = dict(req.kwargs)
                if "context" in kwargs:      # a conditional flow's context travels with
                    self.backend.set_context(kwargs.pop("context"))   # each request
                result.value = getattr(compute, req.func)(self.backend, *req.args, **kwargs)
        except compute.TraceUnavailable as exc:
            result.error = str(exc)
        except Exception as exc:  # noqa: BLE001 (shown to the user, the thread lives on)
            result.error = _reason(exc)
            result.value = traceback.format_exc()
        result.seconds = time.perf_counter() - start
        return result


class Worker(QtCore.QObject):
    """Owns the compute thread (`keep_warm`: see `ComputeThread`); emits
    `result(Result)` on the GUI thread."""

    result = QtCore.Signal(object)

    def __init__(self, parent=None, keep_warm=KEEP_WARM_S):
        super().__init__(parent)
        self.thread = ComputeThread(self.result.emit, keep_warm=keep_warm)

    def start(self):
        if not self.thread.is_alive():
            self.thread.start()

    def submit(self, kind, func, *args, generation=None, **kwargs):
        return self.thread.submit(kind, func, *args, generation=generation, **kwargs)

    def stop(self, timeout=0.0):
        """Stops the compute thread after its request in flight (see
        `ComputeThread.stop`); waits up to `timeout` seconds for it to end (0: not at
        all; the process waits for it at exit, `finish_at_exit`)."""
        self.thread.stop()
        if timeout > 0 and self.thread.is_alive():
            self.thread.join(timeout)
