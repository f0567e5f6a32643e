"""The report: Markdown + self-contained HTML + metrics.json + PNG figures, with the metrics in them."""

from __future__ import annotations

import json

import pytest

from hyenamd.validate import ValidateConfig, validate
from hyenamd.validate.report import format_value

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def report(tmp_path_factory, synth):
    out = tmp_path_factory.mktemp("report")
    ref, base, sur = (synth.solvated_peptide(seed=s) for s in (0, 2, 1))
    res = validate(
        ref,
        sur,
        ValidateConfig(progress=False, rdf_bins=60),
        baseline=base,
        out_dir=out,
        echo=lambda *a: None,
    )
    return res, out


def test_report_files_exist_with_figures(report):
    _, out = report
    for name in ("report.md", "report.html", "metrics.json"):
        assert (out / name).stat().st_size > 0
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert {
        "rdf.png",
        "rmsf.png",
        "torsions.png",
        "dynamics.png",
        "energy.png",
        "rg.png",
        "stability.png",
    } <= set(pngs)
    for p in out.glob("*.png"):
        assert p.read_bytes()[:8] == PNG


def test_markdown_has_the_metrics_table_and_links_the_figures(report):
    res, out = report
    md = (out / "report.md").read_text()
    assert "| group | metric | value |" in md
    for m in res.metrics:
        assert f"| {m.group} | {m.name} |" in md
    assert "![Radial distribution functions](rdf.png)" in md
    verdict = "**PASSED**" if res.passed else "**FAILED**"
    assert verdict in md
    assert ("❌ FAIL" in md) == (not res.passed)


def test_html_embeds_the_figures(report):
    _, out = report
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == len(list(out.glob("*.png")))
    assert "torsion_js" in html and "<table>" in html


def test_json_holds_every_metric(report):
    res, out = report
    data = json.loads((out / "metrics.json").read_text())
    assert data["passed"] == res.passed and data["n_failed"] == len(res.failed)
    by_name = {m["name"]: m for m in data["metrics"]}
    assert set(by_name) == {m.name for m in res.metrics}
    js = res.metric("torsion_js")
    assert by_name["torsion_js"]["value"] == pytest.approx(js.value)
    assert by_name["torsion_js"]["spread"] == pytest.approx(js.spread)
    assert by_name["blowup_time"]["value"] in ("inf", pytest.approx(res.metric("blowup_time").value))
    assert data["trajectories"]["reference"]["n_atoms"] == res.reference.n_atoms
    assert data["config"]["rdf_bins"] == 60
    assert data["by_group"]["structure"]["torsion_js"] == pytest.approx(js.value)


def test_table_lists_failures(report):
    res, _ = report
    text = res.table()
    assert text.splitlines()[0].split()[:2] == ["group", "metric"]
    assert ("FAILED" in text) == (not res.passed)
    for m in res.failed:
        assert m.name in text


def test_format_value():
    assert format_value(float("inf"), "ps") == "∞ ps"
    assert format_value(float("nan")) == "n/a"
    assert format_value(0.123456, "Å") == "0.1235 Å"
    assert format_value(3.0) == "3"


def test_kinetic_histogram_draws_the_canonical_gamma_density():
    """The energy figure's third panel: K histograms against Gamma(3N/2, k_B T), a normalised density."""
    from types import SimpleNamespace

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from hyenamd.units import BOLTZMANN_EV_PER_K
    from hyenamd.validate.plots import _kinetic_histogram

    n, t = 108, 90.0
    rng = np.random.default_rng(0)
    ke = rng.gamma(1.5 * n, BOLTZMANN_EV_PER_K * t, size=4000)
    run = SimpleNamespace(kinetic_energy=ke, n_atoms=n, n_frames=len(ke))
    fig, ax = plt.subplots()
    _kinetic_histogram(ax, [("surrogate", run)], t)
    (curve,) = [ln for ln in ax.lines if "Gamma" in ln.get_label()]
    x, y = curve.get_xdata(), curve.get_ydata()
    assert (
        abs(float(np.sum(0.5 * (y[1:] + y[:-1]) * np.diff(x))) - 1) < 0.01
    )  # the sample's range holds ~all mass
    mode = (1.5 * n - 1) * BOLTZMANN_EV_PER_K * t
    assert abs(x[np.argmax(y)] / mode - 1) < 0.02
    heights = [p.get_xy() for p in ax.patches]
    assert heights  # the histogram was drawn
    plt.close(fig)
