"""The named step lists of a build (FINN's builder style), in one place.

`STEP_LOOKUP` maps each step name to its `Step` (function, result type, config sections, outputs);
named lists say which steps a kind of build runs, and `steps_for(cfg)` picks the list a config asks
for. A step's function is `run(ctx) -> <Step>Result` in `flows/steps/<name>.py`.

    FLOAT_STEPS        train -> qat -> export -> convert -> csim -> report
    STRUCTURED_STEPS   train -> structure -> ...
    COMPRESSED_STEPS   train -> [structure] -> prune -> share -> encode -> qat -> ...
    (+ dataflow after csim for io_stream builds unless dataflow.enabled is false;
    + synth before report with --synth; on PYNQ boards, i.e. the VivadoAccelerator backend: + bitstream
    with --bitstream, then deploy, before report)
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from flows.atomic import hash_path
from flows.boards import load_board
from flows.config import BuildConfig
from flows.context import (
    BITSTREAM_DIR,
    BUNDLE_FILE,
    CSIM_DIR,
    CSIM_FILE,
    DATAFLOW_FILE,
    DEPLOY_DIR,
    FLOAT_CKPT,
    PLOTS_DIR,
    PRUNED_CKPT,
    QAT_CKPT,
    QONNX_FILE,
    REPORT_JSON,
    REPORT_MD,
    SHARED_CKPT,
    STRUCTURED_CKPT,
    SYNTH_DIR,
    BuildContext,
)
from flows.convert import PROJECT_DIR
from flows.dataflow import runtime_digest
from flows.deploy import bitstream_tools
from flows.errors import UsageError
from flows.pipeline import Step
from flows.results import RESULT_TYPES
from flows.steps import (
    bitstream,
    convert,
    csim,
    dataflow,
    deploy,
    encode,
    export,
    onnx_csim,
    onnx_import,
    prune,
    qat,
    report,
    search,
    share,
    structure,
    synth,
    train,
)
from models import is_model_file

# steps whose artifacts belong to their build folder (hls4ml compiles the project's absolute path into its
# library): never shared between build folders through a step cache (flows/stepcache.py)
FOLDER_BOUND_STEPS = ("convert", "csim", "dataflow", "synth", "bitstream", "deploy", "report")


def _step(name, module, config_keys, outputs, description, inputs=None) -> Step:
    return Step(
        name,
        module.run,
        RESULT_TYPES[name],
        tuple(config_keys),
        tuple(outputs),
        description,
        inputs,
        shared=name not in FOLDER_BOUND_STEPS,
    )


def project_location(ctx: BuildContext) -> str:
    """hls4ml's C simulation reads its weights from the project's absolute path: a moved or copied
    build folder converts (and compiles) again instead of running a library that points elsewhere."""
    return str(ctx.path(PROJECT_DIR).resolve())


def convert_inputs(ctx: BuildContext) -> dict:
    """The project's location (above) and the dataflow settings the FIFO sizing at conversion reads."""
    df = ctx.cfg.dataflow
    sizing = {"enabled": df.enabled, "size": df.size, "margin": df.margin, "min_depth": df.min_depth}
    return {"project": project_location(ctx), "fifo_sizing": sizing, "dataflow_runtime": runtime_digest()}


def data_fingerprint(ctx: BuildContext) -> str:
    """The training data's content hash (and a --weights file's): changed data or weights retrain."""
    weights = ctx.cfg.train.weights
    if weights and Path(weights).is_file():
        return ctx.data.fingerprint() + ":" + hash_path(Path(weights))
    return ctx.data.fingerprint()


def model_file_hash(ctx: BuildContext) -> str:
    """An imported model file's content hash: a changed .onnx file is imported again."""
    return hash_path(Path(ctx.cfg.model))


def missing_bitstream_tools(ctx: BuildContext) -> list[str]:
    """A bitstream skipped for want of Vivado is built once the tools are installed."""
    return bitstream_tools()


