"""The router's input text, as in the paper: the problem, each previous step
prefixed with the model that wrote it, then the pending draft step."""

from __future__ import annotations

from typing import Sequence

from arbitrage.protocols import AnnotatedStep

MODEL_TAGS = {"draft": "Model 0: ", "target": "Model 1: "}


def format_router_input(
    problem: str,
    previous_steps: Sequence[AnnotatedStep],
    draft_step: str,
    *,
    annotate: bool = True,
    separator: str = "\n\n",
) -> str:
    """`annotate=False` drops the model tags (the paper's annotation ablation)."""

    def tagged(text: str, source: str) -> str:
        return f"{MODEL_TAGS[source]}{text}" if annotate else text

    parts = [problem]
    parts.extend(tagged(step.text, step.source) for step in previous_steps)
    parts.append(tagged(draft_step, "draft"))
    return separator.join(parts)
