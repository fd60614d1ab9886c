"""Step `dataflow`: the concurrent bounded-FIFO simulation of an io_stream project (flows/dataflow/).

`dataflow.images` test images (prepared as the csim step prepares them) run back to back through the
simulation the convert step compiled beside the project, every process in its own thread, every FIFO
as deep as the project's STREAM pragma. It passes when no process deadlocks and the outputs equal the
C simulation's bit for bit. `dataflow.json` holds the outcome, the FIFO table (depth in the project,
the flow's analytical depth, the minimum the sizing found, the highest fill reached) and, for a
deadlock, which process is blocked on which stream, with fills and capacities, and the fork/join it
names: then the build fails with exit code 7 (DeadlockError).
"""

from __future__ import annotations

import logging

import numpy as np

from flows.atomic import atomic_write_json
from flows.context import DATAFLOW_FILE, QAT_CKPT, BuildContext
from flows.csim import load_library
from flows.dataflow import check_project, describe_failure, fifo_rows
from flows.errors import DeadlockError, ToolError, VerificationError
from flows.export import model_input_shape, quantize_inputs, to_hw_layout
from flows.results import DataflowResult

log = logging.getLogger(__name__)


def _skip(ctx: BuildContext, reason: str) -> DataflowResult:
    log.info("dataflow check skipped: %s", reason)
    result = DataflowResult(status="skipped", reason=reason)
    atomic_write_json(ctx.path(DATAFLOW_FILE), result.to_dict())
    return result


def run(ctx: BuildContext) -> DataflowResult:
    cfg, conv = ctx.cfg.dataflow, ctx.results.convert
    if conv.io_type != "io_stream":
        return _skip(ctx, f"the design is {conv.io_type}: no dataflow FIFOs")
    prepared = conv.dataflow or {}
    if not prepared or prepared.get("skipped"):
        return _skip(ctx, prepared.get("skipped") or "the convert step compiled no dataflow simulation")
    model = ctx.load_model(QAT_CKPT)
    shape = model_input_shape(model, ctx.data.in_shape)
    test = ctx.data.test.head(cfg.images)
    x_hw = to_hw_layout(quantize_inputs(model, test.float_images().double()).numpy(), shape)
    if len(x_hw) < cfg.images:  # a tiny test set: repeat it, the images still run back to back
        x_hw = np.resize(x_hw, (cfg.images, *x_hw.shape[1:]))
    project = ctx.path(conv.project)
    design, sim = check_project(project, x_hw, cfg.timeout_s)
    sizing = prepared.get("sizing") or {}
    info = {k: v for k, v in sizing.items() if k not in ("analytical", "minimum", "chosen")}
    info["compile_seconds"] = prepared.get("compile_seconds")
    if "fifo_estimate" in prepared:
        info["fifo_estimate"] = prepared["fifo_estimate"]
    result = DataflowResult(
        status="passed",
        images=len(x_hw),
        run_seconds=round(sim.seconds, 2),
        fork_joins=[g.name for g in design.groups],
        fifos=fifo_rows(design, sizing, sim),
        sizing=info,
    )
    if sim.status in ("deadlock", "timeout"):
        diagnosis = describe_failure(design, sim)
        atomic_write_json(ctx.path(DATAFLOW_FILE), {**result.to_dict(), "status": sim.status, "diagnosis": diagnosis})
        raise DeadlockError(
            f"the dataflow simulation of {project} failed: {diagnosis['message']}. Deepen those FIFOs "
            f"(dataflow.size=true sizes them; hls.fifo_depth=full is hls4ml's whole-image depth). "
            f"Details: {ctx.path(DATAFLOW_FILE)}"
        )
    if not sim.ok:
        raise ToolError(f"the dataflow simulation of {project} did not run: {sim.reason}")
    lib = load_library(project, conv.project_name, design.n_in, design.n_out)
    reference = lib.run(x_hw, desc="csim")
    result.bit_exact = bool(sim.outputs is not None and np.array_equal(sim.outputs, reference))
    atomic_write_json(ctx.path(DATAFLOW_FILE), result.to_dict())
    if not result.bit_exact:
        differ = int((sim.outputs != reference).any(axis=1).sum()) if sim.outputs is not None else len(x_hw)
        raise VerificationError(
            f"the dataflow simulation of {project} ran, but {differ}/{len(x_hw)} images differ from the C "
            f"simulation's outputs: a process depends on the order of stream operations. Details: "
            f"{ctx.path(DATAFLOW_FILE)}"
        )
    log.info(
        "dataflow: %d images back to back in %.2f s, no deadlock, bit-exact with csim; fork/joins: %s",
        result.images,
        sim.seconds,
        ", ".join(result.fork_joins) or "none",
    )
    return result
