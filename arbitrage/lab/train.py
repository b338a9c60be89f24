"""The lab training recipe: draft, target and PRM from scratch, reproducible from a seed.

1. Data: `make_splits(seed)`; the LMs train on `bos + prompt + solution + eos`
   with the loss on the solution only.
2. Draft (2 layers): trained with a high learning rate and stopped at the first
   checkpoint (checked every `eval_every` steps on validation problems, greedy)
   whose whole-problem accuracy reaches `stop_at_acc`: a weak model that has
   learned the format but still makes arithmetic and reading mistakes.
3. Target (10 layers): trained until its validation accuracy reaches
   `stop_at_acc` or `max_steps`.
4. PRM data: whole solutions sampled (temperature) from draft and target on
   training problems, split into steps, each labelled by the exact checker, plus
   more problems written by the draft alone (`PRMRecipe.draft_only_problems`).
5. PRM (LlamaForTokenClassification, num_labels=1, backbone initialised from the
   target): per-step BCE at the last token of each `step + "\\n\\n"` segment (and
   optionally the dense and language-modelling terms of `prm_training`).
6. Router init: the same PRM training on the draft's backbone, cut to its bottom
   layer, for `arbitrage router train --init DIR/router-init` (the router itself
   trains on `generate` rows, see arbitrage/router).

Everything is seeded; `train_all(seed, output, device)` writes output/{draft,target,prm,router-init}
(model + tokenizer files) and output/training_log.json.
"""

from __future__ import annotations

import functools
import json
import math
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch

from arbitrage.lab import progress_bar
from arbitrage.lab.checker import answer_correct
from arbitrage.lab.frozen_bottom import CachedPRMLoss, cache_bottom, freeze_bottom
from arbitrage.lab.generation import generate_solutions
from arbitrage.lab.modeling import (
    DRAFT_SIZE, TARGET_SIZE, Size, count_params, keep_bottom_layers, new_causal_lm, new_prm,
)
from arbitrage.lab.prm_data import draft_only_prm_data, sampled_prm_data
from arbitrage.lab.prm_training import PRMRecipe, make_example, prm_loss
from arbitrage.lab.task import LabProblem, format_prompt, make_splits
from arbitrage.lab.tokenizer import BOS_ID, EOS_ID, PAD_ID, build_tokenizer, encode


@dataclass(frozen=True)
class LMRecipe:
    size: Size
    max_steps: int
    batch_size: int
    lr: float
    warmup: int
    eval_every: int
    eval_n: int
    stop_at_acc: float


@dataclass(frozen=True)
class Recipe:
    n_train: int = 40000
    n_validation: int = 500
    n_test: int = 1000
    draft: LMRecipe = LMRecipe(DRAFT_SIZE, max_steps=3000, batch_size=128, lr=3e-3, warmup=100,
                               eval_every=100, eval_n=200, stop_at_acc=0.40)
    target: LMRecipe = LMRecipe(TARGET_SIZE, max_steps=3000, batch_size=128, lr=2e-3, warmup=200,
                                eval_every=500, eval_n=200, stop_at_acc=0.95)
    # 4,000 solutions of both models plus 10,000 of the draft alone on 5,000 more problems;
    # 1,500 steps see them about 1.7 times (MODEL_CARD.md, "DRAFT5K").
    prm: PRMRecipe = PRMRecipe(steps=1500, draft_only_problems=5000)
    # A small PRM on the draft's backbone, all layers trained: the router's starting point (the
    # paper starts its router from a small PRM). It trains on the PRM's sampled steps, so its own
    # sampling fields are unused. Only its bottom `router_init_layers` are kept, so the router
    # runs at every step for under 10% of a draft step (MODEL_CARD.md).
    router_init: PRMRecipe = PRMRecipe(train_top_layers=None)
    router_init_layers: int = 1

    def __post_init__(self):
        # Checked here, not when the PRM data is sampled: that comes after hours of LM training.
        stop = self.prm.draft_only_start + self.prm.draft_only_problems
        if self.prm.draft_only_problems and stop > self.n_train:
            raise ValueError(f"draft_only_start + draft_only_problems ({stop}) is beyond the {self.n_train} "
                             f"training problems (n_train)")


def tiny_recipe() -> Recipe:
    """A seconds-long version for tests and smoke runs (the models it makes are useless)."""
    return Recipe(
        n_train=200, n_validation=20, n_test=20,
        draft=LMRecipe(Size(2, 32, 64, 2), max_steps=6, batch_size=4, lr=3e-3, warmup=2, eval_every=3, eval_n=4, stop_at_acc=0.4),
        target=LMRecipe(Size(2, 32, 64, 2), max_steps=6, batch_size=4, lr=1e-3, warmup=2, eval_every=3, eval_n=4, stop_at_acc=0.95),
        prm=PRMRecipe(n_problems=8, steps=4, batch_size=4, warmup=1),
        router_init=PRMRecipe(steps=4, batch_size=4, warmup=1, train_top_layers=None),
    )


