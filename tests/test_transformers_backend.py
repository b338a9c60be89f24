"""The in-process transformers backend on tiny local checkpoints (no hub, no GPU)."""

from __future__ import annotations

import math
import sys
import threading

import pytest
import torch

import tiny_models as tm
from arbitrage.config import Config, ConfigError, ModelConfig, PromptConfig, SamplingConfig
from arbitrage.protocols import PRM, AnnotatedStep, last_step_reward, Generator, Router, RouterQuery, SamplingParams, StepOutput
from arbitrage.servers.router_input import format_router_input
from arbitrage.servers.factory import load_models
from arbitrage.servers.token_prompts import prefix_ids, prefix_text
from arbitrage.servers.transformers_backend import ModelLoadError, load_generator, load_prm, load_router
from arbitrage.servers.transformers_backend.generator import TransformersGenerator
from arbitrage.servers.transformers_backend.loading import cached_count, load_model
from arbitrage.servers.transformers_backend.prm import skywork_input_ids
from arbitrage.servers.transformers_backend.router import escalation_probability

CONFIG = Config()
PROMPT = PromptConfig(template="Q: {problem}\nA:\n")
MEMORISED = "Q: 2+3\nA:\nFirst add 2 and 3.\n\nSo it is 5."


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    return {
        "memorising": tm.save_memorizing_lm(root / "memorising", MEMORISED),
        "causal": tm.save_tiny(root / "causal", seed=1),
        "chat": tm.save_tiny(root / "chat", seed=1, chat=True),
        "skywork": tm.save_tiny(root / "skywork", "token", num_labels=1),
        "qwen": tm.save_tiny(root / "qwen", "token", num_labels=2),
        "remote_prm": tm.save_remote_code_prm(root / "remote_prm"),
        **{f"router{k}": tm.save_tiny(root / f"router{k}", "sequence", num_labels=k) for k in (1, 2, 3)},
    }


def generator(path, **cfg) -> TransformersGenerator:
    return load_generator(ModelConfig(path=str(path), prompt=cfg.pop("prompt", PROMPT), **cfg), CONFIG)


class ForwardCounter:
    """Counts forwards and input tokens fed through a model."""

    def __init__(self, model):
        self.calls = self.tokens = 0
        self.handle = model.register_forward_pre_hook(self._hook, with_kwargs=True)

    def _hook(self, module, args, kwargs):
        self.calls += 1
        self.tokens += kwargs["input_ids"].shape[1]

    def reset(self):
        self.calls = self.tokens = 0


# --- generator -------------------------------------------------------------------------


def test_generator_stops_at_separator_then_eos(dirs):
    gen = generator(dirs["memorising"])
    assert isinstance(gen, Generator)
    first = gen.step("2+3", [], max_tokens=64)
    assert first.text == "First add 2 and 3."
    assert first.finish_reason == "separator"
    assert first.num_tokens == len("First add 2 and 3.\n\n")  # character tokenizer: separator tokens counted
    assert len(first.token_logprobs) == first.num_tokens and all(lp <= 0 for lp in first.token_logprobs)
    second = gen.step("2+3", [first.text], max_tokens=64)
    assert (second.text, second.finish_reason) == ("So it is 5.", "eos")
    assert second.num_tokens == len("So it is 5.") + 1  # the EOS token is generated too


def test_generator_stops_at_length(dirs):
    out = generator(dirs["memorising"]).step("2+3", ["First add 2 and 3."], max_tokens=4)
    assert (out.text, out.num_tokens, out.finish_reason) == ("So i", 4, "length")
    assert len(out.token_logprobs) == 4
    with pytest.raises(ValueError, match="max_tokens"):
        generator(dirs["memorising"]).step("2+3", [], max_tokens=0)


def test_greedy_tokens_and_logprobs_match_hf_generate(dirs):
    gen = generator(dirs["causal"])
    out = gen.step("7*8", ["Multiply."], max_tokens=8)
    assert out.finish_reason == "length"
    ids = torch.tensor([prefix_ids(gen.tokenizer, PROMPT, "7*8", ["Multiply."], "\n\n")])
    ref = gen.model.generate(
        ids, max_new_tokens=8, do_sample=False, output_logits=True, return_dict_in_generate=True, eos_token_id=None
    )
    new_ids = ref.sequences[0, ids.shape[1]:]
    assert out.text == gen.tokenizer.decode(new_ids, skip_special_tokens=True)
    expected = [float(torch.log_softmax(logits[0].float(), -1)[t]) for logits, t in zip(ref.logits, new_ids)]
    assert out.token_logprobs == pytest.approx(expected, abs=1e-4)


