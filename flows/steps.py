"""The build's steps, in order: train -> qat -> export -> convert -> csim -> report.

Each `step_*(build) -> metrics` reads what earlier steps wrote into the build folder, writes its own
artifact (atomically) and returns the figures the report needs. `Build` holds the config, the board,
the build folder and lazily loaded data; `STEPS` is the ordered list `flows/pipeline.py` runs.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from flows.boards import Board
from flows.config import BuildConfig
from flows.data import DataBundle, load_data
from flows.errors import UsageError, VerificationError
from flows.pipeline import Step, atomic_write_bytes, atomic_write_json
from models import build_model, count_weights
from models.quant import QuantSpec

log = logging.getLogger(__name__)

FLOAT_CKPT = "model/float.pt"
STRUCTURED_CKPT = "model/structured.pt"
QAT_CKPT = "model/qat.pt"
QONNX_FILE = "model.qonnx.onnx"
CSIM_FILE = "csim.json"


@dataclass
class Build:
    """Everything a step needs: config, board, build folder, data (loaded on first use), metrics."""

    cfg: BuildConfig
    board: Board
    out: Path
    metrics: dict[str, dict] = field(default_factory=dict)
    _data: DataBundle | None = None

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
            )
        return self._data

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
        return self.metrics.get("structure", {}).get("arch") or self.cfg.arch

    @property
    def base_checkpoint(self) -> str:
        """The float weights every later stage starts from (after structured pruning, if it ran)."""
        return STRUCTURED_CKPT if self.cfg.structure.enabled else FLOAT_CKPT

    def new_model(self, quantized: bool = True, arch: dict | None = None) -> torch.nn.Module:
        torch.manual_seed(self.cfg.seed)
        try:
            return build_model(
                self.cfg.model,
                self.quant_spec(quantized),
                self.data.in_shape,
                self.data.num_classes,
                self.arch if arch is None else arch,
            )
        except (ValueError, TypeError) as exc:
            raise UsageError(f"model {self.cfg.model!r} with arch {self.cfg.arch}: {exc}") from None

    def load_model(self, ckpt: str, quantized: bool = True) -> torch.nn.Module:
        model = self.new_model(quantized)
        state = torch.load(self.path(ckpt), map_location="cpu", weights_only=True)
        model.load_state_dict(state)
        model.eval()
        return model


def save_checkpoint(model: torch.nn.Module, path: Path) -> None:
    import io

    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    atomic_write_bytes(path, buf.getvalue())


def weight_layers(model: torch.nn.Module) -> list[tuple[str, torch.nn.Module]]:
    return [(n, m) for n, m in model.named_modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]


def quantized_bytes(model: torch.nn.Module, spec: QuantSpec) -> float:
    """Weights at their QAT bit width plus 32-bit biases."""
    bits = 0
    for _, m in weight_layers(model):
        kind = "conv" if isinstance(m, torch.nn.Conv2d) else "fc"
        bits += m.weight.numel() * spec.bits_for(kind) + (m.bias.numel() * 32 if m.bias is not None else 0)
    return bits / 8


# --------------------------------------------------------------------------------------------- steps


def step_train(build: Build) -> dict:
    """Float pre-training (the reference accuracy and the float32 size).

    A model whose registry entry has `train_arch` (e.g. VGG: {"batch_norm": True}) trains in that
    variant; its batch norms are then folded into the convolutions (models/bn.py), and what is saved
    and evaluated is the BN-free network every later step builds."""
    from flows.train import TrainRecipe, evaluate, set_threads, train
    from models import resolve_model

    set_threads(build.cfg.train.threads)
    t = build.cfg.train
    train_arch = resolve_model(build.cfg.model).train_arch
    model = build.new_model(quantized=False, arch={**build.arch, **train_arch} if train_arch else None)
    history = train(
        model,
        build.data.train,
        TrainRecipe(t.epochs, t.lr, t.batch_size, t.weight_decay, build.cfg.data.augment, build.cfg.seed, "float"),
    )
    if train_arch:
        from models.bn import fold_batchnorm

        before = evaluate(model, build.data.test)["accuracy"]
        state = fold_batchnorm(model)
        model = build.new_model(quantized=False)
        model.load_state_dict(state)
        log.info("folded %s into the weights (accuracy %.4f with it)", train_arch, before)
    result = evaluate(model, build.data.test)
    save_checkpoint(model, build.path(FLOAT_CKPT))
    params = count_weights(model)
    log.info("float model: %d parameters, test accuracy %.4f", params, result["accuracy"])
    return {
        "accuracy": result["accuracy"],
        "loss": result["loss"],
        "params": params,
        "bytes_float": params * 4,
        "history": history,
        "dataset": build.data.source,
        "train_samples": len(build.data.train),
        "test_samples": len(build.data.test),
    }


def step_structure(build: Build) -> dict:
    """Channel pruning by filter norm, dependency-aware (Fire squeeze/expand/Concat), then fine-tuning."""
    from flows.structured import choose_channels, layer_shapes, shrink, structure_markdown, structure_rows
    from flows.train import TrainRecipe, evaluate, set_threads, train

    set_threads(build.cfg.train.threads)
    st, t = build.cfg.structure, build.cfg.train
    model = build.load_model(FLOAT_CKPT, quantized=False)
    if not hasattr(model, "channel_groups"):
        raise UsageError(f"model {build.cfg.model!r} does not declare channel groups; structured pruning needs them")
    before = layer_shapes(model, build.data.in_shape)
    acc_before = evaluate(model, build.data.test)["accuracy"]
    try:
        keep = choose_channels(model, st.ratio, st.ratios, st.min_channels, st.norm)
    except ValueError as exc:
        raise UsageError(f"structure: {exc}") from None
    base_arch = dict(build.cfg.arch)
    small = shrink(model, keep, lambda widths: build.new_model(False, {**base_arch, **widths}))
    arch = {**base_arch, **model.arch_for_widths({k: int(v.numel()) for k, v in keep.items()})}
    arch = json.loads(json.dumps(arch))  # tuples -> lists: what config.json and the cache hold
    acc_pruned = evaluate(small, build.data.test)["accuracy"]
    recipe = TrainRecipe(
        st.epochs, st.lr, t.batch_size, t.weight_decay, build.cfg.data.augment, build.cfg.seed + 5, "structure"
    )
    history = train(small, build.data.train, recipe)
    result = evaluate(small, build.data.test)
    save_checkpoint(small, build.path(STRUCTURED_CKPT))
    after = layer_shapes(small, build.data.in_shape)
    section = {
        "params_before": sum(r.params for r in before),
        "params_after": sum(r.params for r in after),
        "macs_before": sum(r.macs for r in before),
        "macs_after": sum(r.macs for r in after),
        "accuracy_before": acc_before,
        "accuracy_pruned": acc_pruned,
        "accuracy_after": result["accuracy"],
        "epochs": st.epochs,
        "ratio": st.ratio,
        "arch": arch,
        "layers": structure_rows(before, after),
    }
    section["markdown"] = structure_markdown(section)
    log.info(
        "structured pruning: MACs %d -> %d, parameters %d -> %d, accuracy %.4f -> %.4f",
        section["macs_before"],
        section["macs_after"],
        section["params_before"],
        section["params_after"],
        acc_before,
        result["accuracy"],
    )
    return {
        "arch": arch,
        "accuracy": result["accuracy"],
        "loss": result["loss"],
        "history": history,
        "structure": section,
    }


def step_qat(build: Build) -> dict:
    """Quantization-aware fine-tuning (Brevitas) from the float (or pruned/shared) weights; zeros stay zero."""
    from flows.compress import compressed_source, masks_from_zeros
    from flows.train import TrainRecipe, evaluate, set_threads, train

    set_threads(build.cfg.train.threads)
    t = build.cfg.train
    model = build.new_model(quantized=True)
    source = compressed_source(build)
    state = torch.load(build.path(source), map_location="cpu", weights_only=True)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or any(not _is_quantizer_state(k) for k in missing):
        raise VerificationError(
            f"{source} does not match the quantized model: missing {missing}, unexpected {unexpected}"
        )
    masks = masks_from_zeros(model) if source != build.base_checkpoint else None
    _calibrate(model, build)
    recipe = TrainRecipe(
        t.qat_epochs, t.qat_lr, t.batch_size, t.weight_decay, build.cfg.data.augment, build.cfg.seed + 1, "qat"
    )
    history = train(model, build.data.train, recipe, masks=masks)
    result = evaluate(model, build.data.test)
    save_checkpoint(model, build.path(QAT_CKPT))
    spec = build.quant_spec()
    layers = hardware_weight_stats(model, spec)
    log.info("quantized model: test accuracy %.4f", result["accuracy"])
    active = sum(lay["active"] for lay in layers)
    return {
        "accuracy": result["accuracy"],
        "loss": result["loss"],
        "history": history,
        "source": source,
        "bytes_quantized": quantized_bytes(model, spec),
        "active_weights": active,
        "layers": layers,
        "weight_bits": {"conv": spec.bits_for("conv"), "fc": spec.bits_for("fc")},
        "act_bits": spec.act_bits,
        "input_bits": spec.input_bits,
    }


@torch.no_grad()
def hardware_weight_stats(model: torch.nn.Module, spec: QuantSpec) -> list[dict]:
    """Per layer: the weights the hardware gets (Brevitas-quantized), their distinct values and zeros.

    A b-bit layer may hold at most 2^b distinct values (the weight-sharing width); anything else
    means the quantizer is not what the report claims, so it fails loudly.
    """
    model.eval()
    rows = []
    for name, m in weight_layers(model):
        kind = "conv" if isinstance(m, torch.nn.Conv2d) else "fc"
        qw = m.quant_weight().value if hasattr(m, "quant_weight") else m.weight
        bits = spec.bits_for(kind)
        distinct = int(torch.unique(qw).numel())
        if distinct > 2**bits:
            raise VerificationError(f"layer {name}: {distinct} distinct quantized weights > 2^{bits}")
        rows.append(
            {
                "name": name,
                "kind": kind,
                "bits": bits,
                "distinct_values": distinct,
                "total": int(qw.numel()),
                "active": int((qw != 0).sum()),
                "bias": int(m.bias.numel()) if m.bias is not None else 0,
            }
        )
    return rows


def _is_quantizer_state(key: str) -> bool:
    return "act_quant" in key or "weight_quant" in key or "bias_quant" in key


@torch.no_grad()
def _calibrate(model: torch.nn.Module, build: Build, batches: int = 8) -> None:
    """Initialise activation scales from real data before QAT (Brevitas collects runtime stats)."""
    model.train()
    data = build.data.train
    for i in range(min(batches, -(-len(data) // 128))):  # small data sets: as many batches as there are
        model(data.float_images(slice(i * 128, (i + 1) * 128)))
    model.eval()


def step_export(build: Build) -> dict:
    """QONNX export, cleanup, channels-last incl. Concat; verified against PyTorch on real inputs."""
    from flows.export import export_model, model_input_shape, quantize_inputs, to_hw_layout, verify_qonnx

    model = build.load_model(QAT_CKPT)
    shape = model_input_shape(model, build.data.in_shape)
    wrapper = export_model(model, shape, build.path(QONNX_FILE))
    sample = build.data.test.head(8)  # qonnx executes one image at a time; csim checks them all later
    xq = quantize_inputs(model, sample.float_images().double())
    ref = _reference_logits(model, xq)
    check = verify_qonnx(wrapper, to_hw_layout(xq.numpy(), shape), ref)
    ops: dict[str, int] = {}
    for node in wrapper.graph.node:
        ops[node.op_type] = ops.get(node.op_type, 0) + 1
    return {"input_shape": list(shape), "ops": ops, "transposes": ops.get("Transpose", 0), "verify": check}


def _reference_logits(model: torch.nn.Module, xq: torch.Tensor) -> np.ndarray:
    """The quantized PyTorch model in float64 (exact fixed-point arithmetic) on quantized inputs."""
    model = model.double().eval()
    with torch.no_grad():
        out = model(xq.double())
    out = out.value if hasattr(out, "value") else out
    model.float()
    return out.numpy()


def step_convert(build: Build) -> dict:
    """hls4ml project for the board; the estimate decides reuse factors when the design does not fit."""
    from dataclasses import replace

    from qonnx.core.modelwrapper import ModelWrapper

    from flows.convert import PROJECT_DIR, convert, layer_table, resolve_settings
    from flows.hardware import estimate_model, estimate_sections, fit_design

    cfg, board = build.cfg, build.board
    wrapper = ModelWrapper(str(build.path(QONNX_FILE)))
    settings = resolve_settings(cfg.hls, board)
    pipelined = board.backend == "VivadoAccelerator" and cfg.hls.pipeline_axi

    def convert_fn(io_type: str, layer_settings: dict):
        hls = replace(cfg.hls, io_type=io_type)
        return convert(wrapper, build.out, hls, cfg.quant, board, write=False, layer_settings=layer_settings)[0]

    target_ii = None
    if cfg.hls.target_images_per_second:
        target_ii = max(1, int(1e9 / (cfg.hls.target_images_per_second * settings.clock_period_ns)))
    outcome = fit_design(
        convert_fn,
        board,
        settings.clock_period_ns,
        cfg.hls.io_type,
        pipelined,
        cfg.hls.fit,
        objective=cfg.hls.objective,
        target_ii=target_ii,
        pinned=tuple(cfg.hls.layer_reuse),
    )
    hls = replace(cfg.hls, io_type=outcome.io_type)
    hls_model, _ = convert(wrapper, build.out, hls, cfg.quant, board, layer_settings=outcome.layer_settings)
    _, est = estimate_model(hls_model, board, settings.clock_period_ns, outcome.io_type, pipelined)
    resources, latency = estimate_sections(est, board)
    resources["fit"] = {
        "searched": outcome.searched,
        "explanation": outcome.explanation,
        "layer_settings": outcome.layer_settings,
    }
    log.info(
        "estimate: LUT %.0f, FF %.0f, DSP %.0f, BRAM36 %.1f; II %d cycles = %.0f images/s",
        resources["LUT"],
        resources["FF"],
        resources["DSP"],
        resources["BRAM36"],
        latency["ii"],
        latency["images_per_second"] or 0,
    )
    return {
        "project": PROJECT_DIR,
        "settings": {**vars(settings), "io_type": outcome.io_type},
        "layers": layer_table(hls_model),
        "resources": resources,
        "latency": latency,
    }


def step_synth(build: Build) -> dict:
    """Vivado/Vitis HLS C synthesis of the project (only with --synth); real resources and latency."""
    from flows.convert import PROJECT_DIR
    from flows.hardware import latency_section, resources_section, run_synthesis, synthesis_figures

    reports = run_synthesis(build.path(PROJECT_DIR), build.board.backend, vsynth=build.cfg.hls.vsynth)
    top = synthesis_figures(reports, build.cfg.hls.project_name)
    source = top["tool"]
    figures = {"LUT": top["lut"], "FF": top["ff"], "DSP": top["dsp"], "BRAM36": top["bram36"], "URAM": top["uram"]}
    resources = resources_section(figures, source, build.board)
    resources["report"] = top.get("file")
    clock = top.get("target_clock_ns") or build.board.clock_period_ns
    latency = latency_section(top["latency_max"] or 0, top["interval_max"] or 0, clock, source)
    return {"resources": resources, "latency": latency, "reports": reports}


def step_csim(build: Build) -> dict:
    """g++ C simulation of the whole test set; bit-exact parity with the quantized PyTorch model."""
    from flows.convert import PROJECT_DIR
    from flows.csim import CSimLibrary, compare, compile_project
    from flows.export import model_input_shape, quantize_inputs, to_hw_layout

    cfg = build.cfg
    project = build.path(PROJECT_DIR)
    t0 = time.perf_counter()
    lib_path = compile_project(project, cfg.hls.project_name)
    compile_s = time.perf_counter() - t0
    model = build.load_model(QAT_CKPT)
    shape = model_input_shape(model, build.data.in_shape)
    test = build.data.test.head(cfg.csim.samples)
    xq = quantize_inputs(model, test.float_images().double())
    reference = _reference_logits(model, xq)
    x_hw = to_hw_layout(xq.numpy(), shape)
    lib = CSimLibrary(lib_path, cfg.hls.project_name, int(np.prod(shape)), reference.shape[1])
    t1 = time.perf_counter()
    out = lib.run(x_hw)
    run_s = time.perf_counter() - t1
    parity = compare(out, reference)
    labels = test.labels.numpy()
    result = {
        "samples": parity.samples,
        "parity": parity.to_dict(),
        "accuracy_csim": float((out.argmax(1) == labels).mean()),
        "accuracy_reference": float((reference.argmax(1) == labels).mean()),
        "compile_seconds": round(compile_s, 2),
        "run_seconds": round(run_s, 2),
        "images_per_second_csim": round(parity.samples / max(run_s, 1e-9), 1),
    }
    _write_testbench(project, x_hw[: cfg.csim.tb_samples], out[: cfg.csim.tb_samples])
    if not parity.exact:
        result["diagnosis"] = _diagnose(build, x_hw[parity.mismatched_samples[: cfg.csim.diagnose_samples]])
        atomic_write_json(build.path(CSIM_FILE), result)
        where = result["diagnosis"].get("message", "no single layer found")
        n_bad = len(parity.mismatched_samples)
        raise VerificationError(
            f"C simulation disagrees with the quantized PyTorch model: {n_bad}/{parity.samples} images differ "
            f"(argmax agreement {parity.argmax_agreement:.4f}, max |diff| "
            f"{parity.max_abs_diff:.3g}); {where}. Details: {build.path(CSIM_FILE)}"
        )
    atomic_write_json(build.path(CSIM_FILE), result)
    log.info(
        "csim: %d images, bit-exact %.4f, argmax agreement %.4f, accuracy %.4f",
        parity.samples,
        parity.bit_exact_fraction,
        parity.argmax_agreement,
        result["accuracy_csim"],
    )
    return result


def _write_testbench(project: Path, x: np.ndarray, y: np.ndarray) -> None:
    """hls4ml's C/RTL testbench reads tb_data/tb_input_features.dat and tb_output_predictions.dat."""
    tb = project / "tb_data"
    tb.mkdir(exist_ok=True)
    fmt = lambda a: "\n".join(" ".join(repr(float(v)) for v in row) for row in a.reshape(len(a), -1)) + "\n"  # noqa: E731
    atomic_write_bytes(tb / "tb_input_features.dat", fmt(x).encode())
    atomic_write_bytes(tb / "tb_output_predictions.dat", fmt(y).encode())


