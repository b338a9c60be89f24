"""`score_continuation` in the transformers backend: the target's log-probabilities of a
given step read in one prefill, equal to a plain full forward, batched equal to single,
through the session cache, and the cache handed on to an escalated step."""

from __future__ import annotations

import threading
import time

import pytest
import torch

import tiny_models as tm
from arbitrage.config import Config, ModelConfig, PromptConfig
from arbitrage.protocols import ContinuationScorer
from arbitrage.protocols import ContinuationRequest
from arbitrage.servers.inprocess_batching import BatchingGenerator
from arbitrage.servers.token_prompts import prefix_ids
from arbitrage.servers.transformers_backend import load_generator

CONFIG = Config()
PROMPT = PromptConfig(template="Q: {problem}\nA:\n")
SEPARATOR = "\n\n"


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny_continuation")
    return {seed: tm.save_tiny(root / f"causal{seed}", seed=seed) for seed in (1, 2)}


def generator(path):
    return load_generator(ModelConfig(path=str(path), prompt=PROMPT), CONFIG)


class FedTokens:
    """Counts the input tokens of every forward through a model (batch x width)."""

    def __init__(self, model):
        self.widths: list[tuple[int, int]] = []
        self.handle = model.register_forward_pre_hook(self._hook, with_kwargs=True)

    def _hook(self, module, args, kwargs):
        self.widths.append(tuple(kwargs["input_ids"].shape))

    def close(self):
        self.handle.remove()


def full_forward_logprobs(gen, problem, steps, text) -> list[float]:
    """The reference: one uncached forward over prefix + text + separator."""
    prefix = prefix_ids(gen.tokenizer, PROMPT, problem, steps, SEPARATOR)
    text_ids = gen.tokenizer(text, add_special_tokens=False)["input_ids"]
    separator_ids = gen.tokenizer(SEPARATOR, add_special_tokens=False)["input_ids"]
    ids = prefix + text_ids + separator_ids
    with torch.inference_mode():
        logprobs = gen.model(input_ids=torch.tensor([ids])).logits[0].float().log_softmax(-1)
    values = [float(logprobs[i - 1, ids[i]]) for i in range(len(prefix), len(ids))]
    return values[: len(text_ids)] + [sum(values[len(text_ids) :])]


def test_scores_each_token_of_the_step_then_its_separator_as_a_full_forward(dirs):
    gen = generator(dirs[1])
    assert isinstance(gen, ContinuationScorer)
    for steps, text in (([], "First add 2 and 3."), (["a step", "another"], "x = 5"), ([], "")):
        values = gen.score_continuation("2+3", steps, text)
        assert len(values) == len(text) + 1  # one token per character, then the separator
        assert values == pytest.approx(full_forward_logprobs(gen, "2+3", steps, text), abs=1e-5)
        assert all(v <= 0 for v in values)


def test_the_step_a_greedy_model_wrote_scores_as_its_own_logprobs(dirs):
    gen = generator(dirs[2])
    output = gen.step("7*6", ["first"], max_tokens=12)
    values = gen.score_continuation("7*6", ["first"], output.text)
    n = len(output.text)
    assert values[:n] == pytest.approx(output.token_logprobs[:n], abs=1e-5)