def lm_example(p: LabProblem) -> tuple[list[int], list[int]]:
    """Token ids and labels (-100 on the prompt) for one problem's reference solution."""
    prompt = [BOS_ID] + encode(format_prompt(p.problem))
    answer = encode(p.solution()) + [EOS_ID]
    return prompt + answer, [-100] * len(prompt) + answer


def _batch(examples: Sequence[tuple[list[int], list[int]]], device) -> dict:
    width = max(len(x) for x, _ in examples)
    ids = torch.full((len(examples), width), PAD_ID, dtype=torch.long)
    labels = torch.full((len(examples), width), -100, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for i, (x, y) in enumerate(examples):
        ids[i, : len(x)] = torch.tensor(x)
        labels[i, : len(y)] = torch.tensor(y)
        mask[i, : len(x)] = 1
    return {"input_ids": ids.to(device), "labels": labels.to(device), "attention_mask": mask.to(device)}


def _lr_at(step: int, total: int, warmup: int, peak: float) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def _autocast(device: str):
    if device.startswith("cuda"):
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast("cpu", enabled=False)


def accuracy(model, problems: Sequence[LabProblem], batch_size: int = 256) -> float:
    was_training = model.training
    model.eval()
    sols = generate_solutions(model, [p.problem for p in problems], batch_size=batch_size)
    model.train(was_training)
    return sum(answer_correct(p, s) for p, s in zip(problems, sols)) / max(1, len(problems))


def train_loop(model, examples: list, *, steps: int, batch_size: int, lr: float, warmup: int, device: str,
               seed: int, desc: str, loss_fn: Callable | None = None, eval_every: int = 0,
               eval_fn: Callable | None = None, stop: Callable[[float], bool] | None = None,
               on_eval: Callable | None = None) -> dict:
    """AdamW with warmup + cosine decay; optional periodic eval with early stop."""
    model.to(device).train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, betas=(0.9, 0.98), weight_decay=0.01,
                            fused=device.startswith("cuda"))
    rng = random.Random(seed)
    order: list[int] = []
    history = []
    t0 = time.time()
    bar = progress_bar(steps, desc)
    loss_ema = None
    step = 0
    for step in range(1, steps + 1):
        if len(order) < batch_size:
            perm = list(range(len(examples)))
            rng.shuffle(perm)
            order += perm
        idx, order = order[:batch_size], order[batch_size:]
        batch = [examples[i] for i in idx]
        for g in opt.param_groups:
            g["lr"] = _lr_at(step - 1, steps, warmup, lr)
        with _autocast(device):
            loss = loss_fn(model, batch, device) if loss_fn else model(**_batch(batch, device)).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        loss_ema = float(loss.detach()) if loss_ema is None else 0.95 * loss_ema + 0.05 * float(loss.detach())
        bar.update(1)
        bar.set_postfix(loss=f"{loss_ema:.4f}")
        if eval_fn and eval_every and step % eval_every == 0:
            score = eval_fn(model)
            history.append({"step": step, "loss": round(loss_ema, 5), "val_acc": score,
                            "seconds": round(time.time() - t0, 1)})
            bar.write(f"{desc}: step {step} loss {loss_ema:.4f} val acc {score:.3f}")
            if on_eval:
                on_eval(model, history)
            if stop and stop(score):
                break
    bar.close()
    model.eval()
    return {"steps": step, "seconds": round(time.time() - t0, 1), "final_loss": loss_ema, "history": history}


def train_lm(recipe: LMRecipe, train: list[LabProblem], val: list[LabProblem], *, device: str, seed: int, desc: str,
             checkpoint_dir: Path | None = None):
    model = new_causal_lm(recipe.size, seed)

    def on_eval(m, history):
        if checkpoint_dir is not None:  # the latest checkpoint survives an interrupted run
            save_model(m, checkpoint_dir)
            m.to(device)

    examples = [lm_example(p) for p in train]
    log = train_loop(
        model, examples, steps=recipe.max_steps, batch_size=recipe.batch_size, lr=recipe.lr,
        warmup=recipe.warmup, device=device, seed=seed, desc=desc, eval_every=recipe.eval_every,
        eval_fn=lambda m: accuracy(m, val[: recipe.eval_n]), stop=lambda acc: acc >= recipe.stop_at_acc,
        on_eval=on_eval,
    )
    log["params"] = count_params(model)
    return model, log


