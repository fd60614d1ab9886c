"""Step `encode`: `model.bundle` (relative-index sparse storage + Huffman coding of the shared
model), decoded again and compared bit for bit with the weights it was written from."""

from __future__ import annotations

import logging

import numpy as np

from flows.bundle import LayerPayload, read_bundle, write_bundle
from flows.context import BUNDLE_FILE, BuildContext
from flows.errors import VerificationError
from flows.prune import prunable_layers
from flows.results import EncodeResult

log = logging.getLogger(__name__)


def run(ctx: BuildContext) -> EncodeResult:
    c = ctx.cfg.compress
    model = ctx.load_model(ctx.compressed_checkpoint, quantized=False)
    payloads = []
    for name, module, kind in prunable_layers(model):
        payloads.append(
            LayerPayload(
                name=name,
                weight=module.weight.detach().numpy().astype(np.float32),
                weight_bits=c.conv_bits if kind == "conv" else c.fc_bits,
                index_bits=c.conv_index_bits if kind == "conv" else c.fc_index_bits,
                bias=None if module.bias is None else module.bias.detach().numpy().astype(np.float32),
            )
        )
    sizes = write_bundle(ctx.path(BUNDLE_FILE), payloads)
    decoded = read_bundle(ctx.path(BUNDLE_FILE))
    for p in payloads:
        w, b = decoded[p.name]
        same_w = np.array_equal(w, p.weight + 0.0)  # + 0.0: -0.0 of a pruned weight is stored as 0
        same_b = (b is None and p.bias is None) or np.array_equal(b.view(np.uint32), p.bias.view(np.uint32))
        if not (same_w and same_b):
            raise VerificationError(f"model.bundle does not decode to the weights of layer {p.name}")
    totals = sizes.totals()
    layers = [
        {
            **vars(ls),
            "bytes_dense": ls.bytes_dense,
            "bytes_total_fixed": ls.bytes_total_fixed,
            "weight_bits": payload.weight_bits,
            "index_bits": payload.index_bits,
        }
        for payload, ls in zip(payloads, sizes.layers)
    ]
    log.info(
        "model.bundle: %d bytes (%.1fx smaller than float32 %d bytes); exact decode checked",
        sizes.bytes_total,
        totals["compression_ratio"],
        totals["dense_float32"],
    )
    return EncodeResult(bytes=totals, layers=layers)
