"""The HTTP path with tiny real transformers models: greedy steps, PRM rewards and router
scores over HTTP equal the in-process backend's, through our own server and through
stand-ins for sglang `/classify` and vLLM `/pooling` that run the same tiny models."""

from __future__ import annotations

import pytest

import tiny_models as tm
from arbitrage.config import Config, ModelConfig, PromptConfig, validate_config
from arbitrage.protocols import AnnotatedStep, RouterQuery, StepOutput
from arbitrage.servers.http_server import ModelServer
from arbitrage.servers.openai_backend import HttpGenerator, HttpPRM, HttpRouter
from arbitrage.servers.prompting import PrefixRenderer
from arbitrage.servers.token_prompts import prefix_ids
from arbitrage.servers.transformers_backend import load_generator, load_prm, load_router
from test_servers_wire import Canned

pytestmark = [pytest.mark.server, pytest.mark.slow]

SEP = "\n\n"
CONFIG = Config()
PROMPT = PromptConfig(template="Q: {problem}\nA:\n")
MEMORISED = "Q: 2+3\nA:\nFirst add 2 and 3.\n\nSo it is 5."


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny_http")
    return {
        "memorising": tm.save_memorizing_lm(root / "memorising", MEMORISED),
        "causal": tm.save_tiny(root / "causal", seed=3),
        "chat": tm.save_tiny(root / "chat", seed=3, chat=True),
        "skywork": tm.save_tiny(root / "skywork", "token", num_labels=1),
        "qwen": tm.save_tiny(root / "qwen", "token", num_labels=2),
        "router": tm.save_tiny(root / "router", "sequence", num_labels=2),
    }


@pytest.fixture
def servers():
    started = []

    def add(server):
        started.append(server)
        return server

    yield add
    for server in started:
        server.stop()


def http_cfg(url: str, **extra) -> ModelConfig:
    return validate_config({"models": {"draft": {"backend": "openai", "path": "tiny", "base_url": url, **extra}}}).models.draft


@pytest.mark.parametrize("path_key", ["memorising", "causal"])
def test_greedy_steps_over_our_server_equal_in_process(dirs, servers, path_key):
    model_cfg = ModelConfig(path=str(dirs[path_key]), prompt=PROMPT)
    local = load_generator(model_cfg, CONFIG)
    server = servers(ModelServer("draft", local, config=CONFIG, model_cfg=model_cfg).start())
    structured = HttpGenerator(http_cfg(server.url, api="arbitrage", prompt=PROMPT.model_dump()), SEP)
    plain = HttpGenerator(http_cfg(server.url, api="sglang", prompt=PROMPT.model_dump()), SEP)
    steps: list[str] = []
    for _ in range(3):
        expected = local.step("2+3", steps, max_tokens=24)
        assert plain.step("2+3", steps, max_tokens=24) == expected
        # A KV-cached session computes in another order; compare it with a cached local run.
        cached = local.step("2+3", steps, max_tokens=24, session="local")
        assert structured.step("2+3", steps, max_tokens=24, session="s") == cached
        assert cached.text == expected.text and cached.finish_reason == expected.finish_reason
        if expected.finish_reason != "separator":
            break
        steps.append(expected.text)
    if path_key == "memorising":
        assert steps == ["First add 2 and 3."] and expected.finish_reason == "eos"
    structured.end_session("s")
    assert local.cached_tokens("s") == 0


def test_chat_prefix_rendered_client_side_tokenizes_like_in_process(dirs, tmp_path):
    # Like Llama 3's, the chat template writes BOS itself and the tokenizer adds one too.
    tokenizer = tm.char_tokenizer(chat=True)
    tokenizer.chat_template = "{{ bos_token }}" + tm.CHAT_TEMPLATE
    tokenizer.save_pretrained(tmp_path / "tok")
    chat_prompt = PromptConfig(format="chat", template="Solve: {problem}", system="Be brief.")
    client = HttpGenerator(http_cfg("http://127.0.0.1:9", prompt=chat_prompt.model_dump(), tokenizer=str(tmp_path / "tok")), SEP)
    tokenizer = client.renderer.tokenizer
    for steps in ([], ["a b", "c"]):
        text = client.renderer.render("2+3", steps)
        # The server tokenizes with special tokens, as sglang and vLLM completions do.
        assert tokenizer(text, add_special_tokens=True)["input_ids"] == prefix_ids(tokenizer, chat_prompt, "2+3", steps, SEP)
    assert isinstance(client.renderer, PrefixRenderer)


