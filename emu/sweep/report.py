"""A sweep's results: one row per point with every figure's unit in its column name, as CSV and JSON, Pareto
plots as PNG, and a one-page HTML report that shows both.

Accuracies are in percent of the test split; `golden_equals_reference` says every layer of every test
sample equalled the integer reference; `rtl_equals_golden` that the RTL sample's every layer equalled the
integer reference and its cycles golden's. Throughput at Fmax = Fmax / cycles per image (a full run's
cycles over its images; one image in flight).
"""
from __future__ import annotations

import csv
import html
import io
import json
import os

from emu.outputs import write_file

__all__ = ["COLUMNS", "row", "write", "pareto"]

#: Column -> what it holds (the HTML report's legend).
COLUMNS = {
    "model": "network", "dataset": "dataset", "precision": "network widths",
    "weight_bits": "weight width (bits)", "act_bits": "activation width (bits)",
    "logit_bits": "width of the last layer's output (bits)",
    "hw_weight_bits": "accelerator weight width (bits)", "hw_act_bits": "accelerator activation width (bits)",
    "array": "rows x cols",
    "float_accuracy_pct": "float network (%)", "torch_accuracy_pct": "torch's Q/DQ graph (%)",
    "golden_accuracy_pct": "golden emulator (%)", "golden_equals_reference": "golden == integer reference",
    "rtl_samples": "test samples run on the RTL", "rtl_accuracy_pct": "RTL on those samples (%)",
    "rtl_equals_golden": "RTL == golden (layers and cycles)",
    "cycles_per_image": "cycles per image", "utilization_pct": "array utilization (%)",
    "instructions": "program instructions",
    "luts": "LUT4", "ffs": "flip-flops", "dsps": "DSP blocks", "brams": "block RAMs",
    "fmax_mhz": "Fmax (MHz)", "images_per_s_at_fmax": "images/s at Fmax",
    "qat_s": "QAT time (s)", "eval_s": "compile and score time (s)", "error": "why the point failed",
}


def _pct(v):
    return None if v is None else round(100 * v, 3)


def row(grid, precision, point: dict | None, float_info: dict | None, synth: dict | None) -> dict:
    """One result row (COLUMNS) from a point's record, the float network's and the synthesis report."""
    point = point or {"error": "not run"}
    r = {"model": grid.model.name, "dataset": grid.dataset, "precision": precision.tag,
         "weight_bits": precision.weight_bits, "act_bits": precision.act_bits, "logit_bits": precision.logit_bits,
         "hw_weight_bits": point.get("hw_weight_bits"), "hw_act_bits": point.get("hw_act_bits"),
         "array": f"{point.get('rows', '?')}x{point.get('cols', '?')}",
         "float_accuracy_pct": _pct((float_info or {}).get("accuracy")),
         "torch_accuracy_pct": _pct(point.get("torch_accuracy")),
         "golden_accuracy_pct": _pct(point.get("golden_accuracy")),
         "golden_equals_reference": point.get("golden_equals_reference"),
         "rtl_samples": point.get("rtl_samples", 0), "rtl_accuracy_pct": _pct(point.get("rtl_accuracy")),
         "rtl_equals_golden": point.get("rtl_equals_golden"),
         "cycles_per_image": point.get("cycles_per_image"), "utilization_pct": _pct(point.get("utilization")),
         "instructions": point.get("instructions"),
         "qat_s": round(point["qat_seconds"], 1) if "qat_seconds" in point else None,
         "eval_s": round(point["eval_seconds"], 1) if "eval_seconds" in point else None}
    for k in ("luts", "ffs", "dsps", "brams", "fmax_mhz"):
        r[k] = (synth or {}).get(k)
    cycles = r["cycles_per_image"]
    r["images_per_s_at_fmax"] = round(r["fmax_mhz"] * 1e6 / cycles, 1) if r["fmax_mhz"] and cycles else None
    errors = [e for e in (point.get("error"), (synth or {}).get("error")) if e]
    r["error"] = "; ".join(errors) or None
    return r


def pareto(points: list[tuple[float, float]], *, lower_x_better: bool) -> list[int]:
    """Indices of the points no other point beats in both coordinates (accuracy y: higher is better)."""
    def beats(a, b):
        bx = a[0] <= b[0] if lower_x_better else a[0] >= b[0]
        return bx and a[1] >= b[1] and a != b
    return [i for i, p in enumerate(points) if not any(beats(q, p) for q in points)]


#: (x column, x label, log scale, lower x is better) of each plot; a plot is drawn when its column has values.
PLOTS = (("cycles_per_image", "cycles per image", True, True),
         ("luts", "LUT4", True, True),
         ("images_per_s_at_fmax", "images/s at Fmax", True, False))


