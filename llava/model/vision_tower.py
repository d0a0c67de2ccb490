"""SigLIP vision tower as ViLAMP uses it: the encoder cut after `mm_vision_select_layer`, no pooling head.

State-dict layout (released): `vision_tower.vision_model.{embeddings,encoder.layers.*,post_layernorm}`.
`post_layernorm` is kept so checkpoints round-trip, but features are taken before it, as the released code did.
"""

import torch
from torch import nn
from transformers import SiglipVisionConfig, SiglipVisionModel


class _SiglipContainer(nn.Module):
    """Holds the SigLIP model under the attribute name the released checkpoints use."""

    def __init__(self, config: SiglipVisionConfig):
        super().__init__()
        self.vision_model = SiglipVisionModel(config)


class SiglipVisionTower(nn.Module):
    def __init__(self, config: SiglipVisionConfig, select_layer: int = -2, attn_implementation: str | None = None):
        super().__init__()
        full_layers = config.num_hidden_layers
        kept = full_layers + 1 + select_layer if select_layer < 0 else select_layer
        if not 1 <= kept <= full_layers:
            raise ValueError(f"mm_vision_select_layer={select_layer} is out of range for a {full_layers}-layer tower")
        self.config = config.__class__(**{**config.to_dict(), "num_hidden_layers": kept, "vision_use_head": False})
        self.config._attn_implementation = attn_implementation  # the language model's (SigLIP supports all three)
        self.vision_tower = _SiglipContainer(self.config)

    @property
    def grid_size(self) -> int:
        """Patches per side (27 for SigLIP-so400m at 384 px)."""
        return self.config.image_size // self.config.patch_size

    @property
    def num_patches(self) -> int:
        return self.grid_size**2

    @property
    def hidden_size(self) -> int:
        return self.config.hidden_size

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) normalised pixels -> (B, num_patches, hidden) patch features."""
        model = self.vision_tower.vision_model
        weight = model.embeddings.patch_embedding.weight
        # A channels_last input picks a different conv kernel (~1e-6 drift from the released outputs).
        hidden = model.embeddings(pixel_values.to(weight.dtype).contiguous())
        return model.encoder(inputs_embeds=hidden).last_hidden_state
