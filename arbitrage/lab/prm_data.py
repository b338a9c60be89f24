"""The PRM's training data: whole solutions sampled from the lab models on training problems,
split into steps, each step labelled by the exact checker.

Sampling takes minutes per 500 problems on a CPU, so nothing sampled is sampled twice:
`sampled_prm_data` keeps its rows in one file that a rerun reads back, and
`draft_only_prm_data` keeps its rows a chunk of problems at a time, so a crash loses at
most the chunk in progress.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from arbitrage.lab import progress_bar
from arbitrage.lab.checker import check_solution
from arbitrage.lab.generation import generate_solutions, split_steps
from arbitrage.lab.prm_training import PRMRecipe
from arbitrage.lab.task import LabProblem


def sample_prm_data(models: dict, problems: Sequence[LabProblem], temperatures: dict, seed: int) -> list[dict]:
    """Sampled solutions from each model, split into steps and labelled by the checker."""
    rows = []
    bar = progress_bar(sum(len(temperatures[name]) for name in models) * len(problems), "prm data (solutions)")
    for name, model in models.items():
        for j, temp in enumerate(temperatures[name]):
            sols = generate_solutions(model, [p.problem for p in problems], temperature=temp, batch_size=512,
                                      seed=seed * 100 + j + (0 if name == "draft" else 50))
            bar.update(len(sols))
            for p, sol in zip(problems, sols):
                steps = [s[:160] for s in split_steps(sol, max_steps=10)]
                if not steps:
                    continue
                labels = [int(v.correct) for v in check_solution(p, steps)]
                rows.append({"problem": p.problem, "steps": steps, "labels": labels, "source": name,
                             "temperature": temp})
    bar.close()
    return rows


def sampled_prm_data(recipe: PRMRecipe, models: dict, train: list[LabProblem], seed: int, path: Path) -> list[dict]:
    """Sample the PRM data once: a rerun in the same output directory reads it back."""
    key = {"seed": seed, "n_problems": recipe.n_problems, "draft_temperatures": list(recipe.draft_temperatures),
           "target_temperatures": list(recipe.target_temperatures)}
    if path.is_file():
        lines = path.read_text().splitlines()
        if lines and json.loads(lines[0]) == key:
            return [json.loads(line) for line in lines[1:]]
    rows = sample_prm_data(models, train[: recipe.n_problems],
                           {"draft": recipe.draft_temperatures, "target": recipe.target_temperatures}, seed)
    path.write_text("\n".join(json.dumps(x) for x in [key, *rows]) + "\n")
    return rows


def draft_only_prm_data(recipe: PRMRecipe, draft, train: list[LabProblem], seed: int, path: Path) -> list[dict]:
    """The recipe's draft-only rows, sampled a chunk at a time; each chunk is appended to `path` as
    one line when it finishes, so an interrupted run keeps its finished chunks and a rerun samples
    only the rest. A line cut short by a kill mid-write is dropped and its chunk sampled again."""
    if not recipe.draft_only_problems:
        return []
    start, size = recipe.draft_only_start, recipe.draft_only_chunk
    stop = start + recipe.draft_only_problems
    key = {"seed": seed, "draft_temperatures": list(recipe.draft_temperatures), "start": start, "chunk": size}
    lines = path.read_text().splitlines() if path.is_file() else []
    chunks: dict[int, list[dict]] = {}
    if lines and json.loads(lines[0]) == key:
        for line in lines[1:]:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            chunks[record["chunk"]] = record["rows"]
    # Rewritten from what parsed, so the next append starts on a line of its own; through a
    # temporary file, so a kill during the rewrite loses no finished chunk.
    fresh = path.with_suffix(".tmp")
    fresh.write_text("".join(json.dumps(x) + "\n" for x in [key, *({"chunk": c, "rows": r} for c, r in chunks.items())]))
    fresh.replace(path)
    for first in range(start, stop, size):
        if first in chunks:
            continue
        chunks[first] = sample_prm_data({"draft": draft}, train[first:first + size],
                                        {"draft": recipe.draft_temperatures}, seed * 1000 + 10 + first // size)
        with path.open("a") as f:
            f.write(json.dumps({"chunk": first, "rows": chunks[first]}) + "\n")
    return [{**r, "chunk": first} for first in range(start, stop, size) for r in chunks[first]]
