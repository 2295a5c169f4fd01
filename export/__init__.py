"""irdeploy.export: ONNX export of zoo models and checks of the exported graphs."""