def test_session_cache_matches_uncached_greedy_across_steps_and_rejections(dirs):
    gen = generator(dirs["causal"])
    counter = ForwardCounter(gen.model)
    try:
        first = gen.step("12-5", [], max_tokens=6, session="p1").text
        # Accept, draft, reject the draft and regenerate from the same prefix, then continue.
        calls = [[first], [first, "a rejected draft"], [first], [first, "the target step"], [first, "the target step", "x"]]
        for steps in calls:
            full = len(prefix_ids(gen.tokenizer, PROMPT, "12-5", steps, "\n\n"))
            counter.reset()
            cached = gen.step("12-5", steps, max_tokens=6, session="p1")
            fed_with_cache = counter.tokens
            counter.reset()
            fresh = gen.step("12-5", steps, max_tokens=6)
            assert counter.tokens >= full > fed_with_cache  # the prefix was largely reused
            assert (cached.text, cached.num_tokens, cached.finish_reason) == (
                fresh.text, fresh.num_tokens, fresh.finish_reason
            )
            assert cached.token_logprobs == pytest.approx(fresh.token_logprobs, abs=1e-4)
            assert gen.cached_tokens("p1") == full + cached.num_tokens - 1
    finally:
        counter.handle.remove()
    gen.end_session("p1")
    assert gen.cached_tokens("p1") == 0


def test_sessions_are_bounded_lru(dirs):
    gen = generator(dirs["causal"])
    gen.sessions.max_entries = 2
    for name in ("a", "b", "c"):
        gen.step("1+1", [], max_tokens=2, session=name)
    assert gen.cached_tokens("a") == 0 and gen.cached_tokens("b") > 0 and gen.cached_tokens("c") > 0
    gen.step("1+1", [], max_tokens=2)
    assert len(gen.sessions) == 2  # no session, nothing kept


def test_end_session_does_not_wait_for_a_running_forward_and_is_not_undone_by_it(dirs):
    gen = generator(dirs["causal"])
    gen.step("1+1", [], max_tokens=2, session="done")
    in_forward, release = threading.Event(), threading.Event()

    def slow_forward(module, args, kwargs):
        in_forward.set()
        release.wait(10)

    handle = gen.model.register_forward_pre_hook(slow_forward, with_kwargs=True)
    busy = threading.Thread(target=gen.step, args=("1+1", ["more"]), kwargs={"max_tokens": 2, "session": "done"})
    try:
        busy.start()
        assert in_forward.wait(10)  # the other call holds the model's lock, using the session's cache
        ended = threading.Thread(target=gen.end_session, args=("done",))
        ended.start()
        ended.join(5)
        assert not ended.is_alive()  # returned while the forward was still running
    finally:
        release.set()
        busy.join(10)
        handle.remove()
    assert gen.cached_tokens("done") == 0  # the finished forward did not put the ended cache back


def test_sampling_is_seeded_and_top_p_narrows_to_greedy(dirs):
    gen = generator(dirs["causal"])
    hot = SamplingParams(temperature=1.5, seed=3)
    a = gen.step("9/3", [], max_tokens=8, sampling=hot)
    b = gen.step("9/3", [], max_tokens=8, sampling=hot)
    assert (a.text, a.token_logprobs) == (b.text, b.token_logprobs)
    greedy = gen.step("9/3", [], max_tokens=8)
    nucleus = gen.step("9/3", [], max_tokens=8, sampling=SamplingParams(temperature=1.0, top_p=1e-6, seed=0))
    assert nucleus.text == greedy.text
    others = {gen.step("9/3", [], max_tokens=8, sampling=SamplingParams(temperature=2.0, seed=s)).text for s in range(4)}
    assert len(others) > 1


def test_generator_is_thread_safe_with_sessions(dirs):
    gen = generator(dirs["causal"])
    problems = [f"{i}+{i}" for i in range(4)]
    expected = {p: [gen.step(p, [], max_tokens=4).text, gen.step(p, ["go on"], max_tokens=4).text] for p in problems}
    results: dict[str, list[str]] = {}

    def solve(problem):
        results[problem] = [
            gen.step(problem, [], max_tokens=4, session=problem).text,
            gen.step(problem, ["go on"], max_tokens=4, session=problem).text,
        ]

    threads = [threading.Thread(target=solve, args=(p,)) for p in problems]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == expected


