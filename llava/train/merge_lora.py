"""Merge a LoRA run's adapter into its base checkpoint, giving a full checkpoint in the released layout.

    python -m llava.train.merge_lora outputs/lora-run outputs/lora-merged [--model_base models/tiny-vilamp]

`--model_base` defaults to the base recorded in the adapter's `adapter_config.json`. The result loads with
`load_pretrained_model(outputs/lora-merged)` and the eval scripts, like any checkpoint.
"""

import argparse
import json
from pathlib import Path

from llava.errors import command
from llava.model.builder import CheckpointError, load_pretrained_model


def merge_lora(adapter_dir: str | Path, output_dir: str | Path, model_base: str | Path | None = None) -> Path:
    """Load base + adapter merged (`load_pretrained_model(adapter, model_base)`) and save it whole to `output_dir`."""
    adapter_dir, output_dir = Path(adapter_dir), Path(output_dir)
    config_file = adapter_dir / "adapter_config.json"
    if not config_file.exists():
        raise CheckpointError(f"{adapter_dir}: adapter_config.json is missing (is this a LoRA run's output?)")
    if model_base is None:
        model_base = json.loads(config_file.read_text()).get("base_model_name_or_path")
        if not model_base:
            raise CheckpointError(f"{config_file} names no base model: pass --model_base")
    _, model, processor, _ = load_pretrained_model(adapter_dir, model_base=model_base, device="cpu")
    model.save_pretrained(output_dir)
    processor.save_pretrained(output_dir)
    return output_dir


@command
def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="Merge a ViLAMP LoRA adapter into its base checkpoint.")
    parser.add_argument("adapter_dir", type=Path, help="output directory of a --lora_enable run")
    parser.add_argument("output_dir", type=Path, help="where to write the merged checkpoint")
    parser.add_argument("--model_base", type=Path, help="base checkpoint (default: the adapter's recorded base)")
    args = parser.parse_args(argv)
    print(f"merged checkpoint written to {merge_lora(args.adapter_dir, args.output_dir, args.model_base)}")


if __name__ == "__main__":
    main()
