"""Write a complete, small, randomly initialised ViLAMP checkpoint; nothing is downloaded.

    python -m llava.tiny models/tiny-vilamp [--seed 0] [--composer sig_pooling] [--image-size 384]

The directory is what `AutoModelForCausalLM` / `AutoProcessor.from_pretrained` and `load_pretrained_model` read:
config.json (with the SigLIP and CLIP architectures), model.safetensors, generation_config.json and the
`VilampProcessor` (a byte-level BPE tokenizer with the Qwen chat special tokens and `<video>` trained here, the CLIP
query tokenizer in `clip_tokenizer/`, processor_config.json, chat_template.jinja). Real code paths, tiny sizes:
tests, CI and demos use it.
"""

import argparse
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import GenerationConfig, PreTrainedTokenizerFast

from llava.errors import command
from llava.model.builder import processor_settings
from llava.model.configuration_llava_qwen import LlavaQwenConfig
from llava.model.merger import COMPOSERS
from llava.model.modeling_llava_qwen import LlavaQwenForCausalLM
from llava.processing import CLIP_SPECIAL_TOKENS, VilampProcessor

QWEN_SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

# Text the tokenizers are trained on: the chat template, the benchmark prompts and everyday words.
_CORPUS = """You are a helpful assistant. system user assistant
Please choose the right answer from the following options: A. B. C. D. E. The answer is
What happens in the video? What colour is the background when the white square appears?
Based on this video, please answer the following question. Please think carefully and choose the best answer.
This video's subtitles are listed below. red green blue yellow white black orange purple pink brown grey
a the of and to in is was it for on with as at by from that this which who what where when why how
person man woman dog cat car ball table kitchen room street door hand open close walk run sit stand eat
0 1 2 3 4 5 6 7 8 9 10 yes no true false first second third last before after during video frame scene
"""


def train_bpe(special_tokens: list[str], vocab_size: int) -> Tokenizer:
    """Byte-level BPE over the corpus above (any text stays encodable through the byte alphabet)."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=special_tokens,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_CORPUS.splitlines() * 4, trainer)
    return tokenizer


def build_qwen_tokenizer() -> PreTrainedTokenizerFast:
    return PreTrainedTokenizerFast(
        tokenizer_object=train_bpe(QWEN_SPECIAL_TOKENS, 600),
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        extra_special_tokens=["<|im_start|>"],
        model_max_length=32768,
        padding_side="right",
    )


def build_clip_tokenizer() -> PreTrainedTokenizerFast:
    """CLIP-style: every query is wrapped in <|startoftext|> ... <|endoftext|>."""
    raw = train_bpe(list(CLIP_SPECIAL_TOKENS), 400)
    bos, eos = (raw.token_to_id(t) for t in CLIP_SPECIAL_TOKENS)
    raw.post_processor = processors.TemplateProcessing(
        single=f"{CLIP_SPECIAL_TOKENS[0]} $A {CLIP_SPECIAL_TOKENS[1]}",
        special_tokens=[(CLIP_SPECIAL_TOKENS[0], bos), (CLIP_SPECIAL_TOKENS[1], eos)],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=raw, bos_token=CLIP_SPECIAL_TOKENS[0], eos_token=CLIP_SPECIAL_TOKENS[1],
        pad_token=CLIP_SPECIAL_TOKENS[1], model_max_length=77,
    )


def tiny_config(tokenizer, clip_tokenizer, composer: str = "sig_pooling", image_size: int = 384,
                patch_size: int = 14, max_frame_num: int = 8, hidden_size: int = 64,
                attention_dropout: float = 0.0) -> LlavaQwenConfig:
    clip_projection = 16
    return LlavaQwenConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        attention_dropout=attention_dropout,
        max_position_embeddings=32768,
        rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
        tie_word_embeddings=False,
        bos_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        mm_vision_tower="tiny-siglip",
        clip_model_path="tiny-clip",
        max_frame_num=max_frame_num,
        composer_type=composer,
        composer_proj_dim=clip_projection,
        f2t_thrd=-1.0,
        vision_config=dict(
            hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4,
            image_size=image_size, patch_size=patch_size, hidden_act="gelu_pytorch_tanh", layer_norm_eps=1e-6,
        ),
        clip_config=dict(
            projection_dim=clip_projection,
            text_config=dict(
                vocab_size=len(clip_tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                num_attention_heads=4, max_position_embeddings=77, bos_token_id=clip_tokenizer.bos_token_id,
                eos_token_id=clip_tokenizer.eos_token_id, pad_token_id=clip_tokenizer.pad_token_id,
            ),
            vision_config=dict(
                hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                image_size=32, patch_size=8,
            ),
        ),
    )


def write_tiny_checkpoint(out_dir: str | Path, seed: int = 0, **config_overrides) -> Path:
    """Build and save the tiny checkpoint; returns its directory."""
    out_dir = Path(out_dir)
    torch.manual_seed(seed)
    tokenizer, clip_tokenizer = build_qwen_tokenizer(), build_clip_tokenizer()
    config = tiny_config(tokenizer, clip_tokenizer, **config_overrides)
    model = LlavaQwenForCausalLM(config)
    model.generation_config = GenerationConfig(
        bos_token_id=config.bos_token_id, eos_token_id=config.eos_token_id, pad_token_id=config.pad_token_id
    )
    # The processor adds `<video>` past the rows the embedding table has (the released Qwen2 table has spare rows,
    # this one none); its embedding is never looked up, the video block replaces it.
    processor = VilampProcessor(tokenizer, clip_tokenizer, **processor_settings(config))
    model.config.video_token_id = processor.video_token_id
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    return out_dir


@command
def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="Write a tiny random ViLAMP checkpoint (no downloads).")
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--composer", default="sig_pooling", choices=sorted(COMPOSERS),
                        help="composer_type: what non-keyframes become (llava.model.merger)")
    parser.add_argument("--image-size", type=int, default=384, help="SigLIP input side (patch 14: 384 -> 27x27)")
    parser.add_argument("--keyframes", "--max-frame-num", dest="keyframes", type=int, default=8,
                        help="keyframes per video, K (the config's max_frame_num)")
    args = parser.parse_args(argv)
    path = write_tiny_checkpoint(
        args.out_dir, args.seed, composer=args.composer, image_size=args.image_size, max_frame_num=args.keyframes
    )
    print(f"wrote a tiny ViLAMP checkpoint to {path}")


if __name__ == "__main__":
    main()
