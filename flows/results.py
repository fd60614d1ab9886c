"""What each step hands to the steps after it: one typed result dataclass per step.

Data flows one way: a step reads the config, the build context and the results of earlier steps, and
returns its own result. The step runner stores every result in `steps.json` (the `metrics` field of
its record) and rebuilds it from there when the step is skipped, so later steps and the report read
typed fields, never string keys into a shared dict. Nested tables (per-layer rows, training history)
stay plain JSON lists and dicts.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any


class StepResult:
    """Base of every step result: a dataclass that round-trips through JSON."""

    def to_dict(self) -> dict:
        return asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls, data: dict):
        """Rebuild from `to_dict()`; raises TypeError when the stored fields do not match (older flow)."""
        names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        if not isinstance(data, dict) or set(data) - names:
            raise TypeError(f"{cls.__name__}: stored fields {sorted(data) if isinstance(data, dict) else data!r}")
        return cls(**data)


@dataclass
class TrainResult(StepResult):
    accuracy: float
    loss: float
    params: int
    bytes_float: int
    dataset: str
    train_samples: int
    test_samples: int
    history: list[dict] = field(default_factory=list)
    # the final model on the validation split (None when the split is disabled); what automatic choices use
    val_accuracy: float | None = None
    val_loss: float | None = None
    val_samples: int = 0
    route: str = "own"  # own (a registry network), plain (quantized by the flow) or brevitas (its own quantizers)
    conversions: list[str] = field(default_factory=list)  # what adapting a user's network changed, one line each
    weights: str | None = None  # the weights file loaded instead of float training (--weights)


@dataclass
class SearchResult(StepResult):
    budget_pp: float
    objective: str
    overrides: dict[str, Any]  # the config keys the later steps read instead of the recipe's
    chosen: dict  # the chosen candidate: settings, hardware estimate, fine-tuned validation accuracy
    candidates: list[dict]  # every candidate of the tolerance ladder (mildest first)
    sensitivity: dict  # per layer: accuracy vs density / weight bits; activation bits; structure ratio
    val_float: float  # the float model's validation accuracy (on the analysis samples)
    val_samples: int
    within_budget: bool  # whether the chosen candidate was predicted within the budget
    plot: str = ""  # the sensitivity plot, relative to the build folder


@dataclass
class StructureResult(StepResult):
    arch: dict[str, Any]  # the narrower architecture every later step builds
    accuracy: float
    loss: float
    structure: dict  # report section: MACs/params before and after, per-layer rows, markdown
    history: list[dict] = field(default_factory=list)
    val_accuracy: float | None = None  # the final model on the validation split
    val_loss: float | None = None


@dataclass
class PruneResult(StepResult):
    accuracy: float
    loss: float
    total: int
    active: int
    layers: list[dict]
    history: list[dict] = field(default_factory=list)
    val_accuracy: float | None = None  # the final model on the validation split
    val_loss: float | None = None


@dataclass
class ShareResult(StepResult):
    accuracy: float
    loss: float
    accuracy_before_finetune: float
    layers: list[dict]
    history: list[dict] = field(default_factory=list)
    val_accuracy: float | None = None  # the final model on the validation split
    val_loss: float | None = None


@dataclass
class EncodeResult(StepResult):
    bytes: dict[str, float]
    layers: list[dict]


@dataclass
class QATResult(StepResult):
    accuracy: float
    loss: float
    source: str  # the checkpoint QAT started from
    bytes_quantized: float
    active_weights: int
    layers: list[dict]
    weight_bits: dict[str, int]
    act_bits: int
    input_bits: int
    history: list[dict] = field(default_factory=list)
    val_accuracy: float | None = None  # the final model on the validation split
    val_loss: float | None = None


@dataclass
class ExportResult(StepResult):
    input_shape: list[int]
    ops: dict[str, int]
    transposes: int
    verify: dict


@dataclass
class ConvertResult(StepResult):
    project: str  # relative to the build folder
    backend: str
    part: str
    board: str | None
    io_type: str  # what the fit search chose (it may differ from the config's)
    strategy: str
    clock_period_ns: float
    project_name: str
    layers: list[dict]  # one row per hls4ml layer: class, shape, reuse factor, strategy, types
    resources: dict  # source "estimate"
    latency: dict
    library: str = ""  # the compiled C-simulation library, relative to the build folder
    # per distributed-arithmetic layer: yosys synth_xilinx figures of da4ml's Verilog (source "yosys"),
    # or status "skipped" (no yosys) / "failed" (with the error); never mixed into the estimate
    rtl: dict = field(default_factory=dict)
    # the concurrent dataflow simulation compiled beside the project, and the FIFO sizing it did
    # (flows/dataflow/project.py prepare_dataflow); {} when not io_stream or dataflow.enabled is false
    dataflow: dict = field(default_factory=dict)


@dataclass
class CSimResult(StepResult):
    samples: int
    parity: dict
    accuracy_csim: float
    accuracy_reference: float
    run_seconds: float
    images_per_second_csim: float
    compile_seconds: float | None = None
    diagnosis: dict | None = None


@dataclass
class DataflowResult(StepResult):
    """The concurrent bounded-FIFO simulation's check (flows/dataflow/); a deadlock fails the step (exit 7)."""

    status: str  # "passed" or "skipped"
    images: int = 0  # test images run back to back
    bit_exact: bool | None = None  # outputs identical to the C simulation's
    run_seconds: float = 0.0
    fork_joins: list[str] = field(default_factory=list)
    fifos: list[dict] = field(default_factory=list)  # per stream: depth, analytical, minimum, max_fill, ...
    sizing: dict = field(default_factory=dict)  # margin, min_depth, runs, seconds; FIFO estimate before/after
    reason: str = ""  # why it was skipped


