"""`arbitrage graph` draws each policy offline; the Mermaid text is the topology snapshot."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from arbitrage.cli import app

runner = CliRunner()

ARBITRAGE_EDGES = {
    "__start__ --> draft_step;",
    "draft_step --> router_decision;",
    "router_decision -.-> commit;",
    "router_decision -.-> target_step;",
    "target_step --> commit;",
    "commit -.-> draft_step;",
    "commit -.-> __end__;",
}


def edges(mermaid: str) -> set[str]:
    return {line.strip() for line in mermaid.splitlines() if "->" in line}


def test_mermaid_snapshot_of_the_arbitrage_graph():
    result = runner.invoke(app, ["graph", "--policy", "arbitrage"])
    assert result.exit_code == 0, result.output
    assert edges(result.output) == ARBITRAGE_EDGES


@pytest.mark.parametrize(
    "policy, expected",
    [
        ("rsd", {"draft_step --> prm_score;", "prm_score -.-> target_step;", "prm_score -.-> commit;"}),
        ("oracle", {"draft_step --> target_step;", "target_step --> prm_score;", "prm_score --> commit;"}),
        ("target_only", {"__start__ --> target_step;", "commit -.-> target_step;"}),
        ("draft_only", {"draft_step --> commit;"}),
    ],
)
def test_each_policy_has_its_own_wiring(policy, expected):
    result = runner.invoke(app, ["graph", "--policy", policy])
    assert result.exit_code == 0, result.output
    assert expected <= edges(result.output)


@pytest.mark.parametrize("fmt, magic", [("png", b"\x89PNG"), ("svg", b"<?xml")])
def test_images_are_drawn_without_network(tmp_path, fmt, magic):
    out = tmp_path / f"g.{fmt}"
    result = runner.invoke(app, ["graph", "--policy", "rsd", "--format", fmt, "--output", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_bytes().startswith(magic) and out.stat().st_size > 5000


def test_unknown_policy_and_format_are_named():
    result = runner.invoke(app, ["graph", "--policy", "fastest"])
    assert result.exit_code == 2 and "unknown policy 'fastest'" in result.output
    result = runner.invoke(app, ["graph", "--format", "gif", "--output", "x.gif"])
    assert result.exit_code == 2 and "unknown format 'gif'" in result.output
