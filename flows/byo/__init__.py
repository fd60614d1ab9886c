"""Bring your own network: plain PyTorch quantized by the flow (`quantize`), its average pools made exact
(`pool`) and its channel groups inferred for structured pruning (`channels`), foreign Brevitas networks
inspected and converted or refused (`foreign`), trained weights from a file (`weights`), ONNX/QONNX files as
the model (`onnx`); `adapt` ties them to the build context's model factory."""