@dataclass
class SynthResult(StepResult):
    resources: dict  # source "vivado" or "vitis"
    latency: dict
    reports: dict
    project: str = ""


@dataclass
class BitstreamResult(StepResult):
    status: str  # "built", or "skipped" (Vivado / Vivado HLS not on PATH; `message` says which)
    message: str = ""
    bit: str = ""  # relative to the build folder
    hwh: str = ""


@dataclass
class DeployResult(StepResult):
    folder: str  # deploy/, relative to the build folder
    images: int
    files: list[str]
    overlay: bool  # the .bit and .hwh are in it
    stream: dict  # the wrapper's AXI stream: N_IN, N_OUT, input and output word types


@dataclass
class ReportResult(StepResult):
    report: str
    plots: list[str]


RESULT_TYPES: dict[str, type[StepResult]] = {
    "train": TrainResult,
    "search": SearchResult,
    "structure": StructureResult,
    "prune": PruneResult,
    "share": ShareResult,
    "encode": EncodeResult,
    "qat": QATResult,
    "export": ExportResult,
    "convert": ConvertResult,
    "csim": CSimResult,
    "dataflow": DataflowResult,
    "synth": SynthResult,
    "bitstream": BitstreamResult,
    "deploy": DeployResult,
    "report": ReportResult,
}


@dataclass
class Results:
    """The results of the steps that ran (or were reused) in this build, in step order."""

    train: TrainResult | None = None
    search: SearchResult | None = None
    structure: StructureResult | None = None
    prune: PruneResult | None = None
    share: ShareResult | None = None
    encode: EncodeResult | None = None
    qat: QATResult | None = None
    export: ExportResult | None = None
    convert: ConvertResult | None = None
    csim: CSimResult | None = None
    dataflow: DataflowResult | None = None
    synth: SynthResult | None = None
    bitstream: BitstreamResult | None = None
    deploy: DeployResult | None = None
    report: ReportResult | None = None

    def set(self, name: str, result: StepResult) -> None:
        if name not in RESULT_TYPES or not isinstance(result, RESULT_TYPES[name]):
            raise TypeError(f"step {name!r} returned {type(result).__name__}")
        setattr(self, name, result)

    def histories(self) -> list[tuple[str, list[dict]]]:
        """(stage, per-epoch history) of every training stage that ran, in order."""
        out = []
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None and getattr(value, "history", None):
                out.append((f.name, value.history))
        return out

    def to_dict(self) -> dict[str, dict]:
        return {f.name: getattr(self, f.name).to_dict() for f in fields(self) if getattr(self, f.name) is not None}
