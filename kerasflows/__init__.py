"""kerasflows: normalizing flows for Keras 3 on the TensorFlow backend."""

from kerasflows import datasets, layers, testing
from kerasflows.flow import Flow
from kerasflows.loading import load

__version__ = "0.1.0"

__all__ = ["Flow", "load", "datasets", "layers", "testing", "__version__"]
