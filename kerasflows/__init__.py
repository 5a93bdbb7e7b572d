"""kerasflows: normalizing flows for Keras 3 on the TensorFlow backend."""

from kerasflows import layers
from kerasflows.flow import Flow

__version__ = "0.1.0"

__all__ = ["Flow", "layers", "__version__"]
