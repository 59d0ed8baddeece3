"""A tiny Llama-style model, its tokenizer and demo datasets, built locally (nothing is downloaded).

Used by ``bastion demo`` and by tests across the project: every trainer integration needs a real
model directory, and no model hub can be reached from CI. The model has random weights from a fixed
seed; the tokenizer is a byte-level BPE trained on a small embedded corpus, so any text tokenizes.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

SPECIAL_TOKENS = ("<pad>", "<unk>", "<s>", "</s>", "<|im_start|>", "<|im_end|>")
VOCAB_SIZE = 512
SEED = 1234

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

# Synthetic, invented content only: no names, addresses or other personal data.
_TOPICS = (
    ("colour of the sky", "The sky looks blue because air scatters short wavelengths of sunlight."),
    ("boiling point of water", "At sea level pure water boils at 100 degrees Celsius."),
    ("number of days in a week", "A week has seven days."),
    ("largest planet", "Jupiter is the largest planet in the solar system."),
    ("speed of light", "Light travels at about 300000 kilometres per second in a vacuum."),
    ("purpose of a checksum", "A checksum detects accidental changes to data."),
    ("meaning of LoRA", "LoRA adapts a model by training small low-rank matrices."),
    ("role of a tokenizer", "A tokenizer splits text into pieces a model can read."),
    ("use of a ledger", "A ledger keeps an ordered record that cannot be silently changed."),
    ("freezing point of water", "Pure water freezes at 0 degrees Celsius at sea level."),
    ("number of continents", "Most geography lessons count seven continents."),
    ("what photosynthesis does", "Photosynthesis turns light, water and carbon dioxide into sugar."),
    ("why leaves change colour", "Leaves lose chlorophyll in autumn, showing other pigments."),
    ("what a prime number is", "A prime number has exactly two divisors: one and itself."),
    ("how tides happen", "Tides come mostly from the pull of the moon on the oceans."),
    ("what a hash function is", "A hash function maps data to a fixed-size digest."),
)
_ASKS = (
    "Tell me about the {t}.",
    "What do you know about the {t}?",
    "Explain the {t} briefly.",
    "Give one sentence on the {t}.",
    "Could you describe the {t}?",
    "Summarize the {t} for a student.",
)
_PREFIXES = ("", "Sure. ", "Of course. ", "Here is a short answer. ", "Good question. ")


def _conversations() -> list[dict[str, Any]]:
    """96 distinct, deterministic user/assistant pairs."""
    out: list[dict[str, Any]] = []
    for i, (topic, answer) in enumerate(_TOPICS):
        for j, ask in enumerate(_ASKS):
            prefix = _PREFIXES[(i + j) % len(_PREFIXES)]
            out.append(
                {
                    "messages": [
                        {"role": "user", "content": ask.format(t=topic)},
                        {"role": "assistant", "content": prefix + answer},
                    ]
                }
            )
    return out


def _corpus() -> list[str]:
    texts = [m["content"] for conv in _conversations() for m in conv["messages"]]
    texts += ["system", "user", "assistant", "Answer briefly and correctly.", "I am not sure about that."]
    return texts


def build_tokenizer() -> Any:
    """A ``PreTrainedTokenizerFast`` (byte-level BPE, ChatML template, pad token set)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(), trainer=trainer)
    fast = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="<|im_end|>",
        unk_token="<unk>",
        pad_token="<pad>",
        additional_special_tokens=["<|im_start|>", "</s>"],
        model_max_length=512,
    )
    fast.chat_template = CHATML_TEMPLATE
    return fast


def build_tiny_model(directory: str | os.PathLike[str]) -> Path:
    """Write a tiny ``LlamaForCausalLM`` and its tokenizer to ``directory``; returns the directory.

    Deterministic for a given library version (fixed seed). About 100k parameters; saved as
    safetensors with ``save_pretrained``.
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    with torch.random.fork_rng(devices=[]):  # CPU generator only; the caller's RNG state is restored
        torch.manual_seed(SEED)
        model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return out


def _write_jsonl(path: Path, records: list[dict[str, Any]]) -> Path:
    with open(path, "w", encoding="utf-8") as fh:
        for r in records:
            fh.write(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n")
    return path


def write_demo_datasets(directory: str | os.PathLike[str]) -> dict[str, Path]:
    """Write ``train.jsonl`` (64 chats), ``eval.jsonl`` (16 held-out chats) and ``preference.jsonl``.

    Returns ``{"train": path, "eval": path, "preference": path}``. Train and eval do not overlap.
    The preference file uses TRL's conversational format (``prompt``/``chosen``/``rejected`` as
    message lists).
    """
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    convs = _conversations()
    # Every 6th conversation goes to eval: each topic appears in both splits, no record in both.
    train = [c for i, c in enumerate(convs) if i % 6 != 5][:64]
    evals = [c for i, c in enumerate(convs) if i % 6 == 5][:16]
    preference: list[dict[str, Any]] = []
    for i, conv in enumerate(train[:32]):
        user, assistant = conv["messages"]
        wrong = _TOPICS[(i * 7 + 3) % len(_TOPICS)][1]
        if wrong in assistant["content"]:
            wrong = "I am not sure about that."
        preference.append(
            {
                "prompt": [user],
                "chosen": [assistant],
                "rejected": [{"role": "assistant", "content": wrong}],
            }
        )
    return {
        "train": _write_jsonl(out / "train.jsonl", train),
        "eval": _write_jsonl(out / "eval.jsonl", evals),
        "preference": _write_jsonl(out / "preference.jsonl", preference),
    }


__all__ = ["CHATML_TEMPLATE", "SPECIAL_TOKENS", "build_tiny_model", "build_tokenizer", "write_demo_datasets"]


def tokenize_chat_jsonl(tokenizer: Any, path: str | os.PathLike[str], max_length: int = 48) -> Any:
    """A chat JSONL (``{"messages": [...]}`` per line) as a padded causal-LM ``datasets.Dataset``.

    Each conversation goes through the tokenizer's chat template; padding positions get label -100 so
    they do not count in the loss. Used by ``bastion demo``, the benchmarks and the tests.
    """
    from datasets import Dataset

    rows = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            text = tokenizer.apply_chat_template(json.loads(line)["messages"], tokenize=False)
            enc = tokenizer(text, truncation=True, max_length=max_length, padding="max_length")
            enc["labels"] = [t if m else -100 for t, m in zip(enc["input_ids"], enc["attention_mask"], strict=True)]
            rows.append(dict(enc))
    return Dataset.from_list(rows)
