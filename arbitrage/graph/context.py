"""The run's context: the policy, its threshold, model handles and settings that travel
beside the state.

Heavy handles stay out of the state so the state remains small and serialisable; the
policy and threshold are the run's, not the problem's, so a checkpointed problem resumes
under whatever run picks it up.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from arbitrage.config import Config, Limits
from arbitrage.graph.router_watch import ConstantScoreWatch
from arbitrage.policies import ARBITRAGE, Policy
from arbitrage.protocols import SamplingParams
from arbitrage.servers.factory import ModelSet


@dataclass
class SolveContext:
    models: ModelSet
    policy: Policy = ARBITRAGE
    # The policy's threshold in force (None for policies that take none).
    threshold: float | None = ARBITRAGE.default_threshold
    separator: str = "\n\n"
    limits: Limits = Limits()
    draft_sampling: SamplingParams = SamplingParams()
    target_sampling: SamplingParams = SamplingParams()
    # generate policy: extra target samples whose mean PRM score labels the router row.
    extra_target_samples: int = 0
    extra_target_sampling: SamplingParams = SamplingParams(temperature=0.7)
    # Warns once per run when the router's scores never vary.
    router_watch: ConstantScoreWatch = field(default_factory=ConstantScoreWatch)

    @classmethod
    def from_config(cls, config: Config, models: ModelSet) -> "SolveContext":
        def sampling(role: str) -> SamplingParams:
            model_cfg = config.models.get(role)
            return model_cfg.sampling.params() if model_cfg is not None else SamplingParams()

        return cls(
            models=models,
            policy=config.policy,
            threshold=config.threshold,
            separator=config.separator,
            limits=config.limits,
            draft_sampling=sampling("draft"),
            target_sampling=sampling("target"),
            extra_target_samples=config.target_samples - 1,
            extra_target_sampling=SamplingParams(temperature=config.target_sample_temperature, top_p=1.0),
            router_watch=ConstantScoreWatch(_router_described(config)),
        )


def _router_described(config: Config) -> str:
    router, draft = config.models.router, config.models.draft
    if router is None:
        return "the router"
    return f"the router (models.router.path={router.path!r}, models.draft.path={draft.path if draft else None!r})"
