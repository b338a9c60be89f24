"""`arbitrage router ...`: build training data, train, evaluate, ablate.

    arbitrage router build-data --data test --dataset lab --limit 300 --output runs/router-data
    arbitrage router train --data runs/router-data --init lab:prm --output runs/router
    arbitrage router train --kind features --data runs/router-data --output runs/router-features
    arbitrage router train --kind target_prefill --data runs/router-data --output runs/router-prefill
    arbitrage router eval --router runs/router --data runs/router-data --split test --json
    arbitrage router ablate --data runs/router-data --init lab:prm --output runs/ablation
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from arbitrage.cli_support import fail

router_app = typer.Typer(no_args_is_help=True, help="Router data, training, evaluation and ablations.")


def _resolve(path: str) -> str:
    from arbitrage.servers.transformers_backend.loading import resolve_path

    return resolve_path(path, "router")


@router_app.command("build-data")
def build_data(
    config: Optional[Path] = typer.Option(None, help="YAML config (default: lab models)"),
    data: str = typer.Option("train", help="JSONL file, dataset name, or lab split"),
    dataset: str = typer.Option("lab", help="auto | gsm8k | math500 | jsonl | lab"),
    limit: Optional[int] = typer.Option(None, min=1),
    skip: int = typer.Option(0, min=0, help="skip the first N problems (to split the work across processes)"),
    shard: str = typer.Option("", help="name of this process's generate run when several fill one --output"),
    output: Path = typer.Option(..., help="directory for generate/ and the train/validation/test rows"),
    concurrency: int = typer.Option(1, min=1),
    target_samples: int = typer.Option(1, min=1, help="K: label with the mean PRM score of K target samples"),
) -> None:
    """Run the generate policy (both steps, both PRM scores) and write router rows split by problem."""
    from arbitrage.eval.cli import load_cli_problems
    from arbitrage.config import ConfigError, load_config, validate_config
    from arbitrage.router.build_data import build_router_data

    try:
        cfg = load_config(config)
        cfg = validate_config({**cfg.model_dump(), "target_samples": target_samples}, source="command line")
    except ConfigError as error:
        fail(str(error))
    problems = load_cli_problems(None, data, dataset, None, None if limit is None else skip + limit)[skip:]
    stats = build_router_data(cfg, problems, output, concurrency=concurrency, shard=shard)
    typer.echo(json.dumps(stats, indent=2))


@router_app.command()
def train(
    data: Path = typer.Option(..., help="directory with train.jsonl and validation.jsonl"),
    output: Path = typer.Option(...),
    kind: str = typer.Option(
        "classifier", help="classifier (neural, from --init) | features (zero-cost) | target_prefill (the target's "
        "log-probabilities of the draft step)"),
    label: str = typer.Option("checker", help="target_prefill: checker (the lab checker finds the draft step wrong; "
                              "lab rows only) | delta (the paper's label, s_t > s_d)"),
    config: Optional[Path] = typer.Option(None, help="target_prefill: YAML config whose target scores the rows "
                                          "(default: the lab models)"),
    cascade: Optional[str] = typer.Option(None, help="target_prefill: the feature router (directory or lab:NAME) "
                                          "that scores first under cascade_low; default: one fitted on the same rows"),
    threads: Optional[int] = typer.Option(1, min=1, help="torch CPU threads"),
    init: str = typer.Option("lab:prm", help="PRM checkpoint to initialise the classifier from"),
    annotate: bool = typer.Option(True, help="prefix steps with Model 0:/Model 1:"),
    downsample: bool = typer.Option(True, help="balance classes by downsampling the majority"),
    classes: int = typer.Option(2, help="label classes: 2, 4 or 10"),
    epochs: int = typer.Option(4, min=1),
    learning_rate: float = typer.Option(3e-4),
    batch_size: int = typer.Option(32, min=1),
    seed: int = typer.Option(0),
    device: str = typer.Option("cpu"),
) -> None:
    """Train a router and save it (with its options) under --output."""
    from arbitrage.router.dataset import check_both_labels, downsample_majority, load_split
    from arbitrage.router.evaluate import router_metrics

    try:
        train_rows, validation_rows = load_split(data, "train"), load_split(data, "validation")
        check_both_labels(train_rows, f"the train split of {data}")
    except (FileNotFoundError, ValueError) as error:
        fail(str(error))
    if kind == "features":
        from arbitrage.router.fit_features import data_identity, fit_feature_router

        try:
            draft = data_identity(data)  # recorded, so the router refuses another draft's features
        except ValueError as error:
            fail(str(error))
        rows = downsample_majority(train_rows, seed) if downsample else train_rows
        router = fit_feature_router(rows, seed=seed, draft=draft)
        router.save(output)
        metrics = router_metrics([router.score_row(r) for r in validation_rows], validation_rows)
        typer.echo(json.dumps({"validation": metrics}, indent=2))
        return
    if kind == "target_prefill":
        from arbitrage.cli_support import set_torch_threads
        from arbitrage.router.fit_features import data_identity
        from arbitrage.router.fit_prefill import train_prefill_router
        from arbitrage.servers.feature_router import FeatureRouter, model_identity
        from arbitrage.servers.prefill_router import FittedOn

        set_torch_threads(threads)
        try:
            cascade_router = FeatureRouter.load(_resolve(cascade)) if cascade is not None else None
            scoring_config = _load_config(config)
            fitted_on = FittedOn(draft=data_identity(data), target=model_identity(scoring_config.models.target))
            metrics = train_prefill_router(train_rows, validation_rows, output, label=label,
                                           target=_load_target(scoring_config), seed=seed, downsample=downsample,
                                           cascade=cascade_router, fitted_on=fitted_on)
        except (FileNotFoundError, ValueError) as error:
            fail(str(error))
        typer.echo(json.dumps({"validation": metrics}, indent=2))
        return
    if kind != "classifier":
        fail(f"--kind must be classifier, features or target_prefill, got {kind!r}")
    from arbitrage.router.train import RouterTrainingOptions, train_router

    options = RouterTrainingOptions(annotate=annotate, downsample=downsample, n_classes=classes, epochs=epochs,
                                    learning_rate=learning_rate, batch_size=batch_size, seed=seed, device=device)
    record = train_router(train_rows, validation_rows, _resolve(init), output, options)
    typer.echo(json.dumps(record["history"], indent=2))


@router_app.command("eval")
def evaluate(
    router: str = typer.Option(..., help="trained router directory (or lab:NAME)"),
    data: Path = typer.Option(..., help="router data directory"),
    split: str = typer.Option("test"),
    as_json: bool = typer.Option(False, "--json", help="print JSON only"),
    device: str = typer.Option("cpu"),
    config: Optional[Path] = typer.Option(None, help="target-prefill router: YAML config whose target scores the "
                                          "rows (default: the lab models)"),
) -> None:
    """Spearman(score, delta), AUROC, balanced accuracy and per-label accuracy on a split."""
    from arbitrage.router.dataset import load_split
    from arbitrage.router.evaluate import router_metrics

    try:
        rows = load_split(data, split)
        directory = Path(_resolve(router))
    except (FileNotFoundError, ValueError) as error:
        fail(str(error))
    from arbitrage.servers.prefill_router import WEIGHTS_FILE

    if (directory / WEIGHTS_FILE).exists():
        from arbitrage.router.fit_prefill import add_target_logprobs
        from arbitrage.servers.prefill_router import load_prefill_weights, row_prefill_signals

        model, _, _, _ = load_prefill_weights(directory)
        add_target_logprobs(rows, _load_target(_load_config(config)))
        scores = [model.probability(row_prefill_signals(r)) for r in rows]
    elif (directory / "feature_router.json").exists():
        from arbitrage.servers.feature_router import FeatureRouter

        feature_router = FeatureRouter.load(directory)
        scores = [feature_router.score_row(r) for r in rows]
    else:
        from arbitrage.router.train import score_rows

        scores = score_rows(directory, rows, device=device)
    metrics = {"router": router, "split": split, **router_metrics(scores, rows)}
    if as_json:
        typer.echo(json.dumps(metrics, indent=2))
    else:
        for key, value in metrics.items():
            typer.echo(f"{key:>20}: {value}")


def _load_config(path: Optional[Path]):
    from arbitrage.config import ConfigError, load_config

    try:
        return load_config(path)
    except ConfigError as error:
        fail(str(error))


def _load_target(config):
    from arbitrage.config import ConfigError
    from arbitrage.servers.factory import load_models

    try:
        return load_models(config, roles=("target",)).target
    except ConfigError as error:
        fail(str(error))


@router_app.command()
def ablate(
    data: Path = typer.Option(..., help="router data directory"),
    output: Path = typer.Option(...),
    init: str = typer.Option("lab:prm"),
    split: str = typer.Option("test"),
    epochs: int = typer.Option(4, min=1),
    learning_rate: float = typer.Option(3e-4),
    batch_size: int = typer.Option(32, min=1),
    seed: int = typer.Option(0),
    device: str = typer.Option("cpu"),
) -> None:
    """Annotation, downsampling and label-granularity ablations; writes ablation.md and ablation.json."""
    from arbitrage.router.ablate import markdown_table, run_ablation
    from arbitrage.router.train import RouterTrainingOptions

    base = RouterTrainingOptions(epochs=epochs, learning_rate=learning_rate, batch_size=batch_size, seed=seed,
                                 device=device)
    try:
        table = run_ablation(data, _resolve(init), output, base, split=split)
    except (FileNotFoundError, ValueError) as error:
        fail(str(error))
    typer.echo(markdown_table(table, split))