def train_prm(recipe: PRMRecipe, rows: list[dict], target, size: Size, *, device: str, seed: int):
    prm = new_prm(size, seed, init_from=target)
    examples = [make_example(r["problem"], r["steps"], r["labels"], dense=recipe.dense_weight > 0,
                             lm=recipe.lm_weight > 0) for r in rows]
    n_frozen = 0 if recipe.train_top_layers is None else max(0, size.layers - recipe.train_top_layers)
    if n_frozen == 0:
        loss_fn = functools.partial(prm_loss, dense_weight=recipe.dense_weight, lm_weight=recipe.lm_weight)
    else:
        freeze_bottom(prm, n_frozen)
        t0 = time.time()
        bar = progress_bar(len(examples), "prm (frozen layers, once)")
        examples = cache_bottom(prm.to(device).eval(), examples, n_frozen, device, progress=bar)
        bar.close()
        cache_seconds = round(time.time() - t0, 1)
        loss_fn = CachedPRMLoss(prm, n_frozen, dense_weight=recipe.dense_weight, lm_weight=recipe.lm_weight)
    log = train_loop(prm, examples, steps=recipe.steps, batch_size=recipe.batch_size, lr=recipe.lr,
                     warmup=recipe.warmup, device=device, seed=seed, desc="prm", loss_fn=loss_fn)
    if n_frozen:
        log["frozen_layers_seconds"] = cache_seconds
    log["params"] = count_params(prm)
    return prm, log


def save_model(model, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    model = model.to("cpu").float()
    model.save_pretrained(out_dir, safe_serialization=True)
    build_tokenizer().save_pretrained(out_dir)


def train_all(seed: int, output: str | Path, device: str = "cpu", recipe: Recipe | None = None,
              draft_from: str | Path | None = None, target_from: str | Path | None = None) -> dict:
    """Train all three models; `draft_from` reuses a draft this recipe already trained
    (a directory written by an earlier run with the same seed) instead of training it
    again; `target_from` likewise for the target."""
    recipe = recipe or Recipe()
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    if device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = True
    t0 = time.time()
    train, val, _test = make_splits(seed, n_train=recipe.n_train, n_validation=recipe.n_validation,
                                    n_test=recipe.n_test)
    log: dict = {"seed": seed, "device": device, "torch": torch.__version__, "recipe": _jsonable(asdict(recipe))}

    if draft_from is not None:
        from transformers import AutoModelForCausalLM

        draft_from = Path(draft_from)
        draft = AutoModelForCausalLM.from_pretrained(draft_from, dtype=torch.float32)
        earlier = draft_from.parent / "training_log.json"
        log["draft"] = json.loads(earlier.read_text())["draft"] if earlier.is_file() else {}
        log["draft"]["reused_from"] = str(draft_from)
    else:
        draft, log["draft"] = train_lm(recipe.draft, train, val, device=device, seed=seed + 1, desc="draft")
    save_model(draft, output / "draft")
    (output / "training_log.json").write_text(json.dumps(log, indent=2))
    draft.to(device)
    if target_from is not None:
        from transformers import AutoModelForCausalLM

        target_from = Path(target_from)
        target = AutoModelForCausalLM.from_pretrained(target_from, dtype=torch.float32).eval()
        earlier = target_from.parent / "training_log.json"
        log["target"] = json.loads(earlier.read_text())["target"] if earlier.is_file() else {}
        log["target"]["reused_from"] = str(target_from)
    else:
        target, log["target"] = train_lm(recipe.target, train, val, device=device, seed=seed + 2, desc="target",
                                         checkpoint_dir=output / "target")
    save_model(target, output / "target")
    (output / "training_log.json").write_text(json.dumps(log, indent=2))
    target.to(device)

    t1 = time.time()
    rows = sampled_prm_data(recipe.prm, {"draft": draft, "target": target}, train, seed, output / "prm_data.jsonl")
    draft_only = draft_only_prm_data(recipe.prm, draft, train, seed, output / "prm_data_draft_only.jsonl")
    rows += draft_only
    n_steps = sum(len(r["labels"]) for r in rows)
    n_pos = sum(sum(r["labels"]) for r in rows)
    log["prm_data"] = {"solutions": len(rows), "steps": n_steps, "correct_steps": n_pos,
                       "draft_only_solutions": len(draft_only),
                       "seconds": round(time.time() - t1, 1),
                       "by_source": {s: sum(len(r["labels"]) for r in rows if r["source"] == s) for s in ("draft", "target")}}
    (output / "training_log.json").write_text(json.dumps(log, indent=2))
    prm, log["prm"] = train_prm(recipe.prm, rows, target, recipe.target.size, device=device, seed=seed + 3)
    save_model(prm, output / "prm")
    (output / "training_log.json").write_text(json.dumps(log, indent=2))
    router_init, log["router_init"] = train_prm(recipe.router_init, rows, draft, recipe.draft.size, device=device,
                                                seed=seed + 4)
    save_model(keep_bottom_layers(router_init, recipe.router_init_layers), output / "router-init")
    log["router_init"]["kept_layers"] = recipe.router_init_layers
    log["total_seconds"] = round(time.time() - t0, 1)
    (output / "training_log.json").write_text(json.dumps(log, indent=2))
    return log


def _jsonable(x):
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    return x
