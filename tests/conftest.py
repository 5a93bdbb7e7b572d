"""Shared by every test, and by the programs the tests start.

No test writes to the user's cache folder: the visualizer keeps XLA's
compiled code in ~/.cache/kerasflows/ (`visualizer.compile_cache`); the
tests run with that cache off unless a test points it at a temporary folder.

XLA compiles without LLVM's expensive optimisations here
(`--xla_backend_optimization_level=0`, `--xla_llvm_disable_expensive_passes`):
the suite compiles hundreds of train steps and evaluations it runs only a few
times, and on a 2-core 2 GHz machine these flags took the whole suite from
32:16 to 23:12 (pytest -n 2, one run each; the machine's speed varies). The HLO, and so what
is computed, is the same; only the machine code is less tuned. Set
KERASFLOWS_TEST_FULL_XLA=1 to run the suite with XLA's default optimisations,
as users get them; an XLA_FLAGS already naming an optimisation level is kept.
"""

import os

import pytest

os.environ["KERASFLOWS_VIZ_COMPILE_CACHE"] = "off"

_FAST_XLA = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
if (os.environ.get("KERASFLOWS_TEST_FULL_XLA", "") in ("", "0")
        and "optimization_level" not in os.environ.get("XLA_FLAGS", "")):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {_FAST_XLA}".strip()


@pytest.fixture
def train_steps_without_xla(monkeypatch):
    """`kerasflows train` runs `train_flow`'s step as a plain graph
    (`jit_compile=False`), for the tests of the command's options, files and
    messages: XLA compiling the step took a third to a half of each tiny run's CPU
    time. test_cli's round trip, test_resume's killed run and the README tests
    train with XLA, as users do."""
    import functools
    import kerasflows.distributed
    monkeypatch.setattr(kerasflows.distributed, "train_flow", functools.partial(
        kerasflows.distributed.train_flow, jit_compile=False))


@pytest.fixture
def fused_adam_ops(monkeypatch):
    """The arguments of each `tf.raw_ops.ResourceApplyAdam` built while the test
    runs (the fused kernel a plain Adam is updated with, `packed_adam`)."""
    import tensorflow as tf
    calls, kernel = [], tf.raw_ops.ResourceApplyAdam
    monkeypatch.setattr(tf.raw_ops, "ResourceApplyAdam",
                        lambda **kw: calls.append(kw) or kernel(**kw))
    return calls
