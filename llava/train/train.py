"""Fine-tune ViLAMP with the Hugging Face `Trainer` (optionally DeepSpeed ZeRO-2/3 and LoRA).

    python -m llava.train.train --model_name_or_path models/tiny-vilamp --data_path training_data.yaml \
        --output_dir outputs/run --mm_tunable_parts mm_mlp_adapter,mm_language_model,composer_projector
    torchrun --nproc_per_node=8 llava/train/train.py --deepspeed scripts/zero3.json ...

Every Hugging Face `TrainingArguments` flag works (learning rate, epochs, --bf16/--fp16, --gradient_checkpointing
(transformers 5 calls it --activation_checkpointing), --resume_from_checkpoint, --report_to, --save_steps, ...);
the flags below are ViLAMP's. The run's output directory
(and every checkpoint-N in it) is a checkpoint that `AutoModelForCausalLM` / `AutoProcessor.from_pretrained` and
`load_pretrained_model` read: weights, config and the `VilampProcessor` (Qwen tokenizer, CLIP query tokenizer, chat
template). A LoRA run saves the adapter instead; merge it with `python -m llava.train.merge_lora`.
"""

import logging
import sys
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch
import transformers
from transformers import HfArgumentParser, Trainer

from llava.errors import VilampError, command
from llava.model.builder import load_pretrained_model
from llava.train.dataset import DataEvent, DecodedVideoCache, SupervisedVideoDataset, VideoCollator
from llava.train.registry import load_training_records

logger = logging.getLogger("llava.train")

# --mm_tunable_parts name -> module paths (under LlavaQwenForCausalLM) it unfreezes.
TUNABLE_PARTS = {
    "mm_language_model": ("model.layers", "model.embed_tokens", "model.norm", "lm_head"),
    "mm_mlp_adapter": ("model.mm_projector", "model.image_newline"),
    "mm_vision_tower": ("model.vision_tower",),
    "frame_selector": ("model.frame_selector",),
    "composer_projector": ("model.composer_projector",),
}
LORA_LANGUAGE_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass
class ModelArguments:
    model_name_or_path: str = field(metadata={"help": "checkpoint directory (released ViLAMP or llava.tiny)"})
    version: str = field(default="qwen_1_5", metadata={"help": "chat template; only qwen_1_5 exists"})
    mm_tunable_parts: str = field(
        default="mm_mlp_adapter,mm_language_model",
        metadata={"help": f"comma-separated parts to train: {', '.join(TUNABLE_PARTS)}"},
    )
    attn_implementation: str | None = field(default=None, metadata={"help": "flash_attention_2, sdpa or eager"})


@dataclass
class DataArguments:
    data_path: str = field(metadata={"help": "YAML dataset registry (training_data.yaml) or one .json/.jsonl file"})
    video_folder: str | None = field(default=None, metadata={"help": "folder of datasets without video_folder"})
    frames_upbound: int | None = field(default=None, metadata={"help": "frame cap applied to every video"})
    video_cache_dir: str | None = field(
        default=None, metadata={"help": "keep decoded frames here so that later epochs and runs skip decoding"}
    )
    max_failed_fraction: float = field(
        default=0.05, metadata={"help": "stop when more than this fraction of the records have unreadable videos"}
    )


@dataclass
class VideoTrainingArguments(transformers.TrainingArguments):
    model_max_length: int | None = field(
        default=None, metadata={"help": "longest sequence, video tokens included (default: the checkpoint's)"}
    )
    mm_vision_tower_lr: float | None = field(default=None, metadata={"help": "learning rate of the SigLIP tower"})
    lora_enable: bool = field(default=False, metadata={"help": "train the language model through LoRA adapters"})
    lora_r: int = 64
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    lora_target_modules: str = field(
        default=",".join(LORA_LANGUAGE_MODULES), metadata={"help": "language-model linear layers that get LoRA"}
    )
    remove_unused_columns: bool = False  # the batch carries the video tensors, which the Trainer must not drop
    dataloader_num_workers: int = 2  # workers decode videos ahead of the model


class TrainingSetupError(VilampError, ValueError):
    """A command-line argument that cannot work; the message names it."""


def parse_tunable_parts(value: str) -> list[str]:
    parts = [p.strip() for p in value.split(",") if p.strip()]
    unknown = [p for p in parts if p not in TUNABLE_PARTS]
    if unknown or not parts:
        raise TrainingSetupError(
            f"--mm_tunable_parts {value!r}: unknown part(s) {unknown}; choose from {', '.join(TUNABLE_PARTS)}"
        )
    return parts


def set_tunable_parts(model, parts: list[str]) -> None:
    """Freeze everything, then unfreeze the modules of `parts`."""
    model.requires_grad_(False)
    for part in parts:
        for path in TUNABLE_PARTS[part]:
            try:
                target = model.get_submodule(path) if path != "model.image_newline" else model.model.image_newline
            except AttributeError:
                raise TrainingSetupError(
                    f"--mm_tunable_parts {part}: this checkpoint has no {path} "
                    f"(composer_type={model.config.composer_type!r})"
                ) from None
            target.requires_grad_(True)


