"""`LlavaQwenConfig`: a Qwen2 config plus the ViLAMP fields of the released checkpoints.

Every field name and default below is the one the released code reads, so released `config.json` files load
unchanged. Fields only this project adds: `dfm_reference` (see `llava.model.merger`), and `vision_config` /
`clip_config`, the architectures of the SigLIP tower and the CLIP frame selector. Released configs carry neither:
their `mm_vision_tower` / `clip_model_path` name folders on the authors' machines, so the released architectures
(SigLIP-so400m-patch14-384, CLIP ViT-B/32) are assumed, or taken from `siglip_vision_config.json` /
`clip_config.json` files beside the checkpoint (see `llava.model.builder`).
"""

from huggingface_hub.dataclasses import strict
from transformers import CLIPConfig, Qwen2Config, SiglipVisionConfig

from llava.model.merger import COMPOSERS
from llava.model.pooling import pooled_tokens_per_keyframe

# google/siglip-so400m-patch14-384 (the released tower), before ViLAMP drops its last layer.
SIGLIP_SO400M_PATCH14_384 = dict(
    hidden_size=1152,
    intermediate_size=4304,
    num_hidden_layers=27,
    num_attention_heads=16,
    image_size=384,
    patch_size=14,
    hidden_act="gelu_pytorch_tanh",
    layer_norm_eps=1e-6,
)
# CLIP ViT-B/32 is exactly transformers' CLIPConfig() default.
CLIP_VIT_B_32: dict = {}

DFM_REFERENCE_RULES = ("legacy", "preceding_keyframe")
POOL_MODES = ("bilinear", "average", "max", "none")


@strict
class LlavaQwenConfig(Qwen2Config):
    model_type = "llava_qwen"

    # Vision tower and projector (LLaVA fields).
    mm_vision_tower: str | None = "google/siglip-so400m-patch14-384"
    mm_vision_select_layer: int = -2
    mm_vision_select_feature: str = "patch"
    mm_projector_type: str = "mlp2x_gelu"
    mm_hidden_size: int | None = None
    mm_patch_merge_type: str = "spatial_unpad"
    mm_spatial_pool_mode: str = "bilinear"
    mm_spatial_pool_stride: int = 2
    mm_use_im_start_end: bool = False
    mm_use_im_patch_token: bool = False
    image_aspect_ratio: str = "anyres_max_9"
    tokenizer_model_max_length: int | None = 32768
    tokenizer_padding_side: str = "right"

    # Differential keyframe selection (DKS).
    activate_frame_selector: bool = True
    frame_selector_type: str = "SeqFrameSelector"
    clip_model_path: str | None = "clip-ViT-B-32/0_CLIPModel"
    f2f_thrd: float | int = 0.85
    f2t_thrd: float | int = 0.2
    max_frame_num: int = 32

    # Differential feature merging (DFM) of non-keyframes.
    composer_type: str = "single_token"
    composer_proj_dim: int = 512
    composer_proj_mlp_depth: int = 2
    dfm_reference: str = "preceding_keyframe"

    # Sub-model architectures (this project writes them; released checkpoints lack them).
    vision_config: dict | None = None
    clip_config: dict | None = None

    # This project's API (released checkpoints lack them): the id of the processor's `<video>` token, and frames
    # per vision call at inference (None: by device, see `VISION_CHUNK_SIZE`).
    video_token_id: int | None = None
    vision_chunk_size: int | None = None

    def __post_init__(self, **kwargs):
        if self.vision_config is None:
            self.vision_config = dict(SIGLIP_SO400M_PATCH14_384)
        if self.clip_config is None:
            self.clip_config = dict(CLIP_VIT_B_32)
        if self.mm_hidden_size is None:
            self.mm_hidden_size = self.vision_config.get("hidden_size", SIGLIP_SO400M_PATCH14_384["hidden_size"])
        super().__post_init__(**kwargs)
        self.check_vilamp_fields()

    @classmethod
    def from_dict(cls, config_dict, **kwargs):
        # A config written before `dfm_reference` existed (every released checkpoint) was trained with the
        # released code's reference rule; only configs created now default to the paper's rule.
        if "dfm_reference" not in config_dict and "dfm_reference" not in kwargs:
            config_dict = {**config_dict, "dfm_reference": "legacy"}
        return super().from_dict(config_dict, **kwargs)

    def check_vilamp_fields(self):
        """Raise a ValueError naming the field when a ViLAMP setting has no implementation here."""
        choices = {
            "dfm_reference": DFM_REFERENCE_RULES,
            "composer_type": tuple(COMPOSERS),
            "mm_spatial_pool_mode": POOL_MODES,
            "frame_selector_type": ("SeqFrameSelector",),
            "mm_vision_select_feature": ("patch",),
        }
        for field, allowed in choices.items():
            value = getattr(self, field)
            if value not in allowed:
                raise ValueError(f"LlavaQwenConfig.{field}={value!r} is not supported; expected one of {allowed}")
        if self.max_frame_num < 1:
            raise ValueError(f"LlavaQwenConfig.max_frame_num must be >= 1, got {self.max_frame_num}")
        if self.vision_chunk_size is not None and self.vision_chunk_size < 1:
            raise ValueError(f"LlavaQwenConfig.vision_chunk_size must be >= 1, got {self.vision_chunk_size}")

    @property
    def tokens_per_keyframe(self) -> int:
        """Pooled tokens of one keyframe's patch grid."""
        vision = self.siglip_config
        grid = vision.image_size // vision.patch_size
        return pooled_tokens_per_keyframe(grid, self.mm_spatial_pool_mode, self.mm_spatial_pool_stride)

    @property
    def siglip_config(self) -> SiglipVisionConfig:
        """The full SigLIP vision config (the tower keeps layers up to `mm_vision_select_layer`)."""
        return SiglipVisionConfig(**{**self.vision_config, "vision_use_head": False})

    @property
    def frame_selector_clip_config(self) -> CLIPConfig:
        return CLIPConfig(**self.clip_config)