def test_raw_and_chat_prompts(dirs):
    raw = generator(dirs["chat"])
    chat_prompt = PromptConfig(format="chat", template="Solve {problem}", system="Be brief.")
    chat = generator(dirs["chat"], prompt=chat_prompt)
    tok = raw.tokenizer
    assert prefix_text(tok, PROMPT, "2+2", ["s1"], "\n\n") == "Q: 2+2\nA:\ns1\n\n"
    assert prefix_ids(tok, PROMPT, "2+2", [], "\n\n")[0] == tm.BOS_ID
    expected_chat = "<|system|>Be brief.\n<|user|>Solve 2+2\n<|assistant|>s1\n\n"
    assert prefix_text(tok, chat_prompt, "2+2", ["s1"], "\n\n") == expected_chat
    assert prefix_ids(tok, chat_prompt, "2+2", ["s1"], "\n\n") == tok(expected_chat, add_special_tokens=False)["input_ids"]
    assert raw.model is chat.model  # one checkpoint, loaded once
    out = chat.step("2+2", ["s1"], max_tokens=3, session="c")
    assert out.num_tokens == 3 and out.finish_reason == "length"
    no_template = generator(dirs["causal"], prompt=chat_prompt)
    with pytest.raises(ValueError, match="no chat template"):
        no_template.step("2+2", [], max_tokens=1)


# --- PRMs ------------------------------------------------------------------------------


def test_skywork_prm_rewards_at_last_token_of_each_step(dirs):
    prm = load_prm(ModelConfig(path=str(dirs["skywork"]), prm_style="skywork"), CONFIG)
    assert isinstance(prm, PRM)
    steps = ["Add 2 and 3.", "That is 5.", "Done"]
    rewards = prm.score("2+3?", steps)
    # Character tokenizer: the text is the ids, so the positions can be counted by hand.
    text = "2+3?\n" + "".join(s + "\n\n" for s in steps)
    ends = [len("2+3?\n" + "".join(s + "\n\n" for s in steps[: i + 1])) for i in range(len(steps))]  # bos shifts by 1
    ids = torch.tensor([[tm.BOS_ID] + prm.loaded.tokenizer(text, add_special_tokens=False)["input_ids"]])
    logits = prm.loaded.model(input_ids=ids).logits[0, :, 0]
    assert rewards == pytest.approx(torch.sigmoid(logits[ends]).tolist(), abs=1e-5)
    assert all(0.0 <= r <= 1.0 for r in rewards)
    assert prm.score("2+3?", steps[:2]) == pytest.approx(rewards[:2], abs=1e-5)  # causal: a step sees only its past
    assert prm.score("2+3?", []) == []


def test_skywork_prm_reuses_the_problem_prefix_and_matches_a_full_forward(dirs):
    prm = load_prm(ModelConfig(path=str(dirs["skywork"]), prm_style="skywork"), CONFIG)
    counter = ForwardCounter(prm.loaded.model)
    try:
        # Draft scored, then the target's replacement, then the next step on the chosen one.
        calls = [["Add 2."], ["Add 2.", "Draft."], ["Add 2.", "Target!"], ["Add 2.", "Target!", "Five."]]
        for steps in calls:
            counter.reset()
            rewards = prm.score("2+3?", steps)
            ids, ends = skywork_input_ids(prm.loaded.tokenizer, "2+3?", steps, "\n\n")
            fed = counter.tokens
            assert fed == (len(ids) if len(steps) == 1 else len(steps[-1] + "\n\n"))  # only the new step is fed
            with torch.no_grad():
                full = prm.loaded.model(input_ids=torch.tensor([ids])).logits[0, :, 0]
            assert rewards == pytest.approx(torch.sigmoid(full[ends]).tolist(), abs=1e-5)
    finally:
        counter.handle.remove()


def test_qwen_prm_rewards_at_extra0_tokens(dirs):
    prm = load_prm(ModelConfig(path=str(dirs["qwen"]), prm_style="qwen"), CONFIG)
    steps = ["Add.", "Five."]
    rewards = prm.score("2+3?", steps)
    ids = prm.loaded.tokenizer("2+3?\nAdd.<extra_0>Five.<extra_0>", add_special_tokens=False)["input_ids"]
    positions = [i for i, t in enumerate(ids) if t == tm.EXTRA0_ID]
    assert positions == [len("2+3?\nAdd."), len("2+3?\nAdd.") + 1 + len("Five.")]
    logits = prm.loaded.model(input_ids=torch.tensor([ids])).logits[0]
    assert rewards == pytest.approx(torch.softmax(logits[positions], -1)[:, 1].tolist(), abs=1e-5)
    assert len(rewards) == 2 and all(0.0 <= r <= 1.0 for r in rewards)