def test_prm_and_router_over_our_server_equal_in_process(dirs, servers):
    prm_cfg = ModelConfig(path=str(dirs["skywork"]), prm_style="skywork")
    router_cfg = ModelConfig(path=str(dirs["router"]))
    prm, router = load_prm(prm_cfg, CONFIG), load_router(router_cfg, CONFIG)
    prm_server = servers(ModelServer("prm", prm, config=CONFIG, model_cfg=prm_cfg).start())
    router_server = servers(ModelServer("router", router, config=CONFIG, model_cfg=router_cfg).start())
    steps = ["First add 2 and 3.", "So it is 5."]
    assert HttpPRM(http_cfg(prm_server.url, api="arbitrage"), SEP).score("2+3", steps) == prm.score("2+3", steps)
    query = RouterQuery("2+3", [AnnotatedStep(steps[0], "target")], StepOutput(steps[1], 7, "eos", [-0.5] * 7))
    assert HttpRouter(http_cfg(router_server.url, api="arbitrage"), SEP).score(query) == router.score(query)


def _forward(model, ids):
    import torch

    with torch.inference_mode():
        return model(input_ids=torch.tensor([ids])).logits[0].float()


def fake_sglang(loaded):
    """sglang /classify for a reward model: tokenize with special tokens, pool the last token."""
    tokenizer, model = loaded.tokenizer, loaded.model

    def respond(path, body):
        assert path == "/classify"
        texts = body["text"] if isinstance(body["text"], list) else [body["text"]]
        out = []
        for text in texts:
            logits = _forward(model, tokenizer(text, add_special_tokens=True)["input_ids"])
            last = logits[-1] if logits.dim() == 2 else logits  # token heads: the last row; sequence heads: pooled
            out.append({"embedding": last.tolist(), "meta_info": {}})
        return 200, out if isinstance(body["text"], list) else out[0]

    return respond


def fake_vllm_all_pooling(loaded):
    """vLLM /pooling with ALL pooling: one row of raw head outputs per input token."""
    tokenizer, model = loaded.tokenizer, loaded.model

    def respond(path, body):
        assert path == "/pooling" and body["use_activation"] is False
        ids = body["input"] if isinstance(body["input"], list) else tokenizer(body["input"])["input_ids"]
        return 200, {"data": [{"index": 0, "object": "pooling", "data": _forward(model, ids).tolist()}]}

    return respond


def test_skywork_prm_over_sglang_and_vllm_wire_equals_in_process(dirs):
    prm_cfg = ModelConfig(path=str(dirs["skywork"]), prm_style="skywork")
    local = load_prm(prm_cfg, CONFIG)
    sglang, vllm = Canned(fake_sglang(local.loaded)), Canned(fake_vllm_all_pooling(local.loaded))
    try:
        over_sglang = HttpPRM(http_cfg(sglang.url, api="sglang", prm_style="skywork"), SEP)
        over_vllm = HttpPRM(http_cfg(vllm.url, api="vllm", prm_style="skywork", tokenizer=str(dirs["skywork"])), SEP)
        for steps in (["First add 2 and 3."], ["First add 2 and 3.", "So it is 5.", "Done."]):
            expected = local.score("2+3", steps)
            assert over_sglang.score("2+3", steps) == pytest.approx(expected, abs=1e-5)
            assert over_vllm.score("2+3", steps) == pytest.approx(expected, abs=1e-6)
        assert len(sglang.requests) == 2 and len(vllm.requests) == 2  # one request per score() call
    finally:
        sglang.stop()
        vllm.stop()


def test_qwen_prm_over_vllm_per_token_rows_equals_in_process(dirs):
    prm_cfg = ModelConfig(path=str(dirs["qwen"]), prm_style="qwen")
    local = load_prm(prm_cfg, CONFIG)
    vllm = Canned(fake_vllm_all_pooling(local.loaded))
    try:
        remote = HttpPRM(http_cfg(vllm.url, api="vllm", prm_style="qwen", tokenizer=str(dirs["qwen"])), SEP)
        steps = ["First add 2 and 3.", "So it is 5."]
        assert remote.score("2+3", steps) == pytest.approx(local.score("2+3", steps), abs=1e-6)
    finally:
        vllm.stop()


def test_router_over_sglang_wire_equals_in_process(dirs):
    local = load_router(ModelConfig(path=str(dirs["router"])), CONFIG)
    sglang = Canned(fake_sglang(local.loaded))
    try:
        query = RouterQuery("2+3", [AnnotatedStep("First add.", "draft")], StepOutput("So 5.", 4, "eos"))
        remote = HttpRouter(http_cfg(sglang.url, api="sglang"), SEP)
        assert remote.score(query) == pytest.approx(local.score(query), abs=1e-6)
    finally:
        sglang.stop()
