"""Character-level tokenizer for the lab models, saved in the usual tokenizer files.

One token per character of printable ASCII plus newline, and four specials
(<pad>, <s>, </s>, <unk>). Built with the `tokenizers` library (WordLevel over
single characters, a pre-tokenizer that isolates every character, a Fuse decoder,
a post-processor that prepends <s>) and wrapped as `PreTrainedTokenizerFast`, so
`AutoTokenizer.from_pretrained(dir)` loads it and decoding round-trips text exactly.
"""

from __future__ import annotations

from typing import Iterable

SPECIALS = ("<pad>", "<s>", "</s>", "<unk>")
PAD, BOS, EOS, UNK = SPECIALS
CHARS = ["\n"] + [chr(c) for c in range(32, 127)]
VOCAB = {tok: i for i, tok in enumerate(list(SPECIALS) + CHARS)}
PAD_ID, BOS_ID, EOS_ID, UNK_ID = (VOCAB[t] for t in SPECIALS)
NEWLINE_ID = VOCAB["\n"]


def build_tokenizer():
    """A fresh `PreTrainedTokenizerFast` over the lab's character vocabulary."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(vocab=dict(VOCAB), unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    tok.decoder = decoders.Fuse()
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A $B", special_tokens=[(BOS, BOS_ID)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        clean_up_tokenization_spaces=False,
        model_max_length=1024,
    )


def encode(text: str) -> list[int]:
    """Character ids of `text` without specials (same ids as the saved tokenizer)."""
    return [VOCAB.get(c, UNK_ID) for c in text]


_INV = {i: t for t, i in VOCAB.items()}


def decode(ids: Iterable[int]) -> str:
    """Text of ids, specials dropped."""
    return "".join(_INV[i] for i in ids if i >= len(SPECIALS))