def test_qwen_prm_custom_class_loads_only_with_trust_remote_code(dirs):
    cfg = ModelConfig(path=str(dirs["remote_prm"]), prm_style="qwen", trust_remote_code=True)
    prm = load_prm(cfg, CONFIG)
    assert type(prm.loaded.model).__name__ == "TinyProcessRewardModel"
    ids = prm.loaded.tokenizer("p\na<extra_0>b<extra_0>", add_special_tokens=False)["input_ids"]
    logits = prm.loaded.model(input_ids=torch.tensor([ids]))[0][0]
    expected = torch.softmax(logits[[3, 5]], -1)[:, 1].tolist()
    assert prm.score("p", ["a", "b"]) == pytest.approx(expected, abs=1e-5)


def test_judge_prm_is_p_yes_and_memoises_the_prefix(dirs):
    prm = load_prm(ModelConfig(path=str(dirs["causal"]), prm_style="judge"), CONFIG)
    # " Yes" and " No" share their first token (a space) in a character tokenizer: dropped.
    assert prm.yes_ids == sorted([tm.VOCAB["Y"], tm.VOCAB["y"]])
    assert prm.no_ids == sorted([tm.VOCAB["N"], tm.VOCAB["n"]])
    rewards = prm.score("2+3?", ["Add.", "Five."])
    assert len(rewards) == 2 and all(0.0 <= r <= 1.0 for r in rewards)
    ids = torch.tensor([prm.prompt_ids("2+3?", ["Add.", "Five."])])
    assert prm.loaded.tokenizer.decode(ids[0], skip_special_tokens=True).endswith("Latest step:\nFive.\n\nIs the latest step correct? Answer Yes or No.\nAnswer:")
    with torch.no_grad():
        probs = torch.softmax(prm.loaded.model(input_ids=ids).logits[0, -1], -1)
    p_yes, p_no = probs[prm.yes_ids].sum(), probs[prm.no_ids].sum()
    assert rewards[1] == pytest.approx(float(p_yes / (p_yes + p_no)), abs=1e-5)
    counter = ForwardCounter(prm.loaded.model)
    try:
        prm.score("2+3?", ["Add.", "Five.", "Done."])
        assert counter.calls == 1  # earlier steps come from the memo
        counter.reset()
        last = last_step_reward(prm, "2+3?", ["Other.", "Steps.", "Here.", "Now."])
        assert counter.calls == 1  # the graph's path: only the newest step is judged
        assert last == pytest.approx(prm.score("2+3?", ["Other.", "Steps.", "Here.", "Now."])[-1])
    finally:
        counter.handle.remove()


def test_judge_prm_uses_the_chat_template_when_present(dirs):
    prm = load_prm(ModelConfig(path=str(dirs["chat"]), prm_style="judge"), CONFIG)
    text = prm.loaded.tokenizer.decode(prm.prompt_ids("q", ["s"]))
    assert text.startswith("<|user|>Here is a math problem") and text.endswith("<|assistant|>")
    assert 0.0 <= prm.score("q", ["s"])[0] <= 1.0


def test_prm_on_the_wrong_checkpoint_fails_clearly(dirs):
    with pytest.raises(ModelLoadError, match="lacks weights for AutoModelForTokenClassification"):
        load_prm(ModelConfig(path=str(dirs["causal"]), prm_style="skywork"), CONFIG)
    with pytest.raises(ModelLoadError, match="one-label value head"):
        load_prm(ModelConfig(path=str(dirs["qwen"]), prm_style="skywork"), CONFIG)
    with pytest.raises(ModelLoadError, match="2 labels"):
        load_prm(ModelConfig(path=str(dirs["skywork"]), prm_style="qwen"), CONFIG)


# --- router ----------------------------------------------------------------------------


@pytest.mark.parametrize("labels", [1, 2, 3])
def test_classifier_router_probability(dirs, labels):
    router = load_router(ModelConfig(path=str(dirs[f"router{labels}"])), CONFIG)
    assert isinstance(router, Router)
    query = RouterQuery(
        problem="2+3?",
        previous_steps=[AnnotatedStep("Add.", "draft"), AnnotatedStep("Sum is 5.", "target")],
        draft=StepOutput(text="So 5.", num_tokens=5, finish_reason="eos"),
    )
    ids = router.input_ids(query)
    assert router.loaded.tokenizer.decode(ids) == "<s>" + format_router_input("2+3?", query.previous_steps, "So 5.")
    with torch.no_grad():
        logits = router.loaded.model(input_ids=torch.tensor([ids])).logits[0]
    expected = torch.sigmoid(logits[0]) if labels == 1 else torch.softmax(logits, -1)[-1]  # 3 bins: the top one
    assert router.score(query) == pytest.approx(float(expected), abs=1e-5)


