"""A small scripted world for sweeps: per problem, a draft that errs more often than the
target, a PRM and a router whose scores are informative but noisy, and (optionally)
sleeps so latency behaves like a small draft and a big target. Seeded; no real models.

A step is right or wrong; the final step states the gold answer only when it and every
committed step before it are right, so escalating a wrong draft step can fix a problem.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

from arbitrage.protocols import SamplingParams, StepOutput
from arbitrage.servers.factory import ModelSet
from fakes import ScriptedPRM, ScriptedRouter

SCRIPT_TAG = '<script>alert("x")</script> & <b>not bold</b>'


@dataclass
class WorldProblem:
    id: str
    problem: str
    answer: str
    dataset: str | None = None


class World:
    def __init__(self, n_problems: int = 8, *, seed: int = 0, draft_error: float = 0.35, target_error: float = 0.05,
                 script_in_first_draft_step: bool = False):
        rng = random.Random(seed)
        self.problems: list[WorldProblem] = []
        self.steps: dict[tuple[str, str], list[tuple[str, str]]] = {}  # (model, problem) -> [(right, wrong)]
        self.wrong: set[str] = set()
        self.prm_rewards: dict[str, float] = {}
        self.router_scores: dict[str, float] = {}
        for i in range(n_problems):
            text = f"Problem {i}: start at {i} and add one {2 + i % 3} times."
            gold = i + 2 + i % 3
            self.problems.append(WorldProblem(f"q{i}", text, str(gold)))
            n_steps = 2 + i % 3
            for model, error in (("draft", draft_error), ("target", target_error)):
                script = []
                for j in range(n_steps):
                    last = j == n_steps - 1
                    right = f"[{model}] {i + j} + 1 = {i + j + 1}." + (f" The answer is \\boxed{{{gold}}}." if last else "")
                    wrong = f"[{model}] {i + j} + 1 = {i + j + 2}." + (f" The answer is \\boxed{{{gold + 1}}}." if last else "")
                    if script_in_first_draft_step and model == "draft" and i == 0 and j == 0:
                        right, wrong = f"{right} {SCRIPT_TAG}", f"{wrong} {SCRIPT_TAG}"
                    script.append((right, wrong) if rng.random() >= error else (wrong, wrong))
                    self.wrong.add(wrong)
                    for step in {right, wrong}:
                        ok = step not in self.wrong
                        self.prm_rewards[step] = rng.uniform(0.5, 0.95) if ok else rng.uniform(0.15, 0.7)
                        if model == "draft":
                            self.router_scores[step] = rng.uniform(0.05, 0.5) if ok else rng.uniform(0.4, 0.95)
                self.steps[(model, text)] = script

    def models(self, *, slow: bool = False) -> ModelSet:
        """`slow`: sleep like a 2-layer draft and a 10-layer target (per token) plus scorer calls."""
        return ModelSet(
            draft=WorldGenerator(self, "draft", delay_s_per_token=0.0004 if slow else 0.0),
            target=WorldGenerator(self, "target", delay_s_per_token=0.004 if slow else 0.0),
            prm=SlowPRM(self.prm_rewards, 0.003 if slow else 0.0),
            router=SlowRouter(self.router_scores, 0.001 if slow else 0.0),
        )


class WorldGenerator:
    def __init__(self, world: World, model: str, *, tokens_per_step: int = 8, delay_s_per_token: float = 0.0):
        self.world = world
        self.model = model
        self.tokens_per_step = tokens_per_step
        self.delay = delay_s_per_token
        self.calls = 0

    def step(self, problem, steps, *, max_tokens, sampling: SamplingParams | None = None, session=None) -> StepOutput:
        self.calls += 1
        script = self.world.steps[(self.model, problem)]
        index = min(len(steps), len(script) - 1)
        right, wrong = script[index]
        prefix_ok = not any(step in self.world.wrong for step in steps)
        text = right if prefix_ok or index < len(script) - 1 else wrong
        tokens = min(self.tokens_per_step, max_tokens)
        if self.delay:
            time.sleep(self.delay * tokens)
        return StepOutput(text=text, num_tokens=tokens, finish_reason="eos" if index == len(script) - 1 else "separator",
                          token_logprobs=[-0.5] * tokens)

    def end_session(self, session: str) -> None:
        pass


class SlowPRM(ScriptedPRM):
    def __init__(self, rewards, delay_s: float):
        super().__init__(rewards)
        self.delay = delay_s

    def score(self, problem, steps):
        if self.delay:
            time.sleep(self.delay)
        return super().score(problem, steps)


class SlowRouter(ScriptedRouter):
    def __init__(self, scores, delay_s: float):
        super().__init__(scores)
        self.delay = delay_s

    def score(self, query):
        if self.delay:
            time.sleep(self.delay)
        return super().score(query)
