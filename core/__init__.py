"""irdeploy.core: what more than one layer needs, without torch.

Image files and folder pairing, the padding contract, the ONNX metadata keys, precision names,
shape parsing, content hashes and atomic writes, and the TensorRT import. :mod:`irdeploy.model`,
:mod:`irdeploy.export` and :mod:`irdeploy.runtime` all import from here; this package imports
none of them and never torch, so an engine runs on a machine without PyTorch
(``tests/test_import_graph.py`` holds it to that).
"""
