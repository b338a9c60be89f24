"""`arbitrage serve --role pipeline`: the whole speculative pipeline behind an
OpenAI-compatible endpoint, for agent stacks that talk to a model rather than a graph.

    arbitrage serve --role pipeline --config examples/lab.yaml --port 8100

Endpoints (the formats are arbitrage/agents/openai_format.py's):
- `POST /v1/chat/completions`: the problem is the last user message; the reply's
  `choices[0].message.content` is the solution, its steps joined by the separator.
  `usage` holds `prompt_tokens`, `completion_tokens` (the committed solution's tokens),
  `total_tokens`, and `draft_tokens`, `target_tokens`, `target_calls`, `escalated_steps`,
  `steps`; `arbitrage` holds the final answer, the policy and threshold used, the
  counters and each step's source. `stream: true` sends server-sent events: one
  `chat.completion.chunk` per committed step (its source in the chunk's `arbitrage`
  field), a chunk with `finish_reason`, a usage chunk when
  `stream_options.include_usage`, then `data: [DONE]`.
- `POST /v1/completions`: the same with the problem as `prompt`.
- Per request, `policy` and `threshold` (the openai client's `extra_body`) override the
  config's; a bad one is answered 400 with the field named in OpenAI's error shape.
- `GET /v1/models` lists `arbitrage`; `GET /health`; `GET /v1/arbitrage/stats`: per
  role, the model calls so far and the requests they carried (batching at work).

Every request runs the graph on its own thread; the models are shared through batchers
(arbitrage/agents/reasoner.py), so requests in flight together share each decode step.
The server binds 127.0.0.1 unless told otherwise.

Why the model nodes do not use langchain-openai as their HTTP client (checked against
langchain-openai 1.8 and openai 3.57): the draft and target nodes need, per step, the
per-token logprobs (the feature router reads them), the completion token count, and
whether the step ended on the separator or on EOS. `langchain_openai.OpenAI` keeps only
`text`, `finish_reason` and `logprobs` of a completion choice: sglang's `matched_stop`
and vLLM's `stop_reason` are dropped, and both servers strip the stop string and say
`finish_reason: "stop"` for either end, so a finished solution and a step boundary look
the same (tests/test_langchain_openai_as_node_client.py shows it on `arbitrage serve`'s
replies); its token usage is summed over a call's prompts, not per step, and it sends
every prompt as a list. Per-token logprobs do survive. `ChatOpenAI` can return logprobs,
but a chat request cannot continue a partial assistant turn portably, which is what
writing step k+1 after steps 1..k is (see servers/prompting.py). The PRM and router are
scored through sglang's `/classify`, vLLM's `/pooling` and our `/v1/arbitrage/prm` and
`/v1/arbitrage/router`, which no LangChain client speaks. Batching is the server's
(concurrent requests meet in its batcher) and needs nothing from the client. So the
nodes keep their own client (servers/http_client.py sending the calls of a
servers/wire/ dialect, which reads `matched_stop` and `stop_reason`), and langchain-openai
is used where it fits: as the client of this endpoint (examples/langchain_agent.py).
"""

from __future__ import annotations

import json
import logging
from typing import Iterator

from arbitrage.agents.openai_format import (
    SERVED_MODEL,
    PipelineRequest,
    ReplyWriter,
    RequestError,
    read_chat_request,
    read_completion_request,
)
from arbitrage.agents.reasoner import Reasoner, SettingError, Solution, StepEvent
from arbitrage.config import Config
from arbitrage.servers.batching import QueueFull
from arbitrage.servers.http_service import HttpService, JsonHandler, error_body

log = logging.getLogger(__name__)


class PipelineServer(HttpService):
    """`start()` serves on a background thread (tests, benchmarks); `serve_forever()` blocks (the CLI)."""

    def __init__(self, reasoner: Reasoner, *, host: str = "127.0.0.1", port: int = 0, verbose: bool = False):
        self.reasoner = reasoner
        self.verbose = verbose
        super().__init__(_handler_for(self), host=host, port=port, name="serve-pipeline")

    @classmethod
    def from_config(cls, config: Config, *, max_batch: int = 32, **options) -> "PipelineServer":
        return cls(Reasoner(config, max_batch=max_batch), **options)

    def on_close(self) -> None:
        self.reasoner.close()

    def read(self, path: str, body: object) -> PipelineRequest:
        request = read_chat_request(body) if path == "/v1/chat/completions" else read_completion_request(body)
        try:  # refuse a bad policy or threshold before any status line goes out
            self.reasoner.settings(request.policy, request.threshold)
        except SettingError as error:
            raise RequestError(str(error), param=error.param) from None
        return request

    def stats(self) -> dict:
        """Per role, how many model calls ran and how many requests they carried."""
        out = {}
        for role in ("draft", "target", "prm", "router"):
            sizes = self.reasoner.batch_sizes(role)
            out[role] = {"batches": len(sizes), "requests": sum(sizes), "max_batch": max(sizes, default=0)}
        return out

    def events(self, request: PipelineRequest) -> Iterator[StepEvent | Solution]:
        return self.reasoner.stream(request.problem, policy=request.policy, threshold=request.threshold)


