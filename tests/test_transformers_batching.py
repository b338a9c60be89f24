"""Batched inference in the transformers backend: `step_batch`, `score_batch`, the
in-process batching wrappers and `run --concurrency`. The key property throughout:
a batched call returns what the single-item call returns for each item.

Padding changes the order of float sums, so logprobs and rewards agree to ~1e-6, not
bit for bit; greedy tokens agree exactly unless two logits tie to within that (never
on these models)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import pytest
import torch

import tiny_models as tm
from arbitrage.config import Config, Limits, ModelConfig, PromptConfig
from arbitrage.eval.run import read_results, run_batch
from arbitrage.protocols import AnnotatedStep, RouterQuery, SamplingParams, StepOutput, StepRequest, last_step_reward
from arbitrage.servers.factory import ModelSet
from arbitrage.servers.token_prompts import prefix_ids
from arbitrage.servers.transformers_backend.batch_cache import cache_argument, length_groups, padded_forward
from arbitrage.servers.transformers_backend.growing_cache import GrowingLayer, new_cache
from arbitrage.servers.inprocess_batching import BatchingGenerator, BatchingPRM, BatchingRouter, batching, wrap_batching
from arbitrage.servers.transformers_backend import load_generator, load_prm, load_router
from arbitrage.servers.transformers_backend.generator import TransformersGenerator
from arbitrage.servers.transformers_backend.prm import SkyworkPRM, skywork_input_ids
from arbitrage.servers.transformers_backend.step_stop import StepStopper

CONFIG = Config()
PROMPT = PromptConfig(template="Q: {problem}\nA:\n")
MEMORISED = "Q: 2+3\nA:\nFirst add 2 and 3.\n\nSo it is 5."
# A model that opens its first step with the separator (an empty step, before the fix).
LEADING_SEPARATOR = "Q: 2+3\nA:\n\n\nFirst add 2 and 3.\n\nSo it is 5."


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny_batching")
    return {
        "memorising": tm.save_memorizing_lm(root / "memorising", MEMORISED),
        "leading": tm.save_memorizing_lm(root / "leading", LEADING_SEPARATOR),
        **{f"causal{seed}": tm.save_tiny(root / f"causal{seed}", seed=seed) for seed in (1, 2, 3)},
        "skywork": tm.save_tiny(root / "skywork", "token", num_labels=1),
        **{f"router{k}": tm.save_tiny(root / f"router{k}", "sequence", num_labels=k) for k in (1, 2)},
    }


def generator(path) -> TransformersGenerator:
    return load_generator(ModelConfig(path=str(path), prompt=PROMPT), CONFIG)


def single(gen, request: StepRequest) -> StepOutput:
    """The unbatched reference: a fresh `step` without a session cache."""
    return gen.step(request.problem, list(request.steps), max_tokens=request.max_tokens, sampling=request.sampling)


def assert_same_step(batched: StepOutput, alone: StepOutput):
    assert (batched.text, batched.num_tokens, batched.finish_reason) == (alone.text, alone.num_tokens, alone.finish_reason)
    assert batched.token_logprobs == pytest.approx(alone.token_logprobs, abs=1e-5)


class BatchShapes:
    """Records the input shape of every forward through a model."""

    def __init__(self, model):
        self.shapes: list[tuple[int, int]] = []
        self.handle = model.register_forward_pre_hook(self._hook, with_kwargs=True)

    def _hook(self, module, args, kwargs):
        self.shapes.append(tuple(kwargs["input_ids"].shape))


# --- generator -------------------------------------------------------------------------


def test_step_batch_equals_step_on_the_memorising_model(dirs):
    gen = generator(dirs["memorising"])
    requests = [
        StepRequest("2+3", (), 24),
        StepRequest("2+3", ("First add 2 and 3.",), 24),
        StepRequest("2+3", (), 5),  # hits its cap while the others run on
        StepRequest("7+1", ("a longer made-up previous step",), 30),
        StepRequest("2+3", (), 24, SamplingParams(temperature=0.9, seed=7)),
    ]
    outputs = gen.step_batch(requests)
    assert [o.finish_reason for o in outputs[:3]] == ["separator", "eos", "length"]
    assert [o.text for o in outputs[:3]] == ["First add 2 and 3.", "So it is 5.", "First"]
    for request, output in zip(requests, outputs):
        assert_same_step(output, single(gen, request))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_step_batch_equals_step_on_random_models_across_rounds_with_sessions(dirs, seed):
    gen = generator(dirs[f"causal{seed}"])
    problems = ["2+3", "a much longer problem statement, so the prefixes differ", "7", "12*12-4", "x"]
    steps = {p: [] for p in problems}
    gen.step(problems[2], [], max_tokens=3, session=problems[2])  # one row starts with a cache
    sampled = SamplingParams(temperature=1.0, top_p=0.9, seed=seed)
    for round_ in range(3):
        requests = [
            StepRequest(p, tuple(steps[p]), 2 + 3 * i + round_, sampled if i == 3 else None, p if i != 4 else None)
            for i, p in enumerate(problems)
        ]
        outputs = gen.step_batch(requests)
        for request, output in zip(requests, outputs):
            assert_same_step(output, single(gen, request))
            if request.session is not None:
                prompt_len = len(prefix_ids(gen.tokenizer, PROMPT, request.problem, list(request.steps), "\n\n"))
                assert gen.cached_tokens(request.session) == prompt_len + output.num_tokens - 1
            # Alternate accepting the step and replacing it (the cache must crop back).
            steps[request.problem].append(output.text if round_ % 2 else f"target step {round_}")
    assert gen.cached_tokens("x") == 0  # no session, nothing kept
    # A single cached step continues from a cache the batch stored.
    after = gen.step("2+3", steps["2+3"], max_tokens=6, session="2+3")
    assert_same_step(after, single(gen, StepRequest("2+3", tuple(steps["2+3"]), 6)))


def test_step_batch_feeds_only_uncached_tokens(dirs):
    gen = generator(dirs["causal1"])
    for p in ("a", "bb"):
        gen.step(p, [], max_tokens=4, session=p)
    shapes = BatchShapes(gen.model)
    try:
        gen.step_batch([StepRequest("a", ("s1",), 2, session="a"), StepRequest("bb", ("step 2",), 2, session="bb")])
    finally:
        shapes.handle.remove()
    # Each cache holds its prompt and 3 generated tokens; the prefix now replaces them with a step.
    new = [len(prefix_ids(gen.tokenizer, PROMPT, p, [s], "\n\n")) - len(prefix_ids(gen.tokenizer, PROMPT, p, [], "\n\n"))
           for p, s in (("a", "s1"), ("bb", "step 2"))]
    assert shapes.shapes == [(2, max(new)), (2, 1)]


def test_finished_rows_leave_the_batch(dirs):
    gen = generator(dirs["memorising"])
    shapes = BatchShapes(gen.model)
    try:
        outputs = gen.step_batch([StepRequest("2+3", (), 1), StepRequest("2+3", (), 2), StepRequest("2+3", (), 5)])
    finally:
        shapes.handle.remove()
    assert [o.text for o in outputs] == ["F", "Fi", "First"]
    prompt = len(prefix_ids(gen.tokenizer, PROMPT, "2+3", [], "\n\n"))
    # Long prompts are prefilled row by row (not padded together), then one batch decodes.
    assert shapes.shapes == [(1, prompt - 1)] * 3 + [(3, 1), (2, 1), (1, 1), (1, 1), (1, 1)]


def test_sampled_rows_keep_their_own_seeds_beside_greedy_rows(dirs):
    gen = generator(dirs["causal2"])
    hot = [SamplingParams(temperature=1.5, seed=s) for s in (0, 1, 2)]
    requests = [StepRequest("9/3", (), 10, h) for h in hot] + [StepRequest("9/3", (), 10)]
    first, second = gen.step_batch(requests), gen.step_batch(requests[::-1])[::-1]
    for request, a, b in zip(requests, first, second):
        assert_same_step(a, single(gen, request))
        assert_same_step(a, b)  # the seed, not the row's place in the batch, decides
    assert len({o.text for o in first[:3]}) > 1


def test_growing_cache_appends_in_place_and_matches_the_dynamic_cache(dirs):
    from transformers import DynamicCache

    model = generator(dirs["causal1"]).model
    ids = torch.arange(5, 60).reshape(1, -1)
    plain, growing = DynamicCache(config=model.config), new_cache(model.config)
    assert all(isinstance(layer, GrowingLayer) for layer in growing.layers)

    def both(feed):
        with torch.inference_mode():
            a = model(input_ids=feed, use_cache=True, **cache_argument(model, plain)).logits
            b = model(input_ids=feed, use_cache=True, **cache_argument(model, growing)).logits
        assert torch.equal(a, b)

    both(ids[:, :30])
    buffer = growing.layers[0]._key_buffer.data_ptr()
    for t in range(30, 40):
        both(ids[:, t : t + 1])
    assert growing.layers[0].keys.data_ptr() == buffer  # appended in place, no copy
    plain.crop(-6), growing.crop(-6)  # a rejected step, then a different one
    both(ids[:, 45:55])
    assert growing.get_seq_length() == plain.get_seq_length() == 44
    plain.batch_repeat_interleave(2), growing.batch_repeat_interleave(2)  # a new tensor: a new buffer
    both(ids[:, :2].repeat(2, 1))


def test_length_groups_bound_padding():
    assert length_groups([300, 1, 2, 1, 290, 40, 25]) == [[0, 4], [5, 6], [2, 1, 3]]
    assert length_groups([5]) == [[0]] and length_groups([]) == []


def test_step_batch_rejects_bad_requests(dirs):
    gen = generator(dirs["causal1"])
    with pytest.raises(ValueError, match="max_tokens"):
        gen.step_batch([StepRequest("a", (), 3), StepRequest("b", (), 0)])
    assert gen.step_batch([]) == []


# --- leading separators ----------------------------------------------------------------


def _stop(text_tokens: str, max_tokens: int = 64):
    tokenizer = tm.char_tokenizer()
    stopper = StepStopper(tokenizer, "\n\n", {tm.EOS_ID}, max_tokens)
    ids = [tm.EOS_ID if ch == "$" else tm.VOCAB[ch] for ch in text_tokens]  # "$" stands for EOS
    for token in ids:
        output = stopper.push(token, -1.0)
        if output is not None:
            return output
    return None


def test_a_separator_before_any_text_does_not_end_the_step():
    assert (_stop("\n\n \n\nAb\n\ncd").text, _stop("\n\n \n\nAb\n\ncd").num_tokens) == ("Ab", len("\n\n \n\nAb\n\n"))
    assert _stop("\n\n\nAb\n\n").text == "Ab"
    assert (_stop("Ab \n\n").text, _stop("Ab \n\n").finish_reason) == ("Ab ", "separator")
    assert (_stop("\n\n$").text, _stop("\n\n$").finish_reason, _stop("\n\n$").num_tokens) == ("", "eos", 3)
    capped = _stop("\n\nAbc", max_tokens=4)
    assert (capped.text, capped.finish_reason, len(capped.token_logprobs)) == ("Ab", "length", 4)


def test_leading_separator_is_skipped_single_and_batched(dirs):
    gen = generator(dirs["leading"])
    expected = ("First add 2 and 3.", len("\n\nFirst add 2 and 3.\n\n"), "separator")
    alone = gen.step("2+3", [], max_tokens=64)
    assert (alone.text, alone.num_tokens, alone.finish_reason) == expected
    assert len(alone.token_logprobs) == alone.num_tokens
    batched = gen.step_batch([StepRequest("2+3", (), 64), StepRequest("2+3", (), 2), StepRequest("2+3", ("x",), 8)])
    assert_same_step(batched[0], alone)
    assert (batched[1].text, batched[1].num_tokens, batched[1].finish_reason) == ("", 2, "length")


# --- PRM and router --------------------------------------------------------------------


def test_skywork_score_batch_equals_score_and_reuses_each_problems_cache(dirs):
    cfg = ModelConfig(path=str(dirs["skywork"]), prm_style="skywork")
    prm, reference = load_prm(cfg, CONFIG), load_prm(cfg, CONFIG)
    assert prm.loaded is reference.loaded and prm.prefixes is not reference.prefixes
    rounds = [
        [("2+3?", ["Add 2."]), ("a longer problem text", ["One.", "Two steps in."]), ("q", [])],
        [("2+3?", ["Add 2.", "Draft."]), ("a longer problem text", ["One.", "Two steps in.", "3 is it"]), ("new", ["n"])],
        [("2+3?", ["Add 2.", "Target!"]), ("new", ["n", "more"])],
    ]
    forwards = [2, 1, 1]  # the first round's uncached parts differ too much in length to share a forward
    shapes = BatchShapes(prm.loaded.model)
    try:
        for items, expected_forwards in zip(rounds, forwards):
            shapes.shapes.clear()
            batched = prm.score_batch(items)
            fed = list(shapes.shapes)
            assert len(fed) == expected_forwards and sum(rows for rows, _ in fed) == sum(1 for _, s in items if s)
            assert [len(r) for r in batched] == [len(steps) for _, steps in items]
            for (problem, steps), rewards in zip(items, batched):
                reference.prefixes.clear()  # no cache: a full forward
                assert rewards == pytest.approx(reference.score(problem, steps), abs=1e-5)
        # The last round fed only each problem's new step (its cache held the rest).
        tokenizer = prm.loaded.tokenizer
        new = [len(skywork_input_ids(tokenizer, p, s, "\n\n")[0]) - len(skywork_input_ids(tokenizer, p, s[:-1], "\n\n")[0])
               for p, s in rounds[2]]
        assert new == [len("Target!\n\n"), len("more\n\n")] and fed == [(2, max(new))]
    finally:
        shapes.handle.remove()
    assert prm.score_batch([("q", [])]) == [[]]


@pytest.mark.parametrize("labels", [1, 2])
def test_router_score_batch_equals_score(dirs, labels):
    cfg = ModelConfig(path=str(dirs[f"router{labels}"]))
    router, reference = load_router(cfg, CONFIG), load_router(cfg, CONFIG)
    draft = lambda text: StepOutput(text, len(text), "separator")  # noqa: E731
    previous = [AnnotatedStep("Add 2 and 3.", "draft"), AnnotatedStep("That is 5.", "target")]
    for round_ in range(2):
        queries = [
            RouterQuery("2+3?", previous[: round_ + 1], draft(f"step {round_}")),
            RouterQuery("a much longer problem, to pad the others", previous[:round_], draft("d")),
            RouterQuery("q", [], draft(f"another draft {round_}")),
        ]
        batched = router.score_batch(queries)
        for query, score in zip(queries, batched):
            reference.prefixes.clear()
            assert score == pytest.approx(reference.score(query), abs=1e-5)
        assert router.prefixes.cached_tokens("q") == len(router.input_ids(queries[2]))


# --- in-process batching wrappers ------------------------------------------------------


def _concurrently(calls):
    results = [None] * len(calls)

    def run(i):
        results[i] = calls[i]()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def _queue_while_locked(lock, batcher, calls):
    """Make the calls while the model is busy: the worker takes what is queued first and
    blocks on the lock; everything else queues behind it and forms the second batch.
    Returns the results and the sizes of the batches they went in (one or two)."""
    before = len(batcher.batch_sizes)
    results: list = []
    with lock:
        runner = threading.Thread(target=lambda: results.extend(_concurrently(calls)))
        runner.start()
        deadline = time.monotonic() + 30
        while sum(batcher.batch_sizes[before:]) + batcher._queue.qsize() < len(calls):
            assert time.monotonic() < deadline, "the calls never reached the batcher"
            time.sleep(0.005)
    runner.join()
    sizes = batcher.batch_sizes[before:]
    assert sum(sizes) == len(calls) and len(sizes) <= 2
    return results, sizes


def test_batching_generator_serves_concurrent_problems_in_one_batch(dirs):
    gen = generator(dirs["causal1"])
    problems = [f"{i} + {i * 7}" for i in range(6)]
    expected = [gen.step(p, ["go"], max_tokens=4 + i) for i, p in enumerate(problems)]
    wrapped = BatchingGenerator(gen)
    try:
        calls = [lambda p=p, i=i: wrapped.step(p, ["go"], max_tokens=4 + i, session=p) for i, p in enumerate(problems)]
        outputs, sizes = _queue_while_locked(gen.loaded.lock, wrapped.batcher, calls)
        assert max(sizes) > 1
        for output, alone in zip(outputs, expected):
            assert_same_step(output, alone)
        wrapped.end_session(problems[0])
        assert gen.cached_tokens(problems[0]) == 0 and gen.cached_tokens(problems[1]) > 0
    finally:
        wrapped.close()


def test_batching_prm_and_router_match_the_models(dirs):
    prm = load_prm(ModelConfig(path=str(dirs["skywork"]), prm_style="skywork"), CONFIG)
    router = load_router(ModelConfig(path=str(dirs["router2"])), CONFIG)
    items = [(f"problem {i}", [f"step {j}" for j in range(i + 1)]) for i in range(4)]
    expected = [prm.score(p, s) for p, s in items]
    queries = [RouterQuery(p, [AnnotatedStep(x, "draft") for x in s[:-1]], StepOutput(s[-1], 3, "separator")) for p, s in items]
    expected_router = [router.score(q) for q in queries]
    with batching(ModelSet(prm=prm, router=router)) as models:
        assert isinstance(models.prm, BatchingPRM) and isinstance(models.router, BatchingRouter)
        calls = [lambda p=p, s=s: last_step_reward(models.prm, p, s) for p, s in items]
        last, sizes = _queue_while_locked(prm.loaded.lock, models.prm.batcher, calls)
        assert last == pytest.approx([e[-1] for e in expected], abs=1e-5)
        assert max(sizes) > 1  # score_last still batches
        assert models.prm.score(*items[2]) == pytest.approx(expected[2], abs=1e-5)
        with pytest.raises(ValueError, match="at least one step"):
            models.prm.score_last("p", [])
        calls = [lambda q=q: models.router.score(q) for q in queries]
        scores, sizes = _queue_while_locked(router.loaded.lock, models.router.batcher, calls)
        assert scores == pytest.approx(expected_router, abs=1e-5)
        assert max(sizes) > 1


def test_wrap_batching_wraps_only_batch_capable_models_and_each_once(dirs):
    gen = generator(dirs["causal1"])
    judge = load_prm(ModelConfig(path=str(dirs["causal1"]), prm_style="judge"), CONFIG)
    models = wrap_batching(ModelSet(draft=gen, target=gen, prm=judge))
    try:
        assert isinstance(models.draft, BatchingGenerator) and models.target is models.draft
        assert models.prm is judge and models.router is None
    finally:
        models.draft.close()


# --- whole runs ------------------------------------------------------------------------


@dataclass
class Problem:
    id: str
    problem: str
    answer: str | None = None


def test_run_with_concurrency_batches_and_matches_the_sequential_run(dirs, tmp_path, monkeypatch):
    config = Config(
        policy="rsd",
        threshold=0.5,
        limits=Limits(max_steps=4, max_step_tokens=12),
        models={
            "draft": ModelConfig(path=str(dirs["causal2"]), prompt=PROMPT),
            "target": ModelConfig(path=str(dirs["memorising"]), prompt=PROMPT),
            "prm": ModelConfig(path=str(dirs["skywork"]), prm_style="skywork"),
            "router": None,
        },
    )
    sizes = {"step": [], "score": []}
    step_batch, score_batch = TransformersGenerator.step_batch, SkyworkPRM.score_batch

    # Requests group only when they queue behind a running batch; each batch takes at least
    # 50 ms here so that a loaded machine cannot serve the 4 threads one by one.
    def recorded(kind, batched):
        def call(self, requests):
            sizes[kind].append(len(requests))
            time.sleep(0.05)
            return batched(self, requests)
        return call

    monkeypatch.setattr(TransformersGenerator, "step_batch", recorded("step", step_batch))
    monkeypatch.setattr(SkyworkPRM, "score_batch", recorded("score", score_batch))
    problems = [Problem(f"p{i}", f"{i} + {2 * i} = ?") for i in range(6)]
    run_batch(config, problems, tmp_path / "one", concurrency=1, progress=False)
    assert max(sizes["step"]) == 1 and max(sizes["score"]) == 1
    run_batch(config, problems, tmp_path / "four", concurrency=4, progress=False)
    assert max(sizes["step"]) > 1 and max(sizes["score"]) > 1
    one, four = (sorted(read_results(tmp_path / d / "results.jsonl"), key=lambda r: r["id"]) for d in ("one", "four"))
    assert [r["error"] for r in four] == [None] * len(problems)
    for batched, alone in zip(four, one):
        assert len(batched["steps"]) == len(alone["steps"])
        for step, same in zip(batched["steps"], alone["steps"]):
            floats = {k for k, v in same.items() if isinstance(v, float)}  # scores, logprob means: ~1e-7 apart
            assert {k: v for k, v in step.items() if k not in floats} == {k: v for k, v in same.items() if k not in floats}
            assert [step[k] for k in sorted(floats)] == pytest.approx([same[k] for k in sorted(floats)], abs=1e-5)
    assert [r["counters"] for r in four] == [r["counters"] for r in one]


def test_cached_forwards_give_the_cache_by_the_keyword_the_model_takes(dirs):
    """Newer transformers warn on every forward given `past_key_values` (and drop it in 5.40)."""
    import inspect
    import warnings

    model = generator(dirs["causal1"]).model
    keyword = next(iter(cache_argument(model, None)))
    assert keyword in inspect.signature(type(model).forward).parameters
    ids = torch.arange(5, 20).reshape(1, -1)
    cache = new_cache(model.config)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with torch.inference_mode():
            padded_forward(model, ids[:, :10], torch.ones(1, 10, dtype=torch.long), cache)
            padded_forward(model, ids[:, 10:], torch.ones(1, 15, dtype=torch.long), cache)
    assert cache.get_seq_length() == 15
