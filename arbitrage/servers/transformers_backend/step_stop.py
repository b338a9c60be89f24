"""When a generated step ends, and what its text is: one `StepStopper` per step being
written, fed one token at a time (the single and the batched decode share it)."""

from __future__ import annotations

from arbitrage.protocols import StepOutput


class StepStopper:
    """Stops on EOS, on the separator, or at `max_tokens`, whichever comes first.

    A separator with nothing but whitespace before it does not end the step: a model
    that opens its step with the separator would otherwise return an empty step on
    every call, and the solution would never advance. That leading separator (and the
    whitespace around it) is dropped from the text and decoding goes on; its tokens
    still count in `num_tokens` and the token cap.
    """

    def __init__(self, tokenizer, separator: str, eos_ids: set[int], max_tokens: int):
        if max_tokens < 1:
            raise ValueError(f"max_tokens must be at least 1, got {max_tokens}")
        self.tokenizer, self.separator, self.eos_ids, self.max_tokens = tokenizer, separator, eos_ids, max_tokens
        self.tokens: list[int] = []
        self.logprobs: list[float] = []
        self._dropped_chars = 0  # characters of the decoded text that are a dropped leading separator

    def push(self, token: int, logprob: float) -> StepOutput | None:
        """Record the next token; the finished step, or None while it goes on."""
        self.tokens.append(token)
        self.logprobs.append(logprob)
        if token in self.eos_ids:
            return self._output(self._visible(self._decode(self.tokens[:-1])), "eos")
        text = self._visible(self._decode(self.tokens))
        if self.separator in text:
            return self._output(text.split(self.separator, 1)[0], "separator")
        if len(self.tokens) >= self.max_tokens:
            return self._output(text, "length")
        return None

    def _decode(self, tokens: list[int]) -> str:
        return self.tokenizer.decode(tokens, skip_special_tokens=True)

    def _visible(self, decoded: str) -> str:
        """The step's text so far: `decoded` less any leading whitespace-only separators."""
        text = decoded[self._dropped_chars :]
        while True:
            at = text.find(self.separator)
            if at < 0 or text[:at].strip():
                break
            self._dropped_chars += at + len(self.separator)
            text = decoded[self._dropped_chars :]
        return text.lstrip() if self._dropped_chars else text

    def _output(self, text: str, finish: str) -> StepOutput:
        return StepOutput(text=text, num_tokens=len(self.tokens), finish_reason=finish, token_logprobs=list(self.logprobs))
