"""Deployment without torch: run exported models on onnxruntime (the `onnx` extra). Never imports torch."""
