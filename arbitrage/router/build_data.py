"""Router training data: run the `generate` policy over problems (resumable, it is an
ordinary batch run) and split the recorded rows by problem into train/validation/test.

Several processes may fill one output directory at once, each with its own `shard`
(its own generate-* run directory); the splits are rebuilt from every shard present.
"""

from __future__ import annotations

import json
from pathlib import Path

from arbitrage.config import Config
from arbitrage.eval.run import RESULTS_FILE, read_results, run_batch
from arbitrage.router.dataset import SPLITS, rows_from_records, split_of, write_rows


def build_router_data(config: Config, problems, output_dir: str | Path, *, models=None, concurrency: int = 1,
                      progress: bool = True, shard: str = "") -> dict:
    output_dir = Path(output_dir)
    generate_dir = output_dir / (f"generate-{shard}" if shard else "generate")
    run_batch(config.with_overrides(policy="generate"), problems, generate_dir, models=models,
              concurrency=concurrency, progress=progress)
    return write_splits(output_dir)


def write_splits(output_dir: Path) -> dict:
    """train/validation/test.jsonl and stats.json from every generate run in output_dir."""
    records = [r for run in sorted(output_dir.glob("generate*")) for r in read_results(run / RESULTS_FILE)]
    rows = rows_from_records(records)
    stats = {}
    for split in SPLITS:
        chosen = [r for r in rows if split_of(r["problem_id"]) == split]
        write_rows(output_dir / f"{split}.jsonl", chosen)
        stats[split] = {
            "rows": len(chosen),
            "problems": len({r["problem_id"] for r in chosen}),
            "positive_fraction": (sum(r["label"] for r in chosen) / len(chosen)) if chosen else None,
        }
    (output_dir / "stats.json").write_text(json.dumps(stats, indent=2))
    return stats
