"""report.json and report.md: the summary users and their scripts read.

`build_report` collects the report dict from the typed step results (flows/results.py): accuracy per
stage, C-simulation parity, sizes, step timings, and (when the step ran) compression, structure,
resources and latency. The io type, backend, clock and per-layer settings come from the convert
step's result (the fit search may change the io type), never from the config. `render_markdown`
turns it into report.md. The keys of report.json are a public interface: add, never rename.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from flows.boards import Board
from flows.config import BuildConfig
from flows.hardware import synthesis_figures
from flows.hlsreport import csynthesis_report
from flows.pipeline import STEPS_FILE
from flows.reporting.compression import compression_section
from flows.reporting.dataflow import dataflow_section
from flows.reporting.hardware import hardware_markdown
from flows.results import Results


def steps_seconds(out: Path) -> dict[str, float]:
    path = out / STEPS_FILE
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return {name: rec.get("seconds", 0.0) for name, rec in data.get("steps", {}).items() if rec.get("status") == "done"}


def weight_bits(qat) -> dict[str, int]:
    """The weight width per kind (conv, fc) the quantized layers have: the widest layer of each kind (a
    user's network keeps its own widths); the recipe's width for a kind without layers."""
    out = dict(qat.weight_bits)
    for kind in out:
        widths = [row["bits"] for row in qat.layers if row.get("kind") == kind and "bits" in row]
        if widths:
            out[kind] = max(widths)
    return out


def build_report(cfg: BuildConfig, board: Board, out: Path, results: Results) -> dict:
    """The report dict from the results of the steps that ran (or were reused)."""
    r = results
    train, qat, csim, conv, export = r.train, r.qat, r.csim, r.convert, r.export
    parity = csim.parity if csim else {}
    report: dict[str, Any] = {
        "model": cfg.model,
        "board": board.name,
        "part": board.part,
        "backend": conv.backend if conv else board.backend,
        "io_type": conv.io_type if conv else cfg.hls.io_type,
        "clock_period_ns": conv.clock_period_ns if conv else (cfg.hls.clock_period_ns or board.clock_period_ns),
        "dataset": cfg.data.dataset,
        "dataset_source": train.dataset if train else None,
        "seed": cfg.seed,
        "accuracy": {
            "float": train.accuracy if train else None,
            "quantized": qat.accuracy if qat else None,
            "csim": csim.accuracy_csim if csim else None,
        },
        "csim": {
            "samples": parity.get("samples"),
            "argmax_agreement": parity.get("argmax_agreement"),
            "bit_exact_fraction": parity.get("bit_exact_fraction"),
            "values_exact_fraction": parity.get("values_exact_fraction"),
            "max_abs_diff": parity.get("max_abs_diff"),
            "compile_seconds": csim.compile_seconds if csim else None,
            "run_seconds": csim.run_seconds if csim else None,
        },
        "size_bytes": {
            "float": train.bytes_float if train else None,
            "quantized": qat.bytes_quantized if qat else None,
        },
        "params": train.params if train else None,
        "quantization": {
            "weight_bits": weight_bits(qat) if qat else None,
            "layer_weight_bits": {row["name"]: row["bits"] for row in qat.layers} if qat else None,
            "act_bits": qat.act_bits if qat else None,
            "input_bits": qat.input_bits if qat else None,
            "scales": "power-of-two, per tensor; biases int32",
        },
        "export": {
            "input_shape": export.input_shape if export else None,
            "ops": export.ops if export else None,
            "transposes": export.transposes if export else None,
            "verify": export.verify if export else None,
        },
        "hls_project": str(out / conv.project) if conv else None,
        "hls_layers": conv.layers if conv else [],
        "steps": steps_seconds(out),
    }
    if train and train.route != "own":  # a user's network adapted to the hardware route (flows/byo/)
        report["model_source"] = {"route": train.route, "conversions": train.conversions, "weights": train.weights}
    elif train is None and export is not None:
        report["model_source"] = {"route": "onnx", "file": cfg.model, "conversions": []}
    compression = compression_section(results)
    if compression is not None:
        report["compression"] = compression
    if r.structure:
        report["structure"] = r.structure.structure
    dataflow = dataflow_section(results)
    if dataflow is not None:
        report["dataflow"] = dataflow  # the concurrent bounded-FIFO check and the FIFO sizing
    if conv and conv.rtl:
        report["rtl"] = conv.rtl  # yosys figures of the DA layers, beside (never inside) the estimate
    hardware = r.synth or conv  # real synthesis replaces the estimate
    if hardware:
        report["resources"], report["latency"] = dict(hardware.resources), dict(hardware.latency)
        report["resources"]["markdown"] = hardware_markdown(report["resources"], report["latency"], board)
        if r.synth and conv:  # keep the estimate beside the real figures, labelled
            report["estimate"] = {"resources": conv.resources, "latency": conv.latency}
    if r.synth and conv:  # hls4ml's own keys of the top the board sees, for scripts written for `hls4ml report`
        top = synthesis_figures(r.synth.reports, conv.project_name)
        project = out / r.synth.project if r.synth.project else None
        root = project if project and project.is_dir() else r.synth.reports.get("root", "")
        report["CSynthesisReport"] = csynthesis_report(top, root)
    if r.bitstream:
        report["bitstream"] = r.bitstream.to_dict()
    if r.deploy:
        report["deploy"] = {**r.deploy.to_dict(), "commands": deploy_commands(out, r.deploy)}
    return report


def deploy_commands(out: Path, deploy) -> list[str]:
    """From this build folder to the board: copy deploy/, run the runner there as root in a login shell
    (PYNQ images put the `pynq` package in a virtual environment that the login profile activates)."""
    return [
        f"scp -r {out / deploy.folder} xilinx@pynq:/home/xilinx/fireflow",
        "ssh -t xilinx@pynq sudo -i python3 /home/xilinx/fireflow/run_on_board.py",
    ]


def _fmt(v: Any, pct: bool = False, digits: int = 4) -> str:
    if v is None:
        return "—"
    if pct:
        return f"{100 * v:.2f}%"
    if isinstance(v, float):
        return f"{v:.{digits}g}"
    return str(v)


def _kb(v: Any) -> str:
    return "—" if v is None else f"{v / 1024:.1f} KB"


def render_markdown(r: dict) -> str:
    lines = [f"# {r['model']} on {r['board']} ({r['part']}, {1000 / r['clock_period_ns']:.0f} MHz)", ""]
    lines += [
        f"Data: {r['dataset']} ({r.get('dataset_source') or '—'}); seed {r['seed']}; "
        f"backend {r['backend']}, {r['io_type']}.",
        "",
    ]
    acc, size = r["accuracy"], r["size_bytes"]
    lines += ["## Accuracy and size", "", "| stage | top-1 accuracy | error | size |", "|---|---:|---:|---:|"]
    q = r["quantization"]
    wb = q.get("weight_bits") or {}
    label = f"quantized (w{wb.get('conv')}/{wb.get('fc')} conv/fc, a{q.get('act_bits')})" if wb else "quantized"
    float_name = "float32, before channel pruning" if r.get("structure") else "float32"
    stages = (["channel-pruned"] if r.get("structure") else []) + (["pruned, shared"] if r.get("compression") else [])
    compressed = f" ({', '.join(stages)})" if stages else ""
    for name, a, b in (
        (float_name, acc["float"], size["float"]),
        (label + compressed, acc["quantized"], size["quantized"]),
        ("C simulation (g++)", acc["csim"], None),
    ):
        err = None if a is None else 1 - a
        lines.append(f"| {name} | {_fmt(a, True)} | {_fmt(err, True)} | {_kb(b)} |")
    c = r["csim"]
    lines += [
        "",
        "## C simulation parity",
        "",
        f"{_fmt(c['samples'])} test images through the generated C++ (g++), compared with the quantized "
        "PyTorch model evaluated in float64 on the same quantized inputs.",
        "",
        "| samples | argmax agreement | bit-exact images | bit-exact values | max abs diff |",
        "|---:|---:|---:|---:|---:|",
        f"| {_fmt(c['samples'])} | {_fmt(c['argmax_agreement'], True)} | {_fmt(c['bit_exact_fraction'], True)} | "
        f"{_fmt(c['values_exact_fraction'], True)} | {_fmt(c['max_abs_diff'])} |",
        "",
    ]
    for section in ("compression", "structure", "dataflow", "resources", "latency"):
        if section in r and isinstance(r[section], dict) and r[section].get("markdown"):
            lines += [r[section]["markdown"], ""]
    if r.get("rtl"):
        lines += ["## Distributed-arithmetic layers through yosys (synth_xilinx; the combinational kernel)", ""]
        lines += ["| layer | status | LUT | FF | source | verilator |", "|---|---|---:|---:|---|---|"]
        for name, row in r["rtl"].items():
            status = row.get("status", "")
            why = row.get("reason") or row.get("error") or ""
            lines.append(
                f"| {name} | {status}{': ' + why if why else ''} | {_fmt(row.get('LUT'))} | {_fmt(row.get('FF'))} | "
                f"{row.get('source', 'yosys')} | {_rtl_sim(row.get('simulation') or {})} |"
            )
        lines.append("")
    if r.get("deploy"):
        d, bits = r["deploy"], r.get("bitstream") or {}
        overlay = (
            "with the overlay (fireflow.bit + .hwh)"
            if d.get("overlay")
            else ("without an overlay: " + (bits.get("message") or "build with --bitstream where Vivado is installed"))
        )
        lines += [
            "## On the board",
            "",
            f"`{d['folder']}/` holds {d['images']} test images, {overlay}. To run them:",
            "",
        ]
        lines += ["    " + c for c in d.get("commands", [])] + [""]
    if r.get("hls_layers"):
        lines += [
            "## hls4ml layers",
            "",
            "| layer | class | output shape | reuse | result type |",
            "|---|---|---|---:|---|",
        ]
        for layer in r["hls_layers"]:
            lines.append(
                f"| {layer['name']} | {layer['class']}"
                + (f" + {layer['fused_activation']} (fused)" if layer.get("fused_activation") else "")
                + f" | {'x'.join(map(str, layer['shape']))} | "
                f"{_fmt(layer.get('reuse_factor'))} | {layer['types'].get('result_t', '—')} |"
            )
        lines.append("")
    lines += ["## Steps", "", "| step | seconds |", "|---|---:|"]
    lines += [f"| {name} | {secs:.1f} |" for name, secs in r["steps"].items()]
    lines += ["", f"HLS project: `{r.get('hls_project')}`", ""]
    return "\n".join(lines)


def _rtl_sim(sim: dict) -> str:
    """The verilator check of one DA layer, in words."""
    if sim.get("status") == "ok":
        verdict = "bit-exact" if sim.get("bit_exact") else f"**{sim.get('mismatches')} vectors differ**"
        return f"{sim.get('vectors')} vectors: {verdict}"
    return f"{sim.get('status', '—')}: {sim.get('reason', '')}" if sim else "—"