def _diagnose(build: Build, x_hw: np.ndarray) -> dict:
    from qonnx.core.modelwrapper import ModelWrapper

    from flows.convert import convert
    from flows.csim import diagnose

    try:
        wrapper = ModelWrapper(str(build.path(QONNX_FILE)))
        hls_model, _ = convert(wrapper, build.out, build.cfg.hls, build.cfg.quant, build.board, write=False, trace=True)
        found = diagnose(wrapper, hls_model, x_hw, build.path("csim_debug"))
    except Exception as exc:  # the diagnosis must not hide the mismatch itself
        log.warning("layer-by-layer diagnosis failed: %s", exc)
        return {"message": f"layer-by-layer diagnosis failed ({exc})"}
    if found is None:
        return {"message": "every traced layer matches QONNX; the difference is in the output conversion"}
    return {"message": found.describe(), **vars(found)}


def step_report(build: Build) -> dict:
    """report.json and report.md in the build folder (see flows/reporting.py)."""
    from flows.reporting import write_report

    return write_report(build)


def steps_for(cfg: BuildConfig) -> list[Step]:
    """The ordered steps of a build; the Deep Compression steps only when `compress.enabled`."""
    from flows.compress import BUNDLE_FILE, PRUNED_CKPT, SHARED_CKPT, step_encode, step_prune, step_share

    steps = [
        Step(
            "train",
            step_train,
            ("model", "arch", "seed", "data", "train"),
            (FLOAT_CKPT,),
            description="float pre-training",
        )
    ]
    if cfg.structure.enabled:
        steps.append(
            Step(
                "structure",
                step_structure,
                ("structure",),
                (STRUCTURED_CKPT,),
                description="channel pruning (dependency-aware) and fine-tuning",
            )
        )
    if cfg.compress.enabled:
        if cfg.compress.prune:
            steps.append(
                Step(
                    "prune", step_prune, ("compress",), (PRUNED_CKPT,), description="magnitude pruning with retraining"
                )
            )
        if cfg.compress.share:
            steps.append(
                Step(
                    "share",
                    step_share,
                    ("compress",),
                    (SHARED_CKPT,),
                    description="k-means weight sharing, centroid fine-tuning",
                )
            )
        steps.append(
            Step("encode", step_encode, ("compress",), (BUNDLE_FILE,), description="sparse + Huffman model.bundle")
        )
    steps += [
        Step("qat", step_qat, ("quant", "train"), (QAT_CKPT,), description="Brevitas quantization-aware training"),
        Step("export", step_export, (), (QONNX_FILE,), description="QONNX export, channels-last, verified"),
        Step("convert", step_convert, ("hls", "board"), ("hls4ml_prj",), description="hls4ml project"),
        Step("csim", step_csim, ("csim",), (CSIM_FILE,), description="g++ C simulation and parity"),
    ]
    if cfg.hls.synth:
        steps.append(Step("synth", step_synth, ("hls",), (), description="Vivado/Vitis HLS synthesis"))
    steps.append(Step("report", step_report, (), ("report.json", "report.md"), description="report.json / report.md"))
    return steps


STEPS: list[Step] = steps_for(BuildConfig(model="lenet5_fire"))  # the default step list (for --list)