def apply_lora(model, args: VideoTrainingArguments, parts: list[str]):
    """LoRA on the language model's linear layers; the other tunable parts train fully and are saved with the
    adapter (peft `modules_to_save`). `image_newline` is a bare parameter peft cannot save: it stays frozen."""
    from peft import LoraConfig, get_peft_model

    names = [n.strip() for n in args.lora_target_modules.split(",") if n.strip()]
    unknown = [n for n in names if n not in LORA_LANGUAGE_MODULES]
    if unknown or not names:
        raise TrainingSetupError(
            f"--lora_target_modules {args.lora_target_modules!r}: unknown {unknown}; "
            f"choose from {', '.join(LORA_LANGUAGE_MODULES)}"
        )
    full = [path for part in parts if part != "mm_language_model" for path in TUNABLE_PARTS[part]]
    if "model.image_newline" in full:
        logger.warning("LoRA: image_newline stays frozen (peft saves modules, not bare parameters)")
    config = LoraConfig(
        r=args.lora_r,
        lora_alpha=args.lora_alpha,
        lora_dropout=args.lora_dropout,
        target_modules=rf"model\.layers\.\d+\.(self_attn|mlp)\.({'|'.join(names)})",
        modules_to_save=[path for path in full if path != "model.image_newline"] or None,
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, config)


class DataMonitor:
    """Logs every data event with its record, counts them, and stops training when unreadable videos exceed
    `max_failed_fraction` of this rank's share of the records (distinct records, so epochs do not add up)."""

    def __init__(self, num_records: int, max_failed_fraction: float):
        self.limit = max_failed_fraction * num_records
        self.counts = {"truncated": 0, "dropped": 0, "failed": 0}
        self.failed: set[str] = set()

    def update(self, events: list[DataEvent]) -> None:
        for event in events:
            self.counts[event.kind] += 1
            logger.warning("%s %s: %s", event.kind, event.source, event.message)
            if event.kind == "failed":
                self.failed.add(event.source)
                if len(self.failed) > self.limit:
                    raise RuntimeError(
                        f"{len(self.failed)} records have unreadable videos, more than --max_failed_fraction allows "
                        f"({self.limit:.1f} on this rank); last: {event.source}: {event.message}"
                    )


class VideoTrainer(Trainer):
    """`Trainer` that consumes the collator's data events, zeroes the loss of sample-less batches, gives the
    vision tower its own learning rate and saves scalar parameters as scalars (the processor is saved with every
    checkpoint as the `processing_class`)."""

    def __init__(self, *args, data_monitor: DataMonitor, scalar_names: list[str], **kwargs):
        super().__init__(*args, **kwargs)
        self.data_monitor = data_monitor
        self.scalar_names = scalar_names

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        self.data_monitor.update(inputs.pop("data_events"))
        num_samples = inputs.pop("num_samples")
        loss, outputs = super().compute_loss(model, inputs, True, num_items_in_batch)
        if num_samples == 0:  # every sample of the batch was skipped: keep the step, learn nothing
            loss = outputs.logits.sum() * 0
        return (loss, outputs) if return_outputs else loss

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        logs.update({f"data_{kind}": count for kind, count in self.data_monitor.counts.items()})
        super().log(logs, start_time)

    def create_optimizer(self, model=None):
        optimizer = super().create_optimizer(model)
        lr = self.args.mm_vision_tower_lr
        if lr is not None:
            tower = {id(p) for n, p in (model or self.model).named_parameters() if ".vision_tower." in n}
            for group in list(optimizer.param_groups):
                moved = [p for p in group["params"] if id(p) in tower]
                if moved:
                    group["params"] = [p for p in group["params"] if id(p) not in tower]
                    settings = {k: v for k, v in group.items() if k != "params"}
                    optimizer.add_param_group({**settings, "params": moved, "lr": lr})
        return optimizer

    def _save(self, output_dir=None, state_dict=None):
        if state_dict and self.scalar_names:
            state_dict = {k: v.reshape(()) if k in self.scalar_names else v for k, v in state_dict.items()}
        super()._save(output_dir, state_dict)


SCALAR_MARK = "vilamp_scalar"  # set on 0-dim parameters reshaped to (1,) for DeepSpeed


def reshape_scalar_parameters(module: torch.nn.Module, recurse: bool = True) -> None:
    """DeepSpeed 0.19 broadcasts parameters as `p.data.view(torch.uint8)`, which fails for 0-dim parameters (DFM
    `tau`, CLIP `logit_scale`). Give them shape (1,) while training (values and broadcasting unchanged) and mark
    them, so that `VideoTrainer._save` writes them back as scalars; the module then reads a checkpoint's scalar
    into the (1,) parameter."""
    for owner in module.modules() if recurse else [module]:
        names = [n for n, p in owner.named_parameters(recurse=False) if p.dim() == 0]
        for name in names:
            param = getattr(owner, name)
            param.data = param.data.reshape(1)
            setattr(param, SCALAR_MARK, True)
        if names:
            owner.register_load_state_dict_pre_hook(partial(_load_scalars_as_vectors, names=names))


