"""What the router metrics can reach on lab router data: scorers that know more than any router.

Scores every row of a lab `router build-data` split with reference scorers built from the
exact checker and the recorded target step, and prints `router_metrics` for each, the same
metrics `arbitrage router eval` prints:

- `draft wrong`: 1 iff the checker finds the draft step wrong (a perfect error detector);
- `target differs`: 1 iff the target wrote a different step (it reads the target's output);
- `draft wrong, target differs`: both, so an escalation could change the step;
- `label`: y = 1[delta > 0] itself, the best any two-valued score can do.

A router sees neither the checker nor the target, so the first three bound what a router
can reach on these labels; if even they miss a figure, the figure is out of reach of any
router on this data, whatever its model.

    python benchmarks/router_label_ceiling.py --data runs/router-data --split test
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from arbitrage.router.dataset import load_split
from arbitrage.router.evaluate import router_metrics
from router_wrong_steps import draft_step_wrong  # the benchmark beside this one


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="a router build-data directory on lab problems")
    parser.add_argument("--split", action="append", default=[], help="split (repeatable; default: test)")
    args = parser.parse_args()

    out = {}
    for split in args.split or ["test"]:
        rows = load_split(args.data, split)
        wrong = draft_step_wrong(rows)
        differs = [int(r["draft_step"] != r["target_step"]) for r in rows]
        scorers = {
            "draft wrong": wrong,
            "target differs": differs,
            "draft wrong, target differs": [w * d for w, d in zip(wrong, differs)],
            "label": [r["label"] for r in rows],
        }
        out[split] = {
            "rows": len(rows),
            "ties (delta = 0)": sum(r["delta"] == 0 for r in rows),
            "wrong draft steps": sum(wrong),
            "scorers": {name: router_metrics(scores, rows) for name, scores in scorers.items()},
        }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
