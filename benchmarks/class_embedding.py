"""Class-conditional digits: how the label's embedding is made changes what the flow learns.

    .venv-bench/bin/python benchmarks/class_embedding.py [--seeds 0] [--epochs 30] [--out FILE.json]

An NSF (5 spline couplings, hidden [64, 64], 8 bins on [-5, 5]) learns
p(image | label) on `kerasflows.datasets.load_conditional("digits_label")`
(1,797 8x8 digits; 10% held out as the test split, as `kerasflows train`
splits), Adam 1e-3 with cosine decay, batch 128, the label reaching the
layers through each context encoder below. Per variant: the test NLL (nats
per image) and the share of samples (200 per label, temperature 1) that a
logistic regression fitted to real digits (another dequantisation of all
1,797) classifies as the label they were drawn for (chance: 10%): scikit-learn's,
which `benchmarks/setup.sh` installs into .venv-bench (kerasflows does not need it).

- `keras_embedding_8`, `keras_embedding_32`: `keras.layers.Embedding` (rows
  start uniform in +-0.05) and `Flatten`;
- `class_embedding_8`, `_32`, `_64`: `kerasflows.layers.ClassEmbedding`
  (rows start N(0, 1));
- `unconditional`: the same flow without the label (NLL only).
"""

import argparse
import json
import os
import platform
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import kerasflows  # noqa: E402
from kerasflows.layers import ClassEmbedding  # noqa: E402

VARIANTS = {
    "keras_embedding_8": lambda: keras.Sequential([keras.layers.Embedding(10, 8),
                                                   keras.layers.Flatten()]),
    "keras_embedding_32": lambda: keras.Sequential([keras.layers.Embedding(10, 32),
                                                    keras.layers.Flatten()]),
    "class_embedding_8": lambda: ClassEmbedding(10, 8),
    "class_embedding_32": lambda: ClassEmbedding(10, 32),
    "class_embedding_64": lambda: ClassEmbedding(10, 64),
    "unconditional": None,
}


def _splits(seed):
    x, c = kerasflows.datasets.load_conditional("digits_label", seed=0)
    order = np.random.default_rng(seed).permutation(len(x))
    n_test = round(0.1 * len(x))
    return (x[order][n_test:], c[order][n_test:]), (x[order][:n_test], c[order][:n_test])


def _classifier():
    from sklearn.linear_model import LogisticRegression
    x, c = kerasflows.datasets.load_conditional("digits_label", seed=1)
    return LogisticRegression(max_iter=3000).fit(x, c[:, 0])


def run(variant, seed, epochs, classifier):
    (x, c), (test_x, test_c) = _splits(seed)
    keras.utils.set_random_seed(seed)
    make = VARIANTS[variant]
    kwargs = {} if make is None else {"context_dim": 1, "context_encoder": make()}
    flow = kerasflows.models.NSF(64, num_layers=5, hidden_units=(64, 64), bins=8, bound=5.0,
                                 **kwargs)
    steps = epochs * -(-len(x) // 128)
    flow.compile(optimizer=keras.optimizers.Adam(
        keras.optimizers.schedules.CosineDecay(1e-3, steps)))
    start = time.perf_counter()
    flow.fit((x, c) if make else x, batch_size=128, epochs=epochs, verbose=0)
    seconds = time.perf_counter() - start
    nll = float(-np.mean(flow.log_prob(test_x, context=test_c if make else None)))
    result = {"variant": variant, "seed": seed, "test_nll": nll, "train_seconds": seconds}
    if make is not None:
        right = [float(np.mean(classifier.predict(
            flow.sample(200, context=[[float(d)]], seed=1000 * seed + d).numpy()) == d))
            for d in range(10)]
        result.update(label_accuracy=float(np.mean(right)), per_label=right)
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", default="0", help="comma-separated seeds")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--out", default=None, help="JSON results")
    args = parser.parse_args(argv)
    classifier = _classifier()
    results = []
    for seed in (int(s) for s in args.seeds.split(",")):
        for variant in args.variants.split(","):
            r = run(variant, seed, args.epochs, classifier)
            results.append(r)
            accuracy = r.get("label_accuracy")
            print(f"{variant:<20} seed {seed}: test NLL {r['test_nll']:7.2f} nats, samples "
                  f"of their label {'-' if accuracy is None else f'{accuracy:.0%}':>4} "
                  f"({r['train_seconds']:.0f} s)", flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"machine": platform.platform(), "python": platform.python_version(),
                       "epochs": args.epochs, "results": results}, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
