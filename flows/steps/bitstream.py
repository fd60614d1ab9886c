"""Step `bitstream` (with --bitstream, PYNQ boards): hls4ml's VivadoAccelerator build of a copy of the
project (`bitstream/hls4ml_prj`): Vivado HLS C synthesis with IP export, then Vivado's block design
(`design.tcl`: Zynq PS, AXI DMA, the IP) to a `.bit` + `.hwh`, which the deploy step copies into
`deploy/`. Without `vivado_hls` and `vivado` on PATH it is skipped with a logged message naming the
missing tools (the build goes on; the step reruns once they are installed)."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from flows.atomic import atomic_write_text
from flows.context import BITSTREAM_DIR, CSIM_DIR, BuildContext
from flows.convert import PROJECT_DIR
from flows.deploy import bitstream_tools, build_bitstream
from flows.results import BitstreamResult

log = logging.getLogger(__name__)


def run(ctx: BuildContext) -> BitstreamResult:
    conv = ctx.results.convert
    folder = ctx.path(BITSTREAM_DIR)
    missing = bitstream_tools()
    if missing:
        message = (
            f"bitstream skipped: --bitstream needs {' and '.join(missing)} on PATH (hls4ml's VivadoAccelerator "
            "build); deploy/ gets the test data and run_on_board.py without an overlay. Install Vivado and rerun "
            "the same command to build it"
        )
        log.warning("%s", message)
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_text(folder / "SKIPPED.txt", message + "\n")
        return BitstreamResult(status="skipped", message=message)
    project = folder / PROJECT_DIR
    shutil.copytree(ctx.path(conv.project), project, ignore=shutil.ignore_patterns("*.so", "*.o"))
    tb = ctx.path(CSIM_DIR) / "tb_data"
    if tb.is_dir():
        shutil.copytree(tb, project / "tb_data", dirs_exist_ok=True)
    found = build_bitstream(project, conv.project_name)
    log.info("bitstream: %s", found["bit"])
    rel = {k: str(Path(v).resolve().relative_to(Path(ctx.out).resolve())) for k, v in found.items()}
    return BitstreamResult(status="built", message="", bit=rel["bit"], hwh=rel["hwh"])
