"""Tiny random-init transformers checkpoints for backend tests (no hub, seconds to build).

A character tokenizer (one id per printable character, specials, `<extra_0>`), an
optional chat template, and 2-layer Llama models saved with `save_pretrained`.
"""

from __future__ import annotations

from pathlib import Path

SPECIALS = ["<pad>", "<s>", "</s>", "<unk>", "<extra_0>"]
CHARS = ["\n"] + [chr(c) for c in range(32, 127)]
VOCAB = {tok: i for i, tok in enumerate(SPECIALS + CHARS)}
PAD_ID, BOS_ID, EOS_ID, UNK_ID, EXTRA0_ID = range(5)
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def char_tokenizer(chat: bool = False):
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(vocab=dict(VOCAB), unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    tok.decoder = decoders.Fuse()
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", BOS_ID)])
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
        additional_special_tokens=["<extra_0>"],
        clean_up_tokenization_spaces=False,
        model_max_length=512,
    )
    if chat:
        wrapped.chat_template = CHAT_TEMPLATE
    return wrapped


def llama_config(**extra):
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=len(VOCAB),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=512,
        bos_token_id=BOS_ID,
        eos_token_id=EOS_ID,
        pad_token_id=PAD_ID,
        **extra,
    )


def save_tiny(directory: Path, kind: str = "causal", *, seed: int = 0, chat: bool = False, num_labels: int = 1) -> Path:
    """Save a random tiny Llama of `kind` (causal | token | sequence) with its tokenizer."""
    import torch
    from transformers import LlamaForCausalLM, LlamaForSequenceClassification, LlamaForTokenClassification

    torch.manual_seed(seed)
    if kind == "causal":
        model = LlamaForCausalLM(llama_config())
    elif kind == "token":
        model = LlamaForTokenClassification(llama_config(num_labels=num_labels))
    elif kind == "sequence":
        model = LlamaForSequenceClassification(llama_config(num_labels=num_labels))
    else:
        raise ValueError(kind)
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    char_tokenizer(chat=chat).save_pretrained(directory)
    return directory


def save_memorizing_lm(directory: Path, text: str, *, steps: int = 300, seed: int = 0) -> Path:
    """A tiny causal LM overfitted on `<s> text </s>`, so greedy decoding replays `text`."""
    import torch
    from transformers import LlamaForCausalLM

    torch.manual_seed(seed)
    model = LlamaForCausalLM(llama_config())
    tokenizer = char_tokenizer()
    ids = torch.tensor([tokenizer(text)["input_ids"] + [EOS_ID]])
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(steps):
        out = model(input_ids=ids, labels=ids)
        if bool((out.logits[0, :-1].argmax(-1) == ids[0, 1:]).all()) and out.loss.item() < 0.3:
            break
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
    else:
        raise RuntimeError(f"the tiny LM did not memorise {text!r} in {steps} steps")
    model.eval()
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


REMOTE_PRM_CODE = '''
import torch
from transformers import LlamaModel, LlamaPreTrainedModel


class TinyProcessRewardModel(LlamaPreTrainedModel):
    """Like Qwen2ForProcessRewardModel: a backbone, a 2-way head, returns a plain tuple."""

    def __init__(self, config):
        super().__init__(config)
        self.model = LlamaModel(config)
        self.score = torch.nn.Linear(config.hidden_size, 2)
        self.post_init()

    def forward(self, input_ids=None, **kwargs):
        hidden = self.model(input_ids=input_ids).last_hidden_state
        return (self.score(hidden),)
'''


def save_remote_code_prm(directory: Path, seed: int = 0) -> Path:
    """A checkpoint whose class lives in its own `modeling_tinyprm.py` (trust_remote_code)."""
    import importlib.util
    import json
    import sys

    directory.mkdir(parents=True, exist_ok=True)
    code = directory / "modeling_tinyprm.py"
    code.write_text(REMOTE_PRM_CODE)
    spec = importlib.util.spec_from_file_location("modeling_tinyprm_build", code)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    import torch

    torch.manual_seed(seed)
    module.TinyProcessRewardModel(llama_config()).save_pretrained(directory)
    config_path = directory / "config.json"
    config = json.loads(config_path.read_text())
    config["auto_map"] = {"AutoModel": "modeling_tinyprm.TinyProcessRewardModel"}
    config["architectures"] = ["TinyProcessRewardModel"]
    config_path.write_text(json.dumps(config))
    char_tokenizer().save_pretrained(directory)
    return directory
