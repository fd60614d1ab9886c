"""The build report: `report.json` (machine-readable), `report.md` (what users read) and `plots/*.png`.

Sections appear when the step that measures them ran: accuracy per stage, C-simulation parity,
sizes, step timings, and (when present) compression, structure, resources and latency. Every
hardware figure carries its source (`vivado`, `vitis` or `estimate`); sources are never mixed.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from flows.pipeline import STEPS_FILE, atomic_write_bytes, atomic_write_json, atomic_write_text

log = logging.getLogger(__name__)


def _steps_seconds(out: Path) -> dict[str, float]:
    path = out / STEPS_FILE
    if not path.exists():
        return {}
    data = json.loads(path.read_text())
    return {name: rec.get("seconds", 0.0) for name, rec in data.get("steps", {}).items() if rec.get("status") == "done"}


def build_report(build: Any) -> dict:
    """Collect the report dict from the metrics of the steps that ran (or were reused)."""
    m = build.metrics
    cfg = build.cfg
    train, qat, csim = m.get("train", {}), m.get("qat", {}), m.get("csim", {})
    convert = m.get("convert", {})
    settings = convert.get("settings", {})
    parity = csim.get("parity", {})
    report: dict[str, Any] = {
        "model": cfg.model,
        "board": build.board.name,
        "part": build.board.part,
        "backend": settings.get("backend", build.board.backend),
        "io_type": cfg.hls.io_type,
        "clock_period_ns": settings.get("clock_period_ns", cfg.hls.clock_period_ns or build.board.clock_period_ns),
        "dataset": cfg.data.dataset,
        "dataset_source": train.get("dataset"),
        "seed": cfg.seed,
        "accuracy": {
            "float": train.get("accuracy"),
            "quantized": qat.get("accuracy"),
            "csim": csim.get("accuracy_csim"),
        },
        "csim": {
            "samples": parity.get("samples"),
            "argmax_agreement": parity.get("argmax_agreement"),
            "bit_exact_fraction": parity.get("bit_exact_fraction"),
            "values_exact_fraction": parity.get("values_exact_fraction"),
            "max_abs_diff": parity.get("max_abs_diff"),
            "compile_seconds": csim.get("compile_seconds"),
            "run_seconds": csim.get("run_seconds"),
        },
        "size_bytes": {"float": train.get("bytes_float"), "quantized": qat.get("bytes_quantized")},
        "params": train.get("params"),
        "quantization": {
            "weight_bits": qat.get("weight_bits"),
            "act_bits": qat.get("act_bits"),
            "input_bits": qat.get("input_bits"),
            "scales": "power-of-two, per tensor; biases int32",
        },
        "export": {k: m.get("export", {}).get(k) for k in ("input_shape", "ops", "transposes", "verify")},
        "hls_project": str(build.out / convert["project"]) if convert.get("project") else None,
        "hls_layers": convert.get("layers", []),
        "steps": _steps_seconds(build.out),
    }
    for extra in ("compression", "structure", "resources", "latency"):
        for step_metrics in m.values():  # in step order: a later step (synth) replaces an estimate
            if isinstance(step_metrics, dict) and extra in step_metrics:
                report[extra] = step_metrics[extra]
    if "resources" in report and "latency" in report:
        from flows.hardware import hardware_markdown

        report["resources"]["markdown"] = hardware_markdown(report["resources"], report["latency"], build.board)
        if "synth" in m and "convert" in m:  # keep the estimate beside the real figures, labelled
            report["estimate"] = {"resources": m["convert"]["resources"], "latency": m["convert"]["latency"]}
    return report


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
    for name, a, b in (
        ("float32", acc["float"], size["float"]),
        (label, acc["quantized"], size["quantized"]),
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
    for section in ("compression", "structure", "resources", "latency"):
        if section in r and isinstance(r[section], dict) and r[section].get("markdown"):
            lines += [r[section]["markdown"], ""]
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


def plot_training(build: Any, path: Path) -> bool:
    """Loss and training accuracy per epoch for every training stage, one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stages = [(name, m.get("history")) for name, m in build.metrics.items() if isinstance(m, dict) and m.get("history")]
    if not stages:
        return False
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.5))
    offset = 0
    for name, hist in stages:
        xs = [offset + h["epoch"] for h in hist]
        ax1.plot(xs, [h["loss"] for h in hist], marker=".", label=name)
        ax2.plot(xs, [h["train_acc"] for h in hist], marker=".", label=name)
        offset = xs[-1]
    ax1.set(xlabel="epoch", ylabel="training loss", yscale="log")
    ax2.set(xlabel="epoch", ylabel="training accuracy (augmented)")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(f"{build.cfg.model}: training")
    fig.tight_layout()
    _save_fig(fig, path)
    plt.close(fig)
    return True


def _save_fig(fig: Any, path: Path) -> None:
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    atomic_write_bytes(path, buf.getvalue())


def write_report(build: Any) -> dict:
    from flows.compress import compression_section, plot_compression

    report = build_report(build)
    section = compression_section(build)
    if section is not None:
        report["compression"] = section
    plots = []
    if plot_training(build, build.out / "plots" / "training.png"):
        plots.append("plots/training.png")
    plots += plot_compression(build, build.out / "plots")
    if "resources" in report:
        from flows.hardware import plot_utilization

        plot_utilization(report["resources"], build.board, build.out / "plots" / "utilization.png")
        plots.append("plots/utilization.png")
    report["plots"] = plots
    atomic_write_json(build.out / "report.json", report)
    md = render_markdown(report)
    if plots:
        md += "\n" + "\n".join(f"![{Path(p).stem}]({p})" for p in plots) + "\n"
    atomic_write_text(build.out / "report.md", md)
    log.info("report: %s", build.out / "report.md")
    return {"report": "report.json", "plots": plots}
