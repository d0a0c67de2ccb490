"""Prompts: the released benchmark prompt format, and the `qwen_1_5` conversation cut into training pieces.

`VilampProcessor`'s chat template renders the same text (tests/test_train_data.py checks that they agree).
"""

from llava.processing import SYSTEM_PROMPT

ASSISTANT_HEADER = "<|im_start|>assistant\n"


def multiple_choice_prompt(question: str, options: list[str]) -> str:
    """Released training/eval format; `options` are rendered as a Python list ("['A. x', 'B. y']")."""
    return f"{question}. Please choose the right answer from the following options: {options}."


def conversation_pieces(turns: list[tuple[str, str]], system: str = SYSTEM_PROMPT) -> list[tuple[str, bool]]:
    """A whole `qwen_1_5` conversation as (text, is_target) pieces whose concatenation is the rendered chat.

    turns: (role, text) with role "user" or "assistant". Target pieces are each assistant answer and its
    `<|im_end|>`; the system prompt, user turns, role headers and newlines are context (masked in the labels).
    """
    pieces = [(f"<|im_start|>system\n{system}<|im_end|>\n", False)]
    for role, text in turns:
        if role == "user":
            pieces.append((f"<|im_start|>user\n{text}<|im_end|>\n", False))
        elif role == "assistant":
            pieces += [(ASSISTANT_HEADER, False), (f"{text}<|im_end|>", True), ("\n", False)]
        else:
            raise ValueError(f"turn role {role!r}: expected 'user' or 'assistant'")
    return pieces
