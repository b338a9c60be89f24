"""The paper's three router ablations on the same data: step annotations, class-balanced
downsampling, and label granularity (2 / 4 / 10 classes). Each variant changes one
choice from the default (annotated, downsampled, binary) and is scored on one split."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from arbitrage.router.dataset import load_split
from arbitrage.router.evaluate import router_metrics
from arbitrage.router.train import RouterTrainingOptions, score_rows, train_router

VARIANTS: dict[str, dict] = {
    "default (annotated, downsampled, 2 classes)": {},
    "no annotations": {"annotate": False},
    "no downsampling": {"downsample": False},
    "4 classes": {"n_classes": 4},
    "10 classes": {"n_classes": 10},
}
COLUMNS = ("spearman", "auroc", "balanced_accuracy", "accuracy_label_1", "accuracy_label_0")


def run_ablation(data_dir: str | Path, init_checkpoint: str | Path, output_dir: str | Path,
                 base: RouterTrainingOptions = RouterTrainingOptions(), *, split: str = "test",
                 progress: bool = True) -> list[dict]:
    output_dir = Path(output_dir)
    train_rows, validation_rows = load_split(data_dir, "train"), load_split(data_dir, "validation")
    eval_rows = load_split(data_dir, split)
    table = []
    done = _finished_variants(output_dir / "ablation.json", split)
    for name, change in VARIANTS.items():
        if name in done:  # a rerun after a stop keeps the variants already trained and scored
            table.append(done[name])
            continue
        variant_dir = output_dir / name.split(" (")[0].replace(" ", "_")
        train_router(train_rows, validation_rows, init_checkpoint, variant_dir, replace(base, **change), progress=progress)
        metrics = router_metrics(score_rows(variant_dir, eval_rows, device=base.device), eval_rows)
        table.append({"variant": name, **{k: metrics[k] for k in COLUMNS}, "n": metrics["n"], "split": split})
        (output_dir / "ablation.json").write_text(json.dumps(table, indent=2))
    (output_dir / "ablation.md").write_text(markdown_table(table, split))
    return table


def _finished_variants(path: Path, split: str) -> dict[str, dict]:
    if not path.is_file():
        return {}
    return {row["variant"]: row for row in json.loads(path.read_text()) if row.get("split") == split}


def markdown_table(table: list[dict], split: str) -> str:
    fmt = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
    lines = [f"Router ablations ({split} split, {table[0]['n']} steps)", "",
             "| variant | " + " | ".join(COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
    lines += ["| " + row["variant"] + " | " + " | ".join(fmt(row[c]) for c in COLUMNS) + " |" for row in table]
    return "\n".join(lines) + "\n"
