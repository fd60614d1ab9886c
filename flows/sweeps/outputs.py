"""What a sweep writes: the table (`table.json`, `table.md`), the Pareto plot (`pareto.png`) and the best
design's config (`best_config.yaml`, ready for `flows/build.py --config`).

The best design is chosen among the trials that finished, fit the board and (with a budget) lost at
most `budget` percentage points of accuracy against their own float model, by the objective: least
LUT, most images/s, or the highest accuracy. Accuracy is the validation split's when the builds report
one, else the C simulation's test accuracy (the table says which).
"""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from flows.atomic import atomic_write_bytes, atomic_write_json, atomic_write_text  # noqa: E402
from flows.configfile import dump_yaml, read_config_file  # noqa: E402
from flows.sweeps.state import TRIALS_DIR, SweepState  # noqa: E402

OBJECTIVES = ("lut", "images_per_second", "accuracy")
TABLE_JSON = "table.json"
TABLE_MD = "table.md"
PARETO_PNG = "pareto.png"
BEST_CONFIG = "best_config.yaml"
# keys of a trial's config that belong to the sweep, not to the design
SWEEP_ONLY_KEYS = ("out_dir", "step_cache")


def accuracy(m: dict) -> tuple[float | None, str]:
    """(the accuracy choices are made on, its source): validation when reported, else the test set's
    (the C simulation's, or the quantized PyTorch model's in a sweep stopped before csim)."""
    if m.get("val_quantized") is not None:
        return m["val_quantized"], "validation"
    if m.get("accuracy_csim") is None and m.get("accuracy_quantized") is not None:
        return m["accuracy_quantized"], "test (quantized model)"
    return m.get("accuracy_csim"), "test (csim)"


def accuracy_drop_pp(m: dict) -> float | None:
    acc, source = accuracy(m)
    ref = m.get("val_float") if source == "validation" else m.get("accuracy_float")
    if acc is None or ref is None:
        return None
    return round(100 * (ref - acc), 3)


def rows(state: SweepState) -> list[dict]:
    out = []
    for t in state.trials:
        m = t.metrics
        acc, source = accuracy(m)
        out.append(
            {
                "id": t.id,
                "status": t.status,
                "overrides": t.overrides,
                "accuracy": acc,
                "accuracy_source": source,
                "accuracy_float": m.get("accuracy_float"),
                "accuracy_csim_test": m.get("accuracy_csim"),
                "drop_pp": accuracy_drop_pp(m),
                "LUT": m.get("LUT"),
                "FF": m.get("FF"),
                "BRAM36": m.get("BRAM36"),
                "DSP": m.get("DSP"),
                "images_per_second": m.get("images_per_second"),
                "fits": m.get("fits"),
                "cache_hits": t.cache_hits,
                "cached_steps": t.cached_steps,
                "steps_run": t.steps_run,
                "seconds": t.seconds,
                "exit_code": t.exit_code,
                "error": t.error.strip().splitlines()[-1] if t.error.strip() else "",
            }
        )
    return out


def choose_best(table: list[dict], objective: str, budget: float | None) -> dict | None:
    ok = [
        r
        for r in table
        if r["status"] == "done"
        and r["fits"]
        and r["accuracy"] is not None
        and (budget is None or (r["drop_pp"] is not None and r["drop_pp"] <= budget))
    ]
    if objective == "lut":
        ok = [r for r in ok if r["LUT"] is not None]
        return min(ok, key=lambda r: (r["LUT"], -r["accuracy"]), default=None)
    if objective == "images_per_second":
        ok = [r for r in ok if r["images_per_second"] is not None]
        return max(ok, key=lambda r: (r["images_per_second"], r["accuracy"]), default=None)
    return max(ok, key=lambda r: (r["accuracy"], -(r["LUT"] or 0)), default=None)


def pareto_ids(table: list[dict]) -> set[str]:
    """Finished trials no other trial beats on accuracy, LUT and images/s at once."""
    pts = [r for r in table if r["status"] == "done" and None not in (r["accuracy"], r["LUT"], r["images_per_second"])]

    def dominates(a, b):
        ge = a["accuracy"] >= b["accuracy"] and a["LUT"] <= b["LUT"]
        ge = ge and a["images_per_second"] >= b["images_per_second"]
        gt = a["accuracy"] > b["accuracy"] or a["LUT"] < b["LUT"] or a["images_per_second"] > b["images_per_second"]
        return ge and gt

    return {r["id"] for r in pts if not any(dominates(o, r) for o in pts)}


