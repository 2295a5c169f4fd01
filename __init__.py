"""irdeploy: image-restoration networks from PyTorch checkpoint to ONNX and TensorRT engine.

Subpackages, with dependencies pointing one way (runtime -> export -> model, all -> core):

- :mod:`irdeploy.core`: torch-free pieces every layer shares (image IO, padding, metadata keys,
  precision names, shapes, file helpers, the TensorRT import);
- :mod:`irdeploy.model`: the networks, checkpoint loading, test-time local conversion;
- :mod:`irdeploy.export`: ONNX export and graph checks;
- :mod:`irdeploy.runtime`: backends, engine builds, parity, benchmarks and the CLI.
"""

__version__ = "0.1.0"