def _plot(rows: list[dict], x: str, label: str, log: bool, lower_better: bool, path: str) -> bool:
    ok = [r for r in rows if r.get(x) and r.get("golden_accuracy_pct") is not None]
    if not ok:
        return False
    try:
        import matplotlib
    except ImportError:   # the plots need the `plot` extra; the table and data do not
        return False
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for array in dict.fromkeys(r["array"] for r in ok):
        pts = [r for r in ok if r["array"] == array]
        ax.scatter([r[x] for r in pts], [r["golden_accuracy_pct"] for r in pts], label=array, s=36)
        for r in pts:
            ax.annotate(f"W{r['weight_bits']}A{r['act_bits']}", (r[x], r["golden_accuracy_pct"]),
                        textcoords="offset points", xytext=(4, 3), fontsize=7)
    front = pareto([(r[x], r["golden_accuracy_pct"]) for r in ok], lower_x_better=lower_better)
    line = sorted((ok[i][x], ok[i]["golden_accuracy_pct"]) for i in front)
    ax.plot([p[0] for p in line], [p[1] for p in line], "k--", lw=0.8, label="Pareto front")
    if log:
        ax.set_xscale("log")
    ax.set_xlabel(label)
    ax.set_ylabel("test accuracy on golden (%)")
    ax.set_title(f"{ok[0]['model']} on {ok[0]['dataset']}: accuracy vs {label}", fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, title="array", title_fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    write_file(path, lambda f: f.write(buf.getvalue()), what="sweep plot")
    return True


def _fmt(v) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "yes" if v else "NO"
    if isinstance(v, float):
        return f"{v:,.2f}" if abs(v) < 1000 else f"{v:,.0f}"
    return str(v)


def _html(grid, rows: list[dict], plots: list[str]) -> str:
    cols = [c for c in COLUMNS if any(r.get(c) not in (None, 0, "") for r in rows)]
    head = "".join(f"<th title='{html.escape(COLUMNS[c])}'>{html.escape(c)}</th>" for c in cols)
    body = "\n".join("<tr>" + "".join(f"<td>{html.escape(_fmt(r.get(c)))}</td>" for c in cols) + "</tr>"
                     for r in rows)
    legend = "".join(f"<li><code>{html.escape(c)}</code>: {html.escape(COLUMNS[c])}</li>" for c in cols)
    images = "".join(f"<img src='{p}' alt='{p}'>" for p in plots)
    g = grid.to_json()
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Systola sweep: {html.escape(g['model'])} on {html.escape(g['dataset'])}</title>
<style>body{{font-family:sans-serif;margin:1.5em}} table{{border-collapse:collapse;font-size:12px}}
td,th{{border:1px solid #ccc;padding:2px 6px;text-align:right}} img{{max-width:32%;margin:4px}}</style></head>
<body><h1>Systola sweep: {html.escape(g['model'])} on {html.escape(g['dataset'])}</h1>
<p>Precisions {html.escape(', '.join(r['precision'] for r in rows[::len(grid.arrays)]))}; arrays
{html.escape(', '.join(g['arrays']))}; synthesis: {html.escape(g['synth'] or 'not run (--synth DEVICE)')}.
Accuracy is on the test split, on the golden emulator (bit-exact with the RTL and the integer reference).
Dashed: the Pareto front.</p>
{images}
<table><tr>{head}</tr>
{body}
</table>
<ul style="font-size:12px">{legend}</ul>
<p>Data: <a href="results.csv">results.csv</a>, <a href="results.json">results.json</a>.</p>
</body></html>
"""


def write(folder: str, grid, rows: list[dict]) -> None:
    """results.csv, results.json, the plots that have data, report.html."""
    def csv_text(f):
        w = csv.DictWriter(f, fieldnames=list(COLUMNS))
        w.writeheader()
        w.writerows(rows)
    write_file(os.path.join(folder, "results.csv"), csv_text, what="sweep results", binary=False)
    write_file(os.path.join(folder, "results.json"),
               lambda f: f.write(json.dumps({"grid": grid.to_json(), "columns": COLUMNS, "rows": rows},
                                            indent=1) + "\n"), what="sweep results", binary=False)
    plots = []
    for x, label, log, lower in PLOTS:
        name = f"accuracy_vs_{x}.png"
        if _plot(rows, x, label, log, lower, os.path.join(folder, name)):
            plots.append(name)
    write_file(os.path.join(folder, "report.html"), lambda f: f.write(_html(grid, rows, plots)),
               what="sweep report", binary=False)
