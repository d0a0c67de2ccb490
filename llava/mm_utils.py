"""Tokenising prompts that contain the `<image>` placeholder."""

import torch

from llava.constants import DEFAULT_IMAGE_TOKEN, IMAGE_TOKEN_INDEX


def tokenizer_image_token(prompt: str, tokenizer) -> torch.Tensor:
    """Token ids (L,) of `prompt`, each `<image>` replaced by the single id IMAGE_TOKEN_INDEX."""
    ids: list[int] = []
    for i, piece in enumerate(prompt.split(DEFAULT_IMAGE_TOKEN)):
        if i:
            ids.append(IMAGE_TOKEN_INDEX)
        if piece:
            ids.extend(tokenizer(piece, add_special_tokens=False).input_ids)
    return torch.tensor(ids, dtype=torch.long)