def test_batched_equals_single_and_sessions_feed_only_new_tokens(dirs):
    gen = generator(dirs[1])
    requests = [
        ContinuationRequest("2+3", (), "add them", "p1"),
        ContinuationRequest("a much longer problem, so prefixes differ in length", ("s1",), "then", "p2"),
        ContinuationRequest("7", ("s1", "s2"), "", None),
        ContinuationRequest("2+3", ("add them",), "so 5", None),
    ]
    expected = [full_forward_logprobs(gen, r.problem, list(r.steps), r.text) for r in requests]
    outputs = gen.score_continuation_batch(requests)
    for output, reference in zip(outputs, expected):
        assert output == pytest.approx(reference, abs=1e-5)
    prefix = prefix_ids(gen.tokenizer, PROMPT, "2+3", [], SEPARATOR)
    assert gen.cached_tokens("p1") == len(prefix) + len("add them") + len(SEPARATOR)
    assert gen.cached_tokens("p2") > 0 and gen.cached_tokens("7") == 0

    # The step was accepted: the next call's prefix is the cached one, so only the new step is
    # fed, after the prefix's last token (its logits score the step's first token).
    fed = FedTokens(gen.model)
    try:
        again = gen.score_continuation("2+3", ["add them"], "so 5", session="p1")
    finally:
        fed.close()
    assert fed.widths == [(1, 1 + len("so 5") + len(SEPARATOR))]
    assert again == pytest.approx(expected[3], abs=1e-5)


def test_an_escalated_step_reuses_the_prefill_cache_without_encoding_the_prefix_again(dirs):
    gen = generator(dirs[1])
    problem, steps = "12 - 5 + 3", ["take 5 from 12"]
    prefix = prefix_ids(gen.tokenizer, PROMPT, problem, steps, SEPARATOR)
    expected = gen.step(problem, steps, max_tokens=6)  # no session: a fresh prefill

    fed = FedTokens(gen.model)
    try:
        gen.score_continuation(problem, steps, "a draft step the router rejects", session="p")
        prefill = list(fed.widths)
        output = gen.step(problem, steps, max_tokens=6, session="p")
        stepped = fed.widths[len(prefill) :]
    finally:
        fed.close()
    assert prefill == [(1, len(prefix) + len("a draft step the router rejects") + len(SEPARATOR))]
    # The cache is cropped back to the prefix: the step feeds only the prefix's last token
    # (its logits start the step), then one token per generated token.
    assert stepped[0] == (1, 1)
    assert sum(width for _, width in stepped) == 1 + output.num_tokens - 1
    assert (output.text, output.num_tokens) == (expected.text, expected.num_tokens)
    assert output.token_logprobs == pytest.approx(expected.token_logprobs, abs=1e-5)


def test_batching_wrapper_scores_concurrent_problems_in_one_forward(dirs):
    gen = generator(dirs[2])
    problems = [f"{i} + {3 * i}" for i in range(5)]
    expected = [gen.score_continuation(p, ["go"], f"step {i}") for i, p in enumerate(problems)]
    wrapped = BatchingGenerator(gen)
    results: list = [None] * len(problems)
    fed = FedTokens(gen.model)
    try:
        with gen.loaded.lock:  # the model is busy: every call queues and they form one batch
            threads = [
                threading.Thread(target=lambda i=i, p=p: results.__setitem__(
                    i, wrapped.score_continuation(p, ["go"], f"step {i}", session=p)))
                for i, p in enumerate(problems)
            ]
            for thread in threads:
                thread.start()
            deadline = time.monotonic() + 30
            while sum(wrapped.batcher.batch_sizes) + wrapped.batcher._queue.qsize() < len(problems):
                assert time.monotonic() < deadline, "the calls never reached the batcher"
                time.sleep(0.005)
        for thread in threads:
            thread.join()
    finally:
        fed.close()
        wrapped.close()
    assert sum(wrapped.batcher.batch_sizes) == len(problems) and len(wrapped.batcher.batch_sizes) <= 2
    assert max(batch for batch, _ in fed.widths) > 1
    for output, reference in zip(results, expected):
        assert output == pytest.approx(reference, abs=1e-5)


def test_a_step_and_a_continuation_queued_together_each_get_their_own_answer(dirs):
    gen = generator(dirs[1])
    wrapped = BatchingGenerator(gen)
    try:
        step = wrapped.step("2+3", [], max_tokens=5, session="a")
        score = wrapped.score_continuation("2+3", [], step.text, session="b")
    finally:
        wrapped.close()
    assert score[: len(step.text)] == pytest.approx(step.token_logprobs[: len(step.text)], abs=1e-5)
