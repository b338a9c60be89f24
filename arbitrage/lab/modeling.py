"""Model sizes and construction for the lab's draft, target and PRM.

All three are standard transformers Llama classes over the character tokenizer:
`LlamaForCausalLM` for draft and target, `LlamaForTokenClassification`
(num_labels=1, Skywork-style value head) for the PRM.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from arbitrage.lab.tokenizer import BOS_ID, EOS_ID, PAD_ID, VOCAB


@dataclass(frozen=True)
class Size:
    layers: int
    hidden: int
    intermediate: int
    heads: int

    def describe(self) -> str:
        return f"{self.layers} layers x {self.hidden} wide (MLP {self.intermediate}, {self.heads} heads)"


# The draft is deliberately shallow (two layers; one layer never learned the task); the target is deep (latency grows with
# depth at batch 1); the PRM shares the target's shape and starts from its weights.
DRAFT_SIZE = Size(layers=2, hidden=192, intermediate=768, heads=8)
TARGET_SIZE = Size(layers=10, hidden=160, intermediate=512, heads=5)
MAX_POSITIONS = 1024


def llama_config(size: Size, **extra):
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=len(VOCAB),
        hidden_size=size.hidden,
        intermediate_size=size.intermediate,
        num_hidden_layers=size.layers,
        num_attention_heads=size.heads,
        num_key_value_heads=size.heads,
        max_position_embeddings=MAX_POSITIONS,
        rms_norm_eps=1e-5,
        tie_word_embeddings=True,
        bos_token_id=BOS_ID,
        eos_token_id=EOS_ID,
        pad_token_id=PAD_ID,
        **extra,
    )


def new_causal_lm(size: Size, seed: int):
    import torch
    from transformers import LlamaForCausalLM

    torch.manual_seed(seed)
    return LlamaForCausalLM(llama_config(size))


def new_prm(size: Size, seed: int, init_from=None):
    """A token-classification PRM; with `init_from` (a LlamaForCausalLM of the same
    size) its backbone starts from that model's weights."""
    import torch
    from transformers import LlamaForTokenClassification

    torch.manual_seed(seed)
    prm = LlamaForTokenClassification(llama_config(size, num_labels=1))
    if init_from is not None:
        prm.model.load_state_dict(init_from.model.state_dict(), strict=True)
    return prm


def keep_bottom_layers(model, n: int):
    """Cut a Llama model (causal LM, token or sequence classifier) to its bottom `n` decoder
    layers, in place; the embedding, final norm and head stay."""
    if not 1 <= n <= model.config.num_hidden_layers:
        raise ValueError(f"keep_bottom_layers: n must be in 1..{model.config.num_hidden_layers}, got {n}")
    model.model.layers = model.model.layers[:n]
    model.config.num_hidden_layers = n
    if getattr(model.config, "layer_types", None):
        model.config.layer_types = model.config.layer_types[:n]
    return model


def count_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def size_dict(size: Size) -> dict:
    return asdict(size)
