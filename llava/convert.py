"""Give a checkpoint in the released layout its `VilampProcessor` files, once:

    python -m llava.convert models/ViLAMP-llava-qwen

writes processor_config.json, chat_template.jinja, the Qwen tokenizer with `<video>` added and the CLIP query
tokenizer in `clip_tokenizer/`, and records `video_token_id` in config.json (every other field is kept as it is).
Afterwards `AutoProcessor.from_pretrained` and `AutoModelForCausalLM.from_pretrained` read the folder directly;
`load_pretrained_model` works with or without this step.
"""

import argparse
import json
from pathlib import Path

from llava.errors import command
from llava.files import atomic_write
from llava.model.builder import CheckpointError, load_config, load_processor


def convert(checkpoint: str | Path) -> Path:
    """Write the processor files into `checkpoint` and `video_token_id` into its config.json; returns the folder."""
    checkpoint = Path(checkpoint)
    if not (checkpoint / "config.json").is_file():
        raise CheckpointError(f"{checkpoint}: no config.json (is this a ViLAMP checkpoint directory?)")
    processor = load_processor(checkpoint, load_config(checkpoint))
    processor.save_pretrained(checkpoint)
    raw = json.loads((checkpoint / "config.json").read_text())
    raw["video_token_id"] = processor.video_token_id
    with atomic_write(checkpoint / "config.json") as temporary:
        temporary.write_text(json.dumps(raw, indent=2) + "\n")
    return checkpoint


@command
def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", type=Path, help="checkpoint folder (config.json, weights, tokenizer)")
    args = parser.parse_args(argv)
    folder = convert(args.checkpoint)
    print(f"{folder}: processor files written; video_token_id recorded in config.json")


if __name__ == "__main__":
    main()
