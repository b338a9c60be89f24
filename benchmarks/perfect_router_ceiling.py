"""How fast Arbitrage could be on the lab models with a perfect router, side by side in one run.

The "checker router" scores a draft step 1 when the lab's exact checker finds it wrong and 0
otherwise, so at any threshold in (0, 1) it escalates exactly the draft's wrong steps. It
reads the gold operations, so it is a ceiling for any router, not a policy. The same test
problems are solved with the same loaded models by target_only, draft_only, that router and
the configured router at each `--threshold`, one run after another; printed: accuracy,
target-call rate, mean latency, and each run's latency over target-only's.

    python benchmarks/perfect_router_ceiling.py --limit 300 --threshold 0.21 --threshold 0.12
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from arbitrage.lab.checker import check_step
from arbitrage.protocols import RouterQuery


class CheckerRouter:
    """1.0 iff the exact lab checker finds the draft step wrong."""

    def score(self, query: RouterQuery) -> float:
        previous = [step.text for step in query.previous_steps]
        return 0.0 if check_step(query.problem, previous, query.draft.text).correct else 1.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=None, help="default: the lab models")
    parser.add_argument("--limit", type=int, default=100, help="lab test problems")
    parser.add_argument("--threshold", type=float, action="append", default=[],
                        help="threshold of the configured router (repeatable; default: none)")
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 gives steadier timings)")
    args = parser.parse_args()

    import torch

    from arbitrage.config import load_config
    from arbitrage.eval.datasets import load_problems
    from arbitrage.eval.run import run_batch
    from arbitrage.servers.factory import load_models

    torch.set_num_threads(args.threads)
    base = load_config(args.config).with_overrides(policy="arbitrage", threshold=0.5)
    base = base.model_copy(update={"audit_escalations": False})
    problems = load_problems("test", dataset="lab", limit=args.limit).problems
    models = load_models(base, roles=("draft", "target", "router"))
    runs = [("target_only", "target_only", None, models), ("draft_only", "draft_only", None, models),
            ("checker router", "arbitrage", 0.5, dataclasses.replace(models, router=CheckerRouter()))]
    runs += [(f"router tau={tau}", "arbitrage", tau, models) for tau in args.threshold]
    rows = []
    with tempfile.TemporaryDirectory() as directory:
        for name, policy, tau, run_models in runs:
            config = base.with_overrides(policy=policy, threshold=tau)
            summary = run_batch(config, problems, f"{directory}/{len(rows)}", models=run_models,
                                concurrency=args.concurrency, progress=True)
            rows.append({"run": name, "accuracy": summary["accuracy"],
                         "target_call_rate": summary["target_call_rate"],
                         "latency_s": summary["latency_s"]["mean"]})
    target_latency = rows[0]["latency_s"]
    for row in rows:
        row["latency_over_target_only"] = row["latency_s"] / target_latency
    print(json.dumps({"problems": len(problems), "concurrency": args.concurrency, "runs": rows}, indent=2))


if __name__ == "__main__":
    main()