def test_escalation_probability_ordinal_bins():
    assert escalation_probability(torch.tensor([0.0, 0.0, 0.0, 0.0])) == pytest.approx(0.5)
    assert escalation_probability(torch.tensor([0.0, 0.0, 0.0, 0.0, 0.0])) == pytest.approx(0.4)


def test_feature_router_loads_through_the_backend(tmp_path):
    from arbitrage.servers.feature_router import FEATURES, FeatureRouter

    FeatureRouter(FEATURES, [0.0] * len(FEATURES), [1.0] * len(FEATURES), [-1.0] + [0.0] * (len(FEATURES) - 1),
                  0.0).save(tmp_path)
    router = load_router(ModelConfig(path=str(tmp_path), router_kind="features"), CONFIG)
    unsure = RouterQuery("q", [], StepOutput("s", 2, "separator", [-3.0, -3.0]))
    assert router.score(unsure) == pytest.approx(1 / (1 + math.exp(-3.0)))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="feature_router.json"):
        load_router(ModelConfig(path=str(tmp_path / "empty"), router_kind="features"), CONFIG)


def test_classifier_router_reuses_its_cache_and_scores_as_a_fresh_forward(dirs):
    import torch

    router = load_router(ModelConfig(path=str(dirs["router1"])), CONFIG)
    previous = [AnnotatedStep("a = 1", "draft")]
    queries = [RouterQuery("q", previous[:i], StepOutput(f"step {i}", 3, "separator", [])) for i in range(2)]
    cached = [router.score(q) for q in queries]
    model, tokenizer = router.loaded.model, router.loaded.tokenizer
    for query, score in zip(queries, cached):
        with torch.inference_mode():
            logits = model(input_ids=torch.tensor([router.input_ids(query)])).logits[0]
        assert score == pytest.approx(float(torch.sigmoid(logits[0])), abs=1e-5)
    assert router.prefixes.cached_tokens("q") == len(router.input_ids(queries[1]))


# --- loading ---------------------------------------------------------------------------


def test_missing_path_names_path_and_role(tmp_path):
    missing = str(tmp_path / "nowhere")
    config = Config(models={"draft": ModelConfig(path=missing), "target": None, "prm": None, "router": None})
    with pytest.raises(ModelLoadError, match=r"models\.draft\.path: model path not found: .*nowhere"):
        load_generator(config.models.draft, config)


def test_lab_path_resolver_error():
    with pytest.raises(ModelLoadError, match=r"lab model 'no-such-model' not found at .*arbitrage/lab/weights/no-such-model"):
        load_router(ModelConfig(path="lab:no-such-model"), CONFIG)


def test_models_load_once_and_are_shared_across_roles(tmp_path):
    cfg = ModelConfig(path=str(tm.save_tiny(tmp_path / "shared", seed=5)), prompt=PROMPT)
    before = cached_count()
    draft = load_generator(cfg, CONFIG)
    assert cached_count() == before + 1
    target = load_generator(cfg.model_copy(update={"sampling": SamplingConfig(temperature=0.7)}), CONFIG)
    judge = load_prm(cfg.model_copy(update={"prm_style": "judge"}), CONFIG)
    assert cached_count() == before + 1
    assert draft.model is target.model is judge.loaded.model
    assert draft.loaded.lock is judge.loaded.lock  # one lock per model, whichever role holds it
    assert load_model("AutoModelForCausalLM", cfg, "draft") is draft.loaded
    load_model("AutoModelForCausalLM", cfg.model_copy(update={"dtype": "bfloat16"}), "draft")
    assert cached_count() == before + 2


def test_factory_loads_every_role(dirs):
    config = Config(
        policy="generate",
        models={
            "draft": ModelConfig(path=str(dirs["causal"]), prompt=PROMPT),
            "target": ModelConfig(path=str(dirs["memorising"]), prompt=PROMPT),
            "prm": ModelConfig(path=str(dirs["skywork"])),
            "router": ModelConfig(path=str(dirs["router1"])),
        },
    )
    models = load_models(config, roles=("draft", "target", "prm", "router"))
    assert models.target.step("2+3", [], max_tokens=64).text == "First add 2 and 3."
    assert len(models.prm.score("2+3", ["a", "b"])) == 2
    assert 0.0 <= models.router.score(RouterQuery("2+3", [], StepOutput("a", 1, "separator"))) <= 1.0
