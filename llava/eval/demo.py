"""The one-command demo: a ViLAMP checkpoint answers held-out synthetic needle questions ("What colour is the
background when the white square appears?", `llava.synthetic`) written in the MLVU question-file format, through
the MLVU adapter and the evaluation harness (what `exp_mlvu.py` runs); then the score table against chance, the
summary PNG and the keyframe timeline of one video.

    python -m llava.eval.demo [--model PATH] [--videos 48]

Checkpoint: `--model`, else the first checkpoint under models/, else the tiny ViLAMP shipped in
`llava/synthetic/needle-vilamp/` (trained by `python -m llava.synthetic.learn`; its README says how).
The videos are generated with a seed no training run uses, so none of them was seen in training.
"""

import argparse
from pathlib import Path

from llava.errors import command
from llava.eval import mlvu
from llava.eval.answers import split_option
from llava.eval.benchmark import read_jsonl
from llava.eval.harness import run
from llava.model.builder import find_checkpoint
from llava.eval.synthetic import write_jsonl
from llava.synthetic import OPTIONS, colour_prior, generate

SHIPPED = Path(__file__).resolve().parents[1] / "synthetic" / "needle-vilamp"
DEMO_DIR = Path("dataset/demo-needle")
OUTPUT_DIR = Path("outputs/demo_needle")
DEMO_SEED = 2026  # learn runs use seeds 0-5


def write_questions(videos: int) -> tuple[Path, list[dict]]:
    """Generate the held-out needle videos once and write their questions as MLVU rows; returns (file, rows)."""
    data = DEMO_DIR / f"seed{DEMO_SEED}-{videos}"
    if not (data / "test.jsonl").is_file():
        generate(data, train=0, test=videos, seed=DEMO_SEED)
    rows = read_jsonl(data / "test.jsonl")
    mlvu_rows = [
        {"video": f"video/{row['video']}", "duration": row["scenes"][-1]["end"], "question": row["question"],
         "candidates": [split_option(option)[1] for option in row["options"]], "options": row["options"],
         "answer": split_option(row["answer"])[0], "question_type": f"needle {row['task']}"}
        for row in rows
    ]  # fmt: skip
    return write_jsonl(data / "MLVU_needle.json", mlvu_rows), rows


def draw_one(checkpoint: Path, video: Path, row: dict, out: Path) -> str:
    """Answer one question as the harness does and draw what the model looked at; returns the answer."""
    from llava.conversation import multiple_choice_prompt
    from llava.inference import answer_video
    from llava.model.builder import load_pretrained_model
    from llava.video import load_video
    from llava.visualize import visualize

    _, model, processor, _ = load_pretrained_model(checkpoint)
    decoded = load_video(video, processor.video_processor)
    prompt = multiple_choice_prompt(row["question"], row["options"])
    answer = answer_video(model, processor, decoded.frames, row["question"], prompt, max_new_tokens=8)
    visualize(model, processor, decoded, row["question"], answer, out, video.name)
    return answer.text


@command
def main(argv=None) -> float:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="checkpoint folder or name under models/ (default: see above)")
    parser.add_argument("--videos", type=int, default=48, help="held-out needle videos to ask (one question each)")
    args = parser.parse_args(argv)
    if args.videos < 1:
        parser.error(f"--videos {args.videos}: at least one video")
    checkpoint = find_checkpoint(args.model, default=SHIPPED)
    print(f"checkpoint: {checkpoint}")
    questions, rows = write_questions(args.videos)
    run(mlvu.BENCHMARK, ["--dataset_path", str(questions), "--video_dir", str(questions.parent / "videos"),
                         "--output_dir", str(OUTPUT_DIR), "--version", str(checkpoint), "--overwrite"])  # fmt: skip
    records = read_jsonl(OUTPUT_DIR / "mlvu_1_of_1.jsonl")
    accuracy = sum(bool(r.get("correct")) for r in records) / len(records)
    figure = OUTPUT_DIR / "keyframes.png"
    answer = draw_one(checkpoint, questions.parent / "videos" / rows[0]["video"], rows[0], figure)
    print(f"\naccuracy {accuracy:.1%} on {len(records)} held-out videos; chance {1 / len(OPTIONS):.0%}, "
          f"guessing among the colours a video shows {colour_prior(rows):.0%}")
    print(f"records: {OUTPUT_DIR}/mlvu_1_of_1.jsonl, summary: {OUTPUT_DIR}/summary.json and summary.png")
    print(f"keyframe timeline of {rows[0]['video']} (needle in frames {rows[0]['needle_frames']}, gold "
          f"{rows[0]['answer']!r}, answered {answer!r}): {figure}")
    return accuracy


if __name__ == "__main__":
    main()
