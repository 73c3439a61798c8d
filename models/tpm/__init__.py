"""TPM: the two-stream policy network, its dataset, training, export and ONNX runtime policy."""
