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


@dataclass
class StructureResult(StepResult):
    arch: dict[str, Any]  # the narrower architecture every later step builds
    accuracy: float
    loss: float
    structure: dict  # report section: MACs/params before and after, per-layer rows, markdown
    history: list[dict] = field(default_factory=list)


@dataclass
class PruneResult(StepResult):
    accuracy: float
    loss: float
    total: int
    active: int
    layers: list[dict]
    history: list[dict] = field(default_factory=list)


@dataclass
class ShareResult(StepResult):
    accuracy: float
    loss: float
    accuracy_before_finetune: float
    layers: list[dict]
    history: list[dict] = field(default_factory=list)


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
class SynthResult(StepResult):
    resources: dict  # source "vivado" or "vitis"
    latency: dict
    reports: dict
    project: str = ""


@dataclass
class ReportResult(StepResult):
    report: str
    plots: list[str]


RESULT_TYPES: dict[str, type[StepResult]] = {
    "train": TrainResult,
    "structure": StructureResult,
    "prune": PruneResult,
    "share": ShareResult,
    "encode": EncodeResult,
    "qat": QATResult,
    "export": ExportResult,
    "convert": ConvertResult,
    "csim": CSimResult,
    "synth": SynthResult,
    "report": ReportResult,
}


@dataclass
class Results:
    """The results of the steps that ran (or were reused) in this build, in step order."""

    train: TrainResult | None = None
    structure: StructureResult | None = None
    prune: PruneResult | None = None
    share: ShareResult | None = None
    encode: EncodeResult | None = None
    qat: QATResult | None = None
    export: ExportResult | None = None
    convert: ConvertResult | None = None
    csim: CSimResult | None = None
    synth: SynthResult | None = None
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
