"""Fine-tune the neural router: a sequence classifier initialised from a PRM checkpoint
(the paper's recipe), on the annotated router input.

Binary labels train one logit with BCE; 4 or 10 ordinal classes of delta train a
softmax head with cross-entropy (the router then reports the mass above the middle).
Early stopping keeps the epoch with the best validation Spearman(score, delta).
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass
from pathlib import Path

from arbitrage.router.dataset import delta_class, downsample_majority, router_text
from arbitrage.router.evaluate import router_metrics
from arbitrage.servers.transformers_backend.router import ROUTER_CONFIG_FILE, router_annotates

@dataclass(frozen=True)
class RouterTrainingOptions:
    annotate: bool = True
    downsample: bool = True
    n_classes: int = 2
    epochs: int = 4
    learning_rate: float = 3e-4
    batch_size: int = 32
    max_length: int = 768
    patience: int = 2
    seed: int = 0
    device: str = "cpu"


def _texts(rows: list[dict], annotate: bool) -> list[str]:
    return [router_text(row, annotate=annotate) for row in rows]


def _scores(model, tokenizer, texts: list[str], options: RouterTrainingOptions) -> list[float]:
    import torch

    from arbitrage.servers.transformers_backend.router import escalation_probability

    model.eval()
    scores = []
    with torch.inference_mode():
        for start in range(0, len(texts), options.batch_size):
            batch = tokenizer(texts[start : start + options.batch_size], padding=True, truncation=True,
                              max_length=options.max_length, return_tensors="pt").to(options.device)
            logits = model(**batch).logits
            scores.extend(escalation_probability(row) for row in logits)
    return scores


def score_rows(model_dir: str | Path, rows: list[dict], *, device: str = "cpu", batch_size: int = 32) -> list[float]:
    """Scores of a saved router on rows, formatted as it was trained (annotated or not)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    options = RouterTrainingOptions(annotate=router_annotates(model_dir), device=device, batch_size=batch_size)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir).to(device)
    return _scores(model, tokenizer, _texts(rows, options.annotate), options)


def train_router(
    train_rows: list[dict],
    validation_rows: list[dict],
    init_checkpoint: str | Path,
    output_dir: str | Path,
    options: RouterTrainingOptions = RouterTrainingOptions(),
    *,
    progress: bool = True,
) -> dict:
    """Train, keep the best epoch by validation Spearman, save it with its options; return the history."""
    import torch
    from rich.console import Console
    from rich.progress import Progress
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    random.seed(options.seed)
    torch.manual_seed(options.seed)
    rows = downsample_majority(train_rows, options.seed) if options.downsample else list(train_rows)
    if not rows or not validation_rows:
        raise ValueError("router training needs non-empty train and validation rows")
    tokenizer = AutoTokenizer.from_pretrained(init_checkpoint)
    num_labels = 1 if options.n_classes == 2 else options.n_classes
    model = AutoModelForSequenceClassification.from_pretrained(
        init_checkpoint, num_labels=num_labels, ignore_mismatched_sizes=True
    ).to(options.device)
    model.config.pad_token_id = tokenizer.pad_token_id
    optimizer = torch.optim.AdamW(model.parameters(), lr=options.learning_rate, weight_decay=0.01)
    texts = _texts(rows, options.annotate)
    targets = [r["label"] if options.n_classes == 2 else delta_class(r["delta"], options.n_classes) for r in rows]
    validation_texts = _texts(validation_rows, options.annotate)

    history, best, stale = [], None, 0
    output_dir = Path(output_dir)
    with Progress(disable=not progress, console=Console(stderr=True)) as bar:
        task = bar.add_task("router", total=options.epochs * ((len(rows) + options.batch_size - 1) // options.batch_size))
        for epoch in range(options.epochs):
            model.train()
            order = list(range(len(rows)))
            random.Random(options.seed + epoch).shuffle(order)
            total_loss = 0.0
            for start in range(0, len(order), options.batch_size):
                index = order[start : start + options.batch_size]
                batch = tokenizer([texts[i] for i in index], padding=True, truncation=True,
                                  max_length=options.max_length, return_tensors="pt").to(options.device)
                logits = model(**batch).logits
                target = torch.tensor([targets[i] for i in index], device=options.device)
                if num_labels == 1:
                    loss = torch.nn.functional.binary_cross_entropy_with_logits(logits[:, 0], target.float())
                else:
                    loss = torch.nn.functional.cross_entropy(logits, target)
                optimizer.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
                total_loss += loss.item() * len(index)
                bar.advance(task)
            metrics = router_metrics(_scores(model, tokenizer, validation_texts, options), validation_rows)
            history.append({"epoch": epoch, "train_loss": total_loss / len(rows), **metrics})
            rho = metrics["spearman"] if metrics["spearman"] is not None else float("-inf")
            record = {**asdict(options), "init_checkpoint": str(init_checkpoint), "train_rows": len(rows),
                      "history": history}
            if best is None or rho > best:
                best, stale = rho, 0
                model.save_pretrained(output_dir)
                tokenizer.save_pretrained(output_dir)
                record["best_epoch"] = epoch
            else:
                stale += 1
                record["best_epoch"] = json.loads((output_dir / ROUTER_CONFIG_FILE).read_text())["best_epoch"]
            # Written every epoch so a stopped run leaves a consistent directory behind.
            (output_dir / ROUTER_CONFIG_FILE).write_text(json.dumps(record, indent=2))
            if stale >= options.patience:
                break
    return record
