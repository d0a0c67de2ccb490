"""Frame preprocessing, identical to the released processors, split in two steps for constant memory.

`VideoProcessor(frames)` resizes each decoded frame once, as it arrives, to the two model resolutions and keeps it
as uint8: SigLIP (S x S, bicubic squash, no crop) and CLIP (shortest side C bicubic, centre crop C x C).
`normalize_siglip` / `normalize_clip` turn a chunk of those into float pixels right before the model uses them,
with the released arithmetic (x * 1/255 in float64, cast to float32, then (x - mean) / std in float32).
"""

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

SIGLIP_MEAN = SIGLIP_STD = (0.5, 0.5, 0.5)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass
class VideoFrames:
    siglip: torch.Tensor  # (N, S, S, 3) uint8, input of the SigLIP tower
    clip: torch.Tensor  # (N, C, C, 3) uint8, input of the CLIP frame selector

    def __len__(self) -> int:
        return self.siglip.shape[0]


class VideoProcessor:
    """Decoded frames -> `VideoFrames`. `clip_image_processor` is transformers' CLIP processor with the same
    settings (kept for its configuration and as the reference the CLIP half is tested against)."""

    def __init__(self, siglip_size: int = 384, clip_size: int = 224):
        self.siglip_size = siglip_size
        self.clip_image_processor = CLIPImageProcessorPil(
            size={"shortest_edge": clip_size},
            crop_size={"height": clip_size, "width": clip_size},
            image_mean=list(CLIP_MEAN),
            image_std=list(CLIP_STD),
        )

    @property
    def clip_size(self) -> int:
        return self.clip_image_processor.crop_size["height"]

    def __call__(self, frames) -> VideoFrames:
        """frames: (N, H, W, 3) uint8 array or tensor, or a list of PIL images / (H, W, 3) uint8 arrays."""
        images = [_to_pil(frame) for frame in frames]
        if not images:
            raise ValueError("no frames to preprocess")
        siglip = np.stack([self.siglip_frame(image) for image in images])
        clip = np.stack([self.clip_frame(image) for image in images])
        return VideoFrames(torch.from_numpy(siglip), torch.from_numpy(clip))

    def siglip_frame(self, image: Image.Image) -> np.ndarray:
        """PIL image -> (S, S, 3) uint8, bicubic resize to a square without keeping the aspect ratio."""
        return np.asarray(image.resize((self.siglip_size, self.siglip_size), Image.BICUBIC))

    def clip_frame(self, image: Image.Image) -> np.ndarray:
        """PIL image -> (C, C, 3) uint8: shortest side to C (bicubic, long side int(C * long / short)), centre
        crop. The arithmetic of `clip_image_processor`, done on the PIL image directly (3x faster per frame)."""
        size = self.clip_size
        width, height = image.size
        if width <= height:
            new_width, new_height = size, int(size * height / width)
        else:
            new_width, new_height = int(size * width / height), size
        resized = np.asarray(image.resize((new_width, new_height), Image.BICUBIC))
        top, left = (new_height - size) // 2, (new_width - size) // 2
        return np.ascontiguousarray(resized[top : top + size, left : left + size])


def _to_pil(frame) -> Image.Image:
    if isinstance(frame, Image.Image):
        return frame.convert("RGB")
    array = frame.numpy() if isinstance(frame, torch.Tensor) else np.asarray(frame)
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[-1] != 3:
        raise ValueError(f"a frame must be an (H, W, 3) uint8 array, got {array.dtype} {tuple(array.shape)}")
    return Image.fromarray(array)


def _normalize(frames: torch.Tensor, mean, std) -> torch.Tensor:
    pixels = (frames.permute(0, 3, 1, 2).double() * (1 / 255)).float()
    mean = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
    return ((pixels - mean) / std).contiguous()


def normalize_siglip(frames: torch.Tensor) -> torch.Tensor:
    """(B, S, S, 3) uint8 -> (B, 3, S, S) float32 SigLIP pixels."""
    return _normalize(frames, SIGLIP_MEAN, SIGLIP_STD)


def normalize_clip(frames: torch.Tensor) -> torch.Tensor:
    """(B, C, C, 3) uint8 -> (B, 3, C, C) float32 CLIP pixels."""
    return _normalize(frames, CLIP_MEAN, CLIP_STD)
