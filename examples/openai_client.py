"""The official openai client against the pipeline server: each reasoning step arrives
as a streamed chunk saying which model wrote it, then the usage.

    arbitrage serve --role pipeline --config examples/lab.yaml --port 8100 --threads 1 &
    python examples/openai_client.py --base-url http://127.0.0.1:8100/v1
    python examples/openai_client.py --base-url http://127.0.0.1:8100/v1 --policy rsd --threshold 0.7 \
        --problem "Uma has 252 apples. Uma splits the apples into 7 equal piles and keeps one pile. How many apples does Uma have now?"
"""

from __future__ import annotations

import argparse

from openai import OpenAI

DEFAULT_PROBLEM = "Tia has 13 beads. Tia ends up with 6 times as many beads. Tia sells 38 beads. How many beads does Tia have now?"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-url", default="http://127.0.0.1:8100/v1")
    parser.add_argument("--problem", default=DEFAULT_PROBLEM)
    parser.add_argument("--policy", default=None, help="override the server config's policy for this request")
    parser.add_argument("--threshold", type=float, default=None, help="override the policy's threshold")
    args = parser.parse_args()

    client = OpenAI(base_url=args.base_url, api_key="unused")
    overrides = {key: value for key, value in (("policy", args.policy), ("threshold", args.threshold)) if value is not None}
    stream = client.chat.completions.create(
        model="arbitrage",
        messages=[{"role": "user", "content": args.problem}],
        stream=True,
        stream_options={"include_usage": True},
        extra_body=overrides,
    )
    print(f"problem: {args.problem}\n")
    for chunk in stream:
        details = chunk.model_extra.get("arbitrage") or {}
        if chunk.choices and chunk.choices[0].delta.content:
            print(f"[step {details['index']} by {details['source']}] {chunk.choices[0].delta.content.strip()}")
        elif chunk.choices and chunk.choices[0].finish_reason:
            print(f"\nfinish_reason: {chunk.choices[0].finish_reason}, answer: {details['final_answer']} "
                  f"(policy {details['policy']}, threshold {details['threshold']})")
        elif chunk.usage is not None:
            usage = chunk.usage.model_dump()
            print("usage: " + ", ".join(f"{key}={usage[key]}" for key in (
                "prompt_tokens", "completion_tokens", "draft_tokens", "target_tokens", "target_calls", "escalated_steps")))


if __name__ == "__main__":
    main()
