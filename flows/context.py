"""The build context every step receives, and the layout of the build folder.

`BuildContext` holds the validated config, the board, the build folder, the typed results of the
steps that ran before (`flows/results.py`) and the data set (loaded on first use). It builds and loads
the model the config names; it never decides anything a step should decide.

Build folder (the top-level names are a public interface; each step owns its outputs):

    config.json, steps.json        the config; per step: status, seconds, hashes, result
    model/float.pt ...             checkpoints (train, structure, prune, share, qat)
    model.bundle                   encode: sparse + Huffman compressed weights
    model.qonnx.onnx               export: the cleaned channels-last QONNX graph
    hls4ml_prj/ (flows.convert.PROJECT_DIR) convert: the hls4ml project and its compiled C-simulation library
    csim.json, csim/               csim: parity figures, testbench data, diagnosis traces
    synth/                         synth: a synthesized copy of the project (with --synth)
    bitstream/                     bitstream: the Vivado block-design project (with --bitstream, PYNQ boards)
    deploy/                        deploy (PYNQ boards): test data, run_on_board.py, the overlay if built
    build.log                      the full DEBUG log of every run, with the traceback of a failure
    metrics.csv                    one row per epoch of every training stage (flows/metrics.py)
    tensorboard/                   the same as TensorBoard event files (with --tensorboard)
    report.json, report.md, plots/ report
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch

from flows.atomic import atomic_write_bytes
from flows.boards import Board
from flows.byo.adapt import adapt, check_structure, route_of
from flows.byo.channels import WIDTHS_KEY, PlainChannels, infer_groups, narrow
from flows.config import BuildConfig
from flows.data import DataBundle, load_data
from flows.device import resolve_device
from flows.errors import UsageError, VerificationError
from flows.results import Results
from models import MODELS, build_model
from models.quant import QuantSpec

log = logging.getLogger(__name__)

FLOAT_CKPT = "model/float.pt"
STRUCTURED_CKPT = "model/structured.pt"
PRUNED_CKPT = "model/pruned.pt"
SHARED_CKPT = "model/shared.pt"
QAT_CKPT = "model/qat.pt"
BUNDLE_FILE = "model.bundle"
QONNX_FILE = "model.qonnx.onnx"
CSIM_FILE = "csim.json"
CSIM_DIR = "csim"
DATAFLOW_FILE = "dataflow.json"  # the dataflow step's check (and a deadlock's diagnosis)
SYNTH_DIR = "synth"
BITSTREAM_DIR = "bitstream"
DEPLOY_DIR = "deploy"
REPORT_JSON = "report.json"
REPORT_MD = "report.md"
PLOTS_DIR = "plots"


@dataclass
class BuildContext:
    """Config, board, build folder, results so far, and the data (loaded on first use)."""

    cfg: BuildConfig
    board: Board
    out: Path
    results: Results = field(default_factory=Results)
    tmp: Path | None = None  # the running step's scratch folder (set by flows/pipeline.py)
    _data: DataBundle | None = None
    _route: str | None = None
    _device: torch.device | None = None

    @property
    def data(self) -> DataBundle:
        if self._data is None:
            d = self.cfg.data
            self._data = load_data(
                d.dataset,
                d.data_dir,
                d.cache_dir,
                d.download,
                d.max_train,
                d.max_test,
                seed=self.cfg.seed,
                verify=d.verify_md5,
                val_fraction=d.val_fraction,
                val_size=d.val_size,
                val_seed=d.val_seed,
                image_size=d.image_size,
                channels=d.channels,
                test_fraction=d.test_fraction,
            )
        return self._data

    @property
    def device(self) -> torch.device:
        """Where training and evaluation run (`train.device`; export and C simulation stay on the CPU)."""
        if self._device is None:
            self._device = resolve_device(self.cfg.train.device)
        return self._device

    def path(self, rel: str) -> Path:
        return self.out / rel

    def quant_spec(self, enabled: bool = True) -> QuantSpec:
        q = self.cfg.quant
        return QuantSpec(
            weight_bits=q.weight_bits,
            conv_weight_bits=q.conv_weight_bits,
            fc_weight_bits=q.fc_weight_bits,
            act_bits=q.act_bits,
            input_bits=q.input_bits,
            enabled=enabled,
        )

    @property
    def arch(self) -> dict:
        """The architecture knobs in force: the config's, or the narrower one structured pruning chose."""
        return self.results.structure.arch if self.results.structure else self.cfg.arch

    @property
    def base_checkpoint(self) -> str:
        """The float weights every later stage starts from (after structured pruning, if it ran)."""
        return STRUCTURED_CKPT if self.cfg.structure.enabled else FLOAT_CKPT

    @property
    def compressed_checkpoint(self) -> str:
        """The checkpoint QAT starts from: the last compression stage that ran, else the base model."""
        c = self.cfg.compress
        if c.enabled and c.share:
            return SHARED_CKPT
        if c.enabled and c.prune:
            return PRUNED_CKPT
        return self.base_checkpoint

    def new_model(self, quantized: bool = True, arch: dict | None = None, stage: str | None = None) -> torch.nn.Module:
        """The network of a stage: `train` (as trained), `float` (BatchNorms folded) or `quant` (the hardware
        model; default with `quantized`). A user's plain or foreign network is adapted (flows/byo/adapt.py)."""
        stage = stage or ("quant" if quantized else "float")
        model = self._build(stage == "quant", arch)
        model, _ = adapt(model, self.route, stage, self.quant_spec(), self.data.in_shape, self.cfg.model)
        return model

    @property
    def route(self) -> str:
        """`own` (a registry network), `plain` (no quantizers: the flow quantizes it) or `brevitas` (its own)."""
        if self._route is None:
            self._route = "own" if self.cfg.model in MODELS else route_of(self._build(True, None))
        return self._route

    def conversions(self) -> list[str]:
        """What adapting the user's network to the hardware route changed (every stage), one line each;
        raises UsageError for what cannot be made bit-exact: the pre-training check."""
        notes: list[str] = []
        for stage in ("train", "quant"):
            model = self._build(stage == "quant", None)
            _, lines = adapt(model, self.route, stage, self.quant_spec(), self.data.in_shape, self.cfg.model)
            notes += [line for line in lines if line not in notes]
        if self.cfg.structure.enabled:  # refused here, before training, not in the structure step
            raw = self._build(False, self.cfg.arch) if self.route == "plain" else None
            check_structure(self.new_model(quantized=False), self.route, self.cfg.model, raw, self.data.in_shape)
        return notes

    def channel_declaration(self, model: torch.nn.Module):
        """Where structured pruning reads `channel_groups()`/`arch_for_widths()`: the network itself (registry and
        declaring Brevitas networks), or a plain network's groups inferred from its graph (flows/byo/channels.py)."""
        if self.route != "plain":
            return model
        return PlainChannels(infer_groups(self._build(False, self.cfg.arch), self.data.in_shape, self.cfg.model))

    def _build(self, quantized: bool, arch: dict | None) -> torch.nn.Module:
        torch.manual_seed(self.cfg.seed)
        arch = self.arch if arch is None else arch
        # a plain network narrowed by structured pruning: built as written, then cut to the recorded widths
        widths = arch.get(WIDTHS_KEY) if self.cfg.model not in MODELS else None
        if widths is not None:
            arch = {k: v for k, v in arch.items() if k != WIDTHS_KEY}
        try:
            model = build_model(
                self.cfg.model,
                self.quant_spec(quantized),
                self.data.in_shape,
                self.data.num_classes,
                arch,
            )
        except (ValueError, TypeError) as exc:
            raise UsageError(f"model {self.cfg.model!r} with arch {self.cfg.arch}: {exc}") from None
        return model if widths is None else narrow(model, widths, self.data.in_shape, self.cfg.model)

    def load_state(self, ckpt: str) -> dict:
        """A checkpoint of this build as a state dict (tensors only: `weights_only`, nothing executes)."""
        path = self.path(ckpt)
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except FileNotFoundError:
            raise VerificationError(f"{path} is missing; rerun with --force {_step_of(ckpt)}") from None
        except Exception as exc:  # truncated, random or foreign bytes: torch raises many kinds
            raise VerificationError(
                f"{path} is not a readable checkpoint ({type(exc).__name__}); rerun with --force {_step_of(ckpt)}"
            ) from None

    def load_model(self, ckpt: str, quantized: bool = True) -> torch.nn.Module:
        model = self.new_model(quantized)
        try:
            model.load_state_dict(self.load_state(ckpt))
        except RuntimeError as exc:
            raise VerificationError(
                f"{self.path(ckpt)} does not match model {self.cfg.model!r} ({str(exc).splitlines()[0]}); "
                f"rerun with --force {_step_of(ckpt)}"
            ) from None
        model.eval()
        return model

    def save_checkpoint(self, model: torch.nn.Module, ckpt: str) -> None:
        buf = io.BytesIO()
        torch.save(model.state_dict(), buf)
        atomic_write_bytes(self.path(ckpt), buf.getvalue())


def _step_of(ckpt: str) -> str:
    return {
        FLOAT_CKPT: "train",
        STRUCTURED_CKPT: "structure",
        PRUNED_CKPT: "prune",
        SHARED_CKPT: "share",
        QAT_CKPT: "qat",
    }.get(ckpt, "train")