def _handler_for(server: PipelineServer):
    class Handler(JsonHandler):
        verbose = server.verbose
        max_body_bytes = 4 * 1024 * 1024

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/health":
                self.send_json(200, {"status": "ok"})
            elif path == "/v1/models":
                card = {"id": SERVED_MODEL, "object": "model", "created": 0, "owned_by": "arbitrage"}
                self.send_json(200, {"object": "list", "data": [card]})
            elif path == "/v1/arbitrage/stats":
                self.send_json(200, server.stats())
            elif path in ("/v1/chat/completions", "/v1/completions"):
                self.send_json(405, error_body(f"{path} takes POST"))
            else:
                self.send_json(404, error_body(f"no endpoint GET {path} on this server"))

        def do_POST(self) -> None:
            path = self.path.split("?", 1)[0]
            try:
                body = self.read_json_body()  # also for a wrong path, so a kept-alive connection stays in step
                if path not in ("/v1/chat/completions", "/v1/completions"):
                    raise RequestError(f"no endpoint POST {path} on this server", 404)
                request = server.read(path, body)
            except RequestError as error:
                self.send_json(error.status, error_body(str(error), param=error.param, code=error.code))
                return
            writer = ReplyWriter(chat=path == "/v1/chat/completions")
            if request.stream:
                self._stream(request, writer)
                return
            try:
                solution = next(event for event in server.events(request) if isinstance(event, Solution))
            except QueueFull as error:
                self.send_json(503, error_body(f"server busy: {error}", "server_busy"))
                return
            except Exception as error:
                log.exception("%s failed", path)
                self.send_json(500, error_body(f"{type(error).__name__}: {error}", "server_error"))
                return
            self.send_json(200, writer.complete(solution))

        def _stream(self, request: PipelineRequest, writer: ReplyWriter) -> None:
            events = server.events(request)
            try:
                first = next(events)  # errors before the first step still get a status code
            except QueueFull as error:
                self.send_json(503, error_body(f"server busy: {error}", "server_busy"))
                return
            except Exception as error:
                log.exception("stream failed before its first step")
                self.send_json(500, error_body(f"{type(error).__name__}: {error}", "server_error"))
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            separator = server.reasoner.config.separator
            try:
                event = first
                while True:
                    if isinstance(event, StepEvent):
                        self._event(writer.step_chunk(event.index, event.step, separator,
                                                      include_usage=request.include_usage))
                    else:
                        self._event(writer.final_chunk(event, include_usage=request.include_usage))
                        if request.include_usage:
                            self._event(writer.usage_chunk(event))
                        break
                    event = next(events)
            except (BrokenPipeError, ConnectionResetError):
                events.close()  # the client left: stop the problem after its current node
                self.close_connection = True
                return
            except Exception as error:  # mid-stream: the status is sent, so the error goes in the stream
                log.exception("stream failed")
                events.close()
                self._event(error_body(f"{type(error).__name__}: {error}", "server_error"))
            try:
                self._chunk(b"data: [DONE]\n\n")
                self._chunk(b"")
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True

        def _event(self, payload: dict) -> None:
            self._chunk(b"data: " + json.dumps(payload, allow_nan=False).encode() + b"\n\n")

        def _chunk(self, data: bytes) -> None:
            self.wfile.write(f"{len(data):X}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()

    return Handler


def serve(config: Config, *, host: str = "127.0.0.1", port: int, max_batch: int = 32, verbose: bool = False,
          on_ready=None) -> None:
    """Serve until interrupted. The config's models load first; another policy's, when a request names it."""
    server = PipelineServer.from_config(config, max_batch=max_batch, host=host, port=port, verbose=verbose)
    server.reasoner.solver(config)  # load the config's models now, so "ready" means ready
    if on_ready is not None:
        on_ready(server)
    server.serve_forever()
