"""2-D pooling of keyframe patch grids (`mm_spatial_pool_mode`), with the released arithmetic."""

import math

import torch
import torch.nn.functional as F


def pool_keyframes(features: torch.Tensor, grid: int, mode: str, stride: int) -> torch.Tensor:
    """(K, grid*grid, D) -> (K, tokens, D), row-major (h, w) order.

    `bilinear` always halves each side (ceil(grid/2), the released behaviour: the stride is ignored);
    `average` / `max` use kernel = stride = `stride` (ragged last row/column dropped); `none` keeps every patch.
    """
    if mode == "none":
        return features
    k, patches, dim = features.shape
    if patches != grid * grid:
        raise ValueError(f"keyframe features have {patches} patches, expected a {grid}x{grid} grid")
    maps = features.view(k, grid, grid, dim).permute(0, 3, 1, 2)
    if mode == "bilinear":
        side = math.ceil(grid / 2)
        maps = F.interpolate(maps, size=(side, side), mode="bilinear", align_corners=False)
    elif mode == "average":
        maps = F.avg_pool2d(maps, stride)
    elif mode == "max":
        maps = F.max_pool2d(maps, stride)
    else:
        raise ValueError(f"mm_spatial_pool_mode={mode!r} is not supported")
    return maps.permute(0, 2, 3, 1).reshape(k, -1, dim)


def pooled_tokens_per_keyframe(grid: int, mode: str, stride: int) -> int:
    if mode == "none":
        return grid * grid
    side = math.ceil(grid / 2) if mode == "bilinear" else grid // stride
    return side * side
