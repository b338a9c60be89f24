"""How well routers pick out wrong draft steps, next to the PRM score RSD thresholds.

A router is trained on `delta > 0` labels, but what a run's accuracy needs is that it
escalates the draft's wrong steps. On router rows of lab problems (written by
`arbitrage router build-data --dataset lab`), the exact checker labels each draft step
right or wrong, and this prints the AUROC at finding the wrong ones of: each neural
router (`--router`), each feature router (`--features`), each target-prefill router
(`--prefill`; the configured target, `--config`, scores every row's draft step in one
forward first), and the PRM's own draft score `1 - s_d` that the rows carry (the signal
RSD uses).

    python benchmarks/router_wrong_steps.py --data runs/router-data --router lab:router --features lab:router-features
    python benchmarks/router_wrong_steps.py --data runs/router-data --features lab:router-features --prefill lab:router-prefill
    python benchmarks/router_wrong_steps.py --data runs/router-data-labtest --splits all --features lab:router-features --prefill lab:router-prefill
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from arbitrage.lab.checker import check_step
from arbitrage.lab.evaluate import _auroc
from arbitrage.router.dataset import load_split
from arbitrage.router.fit_prefill import add_target_logprobs
from arbitrage.servers.feature_router import FeatureRouter
from arbitrage.servers.prefill_router import load_prefill_weights, row_prefill_signals
from arbitrage.router.train import score_rows
from arbitrage.servers.transformers_backend.loading import resolve_path


def draft_step_wrong(rows: list[dict]) -> list[int]:
    """1 where the checker finds the row's draft step wrong after the row's earlier steps
    (the checker reads the operations from the problem text itself)."""
    return [int(not check_step(r["problem"], [s["text"] for s in r["previous_steps"]], r["draft_step"]).correct)
            for r in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="router data directory (build-data on lab training problems)")
    parser.add_argument("--router", action="append", default=[], help="neural router directory or lab:NAME")
    parser.add_argument("--features", action="append", default=[], help="feature router directory or lab:NAME")
    parser.add_argument("--prefill", action="append", default=[], help="target-prefill router directory or lab:NAME")
    parser.add_argument("--config", default=None, help="whose target scores the rows for --prefill (default: lab)")
    parser.add_argument("--splits", default="validation,test",
                        help="comma-separated; 'all' pools train, validation and test (rows of problems no router saw)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    target = None
    if args.prefill:
        from arbitrage.config import load_config
        from arbitrage.servers.factory import load_models

        target = load_models(load_config(args.config), roles=("target",)).target
    for split in args.splits.split(","):
        parts = ("train", "validation", "test") if split == "all" else (split,)
        rows = [row for part in parts for row in load_split(args.data, part)]
        if target is not None:
            add_target_logprobs(rows, target)
        wrong = draft_step_wrong(rows)
        figures = {"split": split, "rows": len(rows), "wrong_draft_steps": sum(wrong)}
        for path in args.router:
            figures[f"router {path}"] = _auroc(wrong, score_rows(resolve_path(path, "router"), rows))
        for path in args.features:
            router = FeatureRouter.load(resolve_path(path, "router"))
            figures[f"features {path}"] = _auroc(wrong, [router.score_row(r) for r in rows])
        for path in args.prefill:
            model, _, _, _ = load_prefill_weights(resolve_path(path, "router"))
            figures[f"prefill {path}"] = _auroc(wrong, [model.probability(row_prefill_signals(r)) for r in rows])
        figures["prm 1 - s_d"] = _auroc(wrong, [1 - r["draft_score"] for r in rows])
        print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in figures.items()}))


if __name__ == "__main__":
    main()
