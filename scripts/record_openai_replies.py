"""Record what an OpenAI-compatible server answers to a step request and to the stop probe
(arbitrage/servers/wire/completions.py), for replay in tests/test_servers_openai_compat.py.

For each prompt it sends the step request the client sends (`stop=["\\n\\n"]`, greedy,
`logprobs: 1`), the probe (the prompt plus the returned text, no stop, one token), and,
as the independent truth, the same request without `stop`: its text shows whether the
separator followed the step's text or generation ended there. With llama-cpp-python's server on
the SmolLM2 GGUF (`python -m llama_cpp.server --model .cache/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf --port 8090`
from its own venv):

    python scripts/record_openai_replies.py --url http://127.0.0.1:8090 --output tests/data/llamacpp_replies.json --recorded-with "llama-cpp-python 0.3.36 server, SmolLM2-135M-Instruct Q4_1 GGUF"
"""

from __future__ import annotations

import argparse
import json
import urllib.request
from pathlib import Path

SEP = "\n\n"
# Greedy SmolLM2-135M-Instruct: the first stops on a blank line mid-solution, the second
# answers and ends its turn (EOS).
PROMPTS = {
    "step ends on the separator": "<|im_start|>user\nSolve step by step, one step per paragraph: Tom has 3 apples "
    "and buys 4 more. How many apples does he have?<|im_end|>\n<|im_start|>assistant\n",
    "solution ends on EOS": "<|im_start|>user\nReply with the single word: yes<|im_end|>\n<|im_start|>assistant\n",
}
SAMPLING = {"temperature": 0.0, "top_p": 1.0, "repeat_penalty": 1.0}
MAX_TOKENS = 64


def post(url: str, body: dict) -> dict:
    request = urllib.request.Request(f"{url}/v1/completions", json.dumps(body).encode(),
                                     {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=300) as reply:
        return json.load(reply)


def record(url: str) -> list[dict]:
    cases = []
    for name, prompt in PROMPTS.items():
        step = post(url, {**SAMPLING, "prompt": prompt, "max_tokens": MAX_TOKENS, "stop": [SEP], "logprobs": 1,
                          "n": 1, "stream": False})
        text = step["choices"][0]["text"]
        probe = post(url, {**SAMPLING, "prompt": prompt + text, "max_tokens": 1, "n": 1, "stream": False})
        unstopped = post(url, {**SAMPLING, "prompt": prompt, "max_tokens": MAX_TOKENS, "n": 1, "stream": False})
        full = unstopped["choices"][0]
        if full["text"].startswith(text + SEP):
            finish = "separator"
        elif full["text"] == text and full["finish_reason"] == "stop":
            finish = "eos"
        else:
            raise RuntimeError(f"{name}: without stop the server wrote {full['text']!r}, not {text!r} and more")
        cases.append({"name": name, "prompt": prompt, "max_tokens": MAX_TOKENS, "step_reply": step,
                      "probe_reply": probe, "unstopped_reply": unstopped, "expected_finish": finish})
    return cases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--recorded-with", required=True, help="the server and model, for the file's record")
    args = parser.parse_args()
    cases = record(args.url.rstrip("/"))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({"recorded_with": args.recorded_with, "sampling": SAMPLING, "cases": cases},
                                      indent=1, ensure_ascii=False) + "\n")
    for case in cases:
        print(f"{case['name']}: {case['step_reply']['choices'][0]['text']!r} -> {case['expected_finish']}")


if __name__ == "__main__":
    main()