def plot_pareto(table: list[dict], best: dict | None, title: str, path: Path) -> bool:
    pts = [r for r in table if r["status"] == "done" and r["accuracy"] is not None and r["LUT"] is not None]
    if not pts:
        return False
    front = pareto_ids(table)
    fig, ax = plt.subplots(figsize=(7.5, 5))
    ips = [r["images_per_second"] or 0 for r in pts]
    for fits, marker, label in ((True, "o", "fits the board"), (False, "x", "does not fit")):
        sel = [i for i, r in enumerate(pts) if bool(r["fits"]) == fits]
        if not sel:
            continue
        sc = ax.scatter(
            [pts[i]["LUT"] for i in sel],
            [100 * pts[i]["accuracy"] for i in sel],
            c=[ips[i] for i in sel],
            cmap="viridis",
            vmin=min(ips),
            vmax=max(ips) or 1,
            marker=marker,
            s=60,
            label=label,
            edgecolors="none" if marker == "o" else None,
        )
    fig.colorbar(sc, ax=ax, label="images/s (estimate)")
    for r in pts:
        ax.annotate(r["id"].split("-")[0], (r["LUT"], 100 * r["accuracy"]), fontsize=7, xytext=(4, 3),
                    textcoords="offset points")
    on_front = [r for r in pts if r["id"] in front]
    if on_front:  # non-dominated in all three (accuracy, LUT, images/s): ringed
        ax.scatter([r["LUT"] for r in on_front], [100 * r["accuracy"] for r in on_front], s=140, facecolors="none",
                   edgecolors="black", linewidths=0.8, label="Pareto-optimal (accuracy, LUT, images/s)")
    if best is not None:
        ax.scatter([best["LUT"]], [100 * best["accuracy"]], s=220, facecolors="none", edgecolors="red", label="best")
    ax.set(xlabel="LUT (estimate)", ylabel=f"accuracy, % ({pts[0]['accuracy_source']})", title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
    return True


def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def markdown(state: SweepState, table: list[dict], best: dict | None, objective: str, budget: float | None) -> str:
    hits = sum(r["cache_hits"] for r in table)
    done = sum(r["status"] == "done" for r in table)
    failed = sum(r["status"] == "failed" for r in table)
    lines = [
        f"# Sweep: {state.model} on {state.board}",
        "",
        f"{len(table)} trials: {done} done, {failed} failed, {len(table) - done - failed} not run; "
        f"steps restored from the step cache: {hits}. Objective: {objective}"
        + (f", accuracy budget {budget} pp." if budget is not None else "."),
        f"Fixed overrides: `{state.fixed}`" if state.fixed else "",
        "",
        "| trial | overrides | status | accuracy | drop (pp) | LUT | images/s | fits | cache hits | s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in table:
        over = ", ".join(f"{k}={v}" for k, v in r["overrides"].items())
        status = r["status"] if r["status"] != "failed" else f"failed ({r['exit_code']}): {r['error'][:80]}"
        mark = " **best**" if best and r["id"] == best["id"] else ""
        lines.append(
            f"| {r['id']}{mark} | {over} | {status} | {_fmt(r['accuracy'], '.4f')} | {_fmt(r['drop_pp'], '.2f')} "
            f"| {_fmt(r['LUT'], '.0f')} | {_fmt(r['images_per_second'], '.0f')} | {_fmt(r['fits'], '')} "
            f"| {r['cache_hits']} | {r['seconds']:.0f} |"
        )
    lines.append("")
    if table and done:
        lines.append(
            f"Accuracy: {table[0]['accuracy_source']}; drop = float model minus hardware model (the quantized PyTorch "
            "model, bit-exact with the C simulation), in percentage points."
        )
    if best:
        lines.append(f"Best design: {best['id']} -> `{BEST_CONFIG}` (`python flows/build.py --config {BEST_CONFIG}`).")
    else:
        lines.append("No finished trial fits the board" + (" within the budget." if budget is not None else "."))
    return "\n".join(lines) + "\n"


def write_outputs(
    state: SweepState, out: Path, objective: str = "lut", budget: float | None = None
) -> tuple[list[dict], dict | None]:
    """table.json, table.md, pareto.png and (when a design qualifies) best_config.yaml."""
    table = rows(state)
    best = choose_best(table, objective, budget)
    summary = {
        "model": state.model,
        "board": state.board,
        "objective": objective,
        "budget_pp": budget,
        "cache_hits": sum(r["cache_hits"] for r in table),
        "best": best["id"] if best else None,
        "pareto": sorted(pareto_ids(table)),
        "trials": table,
    }
    atomic_write_json(out / TABLE_JSON, summary)
    atomic_write_text(out / TABLE_MD, markdown(state, table, best, objective, budget))
    title = f"{state.model} on {state.board}: {len(table)} trials"
    plot_pareto(table, best, title, out / PARETO_PNG)
    best_file = out / BEST_CONFIG
    if best:
        cfg = read_config_file(out / TRIALS_DIR / best["id"] / "config.json")
        for key in SWEEP_ONLY_KEYS:
            cfg.pop(key, None)
        atomic_write_text(best_file, dump_yaml(cfg))
    elif best_file.exists():
        best_file.unlink()  # a stale best from an earlier run of this sweep would mislead
    return table, best

