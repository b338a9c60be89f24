"""`arbitrage lab ...`: train the lab models from a seed, and print the lab figures."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

lab_app = typer.Typer(help="The lab task and its trained draft, target and PRM models.", no_args_is_help=True)


@lab_app.command()
def train(
    seed: int = typer.Option(0, help="seed for the data splits, initialisation and sampling"),
    output: Path = typer.Option(..., help="directory to write draft/, target/, prm/, router-init/ and training_log.json"),
    device: str = typer.Option("cpu", help="cpu or cuda"),
    tiny: bool = typer.Option(False, help="seconds-long smoke run (useless models)"),
    draft_from: Optional[Path] = typer.Option(None, help="reuse a draft an earlier run of this recipe trained"),
    target_from: Optional[Path] = typer.Option(None, help="reuse a target an earlier run of this recipe trained"),
    draft_only_problems: Optional[int] = typer.Option(
        None, help="training problems the draft alone writes PRM data on, a multiple of 500 (default: the "
        "recipe's 5,000; 0 leaves only the 4,000 solutions of both models)"),
) -> None:
    """Train draft, target and PRM from scratch (the recipe in arbitrage/lab/train.py)."""
    import dataclasses

    import torch

    from arbitrage.lab.train import Recipe, tiny_recipe, train_all

    if device == "cuda" and not torch.cuda.is_available():
        raise typer.BadParameter("CUDA is not available", param_hint="--device")
    recipe = tiny_recipe() if tiny else Recipe()
    if draft_only_problems is not None:
        try:
            recipe = dataclasses.replace(recipe, prm=dataclasses.replace(recipe.prm,
                                                                         draft_only_problems=draft_only_problems))
        except ValueError as e:
            raise typer.BadParameter(str(e), param_hint="--draft-only-problems") from None
    log = train_all(seed, output, device=device, recipe=recipe, draft_from=draft_from, target_from=target_from)
    typer.echo(f"wrote {output} in {log['total_seconds']} s")


@lab_app.command("eval")
def eval_(
    json_out: bool = typer.Option(False, "--json", help="print the figures as JSON"),
    n: int = typer.Option(500, help="number of test problems"),
    weights: Optional[Path] = typer.Option(None, help="model directory (default: the shipped weights)"),
    seed: int = typer.Option(0, help="seed of the splits"),
    device: str = typer.Option("cpu"),
    batch_size: int = typer.Option(256),
    progress: Optional[Path] = typer.Option(
        None, help="also write the figures so far to this file after each phase; a rerun with the same file "
        "starts after them"),
    taus: Optional[str] = typer.Option(None, help="comma-separated oracle thresholds (default: a 12-point grid)"),
) -> None:
    """Draft-only / target-only accuracy, PRM AUROC and the oracle curve on the test split."""
    from arbitrage.lab import WEIGHTS_DIR
    from arbitrage.lab.evaluate import ORACLE_TAUS, evaluate

    report = evaluate(weights or WEIGHTS_DIR, n=n, seed=seed, device=device, batch_size=batch_size,
                      progress_path=progress, taus=[float(t) for t in taus.split(",")] if taus else ORACLE_TAUS)
    if json_out:
        typer.echo(json.dumps(report, indent=2))
        return
    typer.echo(f"test problems: {report['n']}")
    typer.echo(f"draft-only accuracy:  {report['draft_only_accuracy']:.3f}")
    typer.echo(f"target-only accuracy: {report['target_only_accuracy']:.3f}")
    typer.echo(f"PRM AUROC (both models' steps): {report['prm_auroc']}")
    for r in report["oracle"]:
        typer.echo(f"oracle tau={r['tau']:+.2f}: accuracy {r['accuracy']:.3f}, escalation {r['escalation_rate']:.3f}")


if __name__ == "__main__":
    lab_app()
