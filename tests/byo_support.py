"""Helpers shared by the bring-your-own-network tests (tests/test_byo*.py; their `cli` fixture is in conftest.py):
a network with calibrated activation statistics, and its QONNX graph checked against PyTorch."""

from __future__ import annotations

import torch

from flows.export import export_model, quantize_inputs, to_hw_layout, verify_qonnx
from flows.modelstats import reference_logits


def calibrated(model, batches=4):
    """`model` after a few training-mode passes of random images (BatchNorm/activation statistics), in eval mode."""
    gen = torch.Generator().manual_seed(1)
    model.train()
    with torch.no_grad():
        for _ in range(batches):
            model(torch.rand((32, 1, 28, 28), generator=gen))
    return model.eval()


def exported(model, tmp_path):
    """The cleaned QONNX graph of a quantized network, checked against PyTorch on 6 images (exact)."""
    images = torch.rand((6, 1, 28, 28), generator=torch.Generator().manual_seed(2))
    xq = quantize_inputs(model, images.double())
    wrapper = export_model(model, (1, 28, 28), tmp_path / "m.onnx")
    check = verify_qonnx(wrapper, to_hw_layout(xq.numpy(), (1, 28, 28)), reference_logits(model, xq))
    return wrapper, check
