"""`arbitrage report`: plots, the self-contained HTML page (escaped model text, step traces
coloured by source, scores shown), the terminal figures, and the page rendered in
headless Chromium."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from html.parser import HTMLParser

import numpy as np
import pytest
from matplotlib import image as mpimg
from typer.testing import CliRunner

from arbitrage.cli import app
from arbitrage.config import Config
from arbitrage.eval.report import build_report
from arbitrage.eval.run import read_results
from arbitrage.eval.sweep import run_sweep
from sweep_world import World

runner = CliRunner()
DRAFT_BORDER = (0x25, 0x63, 0xEB)  # traces.py: .step.src-draft border
TARGET_BORDER = (0xEA, 0x58, 0x0C)  # traces.py: .step.src-target border


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("sweep")
    world = World(8, seed=2, script_in_first_draft_step=True)
    run_sweep(
        Config(), world.problems, directory,
        policies=["arbitrage", "rsd", "oracle", "draft_only", "target_only"],
        thresholds={"arbitrage": [0.2, 0.5, 0.8], "rsd": [0.4, 0.6, 0.9], "oracle": [-0.2, 0.0, 0.2]},
        models=world.models(), progress=False, audit=True,
    )
    return directory


@pytest.fixture(scope="module")
def reported(sweep_dir):
    result = runner.invoke(app, ["report", str(sweep_dir)])
    assert result.exit_code == 0, result.output
    return result, (sweep_dir / "report.html").read_text(encoding="utf-8")


class _Elements(HTMLParser):
    """Every element's tag and classes, in document order."""

    def __init__(self):
        super().__init__()
        self.elements: list[tuple[str, set[str], dict]] = []

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        self.elements.append((tag, set((attributes.get("class") or "").split()), attributes))


def distinct_colours(pixels: np.ndarray) -> int:
    """Distinct RGB colours in an image array (uint8 0..255 or float 0..1)."""
    if pixels.dtype != np.uint8:
        pixels = np.round(pixels * 255).astype(np.uint8)
    rgb = pixels[..., :3].astype(np.uint32)
    return len(np.unique((rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]))


def elements(html: str):
    parser = _Elements()
    parser.feed(html)
    return parser.elements


def test_report_prints_the_runs_and_the_tradeoff_figures(reported):
    result, _ = reported
    text = " ".join(result.output.split())
    assert "arbitrage_threshold0.20" in text and "target_only" in text
    assert "Speedup of Arbitrage over RSD at matched accuracy:" in text
    assert "Speedup of Arbitrage over target-only at matched accuracy:" in text
    assert "Arbitrage accuracy >= RSD accuracy at every matched target-call rate in [0.1, 0.6]:" in text
    assert "Oracle sanity check" in text and "Wasted escalations, arbitrage:" in text


def test_plots_are_written_as_real_pngs(sweep_dir, reported):
    for name in ("accuracy_vs_call_rate.png", "accuracy_vs_latency.png", "time_by_node.png"):
        pixels = mpimg.imread(sweep_dir / name)
        assert pixels.shape[0] > 300 and pixels.shape[1] > 600
        assert distinct_colours(pixels) > 50  # drawn on, not blank


def test_page_is_self_contained(reported):
    _, html = reported
    assert "<script" not in html.lower()  # no JS at all, and model text cannot inject any
    assert "http://" not in html and "https://" not in html
    images = [a for tag, _, a in elements(html) if tag == "img"]
    assert len(images) == 3 and all(a["src"].startswith("data:image/png;base64,") for a in images)
    assert "<link" not in html and "@import" not in html


def test_model_text_is_escaped(reported):
    _, html = reported
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &lt;b&gt;not bold&lt;/b&gt;" in html
    assert "<b>not bold</b>" not in html


def test_summary_table_has_one_row_per_run(sweep_dir, reported):
    _, html = reported
    runs = json.loads((sweep_dir / "sweep.json").read_text())["runs"]
    table = html.split('<table class="summary">', 1)[1].split("</table>", 1)[0]
    assert table.count("<tr>") == len(runs) + 1
    for row in runs:
        assert f">{row['name']}<" in table


