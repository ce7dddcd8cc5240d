"""report.html: one self-contained page (inline SVG, no scripts, no network) readable at a glance."""

from __future__ import annotations

from html import escape
from typing import Any

PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"]
STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;max-width:1100px}
h1{font-size:22px;margin:0 0 4px} h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:6px 0} td,th{border:1px solid #ddd;padding:3px 8px;text-align:right}
th{background:#f4f4f4} td.l,th.l{text-align:left} .muted{color:#777}
.verdict{display:inline-block;padding:6px 12px;border-radius:4px;font-weight:600;margin:8px 0}
.ok{background:#e6f4ea;color:#1e6b34} .bad{background:#fde8e8;color:#9b1c1c} .warn{background:#fff4e0;color:#8a5300}
svg text{font:11px system-ui,sans-serif}
"""


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return escape(str(value))


def line_chart(
    series: dict[str, list[tuple[str, float]]],
    title: str,
    refs: dict[str, float] | None = None,
    width: int = 760,
    height: int = 230,
    unit: bool = True,
) -> str:
    """One polyline per series over shared categorical x values (window ids), y in [min, 1] (`unit`, e.g.
    accuracy) or [0, max] (e.g. RMSE); dashed reference lines (e.g. the accuracy floor)."""
    xs = sorted({x for points in series.values() for x, _ in points})
    values = [y for points in series.values() for _, y in points if y is not None]
    if not xs or not values:
        return f'<p class="muted">{escape(title)}: no data yet</p>'
    refs = {k: v for k, v in (refs or {}).items() if v is not None}
    left, right, top, bottom = 50, 76, 24, 40
    if unit:
        hi = 1.0
        lo = min(min(values), *refs.values(), 0.9)
        lo = max(0.0, lo - (1 - lo) * 0.1)
    else:
        lo, hi = 0.0, max(*values, *refs.values()) * 1.1 or 1.0
    pw, ph = width - left - right, height - top - bottom

    def px(i: int) -> float:
        return left + (pw * i / (len(xs) - 1) if len(xs) > 1 else pw / 2)

    def py(v: float) -> float:
        return top + ph * (1 - (v - lo) / (hi - lo if lo < hi else 1))

    parts = [f'<svg width="{width}" height="{height}" role="img" aria-label="{escape(title)}">']
    parts.append(f'<text x="{left}" y="14" font-weight="600">{escape(title)}</text>')
    for k in range(5):
        v = lo + (hi - lo) * k / 4
        parts.append(f'<line x1="{left}" x2="{width - right}" y1="{py(v):.1f}" y2="{py(v):.1f}" stroke="#eee"/>')
        parts.append(f'<text x="{left - 6}" y="{py(v) + 4:.1f}" text-anchor="end">{v:.4g}</text>')
    for name, v in refs.items():
        parts.append(
            f'<line x1="{left}" x2="{width - right}" y1="{py(v):.1f}" y2="{py(v):.1f}" stroke="#999" '
            f'stroke-dasharray="5,4"/><text x="{width - right + 4}" y="{py(v) + 4:.1f}">{escape(name)}</text>'
        )
    step = max(1, len(xs) // 6)
    for i in range(0, len(xs), step):
        parts.append(f'<text x="{px(i):.1f}" y="{height - 22}" text-anchor="middle">{escape(xs[i][5:16])}</text>')
    for n, (name, points) in enumerate(sorted(series.items())):
        color = PALETTE[n % len(PALETTE)]
        coords = [(px(xs.index(x)), py(y)) for x, y in sorted(points) if y is not None]
        if len(coords) > 1:
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
            parts.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2"/>')
        parts += [f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{color}"/>' for x, y in coords]
        parts.append(
            f'<rect x="{left + 110 * n}" y="{height - 12}" width="10" height="10" fill="{color}"/>'
            f'<text x="{left + 14 + 110 * n}" y="{height - 3}">version {escape(name)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def bar_chart(features: list[dict[str, Any]], metric: str, title: str, width: int = 1000, height: int = 220) -> str:
    """One bar per feature, red when the feature drifted, with its threshold as a tick."""
    if not features:
        return ""
    left, right, top, bottom = 50, 10, 24, 46
    pw, ph = width - left - right, height - top - bottom
    top_value = max(max(f[metric] for f in features), max(f["thresholds"][metric] for f in features)) * 1.1 or 1.0
    bw = pw / len(features)
    parts = [f'<svg width="{width}" height="{height}" role="img" aria-label="{escape(title)}">']
    parts.append(f'<text x="{left}" y="14" font-weight="600">{escape(title)}</text>')
    for k in range(5):
        v = top_value * k / 4
        y = top + ph * (1 - k / 4)
        parts.append(f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" stroke="#eee"/>')
        parts.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{v:.2f}</text>')
    for i, f in enumerate(features):
        h = ph * f[metric] / top_value
        x = left + i * bw
        color = "#d62728" if f["drifted"] else "#1f77b4"
        parts.append(
            f'<rect x="{x + 1:.1f}" y="{top + ph - h:.1f}" width="{max(bw - 2, 1):.1f}" height="{h:.1f}" '
            f'fill="{color}"><title>{escape(f["name"])}: {metric} {f[metric]:.4f}</title></rect>'
        )
        ty = top + ph * (1 - f["thresholds"][metric] / top_value)
        parts.append(f'<line x1="{x:.1f}" x2="{x + bw:.1f}" y1="{ty:.1f}" y2="{ty:.1f}" stroke="#444"/>')
        if i % max(1, len(features) // 16) == 0:
            parts.append(
                f'<text x="{x + bw / 2:.1f}" y="{height - bottom + 14}" text-anchor="middle">{escape(f["name"])}</text>'
            )
    parts.append(
        f'<text x="{left}" y="{height - 6}" class="muted">red: drifted; black tick: the feature\'s threshold</text>'
    )
    parts.append("</svg>")
    return "".join(parts)


def confusion_svg(matrix: list[list[int]], labels: list[str], cell: int = 34) -> str:
    """Heat map of counts, rows = true label, columns = predicted."""
    n = len(matrix)
    if not n:
        return ""
    peak = max(max(row) for row in matrix) or 1
    off = 60
    size = off + cell * n + 10
    parts = [f'<svg width="{size}" height="{size}" role="img" aria-label="confusion matrix">']
    parts.append(f'<text x="{off}" y="12">predicted →</text>')
    parts.append(f'<text x="10" y="{off + 10}" transform="rotate(90 10 {off + 10})">true →</text>')
    for j, name in enumerate(labels):
        parts.append(f'<text x="{off + cell * j + cell / 2}" y="{off - 6}" text-anchor="middle">{escape(name)}</text>')
        parts.append(f'<text x="{off - 6}" y="{off + cell * j + cell / 2 + 4}" text-anchor="end">{escape(name)}</text>')
    for i, row in enumerate(matrix):
        for j, count in enumerate(row):
            share = count / peak
            color = f"rgba(31,119,180,{share:.3f})" if i == j else f"rgba(214,39,40,{min(1.0, share * 3):.3f})"
            x, y = off + cell * j, off + cell * i
            parts.append(f'<rect x="{x}" y="{y}" width="{cell}" height="{cell}" fill="{color}" stroke="#ddd"/>')
            if count:
                fill = "#fff" if share > 0.6 else "#222"
                parts.append(
                    f'<text x="{x + cell / 2}" y="{y + cell / 2 + 4}" text-anchor="middle" fill="{fill}">{count}</text>'
                )
    parts.append("</svg>")
    return "".join(parts)


def _canary_html(canary: dict[str, Any] | None) -> list[str]:
    """The canary section: which version runs at which weight, both versions' numbers since it started, verdict."""
    if not canary:
        return []
    running, verdict = canary["running"], canary.get("verdict") or {}
    metric = canary.get("metric") or "accuracy"  # the compared metric (reports before `metric` compared accuracy)
    rows = "".join(
        f"<tr><td class='l'>{escape(v)}</td><td>{(s or {}).get('labelled', 0)}</td>"
        f"<td>{_fmt((s or {}).get(metric))}</td></tr>"
        for v, s in canary["since_canary"].items()
    )
    return [
        f"<h2>Canary: version {escape(str(running['model_version']))} at {running['weight']:.0%} of traffic</h2>",
        f"<p><b>{escape(str(verdict.get('action', '')))}</b>: {escape('; '.join(verdict.get('reasons') or []))}</p>",
        "<table><tr><th class='l'>version (since the canary started)</th><th>labelled</th>"
        f"<th>{escape(metric)}</th></tr>" + rows + "</table>",
    ]


def _edge_html(edge: dict[str, Any] | None) -> list[str]:
    """Two-phase prediction: how often each edge model version agreed with this (cloud) model on escalations."""
    if not edge:
        return []
    rows = "".join(
        f"<tr><td class='l'>{escape(name)}</td><td>{g['escalations']}</td><td>{_fmt(g['agreement'])}</td>"
        f"<td>{g['labelled']}</td><td>{_fmt(g['edge_accuracy'])}</td><td>{_fmt(g['cloud_accuracy'])}</td></tr>"
        for name, g in edge.items()
    )
    return [
        "<h2>Edge devices: agreement with this model on escalated instances</h2><table><tr><th class='l'>edge model"
        "</th><th>escalations</th><th>agreement</th><th>labelled</th><th>edge accuracy</th><th>cloud accuracy</th>"
        f"</tr>{rows}</table>"
    ]


def _quality_html(versions: dict[str, Any]) -> list[str]:
    """Label-free data quality per version: the violations of violations.json, or why none were judged."""
    out = ["<h2>Data quality against the training baseline (no labels needed)</h2>"]
    for v, g in versions.items():
        quality = g.get("quality")
        if quality is None:
            out.append(f'<p class="muted">version {escape(v)}: the manifest has no per-feature baseline</p>')
        elif not quality["judged"]:
            out.append(f'<p class="muted">version {escape(v)}: only {quality["rows"]} served rows: not judged</p>')
        elif not quality["violations"]:
            out.append(f"<p>version {escape(v)}: no violations in {quality['rows']} served rows</p>")
        else:
            rows = "".join(
                f"<tr><td class='l'>{escape(x['check'])}</td><td class='l'>{escape(x['feature'])}</td>"
                f"<td>{x['observed']:.2%}</td><td>{x['threshold']:.2%}</td></tr>"
                for x in quality["violations"]
            )
            out.append(
                f"<p>version {escape(v)}: {len(quality['violations'])} violation(s) in {quality['rows']} rows</p>"
                "<table><tr><th class='l'>check</th><th class='l'>feature</th><th>observed</th><th>threshold</th>"
                f"</tr>{rows}</table>"
            )
    return out


def histogram_svg(hist: dict[str, list], title: str, width: int = 560, height: int = 200) -> str:
    """Bars of a histogram's counts over its edges (e.g. the residuals of a regression model)."""
    counts, edges = hist["counts"], hist["edges"]
    if not counts or not sum(counts):
        return f'<p class="muted">{escape(title)}: no data</p>'
    left, right, top, bottom = 50, 10, 24, 36
    pw, ph = width - left - right, height - top - bottom
    peak, bw = max(counts), pw / len(counts)
    parts = [f'<svg width="{width}" height="{height}" role="img" aria-label="{escape(title)}">']
    parts.append(f'<text x="{left}" y="14" font-weight="600">{escape(title)}</text>')
    for i, c in enumerate(counts):
        h = ph * c / peak
        parts.append(
            f'<rect x="{left + i * bw + 1:.1f}" y="{top + ph - h:.1f}" width="{max(bw - 2, 1):.1f}" height="{h:.1f}" '
            f'fill="#1f77b4"><title>[{edges[i]:.4g}, {edges[i + 1]:.4g}): {c}</title></rect>'
        )
    for i in (0, len(counts) // 2, len(counts)):
        parts.append(
            f'<text x="{left + i * bw:.1f}" y="{height - bottom + 14}" text-anchor="middle">{edges[i]:.3g}</text>'
        )
    parts.append(f'<text x="{left - 6}" y="{top + 4}" text-anchor="end">{peak}</text></svg>')
    return "".join(parts)


def _metrics_table(kind: str, versions: dict[str, Any]) -> str:
    """One row per version with the metrics of the model's task."""
    if kind == "regression":
        head = (
            "<tr><th class='l'>version</th><th>predictions</th><th>labelled</th><th>bad labels</th><th>MAE</th>"
            "<th>RMSE</th><th>R²</th><th>mean error</th><th>packaged RMSE</th><th>drifted features</th>"
            "<th>score PSI</th></tr>"
        )
    elif kind == "classification":
        head = (
            "<tr><th class='l'>version</th><th>predictions</th><th>labelled</th><th>accuracy</th><th>macro-F1</th>"
            "<th>log loss</th><th>ECE</th><th>validation acc.</th><th>drifted features</th><th>prediction PSI</th>"
            "</tr>"
        )
    else:
        head = "<tr><th class='l'>version</th><th>predictions</th><th>drifted features</th><th>output PSI</th></tr>"
    rows = [head]
    for v, g in versions.items():
        m, d = g["metrics"], g["drift"]
        cells = [escape(v), g["predictions"]]
        if kind == "regression":
            base = (g.get("baseline_metrics") or {}).get("rmse")
            cells += [g["labelled"], g.get("bad_labels", 0), _fmt(m.get("mae")), _fmt(m.get("rmse"))]
            cells += [_fmt(m.get("r2")), _fmt(m.get("mean_error")), _fmt(base)]
        elif kind == "classification":
            cells += [g["labelled"], _fmt(m.get("accuracy")), _fmt(m.get("macro_f1")), _fmt(m.get("log_loss"))]
            cells += [_fmt(m.get("ece")), _fmt(g.get("baseline_accuracy"))]
        cells.append(f"{len(d['drifted_features'])} / {len(d['features'])} ({d['drifted_share']:.0%})")
        cells.append(_fmt(g["prediction_drift"].get("psi")))
        rows.append(
            "<tr>" + "".join(f"<td{' class=l' if i == 0 else ''}>{c}</td>" for i, c in enumerate(cells)) + "</tr>"
        )
    return "<h2>Metrics per model version</h2><table>" + "".join(rows) + "</table>"


def _drift_html(v: str, drift: dict[str, Any]) -> list[str]:
    """Drift bars per input (per feature of a flat input, per channel of a higher-rank one)."""
    inputs = drift.get("inputs") or {}
    out = []
    if len(inputs) <= 1:
        groups = [("", drift["features"], drift)]
        out.append(f"<h2>Version {escape(v)}: data drift per feature</h2>")
    else:
        groups = [(n, [f for f in drift["features"] if f.get("input") == n], d) for n, d in inputs.items()]
        out.append(f"<h2>Version {escape(v)}: data drift per input</h2>")
    if not drift["judged"]:
        out.append(f'<p class="muted">only {drift["rows"]} served rows: drift not judged</p>')
    for name, features, d in groups:
        if name:
            verdict = "drifted" if d.get("dataset_drift") else "no drift" if d.get("judged") else "not judged"
            kind = d.get("kind") or d.get("reason", "")
            out.append(f"<h3>input <code>{escape(name)}</code> ({escape(str(kind))}): {verdict}</h3>")
        if not features:
            continue
        what = f" of {name}" if name else ""
        out.append(bar_chart(features, "psi", f"PSI{what} vs training histogram"))
        out.append(bar_chart(features, "js", f"Jensen-Shannon distance{what} vs training histogram"))
    return out


def _output_drift_html(v: str, pred: dict[str, Any]) -> list[str]:
    """The served output's distribution against its packaged baseline (regression score, embedding)."""
    if pred.get("psi") is None:
        return [f'<p class="muted">version {escape(v)}: {escape(pred.get("reason", "no output baseline"))}</p>']
    name = escape(str(pred.get("output")))
    state = "drifted" if pred["drifted"] else "no drift"
    out = [f"<h2>Version {escape(v)}: output <code>{name}</code> against its packaged distribution ({state})</h2>"]
    out.append(f"<p>PSI {pred['psi']:.4f} · JS {pred['js']:.4f} · {pred['rows']} served rows</p>")
    if pred.get("edges"):
        out.append(histogram_svg({"edges": pred["edges"], "counts": pred["distribution"]}, "served"))
        out.append(histogram_svg({"edges": pred["edges"], "counts": pred["training_distribution"]}, "packaging data"))
    return out


def _regression_html(v: str, g: dict[str, Any]) -> list[str]:
    m = g["metrics"]
    out = []
    if m.get("residuals"):
        out.append(f"<h2>Version {escape(v)}: residuals (prediction − label, {g['labelled']} labelled)</h2>")
        out.append(histogram_svg(m["residuals"], "residual histogram"))
    if g.get("bad_labels"):
        shown = ", ".join(f"{escape(b['key'])}: {escape(b['label'])}" for b in g.get("bad_label_examples", []))
        out.append(f"<p class='warn'>{g['bad_labels']} label(s) are not numbers and were left out ({shown})</p>")
    return out


def _confusion_html(v: str, g: dict[str, Any], labels: list[str]) -> list[str]:
    m = g["metrics"]
    if not (m.get("confusion_matrix") and g["labelled"]):
        return []
    recall = m.get("per_class_recall", {})
    return [
        f"<h2>Version {escape(v)}: confusion matrix ({g['labelled']} labelled)</h2>",
        confusion_svg(m["confusion_matrix"], labels),
        "<table><tr><th class='l'>class</th>"
        + "".join(f"<th>{escape(c)}</th>" for c in labels)
        + "</tr><tr><td class='l'>recall</td>"
        + "".join(f"<td>{_fmt(recall.get(c), 3)}</td>" for c in labels)
        + "</tr><tr><td class='l'>labels</td>"
        + "".join(f"<td>{c}</td>" for c in m["label_distribution"])
        + "</tr><tr><td class='l'>predictions</td>"
        + "".join(f"<td>{c}</td>" for c in m["prediction_distribution"])
        + "</tr></table>",
    ]


def render_html(report: dict[str, Any], history: dict[str, list[tuple[str, float]]]) -> str:
    """The page: verdict, counts, the task's metrics per version (accuracy over time and the confusion matrix of a
    classifier; RMSE over time and residuals of a regression model; none for an embedding), drift per input and
    output. `history` is the task's trend metric (accuracy, RMSE) per version over the last reports."""
    model, window, decision = report["model"], report["window"], report["decision"]
    kind = (report.get("task") or {}).get("kind", "classification")
    trigger = report.get("trigger") or {}
    if decision["retrain"]:
        verdict = f'<div class="verdict bad">Retraining requested: {escape(trigger.get("outcome", ""))}</div>'
    elif decision.get("alert"):
        outcome = escape((report.get("alert") or {}).get("outcome", ""))
        verdict = f'<div class="verdict bad">Label-free alert (DriftDetected): {outcome}</div>'
    elif kind not in ("classification", "regression"):
        state = "findings reported" if decision.get("findings") else "no drift or data-quality findings"
        verdict = f'<div class="verdict ok">{escape(kind.capitalize())} model, judged without labels: {state}</div>'
    elif report["counts"]["labelled"] < report["policy"]["min_labelled"]:
        verdict = '<div class="verdict warn">Not enough labelled predictions for a decision</div>'
    else:
        verdict = '<div class="verdict ok">Healthy: no retraining needed</div>'
    out = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>liteserve evaluation {escape(model)} "
        f"{escape(window['end_iso'])}</title><style>{STYLE}</style></head><body>",
        f"<h1>Model <code>{escape(model)}</code> — evaluation window {escape(window['start_iso'])} → "
        f"{escape(window['end_iso'])}</h1>",
        f'<div class="muted">{escape(kind)} model · window id {escape(window["id"])} · look-back '
        f"{window['lookback_hours']} h · generated {escape(report['generated_at'])}</div>",
        verdict,
        "<ul>" + "".join(f"<li>{escape(r)}</li>" for r in decision["reasons"] + decision.get("findings", [])) + "</ul>",
        "<h2>Counts</h2><table>"
        + "".join(f'<tr><th class="l">{escape(k)}</th><td>{_fmt(v)}</td></tr>' for k, v in report["counts"].items())
        + "</table>",
    ]
    out.extend(_canary_html(report.get("canary")))
    versions = report["versions"]
    out.append(_metrics_table(kind, versions))
    if kind == "classification":
        current = versions.get(report.get("decided_on_version", ""), {})
        refs = {"floor": report["policy"].get("accuracy_floor"), "validation": current.get("baseline_accuracy")}
        out.append(line_chart(history, "Accuracy per evaluation window and model version", refs))
    elif kind == "regression":
        current = versions.get(report.get("decided_on_version", ""), {})
        refs = {
            "packaged": (current.get("baseline_metrics") or {}).get("rmse"),
            "ceiling": report["policy"].get("max_rmse"),
        }
        out.append(line_chart(history, "RMSE per evaluation window and model version", refs, unit=False))
    out.extend(_quality_html(versions))
    out.extend(_edge_html(report.get("edge")))
    for v, g in versions.items():
        if kind == "regression":
            out.extend(_regression_html(v, g))
        out.extend(_drift_html(v, g["drift"]))
        if kind == "classification":
            out.extend(_confusion_html(v, g, report["labels"]))
        else:
            out.extend(_output_drift_html(v, g["prediction_drift"]))
    out.append(
        "<h2>Decision inputs and policy</h2><table>"
        + "".join(f'<tr><th class="l">{escape(k)}</th><td>{_fmt(v)}</td></tr>' for k, v in decision["checks"].items())
        + "</table>"
    )
    out.append("</body></html>")
    return "\n".join(out)
