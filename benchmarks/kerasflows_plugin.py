"""kerasflows runners for the shared peer benchmark (`../shared/bench/peers.py`).

Registers `kerasflows:maf`, `kerasflows:nsf` (autoregressive spline),
`kerasflows:nsf_coupling` and `kerasflows:realnvp`, built with
`kerasflows.models` under the harness's protocol (`P`: 5 transforms, hidden
[64, 64], 8 bins on [-5, 5], Adam 1e-3, seed 0, 2 threads, float32), with
the layers' default `affine_direction` / `spline_direction` ("inverse"). The
harness feeds every batch and pulls every step's loss; the step itself is
`kerasflows.training.make_train_step` (one XLA-compiled call: loss, gradient
and Adam update), with `background_compile=GRAPH_STEPS` (100): the first 100
steps run as a TensorFlow graph while XLA compiles the step on a background
thread, and the compiled step runs from step 101 (waiting for XLA if need
be), so the same seed gives the same run; and
with `shards=P["threads"]` (2): each batch is split in two parts whose
gradients are computed at the same time, one per core, as XLA:CPU runs a
step's small matrix products on one core (`benchmarks/shards_ab.py`).
Density and sampling go through the Flow's own API with
`Flow.eval_mode = EVAL_MODE`.

    cd ../shared/bench
    python peers.py --plugin /work/main/benchmarks/kerasflows_plugin.py \\
        --models kerasflows:maf,zuko:maf,tfp:maf --datasets moons
"""

import os

import numpy as np

from peers import Runner, register

#: How eager `log_prob` / `sample` calls run (see `Flow.eval_mode`).
EVAL_MODE = "xla"
#: Train as a graph while XLA compiles the step on a background thread
#: (`make_train_step(..., background_compile=...)`); KF_BACKGROUND_COMPILE=0 turns it off.
BACKGROUND_COMPILE = os.environ.get("KF_BACKGROUND_COMPILE", "1") != "0"
#: Steps run as a graph before the compiled step takes over (the step after them waits
#: for the compilation if it is still running), so that a run is reproducible bit for
#: bit; KF_GRAPH_STEPS=0 switches as soon as XLA is done (then which steps ran as a
#: graph depends on timing, and the trajectory with it).
GRAPH_STEPS = int(os.environ.get("KF_GRAPH_STEPS", "100"))
#: Parts of each batch computed side by side (`make_train_step(..., shards=...)`):
#: the protocol's thread count unless KF_SHARDS says otherwise (1: the whole batch in one call).
SHARDS = int(os.environ["KF_SHARDS"]) if os.environ.get("KF_SHARDS") else None
#: KF_TABULATE=1: evaluate (`log_prob`, `sample`) through `kerasflows.tabulate`'s copy,
#: rebuilt after every weight change (coupling flows with one-input conditioners, as
#: in 2-D, get exact lookup tables; other flows are evaluated as they are). Off by
#: default: the main tables use the Flow's own `log_prob` / `sample`.
TABULATE = os.environ.get("KF_TABULATE", "0") == "1"


class _KerasFlows(Runner):
    library = "kerasflows"
    recipe = None            # name of the function in kerasflows.models
    recipe_kwargs = {}

    def versions(self):
        import keras
        import kerasflows
        import tensorflow as tf
        import tensorflow_probability as tfp
        return dict(kerasflows=kerasflows.__version__, keras=keras.__version__,
                    tensorflow=tf.__version__, tfp=tfp.__version__)

    def build(self, dim, P):
        import keras
        import tensorflow as tf
        from kerasflows import models
        from kerasflows.training import make_train_step
        tf.config.threading.set_intra_op_parallelism_threads(P["threads"])
        tf.config.threading.set_inter_op_parallelism_threads(P["threads"])
        keras.utils.set_random_seed(P["seed"])
        kwargs = dict(self.recipe_kwargs)
        if "bins" in kwargs:
            kwargs.update(bins=P["bins"], bound=P["spline_bound"])
        self.flow = getattr(models, self.recipe)(
            dim, num_layers=P["transforms"], hidden_units=tuple(P["hidden"]),
            dtype=P["dtype"], **kwargs)
        self.flow.eval_mode = EVAL_MODE
        self.vars = list(self.flow.trainable_variables)
        self.step = make_train_step(self.flow, keras.optimizers.Adam(learning_rate=P["lr"]),
                                    background_compile=BACKGROUND_COMPILE and (
                                        GRAPH_STEPS or True),
                                    shards=P["threads"] if SHARDS is None else SHARDS)

    def train_step(self, xb):
        self._fast = None
        return float(self.step(xb))

    def _evaluated(self):
        """The flow `log_prob` and `sample` run: the Flow itself, or (KF_TABULATE=1)
        its tabulated copy for the current weights."""
        if not TABULATE:
            return self.flow
        if getattr(self, "_fast", None) is None:
            from kerasflows.inference import tabulate
            self._fast = tabulate(self.flow)[0]
        return self._fast

    def log_prob(self, x):
        return self._evaluated().log_prob(x).numpy()

    def sample(self, n):
        return self._evaluated().sample(n).numpy()

    def get_state(self):
        return [v.numpy().copy() for v in self.vars]

    def set_state(self, state):
        for v, a in zip(self.vars, state):
            v.assign(a)
        self._fast = None

    def n_params(self):
        return sum(int(np.prod(v.shape)) for v in self.vars)


@register("kerasflows:maf")
class KerasFlowsMAF(_KerasFlows):
    model = "MAF (models.MAF: MaskedAutoregressive, z = x*exp(s)+t, soft-clamped log-scale)"
    recipe = "MAF"


@register("kerasflows:nsf")
class KerasFlowsNSF(_KerasFlows):
    model = "NSF (models.NSF autoregressive=True: SplineAutoregressive, z = spline(x))"
    recipe, recipe_kwargs = "NSF", {"bins": None, "autoregressive": True}


@register("kerasflows:nsf_coupling")
class KerasFlowsNSFCoupling(_KerasFlows):
    model = "NSF (models.NSF: SplineCoupling, z = spline(x))"
    recipe, recipe_kwargs = "NSF", {"bins": None, "autoregressive": False}


@register("kerasflows:realnvp")
class KerasFlowsRealNVP(_KerasFlows):
    model = "RealNVP (models.RealNVP: AffineCoupling, z = x*exp(s)+t, soft-clamped log-scale)"
    recipe = "RealNVP"
