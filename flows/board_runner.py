"""Run a build's test set on a PYNQ board (copied into every PYNQ build folder as `deploy/run_on_board.py`).

On the board (a PYNQ image: Python 3 with `pynq` and numpy), as root in a login shell (PYNQ's login
profile activates the virtual environment that holds `pynq`):

    scp -r hls/lenet5_fire-pynq-z2/deploy xilinx@pynq:/home/xilinx/fireflow        # from the build machine
    ssh -t xilinx@pynq sudo -i python3 /home/xilinx/fireflow/run_on_board.py        # all test images
    ... run_on_board.py --batch 256 --limit 1000 --overlay other.bit

It loads the overlay (`<name>.bit` + `<name>.hwh`, written by `--bitstream`), streams the test set
(`x_test.npy`: inputs already on the hardware's fixed-point grid, in its layout) through the AXI DMA
of hls4ml's VivadoAccelerator block design (`hier_0/axi_dma_0`) in batches, and prints the accuracy
against `y_test.npy`, images/s (time spent in the DMA transfers) and the agreement with the C
simulation's outputs (`csim_outputs.npy`).
The stream format matches the generated wrapper `<project>_axi.cpp` as recorded in `deploy.json`:
one AXI word per value (`input_word`/`output_word`: float32, float64, or a fixed-point integer with
`frac_bits` fractional bits), N_IN words in and N_OUT words out per image, TLAST at the end of a DMA
transfer (the wrapper raises TLAST on the last output of the image that carried it). The results
also go to `board_results.json` (and `board_outputs.npy`).

This file depends only on numpy and pynq: it never imports the flow.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
FLOAT_WORDS = {"float32": np.float32, "float64": np.float64}


log = logging.getLogger("run_on_board")


def word_dtype(spec: dict):
    """numpy dtype of one AXI-stream word: float32/float64, or a signed/unsigned integer of `bits`."""
    if spec["kind"] in FLOAT_WORDS:
        return np.dtype(FLOAT_WORDS[spec["kind"]])
    return np.dtype(f"{'int' if spec['signed'] else 'uint'}{spec['bits']}")


def encode(x: np.ndarray, spec: dict) -> np.ndarray:
    """Values -> the words the wrapper reads (fixed point: value * 2**frac_bits, exact on the grid)."""
    if spec["kind"] in FLOAT_WORDS:
        return x.astype(word_dtype(spec))
    return np.round(x * 2.0 ** spec["frac_bits"]).astype(word_dtype(spec))


def decode(words: np.ndarray, spec: dict) -> np.ndarray:
    """The words the wrapper writes -> float64 values."""
    if spec["kind"] in FLOAT_WORDS:
        return words.astype(np.float64)
    return words.astype(np.float64) * 2.0 ** -spec["frac_bits"]


def load_deploy(folder: Path) -> tuple[dict, np.ndarray, np.ndarray, np.ndarray]:
    meta = json.loads((folder / "deploy.json").read_text())
    x = np.load(folder / meta["inputs"], allow_pickle=False)
    y = np.load(folder / meta["labels"], allow_pickle=False)
    ref = np.load(folder / meta["csim_outputs"], allow_pickle=False)
    x = x.reshape(len(x), -1)
    if x.shape[1] != meta["n_in"] or ref.shape[1:] != (meta["n_out"],) or not len(x) == len(y) == len(ref):
        raise SystemExit(f"error: {folder} holds data of other shapes than deploy.json says; rerun the build")
    return meta, x, y, ref


def run_batches(dma, allocate, x_words: np.ndarray, n_out: int, out_dtype, batch: int) -> tuple[np.ndarray, float]:
    """Send `x_words` (N, N_IN) through the DMA, `batch` images per transfer; returns (N, N_OUT) words, seconds."""
    n = len(x_words)
    out = np.empty((n, n_out), dtype=out_dtype)
    buffers: dict[int, tuple] = {}
    elapsed = 0.0
    for start in range(0, n, batch):
        b = min(batch, n - start)
        if b not in buffers:  # a full batch, and once a shorter last one
            buffers[b] = (
                allocate(shape=(b, x_words.shape[1]), dtype=x_words.dtype),
                allocate(shape=(b, n_out), dtype=out_dtype),
            )
        inp, res = buffers[b]
        inp[:] = x_words[start : start + b]
        t0 = time.perf_counter()
        dma.sendchannel.transfer(inp)
        dma.recvchannel.transfer(res)
        dma.sendchannel.wait()
        dma.recvchannel.wait()
        elapsed += time.perf_counter() - t0
        out[start : start + b] = res
    for inp, res in buffers.values():
        for buf in (inp, res):
            if hasattr(buf, "freebuffer"):
                buf.freebuffer()
    return out, elapsed


def summarize(values: np.ndarray, y: np.ndarray, ref: np.ndarray, seconds: float, out_spec: dict) -> dict:
    """Accuracy, images/s and agreement with the C simulation (compared as the wrapper's output words)."""
    ref_words = encode(ref, out_spec)
    got_words = encode(values, out_spec)
    same = (got_words == ref_words).all(axis=1)
    return {
        "images": int(len(values)),
        "accuracy": float((values.argmax(1) == y).mean()),
        "images_per_second": float(len(values) / seconds) if seconds > 0 else None,
        "seconds": seconds,
        "csim_bit_exact_fraction": float(same.mean()),
        "csim_argmax_agreement": float((values.argmax(1) == ref.argmax(1)).mean()),
        "csim_mismatched_images": [int(i) for i in np.flatnonzero(~same)[:20]],
    }


def setup_output() -> None:
    """The script's results on stdout, errors on stderr, plain lines (it runs on the board, outside fireflow)."""
    if log.handlers:  # main() called again in the same process
        return
    out, err = logging.StreamHandler(sys.stdout), logging.StreamHandler(sys.stderr)
    out.addFilter(lambda record: record.levelno < logging.WARNING)
    err.setLevel(logging.WARNING)
    for handler in (out, err):
        handler.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False


def main(argv: list[str] | None = None) -> int:
    setup_output()
    p = argparse.ArgumentParser(description="Run the build's test set on the board through the overlay.")
    p.add_argument("--folder", default=str(HERE), help="the deploy/ folder (default: this script's)")
    p.add_argument("--overlay", help="the .bit file (default: deploy.json's; its .hwh must lie beside it)")
    p.add_argument("--batch", type=int, help="images per DMA transfer (default: deploy.json's)")
    p.add_argument("--limit", type=int, help="only the first N test images")
    args = p.parse_args(argv)
    folder = Path(args.folder)
    meta, x, y, ref = load_deploy(folder)
    if args.limit:
        x, y, ref = x[: args.limit], y[: args.limit], ref[: args.limit]
    overlay_path = Path(args.overlay) if args.overlay else folder / (meta.get("overlay") or "missing.bit")
    if not overlay_path.is_file():
        log.error(
            "error: no overlay %s: build the bitstream with --bitstream where Vivado is installed, "
            "then copy deploy/ to the board again (or pass --overlay FILE.bit)",
            overlay_path,
        )
        return 2
    batch = args.batch or meta["batch"]
    if batch < 1:
        raise SystemExit("error: --batch must be at least 1")
    from pynq import Overlay, allocate  # on the board only

    overlay = Overlay(str(overlay_path))
    dma = overlay.hier_0.axi_dma_0  # hls4ml's VivadoAccelerator block design: hier_0/{axi_dma_0, <project>_axi_0}
    in_spec, out_spec = meta["input_word"], meta["output_word"]
    words, seconds = run_batches(dma, allocate, encode(x, in_spec), meta["n_out"], word_dtype(out_spec), batch)
    values = decode(words, out_spec)
    result = {"overlay": str(overlay_path), "batch": batch, **summarize(values, y, ref, seconds, out_spec)}
    np.save(folder / "board_outputs.npy", values)
    (folder / "board_results.json").write_text(json.dumps(result, indent=2) + "\n")
    rate = result["images_per_second"]
    log.info(
        "%s on %s: %d images in batches of %d", meta.get("model", "?"), meta.get("board", "?"), result["images"], batch
    )
    log.info("accuracy %.4f%s", result["accuracy"], f"; {rate:.0f} images/s" if rate else "")
    log.info(
        "agreement with the C simulation: bit-exact %.4f, argmax %.4f",
        result["csim_bit_exact_fraction"],
        result["csim_argmax_agreement"],
    )
    return 0 if result["csim_bit_exact_fraction"] == 1.0 else 1


if __name__ == "__main__":
    sys.exit(main())
