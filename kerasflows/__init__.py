"""kerasflows: normalizing flows for Keras 3 on the TensorFlow backend."""

# First, before Keras imports TensorFlow: TensorFlow Probability imported after
# TensorFlow loads tfp.experimental and tfp.layers at once (for their SavedModel
# registrations), imported before it only when asked. kerasflows uses neither
# (~0.5 CPU-s a process, e.g. each `python -m kerasflows` command).
import tensorflow_probability  # noqa: F401,I001

from kerasflows import (callbacks, datasets, dequantization, distributed, export, graph_calls, inference,
                        layers, marginals, models, pictures, recipes, targets, testing, training,
                        variational)
from kerasflows.flow import Flow
from kerasflows.inference import tabulate
from kerasflows.loading import load
from kerasflows.variational import VariationalFlow, fit_target

__version__ = "0.2.0"

__all__ = ["Flow", "load", "tabulate", "VariationalFlow", "fit_target", "callbacks", "datasets",
           "dequantization", "distributed", "export", "graph_calls", "inference", "layers", "marginals",
           "models", "pictures",
           "recipes", "targets", "testing", "training", "variational", "__version__"]
