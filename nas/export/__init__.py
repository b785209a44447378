"""Export of a derived architecture: arch.json + weights loadable without the search code, and ONNX."""
