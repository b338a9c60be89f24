"""prm_score: the PRM scores whichever pending steps are still unscored.

Scores the policy decides on are counted as `prm_calls` and timed as `prm`; scores
taken only to audit an escalation (wasted-escalation metric) are counted and timed
apart, so they never inflate a policy's cost.

A pending step whose text equals one already scored on this prefix (the target wrote
the draft's step) takes that score instead of a second PRM call. The same input has one
reward; scored twice in different batches it differs in the last bits (padding changes
the float sums), and such a difference would turn a tie into an escalation under the
oracle at threshold 0 and into a positive router label (`delta > 0`) under `generate`.
"""

from __future__ import annotations

from langgraph.runtime import Runtime

from arbitrage.graph.context import SolveContext
from arbitrage.graph.state import SolveState
from arbitrage.graph.nodes.generation import accepted_texts
from arbitrage.graph.nodes.timing import timed
from arbitrage.protocols import last_step_reward


def _known_score(state: SolveState, update: dict, text: str) -> float | None:
    """The score already taken for a pending step with exactly this text, if any."""
    for which in ("draft", "target"):
        candidate = state.get(which)
        score = update.get(f"{which}_score", state.get(f"{which}_score"))
        if candidate is not None and score is not None and candidate["text"] == text:
            return score
    return None


def _count(update: dict, counter: str) -> None:
    update["counters"][counter] = update["counters"].get(counter, 0) + 1


def prm_score(state: SolveState, runtime: Runtime[SolveContext]) -> dict:
    prm = runtime.context.models.prm
    decision_scores = runtime.context.policy.decision_scores
    prefix = accepted_texts(state)
    update: dict = {"counters": {}, "timings": {}}
    for which in ("draft", "target"):
        candidate = state.get(which)
        if candidate is None or state.get(f"{which}_score") is not None:
            continue
        known = _known_score(state, update, candidate["text"])
        if known is not None:
            update[f"{which}_score"] = known
            _count(update, "reused_prm_scores")
            continue
        audit = which not in decision_scores
        with timed(update["timings"], "prm_audit" if audit else "prm"):
            reward = last_step_reward(prm, state["problem"], prefix + [candidate["text"]])
        _count(update, "audit_prm_calls" if audit else "prm_calls")
        update[f"{which}_score"] = reward
    extra = state.get("extra_targets") or []
    if extra and not state.get("extra_target_scores"):
        scores: dict[str, float] = {}
        with timed(update["timings"], "prm"):
            for sample in extra:
                text = sample["text"]
                known = scores.get(text, _known_score(state, update, text))
                if known is None:
                    known = last_step_reward(prm, state["problem"], prefix + [text])
                    _count(update, "prm_calls")
                else:
                    _count(update, "reused_prm_scores")
                scores[text] = known
        update["extra_target_scores"] = [scores[sample["text"]] for sample in extra]
    return update