def _load_scalars_as_vectors(module, state_dict, prefix, *args, names: list[str]) -> None:
    for name in names:
        if prefix + name in state_dict:
            state_dict[prefix + name] = state_dict[prefix + name].reshape(1)


def scalar_parameter_names(model: torch.nn.Module) -> list[str]:
    return [name for name, param in model.named_parameters() if getattr(param, SCALAR_MARK, False)]


@contextmanager
def zero3_partitioned_creation():
    """Under ZeRO-3, `from_pretrained` creates the model inside `deepspeed.zero.Init`: each module's parameters are
    partitioned as soon as the module exists (a rank allocates only its 1/world_size share) and only rank 0 reads
    the checkpoint's values. This context makes that Init first reshape the module's 0-dim parameters (see
    `reshape_scalar_parameters`), which zero.Init would otherwise fail to broadcast."""
    import deepspeed

    deepspeed.init_distributed()  # a no-op where accelerate already did it (GPUs); --use_cpu leaves it to us

    class ScalarSafeInit(deepspeed.zero.Init):
        def _post_init_method(self, module):
            reshape_scalar_parameters(module, recurse=False)
            super()._post_init_method(module)

    original, deepspeed.zero.Init = deepspeed.zero.Init, ScalarSafeInit
    try:
        yield
    finally:
        deepspeed.zero.Init = original


def build_trainer(model_args: ModelArguments, data_args: DataArguments, args: VideoTrainingArguments) -> VideoTrainer:
    """Check the arguments and the registry, load the model, set what trains; nothing is trained yet."""
    if model_args.version != "qwen_1_5":
        raise TrainingSetupError(f"--version {model_args.version!r}: only qwen_1_5 is supported")
    parts = parse_tunable_parts(model_args.mm_tunable_parts)
    if args.mm_vision_tower_lr is not None and "mm_vision_tower" not in parts:
        raise TrainingSetupError("--mm_vision_tower_lr is set but mm_vision_tower is not in --mm_tunable_parts")
    records = load_training_records(data_args.data_path, data_args.video_folder, data_args.frames_upbound, args.seed)
    zero3 = transformers.integrations.is_deepspeed_zero3_enabled()
    # Float32 master weights; under ZeRO-3 created partitioned (the TrainingArguments set the DeepSpeed config).
    with zero3_partitioned_creation() if zero3 else nullcontext():
        _, model, processor, checkpoint_max_length = load_pretrained_model(
            model_args.model_name_or_path, device=str(args.device), dtype=torch.float32,
            attn_implementation=model_args.attn_implementation,
        )
    max_length = args.model_max_length or checkpoint_max_length
    model.config.tokenizer_model_max_length = processor.tokenizer.model_max_length = max_length
    model.config.use_cache = False
    set_tunable_parts(model, parts)
    if zero3:
        import deepspeed

        # image_newline is read outside its module's forward: ZeRO-3 must gather it for the model's forward.
        deepspeed.zero.register_external_parameter(model, model.model.image_newline)
        # transformers 5's ZeRO-3 loading keeps every checkpoint key conversion, used or not, and saving reverses
        # them all (CLIP's `text_model.x` would be saved as `text_model.text_model.x`): keep the used ones, as the
        # unpartitioned loading does.
        model._weight_conversions = [c for c in getattr(model, "_weight_conversions", []) if c.was_used()]
    if args.lora_enable:
        model = apply_lora(model, args, parts)
    if args.deepspeed and not zero3:
        reshape_scalar_parameters(model)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    logger.info("training %s: %d records, %d trainable parameters", ", ".join(parts), len(records), trainable)
    cache = DecodedVideoCache(data_args.video_cache_dir, processor.video_processor) if data_args.video_cache_dir else None
    dataset = SupervisedVideoDataset(records, processor, max_length, cache)
    return VideoTrainer(
        model=model,
        args=args,
        train_dataset=dataset,
        data_collator=VideoCollator(processor),
        processing_class=processor,
        data_monitor=DataMonitor(len(records) / args.world_size, data_args.max_failed_fraction),
        scalar_names=scalar_parameter_names(model),
    )


def parse_args(argv=None) -> tuple[ModelArguments, DataArguments, VideoTrainingArguments]:
    parser = HfArgumentParser((ModelArguments, DataArguments, VideoTrainingArguments))
    return parser.parse_args_into_dataclasses(args=argv)


@command
def main(argv=None) -> VideoTrainer:
    model_args, data_args, args = parse_args(argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    trainer = build_trainer(model_args, data_args, args)
    trainer.train(resume_from_checkpoint=args.resume_from_checkpoint)
    trainer.save_model(args.output_dir)
    trainer.save_state()
    counts = trainer.data_monitor.counts
    logger.info("data: %d truncated, %d dropped (too long), %d skipped (unreadable video)",
                counts["truncated"], counts["dropped"], counts["failed"])
    if torch.distributed.is_initialized():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    return trainer


if __name__ == "__main__":
    main()
