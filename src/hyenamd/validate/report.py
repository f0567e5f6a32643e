"""The validation report: ``report.md``, ``report.html``, ``metrics.json`` and PNG figures.

:func:`write_report` writes into one folder: the PNGs next to ``report.md`` (which links them),
a self-contained ``report.html`` (figures embedded as base64 PNG), and ``metrics.json`` with
every metric, its threshold and verdict, per-trajectory summaries, the config and notes.
Existing files of the same names in that folder are replaced; nothing else is touched.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import json
import math
from pathlib import Path

from hyenamd.validate.metrics import GROUPS, Metric

__all__ = ["format_limit", "format_value", "write_report"]

_STATUS = {True: "✅ pass", False: "❌ FAIL", None: "—"}


def format_value(v: float | None, unit: str = "") -> str:
    """Compact number: 4 significant digits, ∞ for infinity, n/a for NaN/None."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    if isinstance(v, float) and math.isinf(v):
        s = "∞" if v > 0 else "-∞"
    elif isinstance(v, int) or (float(v).is_integer() and abs(v) < 1e6):
        s = f"{int(v)}" if float(v).is_integer() else f"{v:.4g}"
    else:
        s = f"{v:.4g}"
    return f"{s} {unit}".strip()


def format_limit(m: Metric) -> str:
    if m.limit is None:
        return ""
    return f"{'≤' if m.op == '<=' else '≥'} {format_value(m.limit, m.unit)}"


def _rows(metrics: list[Metric]) -> list[list[str]]:
    rows = []
    for m in metrics:
        rows.append(
            [
                m.group,
                m.name,
                format_value(m.value, m.unit),
                "" if m.reference is None else format_value(m.reference),
                "" if m.surrogate is None else format_value(m.surrogate),
                "" if m.spread is None else format_value(m.spread, m.unit),
                format_limit(m),
                _STATUS[m.passed],
                m.description,
            ]
        )
    return rows


_HEADER = ["group", "metric", "value", "reference", "surrogate", "ref. spread", "limit", "status", "what"]


def _markdown(result, figures: dict[str, Path], stamp: str) -> str:
    verdict = "**PASSED**" if result.passed else f"**FAILED** ({len(result.failed)} metric(s))"
    lines = [
        "# hyenamd validation report",
        "",
        f"{stamp}. Verdict: {verdict}. Ensemble of the surrogate run: {result.ensemble}.",
        "",
    ]
    for k, v in result.sources.items():
        lines.append(f"- {k}: `{v}`")
    for name, st in (
        ("reference", result.reference),
        ("surrogate", result.surrogate),
        ("baseline", result.baseline),
    ):
        if st is not None:
            lines.append(
                f"- {name}: {st.n_atoms} atoms, {st.n_frames} frames analysed over {st.duration / 1000:.4g} ps"
            )
    lines += ["", "## Metrics", "", "| " + " | ".join(_HEADER) + " |", "|" + "---|" * len(_HEADER)]
    for g in GROUPS:
        for r in _rows([m for m in result.metrics if m.group == g]):
            lines.append("| " + " | ".join(c.replace("|", "\\|") for c in r) + " |")
    if result.failed:
        lines += ["", "Failed: " + ", ".join(f"`{m.name}`" for m in result.failed)]
    lines += [
        "",
        "Units: Å, ps; D in Å²/ps; drift in meV/atom/ps; energy errors in meV/atom; forces in eV/Å.",
        "",
    ]
    for title, path in figures.items():
        lines += [f"## {title}", "", f"![{title}]({path.name})", ""]
    if result.notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in result.notes] + [""]
    lines += [
        "## Definitions",
        "",
        "See `docs/validation.md`: RDF MAE = mean |g_sur − g_ref| over the bins; RMSF after Kabsch "
        "superposition on the first frame; torsion JS = Jensen–Shannon divergence (base 2) of the "
        "φ/ψ histograms; D from a linear fit of the MSD; drift = slope of the total energy; force "
        "RMSE relative to the standard deviation of the reference forces.",
        "",
    ]
    return "\n".join(lines)


def _html(result, figures: dict[str, Path], stamp: str) -> str:
    esc = html.escape
    verdict = "PASSED" if result.passed else f"FAILED ({len(result.failed)} metric(s))"
    color = "#1a7f37" if result.passed else "#cf222e"
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>hyenamd validation report</title>",
        "<style>body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}"
        "table{border-collapse:collapse;font-size:14px}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}"
        "tr.fail{background:#ffebe9}tr.pass{background:#f0fff4}img{max-width:100%}</style></head><body>",
        "<h1>hyenamd validation report</h1>",
        f"<p>{esc(stamp)}. Verdict: <b style='color:{color}'>{esc(verdict)}</b>. "
        f"Ensemble of the surrogate run: {esc(result.ensemble)}.</p><ul>",
    ]
    for k, v in result.sources.items():
        parts.append(f"<li>{esc(k)}: <code>{esc(v)}</code></li>")
    parts.append(
        "</ul><h2>Metrics</h2><table><tr>" + "".join(f"<th>{esc(h)}</th>" for h in _HEADER) + "</tr>"
    )
    for g in GROUPS:
        ms = [m for m in result.metrics if m.group == g]
        for m, r in zip(ms, _rows(ms)):
            cls = {True: "pass", False: "fail", None: ""}[m.passed]
            parts.append(f"<tr class='{cls}'>" + "".join(f"<td>{esc(c)}</td>" for c in r) + "</tr>")
    parts.append(
        "</table><p>Units: Å, ps; D in Å²/ps; drift in meV/atom/ps; energy errors in meV/atom; forces in eV/Å.</p>"
    )
    for title, path in figures.items():
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        parts.append(f"<h2>{esc(title)}</h2><img alt='{esc(title)}' src='data:image/png;base64,{data}'>")
    if result.notes:
        parts.append("<h2>Notes</h2><ul>" + "".join(f"<li>{esc(n)}</li>" for n in result.notes) + "</ul>")
    parts.append("</body></html>")
    return "\n".join(parts)


def _json_default(o):
    import numpy as np

    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    if isinstance(o, tuple):
        return list(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def _finite(o):
    """Replace non-finite floats (JSON has none) by null / "inf"."""
    if isinstance(o, float) and not math.isfinite(o):
        return None if math.isnan(o) else ("inf" if o > 0 else "-inf")
    if isinstance(o, dict):
        return {k: _finite(v) for k, v in o.items()}
    if isinstance(o, list | tuple):
        return [_finite(v) for v in o]
    return o


def write_report(result, out_dir: Path) -> Path:
    """Write figures, ``report.md``, ``report.html`` and ``metrics.json`` into ``out_dir``; returns the .md path."""
    from hyenamd.validate.plots import make_plots

    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"report folder {out_dir} exists and is not a folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    figures = make_plots(result, out_dir)
    stamp = f"Generated {_dt.datetime.now().astimezone().strftime('%Y-%m-%d %H:%M %Z')} by hyenamd"
    md = out_dir / "report.md"
    md.write_text(_markdown(result, figures, stamp), encoding="utf-8")
    (out_dir / "report.html").write_text(_html(result, figures, stamp), encoding="utf-8")
    payload = _finite(result.to_dict())
    payload["figures"] = {t: p.name for t, p in figures.items()}
    (out_dir / "metrics.json").write_text(
        json.dumps(payload, indent=2, default=_json_default), encoding="utf-8"
    )
    return md
