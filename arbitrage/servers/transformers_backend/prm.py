"""Process reward models in three checkpoint conventions; `score` gives one reward
in [0, 1] per step.

Each reads its input as servers/prm_input.py writes it.

- `skywork`: a token classifier with one label (a value head); reward = sigmoid of the
  value at the last token of each `step + separator` segment. Our lab PRM is a standard
  `LlamaForTokenClassification(num_labels=1)`. Real Skywork-o1-Open-PRM checkpoints
  ship a custom value-head class (`v_head`) that no standard transformers class
  loads: they need their own code (`trust_remote_code`) or the head remapped to a
  `score` layer first; only the standard-class form is tested here.
- `qwen` (Qwen2.5-Math-PRM): two labels per token, reward = softmax(logits)[1] at each
  step tag `<extra_0>`.
- `judge`: a causal LM asked whether the latest step is correct;
  reward = P(Yes) / (P(Yes) + P(No)) over the next token.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Sequence

from arbitrage.config import ModelConfig
from arbitrage.servers.prm_input import JUDGE_NO, JUDGE_YES, QWEN_STEP_TAG, judge_text, qwen_input_ids, skywork_input_ids
from arbitrage.servers.transformers_backend.batch_cache import (
    extract_row, length_groups, padded_forward, start_batch, supports_row_surgery,
)
from arbitrage.servers.transformers_backend.kv_reuse import PrefixCacheStore
from arbitrage.servers.transformers_backend.loading import LoadedModel, accepts_logits_to_keep

def _logits(output):
    return output.logits if hasattr(output, "logits") else output[0]


class SkyworkPRM:
    """Keeps a KV cache per problem: the graph re-scores a growing prefix with a new
    last step, so each call feeds only the tokens after the longest shared prefix.
    `score_batch` scores several problems in one left-padded forward, each reusing and
    refreshing its own cache."""

    # Room for every problem a concurrent run keeps in flight, as the generator's sessions.
    def __init__(self, loaded: LoadedModel, separator: str, *, cached_problems: int = 64):
        self.loaded, self.separator = loaded, separator
        labels = loaded.model.config.num_labels
        if labels != 1:
            raise ValueError(f"prm_style 'skywork' needs a one-label value head; the checkpoint has {labels} labels")
        self.prefixes = PrefixCacheStore(loaded.model.config, cached_problems)
        self._row_surgery = supports_row_surgery(loaded.model.config)
        pad = loaded.tokenizer.pad_token_id
        self._pad_id = pad if pad is not None else 0  # masked out, so any id will do

    def score(self, problem: str, steps: Sequence[str]) -> list[float]:
        return self.score_batch([(problem, steps)])[0]

    def score_batch(self, items: Sequence[tuple[str, Sequence[str]]]) -> list[list[float]]:
        """`score` for every (problem, steps) item; items without steps get []. Items whose
        uncached parts are of similar length share one padded forward."""
        import torch

        scored = [i for i, (_, steps) in enumerate(items) if steps]
        results: list[list[float]] = [[] for _ in items]
        encoded = [skywork_input_ids(self.loaded.tokenizer, items[i][0], items[i][1], self.separator) for i in scored]
        # Without row surgery a batch cannot hold per-problem caches: it scores afresh.
        reuse = self._row_surgery or len(scored) == 1
        config = self.loaded.model.config
        with self.loaded.lock, torch.inference_mode():
            taken = [self.prefixes.take(items[i][0] if reuse else None, ids) for i, (ids, _) in zip(scored, encoded)]
            for group in length_groups([len(ids) - n for (ids, _), (_, n, _) in zip(encoded, taken)]):
                cache, feed, mask = start_batch(
                    config, [taken[r][0] for r in group], [taken[r][1] for r in group],
                    [encoded[r][0][taken[r][1] :] for r in group], pad_id=self._pad_id, device=self.loaded.device,
                )
                batch_values = _logits(padded_forward(self.loaded.model, feed, mask, cache))[:, :, 0].float()
                for row, r in enumerate(group):
                    (ids, positions), (_, n, old_values) = encoded[r], taken[r]
                    new_values = batch_values[row, feed.shape[1] - (len(ids) - n) :]
                    values = torch.cat([old_values[:n], new_values]) if n else new_values
                    if reuse:
                        self.prefixes.put(items[scored[r]][0], ids, extract_row(config, cache, row, mask[row]), values)
                    results[scored[r]] = torch.sigmoid(values[positions]).tolist()
        return results


class QwenPRM:
    def __init__(self, loaded: LoadedModel, system: str | None):
        self.loaded, self.system = loaded, system
        labels = loaded.model.config.num_labels
        if labels != 2:
            raise ValueError(f"prm_style 'qwen' needs 2 labels per token; the checkpoint has {labels}")
        tokenizer = loaded.tokenizer
        step_tag_id = tokenizer.convert_tokens_to_ids(QWEN_STEP_TAG)
        if step_tag_id is None or step_tag_id == tokenizer.unk_token_id:
            raise ValueError(f"prm_style 'qwen' needs the special token {QWEN_STEP_TAG} in the tokenizer")

    def score(self, problem: str, steps: Sequence[str]) -> list[float]:
        import torch

        if not steps:
            return []
        ids, positions = qwen_input_ids(self.loaded.tokenizer, problem, steps, self.system)
        if len(positions) != len(steps):
            raise ValueError(f"found {len(positions)} {QWEN_STEP_TAG} markers for {len(steps)} steps")
        with self.loaded.lock, torch.inference_mode():
            logits = _logits(self.loaded.model(input_ids=torch.tensor([ids], device=self.loaded.device)))
        if logits.shape[-1] != 2:
            raise ValueError(f"prm_style 'qwen' needs 2 labels per token; the model outputs {logits.shape[-1]}")
        return torch.softmax(logits[0, positions].float(), dim=-1)[:, 1].tolist()


class JudgePRM:
    """Rewards are memoised per (problem, steps so far): the graph re-scores a growing
    prefix, so each call costs one forward for the newest step only."""

    def __init__(self, loaded: LoadedModel, system: str | None, *, memo_size: int = 4096):
        self.loaded, self.system, self.memo_size = loaded, system, memo_size
        self.yes_ids, self.no_ids = self._answer_ids(loaded.tokenizer)
        self._extra = {"logits_to_keep": 1} if accepts_logits_to_keep(loaded.model) else {}
        self._memo: OrderedDict[tuple, float] = OrderedDict()

    @staticmethod
    def _answer_ids(tokenizer) -> tuple[list[int], list[int]]:
        """First tokens of the answer spellings; ids shared by both answers (e.g. a
        leading space in a character tokenizer) tell nothing and are dropped."""

        def first_ids(words):
            return {tokenizer(w, add_special_tokens=False)["input_ids"][0] for w in words}

        yes = first_ids(JUDGE_YES)
        no = first_ids(JUDGE_NO)
        yes, no = sorted(yes - no), sorted(no - yes)
        if not yes or not no:
            raise ValueError("prm_style 'judge': the tokenizer cannot tell 'Yes' from 'No' by their first token")
        return yes, no

    def prompt_ids(self, problem: str, steps: Sequence[str]) -> list[int]:
        text, add_special = judge_text(problem, steps, self.system, self.loaded.tokenizer)
        return self.loaded.tokenizer(text, add_special_tokens=add_special)["input_ids"]

    def score_last(self, problem: str, steps: Sequence[str]) -> float:
        """P(Yes) for the last step of `steps` given the ones before it (the graph's
        `last_step_reward` calls this: one forward, whatever the number of steps)."""
        import torch

        if not steps:
            raise ValueError("score_last needs at least one step")
        key = (problem, tuple(steps))
        with self.loaded.lock:
            if key in self._memo:
                self._memo.move_to_end(key)
                return self._memo[key]
            ids = torch.tensor([self.prompt_ids(problem, steps)], device=self.loaded.device)
            with torch.inference_mode():
                logits = _logits(self.loaded.model(input_ids=ids, **self._extra))[0, -1].float()
            # P(yes)/(P(yes)+P(no)) computed in log space so tiny probabilities do not underflow.
            reward = float(torch.sigmoid(torch.logsumexp(logits[self.yes_ids], 0) - torch.logsumexp(logits[self.no_ids], 0)))
            self._memo[key] = reward
            while len(self._memo) > self.memo_size:
                self._memo.popitem(last=False)
            return reward

    def score(self, problem: str, steps: Sequence[str]) -> list[float]:
        return [self.score_last(problem, steps[: i + 1]) for i in range(len(steps))]


def build_prm(style: str, loaded: LoadedModel, model_cfg: ModelConfig, separator: str):
    if style == "skywork":
        return SkyworkPRM(loaded, separator)
    if style == "qwen":
        return QwenPRM(loaded, model_cfg.prompt.system)
    if style == "judge":
        return JudgePRM(loaded, model_cfg.prompt.system)
    raise ValueError(f"unknown prm_style {style!r}")