STEP_LOOKUP: dict[str, Step] = {
    s.name: s
    for s in (
        _step(
            "train",
            train,
            ("model", "arch", "seed", "data", "train"),
            (FLOAT_CKPT,),
            "float pre-training",
            inputs=data_fingerprint,
        ),
        replace(
            _step(
                "search",
                search,
                ("search", "structure", "compress", "quant", "train", "hls", "board"),
                (search.SEARCH_FILE,),
                "sensitivity analysis, compression chosen for the accuracy budget (--max-accuracy-drop)",
            ),
            apply=search.apply,
        ),
        _step(
            "structure",
            structure,
            ("structure",),
            (STRUCTURED_CKPT,),
            "channel pruning (dependency-aware) and fine-tuning",
        ),
        _step("prune", prune, ("compress",), (PRUNED_CKPT,), "magnitude pruning with retraining"),
        _step("share", share, ("compress",), (SHARED_CKPT,), "k-means weight sharing, centroid fine-tuning"),
        _step("encode", encode, ("compress",), (BUNDLE_FILE,), "sparse + Huffman model.bundle"),
        _step("qat", qat, ("quant", "train"), (QAT_CKPT,), "Brevitas quantization-aware training"),
        _step("export", export, (), (QONNX_FILE,), "QONNX export, channels-last, verified"),
        _step(
            "convert",
            convert,
            ("hls", "board"),
            (PROJECT_DIR,),
            "hls4ml project, fit to the board, g++ library",
            inputs=convert_inputs,
        ),
        _step("csim", csim, ("csim",), (CSIM_FILE, CSIM_DIR), "C simulation and bit-exact parity"),
        _step(
            "dataflow",
            dataflow,
            ("dataflow",),
            (DATAFLOW_FILE,),
            "concurrent bounded-FIFO simulation: no deadlock, bit-exact",
        ),
        _step("synth", synth, ("hls",), (SYNTH_DIR,), "Vivado/Vitis HLS synthesis"),
        _step(
            "bitstream",
            bitstream,
            ("hls",),
            (BITSTREAM_DIR,),
            "Vivado HLS IP export and Vivado block design to a .bit + .hwh",
            inputs=missing_bitstream_tools,
        ),
        _step("deploy", deploy, ("csim",), (DEPLOY_DIR,), "deploy/: test data, run_on_board.py, overlay"),
        _step("report", report, (), (REPORT_JSON, REPORT_MD, PLOTS_DIR), "report.json / report.md / plots"),
    )
}

HARDWARE_STEPS = ("qat", "export", "convert", "csim")
FLOAT_STEPS = ("train", *HARDWARE_STEPS, "report")
STRUCTURED_STEPS = ("train", "structure", *HARDWARE_STEPS, "report")
COMPRESSED_STEPS = ("train", "prune", "share", "encode", *HARDWARE_STEPS, "report")
STRUCTURED_COMPRESSED_STEPS = ("train", "structure", "prune", "share", "encode", *HARDWARE_STEPS, "report")
# a user's QONNX file as MODEL: no training; the file is imported in place of the export (flows/steps/onnx_import.py)
# and the C simulation is checked against QONNX execution of it (flows/steps/onnx_csim.py)
ONNX_STEPS = ("export", "convert", "csim", "report")
ONNX_STEP_LOOKUP: dict[str, Step] = {
    "export": _step(
        "export",
        onnx_import,
        ("model", "data"),
        (QONNX_FILE,),
        "QONNX file import, channels-last, checked",
        inputs=model_file_hash,
    ),
    "csim": _step("csim", onnx_csim, ("csim",), (CSIM_FILE,), "C simulation vs QONNX execution, bit-exact"),
}
NAMED_STEP_LISTS = {
    "onnx": ONNX_STEPS,
    "float": FLOAT_STEPS,
    "structured": STRUCTURED_STEPS,
    "compressed": COMPRESSED_STEPS,
    "structured+compressed": STRUCTURED_COMPRESSED_STEPS,
}


def step_names_for(cfg: BuildConfig) -> list[str]:
    """The step names a config runs: the named list for its structure/compress switches, then the
    compression sub-steps it turns off removed and synthesis added when asked for."""
    if is_model_file(cfg.model):
        return list(ONNX_STEPS)
    searched = cfg.search.max_accuracy_drop is not None  # the search turns compression on (flows/steps/search.py)
    key = {(False, False): "float", (True, False): "structured", (False, True): "compressed"}.get(
        (cfg.structure.enabled, cfg.compress.enabled or searched), "structured+compressed"
    )
    names = list(NAMED_STEP_LISTS[key])
    if searched:
        names.insert(names.index("train") + 1, "search")
    if cfg.compress.enabled and not searched:
        names = [n for n in names if (n != "prune" or cfg.compress.prune) and (n != "share" or cfg.compress.share)]
    if cfg.hls.io_type == "io_stream" and cfg.dataflow.enabled:
        names.insert(names.index("csim") + 1, "dataflow")
    if cfg.hls.synth:
        names.insert(names.index("report"), "synth")
    pynq = load_board(cfg.board).backend == "VivadoAccelerator"
    if cfg.hls.bitstream and not pynq:
        raise UsageError(
            f"--bitstream builds PYNQ overlays (VivadoAccelerator boards such as pynq-z2); {cfg.board} has the "
            f"{load_board(cfg.board).backend} backend: drop --bitstream, or use --synth for its HLS IP"
        )
    if pynq:
        names[names.index("report") : names.index("report")] = ["bitstream"] * cfg.hls.bitstream + ["deploy"]
    return names


def steps_for(cfg: BuildConfig) -> list[Step]:
    """The ordered steps of a build."""
    lookup = {**STEP_LOOKUP, **ONNX_STEP_LOOKUP} if is_model_file(cfg.model) else STEP_LOOKUP
    return [lookup[n] for n in step_names_for(cfg)]
