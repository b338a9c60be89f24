"""`ArbitrageChat`: the speculative pipeline as a LangChain chat model, in-process, for
any LangChain or LangGraph agent that takes a `BaseChatModel`.

    from arbitrage.agents.chat_model import ArbitrageChat
    model = ArbitrageChat()                                   # the shipped lab models
    model = ArbitrageChat.from_config_file("examples/lab.yaml", policy="rsd", threshold=0.7)
    reply = model.invoke("Tia has 13 beads. ...")             # AIMessage: the solution
    reply.response_metadata["final_answer"], reply.response_metadata["counters"]
    for chunk in model.stream("..."): ...                     # one AIMessageChunk per committed step
    model.batch([...])                                        # concurrent problems, batched decode

The problem is the last human message (system messages and earlier turns are not shown
to the models, as for the pipeline server: arbitrage/agents/openai_format.py). A call
may pass `policy=` and `threshold=` (or `.bind(...)` them). Each reply's
`response_metadata` holds the final answer, finish reason, policy, threshold, the run's
counters, each step's source (`steps`) and the OpenAI-style `usage`; `usage_metadata`
counts the prompt and the committed solution's tokens.
"""

from __future__ import annotations

import threading
from typing import Any, AsyncIterator, Iterator

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, HumanMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import RunnableConfig
from pydantic import ConfigDict, Field, PrivateAttr

from arbitrage.agents.openai_format import SERVED_MODEL, step_fields
from arbitrage.agents.reasoner import Reasoner, Solution, StepEvent
from arbitrage.config import Config, load_config


def problem_from_messages(messages: list[BaseMessage]) -> str:
    """The text of the last human message."""
    for message in reversed(messages):
        if isinstance(message, HumanMessage):
            text = str(message.text)
            if not text.strip():
                raise ValueError("the last human message is empty: it should hold the problem")
            return text
    raise ValueError("no human message: ArbitrageChat solves the problem in the last human message")


def _usage_metadata(solution: Solution) -> dict:
    usage = solution.usage()
    return {"input_tokens": usage["prompt_tokens"], "output_tokens": usage["completion_tokens"],
            "total_tokens": usage["total_tokens"]}


def _final_metadata(solution: Solution) -> dict:
    return {"model_name": SERVED_MODEL, **solution.summary(), "usage": solution.usage()}


class ArbitrageChat(BaseChatModel):
    """Each call runs the compiled graph on one problem; concurrent calls share batched models."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    config: Config = Field(default_factory=Config, description="models, policy, threshold, limits")
    policy: str | None = Field(None, description="the policy of every call (default: the config's)")
    threshold: float | None = Field(None, description="the threshold of every call (default: the config's)")
    max_batch: int = Field(32, ge=1, description="most problems run at once (and batched together)")
    reasoner: Reasoner | None = Field(None, exclude=True, description="share one loaded model set between models")
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    @classmethod
    def from_config_file(cls, path: str, **fields: Any) -> "ArbitrageChat":
        return cls(config=load_config(path), **fields)

    @property
    def _llm_type(self) -> str:
        return "arbitrage"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"policy": self.policy or self.config.policy.name, "threshold": self.threshold}

    def _reasoner(self) -> Reasoner:
        with self._lock:
            if self.reasoner is None:
                self.reasoner = Reasoner(self.config, max_batch=self.max_batch)
            return self.reasoner

    def _options(self, messages: list[BaseMessage], stop: list[str] | None, kwargs: dict) -> tuple[str, dict]:
        if stop:
            raise ValueError("ArbitrageChat takes no stop strings: steps end on the configured separator")
        unknown = sorted(set(kwargs) - {"policy", "threshold"})
        if unknown:
            raise ValueError(f"ArbitrageChat got an unknown argument {unknown[0]!r}; it takes policy= and threshold=")
        options = {"policy": kwargs.get("policy", self.policy), "threshold": kwargs.get("threshold", self.threshold)}
        return problem_from_messages(messages), options

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> ChatResult:
        problem, options = self._options(messages, stop, kwargs)
        return self._result(self._reasoner().solve(problem, **options))

    async def _agenerate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                         run_manager: AsyncCallbackManagerForLLMRun | None = None, **kwargs: Any) -> ChatResult:
        problem, options = self._options(messages, stop, kwargs)
        return self._result(await self._reasoner().asolve(problem, **options))

    def _stream(self, messages: list[BaseMessage], stop: list[str] | None = None,
                run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> Iterator[ChatGenerationChunk]:
        problem, options = self._options(messages, stop, kwargs)
        reasoner = self._reasoner()
        for event in reasoner.stream(problem, **options):
            chunk = self._chunk(event, reasoner.config.separator)
            if run_manager is not None and isinstance(event, StepEvent):
                run_manager.on_llm_new_token(chunk.text, chunk=chunk)
            yield chunk

    async def _astream(self, messages: list[BaseMessage], stop: list[str] | None = None,
                       run_manager: AsyncCallbackManagerForLLMRun | None = None,
                       **kwargs: Any) -> AsyncIterator[ChatGenerationChunk]:
        problem, options = self._options(messages, stop, kwargs)
        reasoner = self._reasoner()
        async for event in reasoner.astream(problem, **options):
            chunk = self._chunk(event, reasoner.config.separator)
            if run_manager is not None and isinstance(event, StepEvent):
                await run_manager.on_llm_new_token(chunk.text, chunk=chunk)
            yield chunk

    def batch(self, inputs: list, config: RunnableConfig | list[RunnableConfig] | None = None, **kwargs: Any) -> list:
        """As Runnable.batch, with up to max_batch problems in flight (not the executor's default of a few)."""
        if config is None or isinstance(config, dict):
            config = {"max_concurrency": self.max_batch, **(config or {})}
        return super().batch(inputs, config, **kwargs)

    @staticmethod
    def _result(solution: Solution) -> ChatResult:
        metadata = {**_final_metadata(solution),
                    "steps": [step_fields(i, step) for i, step in enumerate(solution.steps)]}
        message = AIMessage(content=solution.text, response_metadata=metadata,
                            usage_metadata=_usage_metadata(solution))
        return ChatResult(generations=[ChatGeneration(message=message)])

    @staticmethod
    def _chunk(event: StepEvent | Solution, separator: str) -> ChatGenerationChunk:
        """A step's text (after the separator from the second step on), so the chunks add up
        to the text `invoke` returns; its source under `steps`, which adding chunks concatenates."""
        if isinstance(event, StepEvent):
            text = (separator if event.index else "") + event.step["text"]
            message = AIMessageChunk(content=text, response_metadata={"steps": [step_fields(event.index, event.step)]})
        else:
            message = AIMessageChunk(content="", response_metadata=_final_metadata(event),
                                     usage_metadata=_usage_metadata(event), chunk_position="last")
        return ChatGenerationChunk(message=message)
