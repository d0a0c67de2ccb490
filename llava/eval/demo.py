"""The one-command demo: a checkpoint (the tiny one when models/ has none), a small MLVU-format sample with
synthetic videos, exp_mlvu.py over it, then the score table.

    python -m llava.eval.demo
"""

from pathlib import Path

from llava.eval import mlvu
from llava.eval.harness import MODELS_DIR, run
from llava.eval.synthetic import write_jsonl, write_video

DEMO_DIR = Path("dataset/demo")
OUTPUT_DIR = Path("outputs/demo_mlvu")
TINY = MODELS_DIR / "tiny-vilamp"

# Rows in the MLVU_val.json format (questions written for the synthetic clips).
SAMPLE_ROWS = [
    {"video": "dataset/MLVU/video/demo_1.mp4", "duration": 6, "question": "What colour is the background at first?",
     "candidates": ["Red", "Green", "Blue", "White"], "answer": "A", "question_type": "plotQA",
     "options": ["A. Red", "B. Green", "C. Blue", "D. White"]},
    {"video": "dataset/MLVU/video/demo_1.mp4", "duration": 6, "question": "How many times does the white bar move?",
     "candidates": ["1", "2", "5", "8"], "answer": "C", "question_type": "count",
     "options": ["A. 1", "B. 2", "C. 5", "D. 8"]},
    {"video": "dataset/MLVU/video/demo_2.mp4", "duration": 8, "question": "In what order do the colours appear?",
     "candidates": ["red, green", "green, red", "blue, red"], "answer": "B", "question_type": "order",
     "options": ["A. red, green", "B. green, red", "C. blue, red"]},
    {"video": "dataset/MLVU/video/demo_2.mp4", "duration": 8, "question": "Please summarize this video.",
     "answer": "Coloured frames with a moving white bar.", "question_type": "summary"},
]


def first_checkpoint() -> Path:
    """The first checkpoint under models/, or a freshly written tiny one."""
    found = sorted(path.parent for path in MODELS_DIR.glob("*/config.json"))
    if found:
        return found[0]
    from llava.tiny import write_tiny_checkpoint

    print(f"models/ has no checkpoint: writing the tiny random one to {TINY}")
    return write_tiny_checkpoint(TINY)


def main() -> None:
    checkpoint = first_checkpoint()
    data = write_jsonl(DEMO_DIR / "MLVU_demo.json", SAMPLE_ROWS)
    for seconds, name in ((6, "demo_1.mp4"), (8, "demo_2.mp4")):
        write_video(DEMO_DIR / "video" / name, seconds=seconds, fps=4, width=96, height=64)
    run(mlvu.BENCHMARK, ["--dataset_path", str(data), "--video_dir", str(DEMO_DIR / "video"), "--output_dir",
                         str(OUTPUT_DIR), "--version", str(checkpoint), "--overwrite"])
    print(f"\nrecords: {OUTPUT_DIR}/mlvu_1_of_1.jsonl, summary: {OUTPUT_DIR}/summary.json and summary.png")


if __name__ == "__main__":
    main()
