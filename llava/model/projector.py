"""Vision-to-language projector (`mm_projector_type`): `linear` or `mlp{N}x_gelu`."""

import re

from torch import nn


def build_vision_projector(projector_type: str, vision_hidden: int, text_hidden: int) -> nn.Module:
    """Maps (..., vision_hidden) -> (..., text_hidden). Keys: `0` (and `2`, `4`, ... for the MLP)."""
    if projector_type == "linear":
        return nn.Linear(vision_hidden, text_hidden)
    mlp = re.fullmatch(r"mlp(\d+)x_gelu", projector_type)
    if mlp:
        return build_gelu_mlp(vision_hidden, text_hidden, int(mlp.group(1)))
    raise ValueError(f"mm_projector_type={projector_type!r} is not supported; expected 'linear' or 'mlp<N>x_gelu'")


def build_gelu_mlp(in_features: int, out_features: int, depth: int) -> nn.Sequential:
    """Linear(in, out) then (GELU, Linear(out, out)) x (depth - 1); GELU is the exact (erf) one."""
    if depth < 1:
        raise ValueError(f"MLP depth must be >= 1, got {depth}")
    layers: list[nn.Module] = [nn.Linear(in_features, out_features)]
    for _ in range(depth - 1):
        layers += [nn.GELU(), nn.Linear(out_features, out_features)]
    return nn.Sequential(*layers)
