"""Every policy, once: which models it calls, what decides each step, and its threshold rule.

A `Policy` is data plus the one comparison its threshold takes part in:

| policy        | decision per step                                           | target called     |
|---------------|-------------------------------------------------------------|-------------------|
| `arbitrage`   | router score y_hat; escalate iff y_hat > threshold          | on escalation     |
| `rsd`         | PRM score s_d of the draft step; accept iff s_d >= threshold | on rejection      |
| `oracle`      | both steps PRM-scored; escalate iff s_t - s_d > threshold   | every step        |
|               | and the target wrote a different step                       |                   |
| `draft_only`  | none: the draft writes every step                           | never             |
| `target_only` | none: the target writes every step                          | every step        |
| `generate`    | both steps PRM-scored; keep the target's iff s_t > s_d;     | every step        |
|               | record a router training row                                |                   |

The oracle prices what an ideal router would escalate. Where the target writes the
draft's own text, taking "its" step changes nothing, so an ideal router would not call
the target there: that step is the draft's, not an escalation. (The same text has the
same reward, so at a threshold below 0 the bare rule would count every such tie.)

The graph builder (arbitrage/graph/builder.py) wires a policy's nodes from these fields;
nodes read the flags from the run's context and never compare policy names. Imports
only arbitrage.errors, so the config can validate against it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal, NamedTuple

from arbitrage.errors import InputError

Role = Literal["draft", "target", "prm", "router"]
# What the step's decision reads before the target may be called:
# "router": the router's score of the draft step; "prm": the PRM's score of the draft step;
# "both_steps": both models write and the PRM scores both; "none": no decision.
Decider = Literal["router", "prm", "both_steps", "none"]


class PolicyError(InputError):
    """An unknown policy, or a threshold the policy cannot take; the message names the value."""


class StepScores(NamedTuple):
    """What a decision may read about the pending step."""

    router: float | None = None
    draft: float | None = None
    target: float | None = None
    same_text: bool = False  # the target wrote exactly the draft's step


EscalationRule = Callable[[float, StepScores], bool]


def router_above(threshold: float, scores: StepScores) -> bool:
    return scores.router > threshold


def draft_reward_below(threshold: float, scores: StepScores) -> bool:
    return not scores.draft >= threshold


def advantage_above(threshold: float, scores: StepScores) -> bool:
    return not scores.same_text and scores.target - scores.draft > threshold


def target_reward_higher(threshold: float | None, scores: StepScores) -> bool:
    return scores.target > scores.draft


@dataclass(frozen=True)
class Policy:
    name: str
    roles: tuple[Role, ...]
    drafts: bool
    decider: Decider
    # Given the threshold and the step's scores: is the step the target's? None: no decision.
    escalates: EscalationRule | None = None
    writes_training_rows: bool = False
    default_threshold: float | None = None
    threshold_range: tuple[float, float] | None = None
    threshold_meaning: str | None = None

    def __str__(self) -> str:
        return self.name

    @property
    def uses_threshold(self) -> bool:
        return self.threshold_range is not None

    @property
    def calls_target(self) -> Literal["never", "on_escalation", "every_step"]:
        if "target" not in self.roles:
            return "never"
        return "on_escalation" if self.decider in ("router", "prm") else "every_step"

    @property
    def decision_scores(self) -> frozenset[str]:
        """The pending steps whose PRM scores the decision reads (other PRM scores only audit)."""
        return {"prm": frozenset({"draft"}), "both_steps": frozenset({"draft", "target"})}.get(
            self.decider, frozenset()
        )

    def check_threshold(self, threshold: float | None) -> None:
        if threshold is None or self.threshold_range is None:
            return
        low, high = self.threshold_range
        if not low <= threshold <= high:
            raise PolicyError(
                f"threshold {threshold} is outside [{low}, {high}] for policy '{self.name}' "
                f"(it is compared with {self.threshold_meaning})"
            )


ARBITRAGE = Policy(
    "arbitrage", ("draft", "target", "router"), drafts=True, decider="router", escalates=router_above,
    default_threshold=0.5, threshold_range=(0.0, 1.0), threshold_meaning="the router score y_hat",
)
RSD = Policy(
    "rsd", ("draft", "target", "prm"), drafts=True, decider="prm", escalates=draft_reward_below,
    default_threshold=0.7, threshold_range=(0.0, 1.0), threshold_meaning="the draft step's PRM score s_d",
)
ORACLE = Policy(
    "oracle", ("draft", "target", "prm"), drafts=True, decider="both_steps", escalates=advantage_above,
    default_threshold=0.0, threshold_range=(-1.0, 1.0), threshold_meaning="the PRM advantage s_t - s_d",
)
DRAFT_ONLY = Policy("draft_only", ("draft",), drafts=True, decider="none")
TARGET_ONLY = Policy("target_only", ("target",), drafts=False, decider="none")
GENERATE = Policy(
    "generate", ("draft", "target", "prm"), drafts=True, decider="both_steps", escalates=target_reward_higher,
    writes_training_rows=True,
)

POLICIES: dict[str, Policy] = {p.name: p for p in (ARBITRAGE, RSD, ORACLE, DRAFT_ONLY, TARGET_ONLY, GENERATE)}
POLICY_NAMES: tuple[str, ...] = tuple(POLICIES)


def get_policy(name: str) -> Policy:
    try:
        return POLICIES[name]
    except (KeyError, TypeError):
        raise PolicyError(f"unknown policy {name!r}; choose one of {', '.join(POLICY_NAMES)}") from None
