"""The named step lists of a build (FINN's builder style), in one place.

`STEP_LOOKUP` maps each step name to its `Step` (function, result type, config sections, outputs);
named lists say which steps a kind of build runs, and `steps_for(cfg)` picks the list a config asks
for. A step's function is `run(ctx) -> <Step>Result` in `flows/steps/<name>.py`.

    FLOAT_STEPS        train -> qat -> export -> convert -> csim -> report
    STRUCTURED_STEPS   train -> structure -> ...
    COMPRESSED_STEPS   train -> [structure] -> prune -> share -> encode -> qat -> ...
    (+ synth before report with --synth)
"""

from __future__ import annotations

from flows.config import BuildConfig
from flows.context import (
    BUNDLE_FILE,
    CSIM_DIR,
    CSIM_FILE,
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
from flows.pipeline import Step
from flows.results import RESULT_TYPES
from flows.steps import convert, csim, encode, export, prune, qat, report, share, structure, synth, train


def _step(name, module, config_keys, outputs, description, inputs=None) -> Step:
    return Step(name, module.run, RESULT_TYPES[name], tuple(config_keys), tuple(outputs), description, inputs)


def project_location(ctx: BuildContext) -> str:
    """hls4ml's C simulation reads its weights from the project's absolute path: a moved or copied
    build folder converts (and compiles) again instead of running a library that points elsewhere."""
    return str(ctx.path(PROJECT_DIR).resolve())


def data_fingerprint(ctx: BuildContext) -> str:
    """The training data's content hash: new or changed data files retrain, even with the same config."""
    return ctx.data.fingerprint()


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
            inputs=project_location,
        ),
        _step("csim", csim, ("csim",), (CSIM_FILE, CSIM_DIR), "C simulation and bit-exact parity"),
        _step("synth", synth, ("hls",), (SYNTH_DIR,), "Vivado/Vitis HLS synthesis"),
        _step("report", report, (), (REPORT_JSON, REPORT_MD, PLOTS_DIR), "report.json / report.md / plots"),
    )
}

HARDWARE_STEPS = ("qat", "export", "convert", "csim")
FLOAT_STEPS = ("train", *HARDWARE_STEPS, "report")
STRUCTURED_STEPS = ("train", "structure", *HARDWARE_STEPS, "report")
COMPRESSED_STEPS = ("train", "prune", "share", "encode", *HARDWARE_STEPS, "report")
STRUCTURED_COMPRESSED_STEPS = ("train", "structure", "prune", "share", "encode", *HARDWARE_STEPS, "report")
NAMED_STEP_LISTS = {
    "float": FLOAT_STEPS,
    "structured": STRUCTURED_STEPS,
    "compressed": COMPRESSED_STEPS,
    "structured+compressed": STRUCTURED_COMPRESSED_STEPS,
}


def step_names_for(cfg: BuildConfig) -> list[str]:
    """The step names a config runs: the named list for its structure/compress switches, then the
    compression sub-steps it turns off removed and synthesis added when asked for."""
    key = {(False, False): "float", (True, False): "structured", (False, True): "compressed"}.get(
        (cfg.structure.enabled, cfg.compress.enabled), "structured+compressed"
    )
    names = list(NAMED_STEP_LISTS[key])
    if cfg.compress.enabled:
        names = [n for n in names if (n != "prune" or cfg.compress.prune) and (n != "share" or cfg.compress.share)]
    if cfg.hls.synth:
        names.insert(names.index("report"), "synth")
    return names


def steps_for(cfg: BuildConfig) -> list[Step]:
    """The ordered steps of a build."""
    return [STEP_LOOKUP[n] for n in step_names_for(cfg)]
