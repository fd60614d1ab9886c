"""The hardware section of the report: resources against the board's budget, latency and rate, the
estimate's typical error, the fit search's explanation and the per-layer table. Every figure is
labelled with its one source (`estimate`, `vivado` or `vitis`)."""

from __future__ import annotations

from flows.boards import RESOURCE_KINDS


def count(value, kind: str = "") -> str:
    """A count as an integer with thousands separators (estimates are fractional: rounded); block RAM
    keeps its half blocks (one BRAM_18K is 0.5 BRAM36)."""
    if value is None:
        return "—"
    if kind == "BRAM36" and not float(value).is_integer():
        return f"{round(2 * value) / 2:,.1f}"
    return f"{round(value):,}"


def hardware_markdown(resources: dict, latency: dict, board) -> str:
    src = resources["source"]
    label = {
        "estimate": "analytical estimate (flows/estimator; no vendor tool ran)",
        "vivado": "Vivado HLS synthesis report",
        "vitis": "Vitis HLS synthesis report",
    }.get(src, src)
    lines = [
        f"## Hardware on {board.name} ({board.part}) — source: {label}",
        "",
        "| resource | used | budget | utilization |",
        "|---|---:|---:|---:|",
    ]
    for k in RESOURCE_KINDS:
        lines.append(
            f"| {k} | {count(resources[k], k)} | {count(resources['budget'][k], k)} | "
            f"{100 * resources['utilization'][k]:.1f}% |"
        )
    ips = latency.get("images_per_second")
    lines += [
        "",
        f"Fits: **{'yes' if resources['fits'] else 'no'}**. Latency {latency['cycles']:,.0f} cycles "
        f"({latency['latency_us']:.1f} us), initiation interval {latency['ii']:,.0f} cycles: "
        f"**{ips:,.0f} images/s** at {1000 / latency['clock_period_ns']:.0f} MHz (source: {latency['source']})."
        if ips
        else "",
    ]
    expected = resources.get("expected_error")
    if expected:
        errs = expected["median_abs_rel_error"]
        lines += [
            "",
            f"Typical error of these estimates ({expected['tool'].replace('_', ' ')}, median |error| against "
            "real csynth reports of networks the calibration did not see): "
            + ", ".join(f"{k} {100 * v:.0f}%" for k, v in errs.items())
            + " (bench/results/estimator.md). They predict HLS C synthesis, which counts more LUTs than Vivado's "
            "own synthesis.",
        ]
    fit = resources.get("fit") or {}
    if fit.get("explanation"):
        lines += ["", f"Fit search: {fit['explanation']}"]
    if resources.get("layers"):
        lines += [
            "",
            "| layer | kind | reuse | strategy | LUT | FF | DSP | BRAM36 | latency | II |",
            "|---|---|---:|---|---:|---:|---:|---:|---:|---:|",
        ]
        for lay in resources["layers"]:
            if not any(lay.get(k) for k in ("LUT", "FF", "DSP", "BRAM36")):
                continue
            lines.append(
                f"| {lay['name']} | {lay['kind']} | {lay.get('reuse_factor') or '—'} | "
                f"{lay.get('strategy') or '—'} | {count(lay['LUT'] or 0)} | {count(lay['FF'] or 0)} | "
                f"{count(lay['DSP'] or 0)} | {count(lay['BRAM36'] or 0, 'BRAM36')} | "
                f"{count(lay.get('latency') or 0)} | {count(lay.get('ii') or 0)} |"
            )
    for note in resources.get("notes", []):
        lines.append(f"- {note}")
    return "\n".join(lines)
