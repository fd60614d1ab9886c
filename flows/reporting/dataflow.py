"""report.json's `dataflow` section and its report.md table: the concurrent bounded-FIFO check and FIFO sizing.

`dataflow_section(results)` summarises the `dataflow` step's result (flows/steps/dataflow.py): status,
images run back to back, bit-exactness with the C simulation, the fork/joins, the sizing (runs,
margin, minimum depth) with the estimate's stream-FIFO figures before and after, and the FIFOs of the
fork/joins (depth in the project, the flow's analytical depth, the minimum found). None when the
step did not run.
"""

from __future__ import annotations

from flows.results import Results


def dataflow_section(results: Results) -> dict | None:
    df = results.dataflow
    if df is None:
        return None
    section = {
        "status": df.status,
        "images": df.images,
        "bit_exact": df.bit_exact,
        "run_seconds": df.run_seconds,
        "fork_joins": df.fork_joins,
        "sizing": df.sizing,
        "fifos": df.fifos,
        "reason": df.reason,
    }
    section["markdown"] = dataflow_markdown(section)
    return section


def dataflow_markdown(s: dict) -> str:
    if s["status"] == "skipped":
        return f"## Dataflow check\n\nSkipped: {s['reason']}."
    sizing = s.get("sizing") or {}
    lines = [
        "## Dataflow check (concurrent bounded-FIFO C simulation)",
        "",
        f"{s['images']} test images back to back, one thread per process, each FIFO as deep as its STREAM "
        f"pragma: no deadlock, outputs {'bit-exact with' if s['bit_exact'] else 'NOT equal to'} the C simulation "
        f"({s['run_seconds']:.2f} s). Fork/joins: {', '.join(s['fork_joins']) or 'none'}.",
    ]
    if sizing.get("runs"):
        lines += [
            "",
            f"FIFO depths sized by the simulation: the smallest passing depths ({sizing['runs']} runs of "
            f"{sizing['images']} images, {sizing['seconds']:.1f} s; reads/writes of one loop iteration atomic), "
            f"then depth = max({sizing['floor']}, ceil(minimum x {1 + sizing['margin']:g})).",
        ]
        est = sizing.get("fifo_estimate") or {}
        if est.get("before") and est.get("after"):
            b, a = est["before"], est["after"]
            lines.append(
                f"Stream FIFOs in the estimate: LUT {b.get('LUT', 0):.0f} -> {a.get('LUT', 0):.0f}, "
                f"FF {b.get('FF', 0):.0f} -> {a.get('FF', 0):.0f}, BRAM36 {b.get('BRAM36', 0):.1f} -> "
                f"{a.get('BRAM36', 0):.1f} (flow's analytical depths -> sized)."
            )
    rows = [f for f in s["fifos"] if f.get("fork_joins")]
    if rows:
        lines += ["", "| FIFO | fork/join | producer -> consumer | depth | analytical | minimum | max fill |"]
        lines.append("|---|---|---|---:|---:|---:|---:|")
        for f in rows:
            lines.append(
                f"| {f['stream']} | {', '.join(f['fork_joins'])} | {f['producer']} -> {f['consumer']} | {f['depth']} | "
                f"{_v(f.get('analytical'))} | {_v(f.get('minimum'))} | {_v(f.get('max_fill'))} |"
            )
    return "\n".join(lines)


def _v(x) -> str:
    return "—" if x is None else str(x)