def test_traces_show_each_step_coloured_by_source_with_its_scores(sweep_dir, reported):
    _, html = reported
    runs = json.loads((sweep_dir / "sweep.json").read_text())["runs"]
    chosen = max((r for r in runs if r["policy"] == "arbitrage"), key=lambda r: r["summary"]["escalated_steps"])
    assert f"Step traces: {chosen['name']}" in html
    records = read_results(sweep_dir / chosen["run_dir"] / "results.jsonl")
    found = elements(html)
    steps = [classes for tag, classes, _ in found if tag == "div" and "step" in classes]
    expected = [s for r in records for s in r["steps"]]
    assert len(steps) == len(expected)
    assert [("src-target" in c, "escalated" in c) for c in steps] == [
        (s["source"] == "target", s["escalated"]) for s in expected
    ]
    assert sum(1 for tag, c, _ in found if tag == "details" and "problem" in c) == len(records)
    discarded = [c for tag, c, _ in found if tag == "div" and "discarded" in c]
    assert len(discarded) == sum(s["escalated"] for s in expected) > 0
    router_scores = re.findall(r'class="score router_score">router ([0-9.]+)<', html)
    assert [float(v) for v in router_scores] == pytest.approx([s["router_score"] for s in expected], abs=5e-4)
    audited = [s for s in expected if s["escalated"]]
    assert html.count('class="score target_score">PRM target') == len(audited)


def test_report_of_a_single_run_directory(sweep_dir, tmp_path):
    run_dir = tmp_path / "rsd_threshold0.60"
    shutil.copytree(sweep_dir / "rsd_threshold0.60", run_dir)
    report = build_report(run_dir, max_traces=2)
    assert [row["name"] for row in report.rows] == ["rsd_threshold0.60"] and report.trace_run == "rsd_threshold0.60"
    html = report.html_path.read_text()
    assert html.count('<details class="problem') == 2 and "Showing the first 2 of 8 problems" in html
    assert report.analysis["speedups"] == {}


def test_trace_run_is_chosen_by_name_and_a_wrong_name_is_listed(sweep_dir, tmp_path):
    copy = tmp_path / "sweep"
    shutil.copytree(sweep_dir, copy)  # leave the shared sweep's report as the other tests expect it
    result = runner.invoke(app, ["report", str(copy), "--trace-run", "oracle_threshold0.00"])
    assert result.exit_code == 0, result.output
    assert "Step traces: oracle_threshold0.00" in (copy / "report.html").read_text()
    result = runner.invoke(app, ["report", str(copy), "--trace-run", "nope"])
    assert result.exit_code == 2 and "no run named 'nope'" in " ".join(result.output.split())


def test_a_directory_without_runs_is_refused(tmp_path):
    result = runner.invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == 2 and "holds no run" in " ".join(result.output.split())


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (scripts/setup.sh installs it as root)")
def test_page_renders_in_headless_chromium(sweep_dir, reported, tmp_path):
    from PIL import Image

    shot = tmp_path / "report.png"
    command = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
        f"--screenshot={shot}", "--window-size=1200,9000", (sweep_dir / "report.html").as_uri(),
    ]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=180)
    assert completed.returncode == 0 and shot.exists(), completed.stderr[-2000:]
    pixels = np.asarray(Image.open(shot).convert("RGB"))
    assert pixels.shape[:2] == (9000, 1200)
    assert distinct_colours(pixels) > 200  # text, tables and plots, not a blank page
    channels = [pixels[..., i].astype(np.int16) for i in range(3)]

    def count(rgb):
        return int(np.logical_and.reduce([np.abs(c - v) <= 6 for c, v in zip(channels, rgb)]).sum())

    assert count(DRAFT_BORDER) > 500 and count(TARGET_BORDER) > 500  # both kinds of step are drawn


def test_report_of_ungraded_runs_and_of_a_run_killed_before_its_summary(tmp_path):
    world = World(3, seed=1)
    for problem in world.problems:
        problem.answer = None
    run_sweep(Config(), world.problems, tmp_path, policies=["arbitrage", "draft_only"], thresholds=[0.5],
              models=world.models(), progress=False)
    (tmp_path / "draft_only" / "summary.json").unlink()
    report = build_report(tmp_path)
    assert [row["name"] for row in report.rows] == ["arbitrage_threshold0.50"]
    assert report.analysis["curves"]["target_call_rate"] == {} and report.analysis["speedups"] == {}
    html = report.html_path.read_text()
    assert '<details class="problem ungraded"' in html and all(path.exists() for path in report.plots.values())
