"""Every line of every real question file parses; Video-MME from a generated parquet; sharding partitions videos."""

from argparse import Namespace
from collections import Counter

import pandas as pd
import pytest

from tests.conftest import BENCHMARKS
from llava.eval import activitynetqa, egoschema, longvideobench, mlvu, videomme
from llava.eval.harness import EvalError, build_parser, parse_split, shard


def load(adapter, name, *argv):
    """Items of a question file, with the adapter's command-line defaults."""
    args = build_parser(adapter.BENCHMARK).parse_args(["--dataset_path", str(name), "--video_dir", "videos", *argv])
    return adapter.BENCHMARK.load(args)


def check_ids_unique(items):
    assert len({item.qid for item in items}) == len(items)


def test_real_files_parse_completely():
    lines = {name: sum(1 for line in open(BENCHMARKS / name) if line.strip()) for name in (
        "MLVU_val.json", "longvideobench_val.json", "egoschema_val.json", "ActivityNetQA_val.json")}
    items = load(mlvu, BENCHMARKS / "MLVU_val.json")
    assert len(items) == lines["MLVU_val.json"]
    assert Counter(i.scored for i in items) == {True: 2174, False: 418}
    assert {i.fields["question_type"] for i in items if not i.scored} == {"summary", "subPlot"}
    assert items[0].prompt == ("What color is the main male character in the video?. Please choose the right answer "
                               "from the following options: ['A. Yellow', 'B. Red', 'C. Green', 'D. Blue'].")
    assert items[0].videos[0].as_posix() == "videos/movie101_66.mp4" and items[0].max_new_tokens == 256
    lvb = load(longvideobench, BENCHMARKS / "longvideobench_val.json")
    assert len(lvb) == lines["longvideobench_val.json"] and lvb[0].answer == "B"
    ego = load(egoschema, BENCHMARKS / "egoschema_val.json")
    assert len(ego) == 500 and ego[0].answer == "D" and ego[0].videos[0].suffix == ".mp4"
    anet = load(activitynetqa, BENCHMARKS / "ActivityNetQA_val.json")
    assert len(anet) == lines["ActivityNetQA_val.json"] and anet[0].prompt == "is the no.3 athlete playing indoor?"
    assert anet[0].question == "is the no.3 athlete playing indoor"
    assert anet[0].videos[0].name == "v_TIEzvhv6xaI.mp4" and len(anet[0].videos) == 6
    for items_ in (items, lvb, ego, anet):
        check_ids_unique(items_)


def test_sharding_deals_whole_videos_and_covers_every_item():
    items = load(activitynetqa, BENCHMARKS / "ActivityNetQA_val.json")[:3000]
    shards = [shard(items, i, 3) for i in (1, 2, 3)]
    qids = [item.qid for part in shards for item in part]
    assert sorted(qids) == sorted(item.qid for item in items)  # every item exactly once
    owner = {}
    for number, part in enumerate(shards):
        for item in part:
            assert owner.setdefault(item.video_id, number) == number  # a video never spans shards
    first_videos = list(dict.fromkeys(item.video_id for item in items))[:3]
    assert [owner[v] for v in first_videos] == [0, 1, 2]  # round-robin by first appearance
    for bad in ("0_2", "3_2", "1-2", "x_y"):
        with pytest.raises(EvalError, match="--split"):
            parse_split(bad)


def write_videomme_parquet(path, videos=2):
    rows = []
    for v in range(videos):
        for q in range(3):
            rows.append({"video_id": f"{v:03d}", "duration": ["short", "medium", "long"][v % 3], "domain": "Sports",
                         "sub_category": "Football", "url": "", "videoID": f"vid{v}", "question_id": f"{v:03d}-{q + 1}",
                         "task_type": ["OCR Problems", "Counting Problem", "Action Reasoning"][q],
                         "question": f"What is shown {q}?", "options": ["A. red", "B. green", "C. blue", "D. white"],
                         "answer": "ABCD"[q]})
    pd.DataFrame(rows).to_parquet(path)
    return path


def test_videomme_parquet_and_subtitles(tmp_path):
    path = write_videomme_parquet(tmp_path / "videomme.parquet")
    items = load(videomme, path)
    assert [i.qid for i in items][:2] == ["000-1", "000-2"] and items[1].answer == "B"
    assert items[0].options == ["A. red", "B. green", "C. blue", "D. white"] and items[0].max_new_tokens == 1
    assert items[0].fields == {"duration": "short", "domain": "Sports", "sub_category": "Football",
                               "task_type": "OCR Problems", "video_number": "000"}
    (tmp_path / "vid0.srt").write_text('1\n00:00:00,000 --> 00:00:01,000\n<font color="#ffffff">hello there</font>\n\n'
                                       '2\n00:00:01,000 --> 00:00:02,000\n<font color="#ffffff">second line</font>\n')
    items = load(videomme, path, "--subtitle_dir", str(tmp_path))
    assert items[0].prompt == (
        "This video's subtitles are listed below:\nhello there\nsecond line.\nBased on this video, please answer the "
        "following question:\nWhat is shown 0?.\nPlease think carefully and choose the best answer from the following "
        "options:\n['A. red', 'B. green', 'C. blue', 'D. white']\nThe answer is: ")
    assert "subtitles are listed below:\n." in items[3].prompt  # vid1 has no .srt
    with pytest.raises(EvalError, match="dataset file not found"):
        load(videomme, tmp_path / "nope.parquet")


def test_videomme_official_subtitle_rule_keeps_the_lines_at_sampled_frames(tmp_path):
    """A 3 s video at 4 fps: 1 fps sampling keeps frames 0, 4, 8 (0, 1, 2 s); --max_frames 2 keeps 0 and 2 s."""
    from llava.eval.synthetic import write_video

    path = write_videomme_parquet(tmp_path / "videomme.parquet")
    write_video(tmp_path / "vid0.mp4", seconds=3, fps=4)
    (tmp_path / "vid0.srt").write_text("1\n00:00:00,000 --> 00:00:00,500\n<b>at zero</b>\n\n"
                                       "2\n00:00:00,600 --> 00:00:00,900\nbetween frames\n\n"
                                       "3\n00:00:01,000 --> 00:00:01,500\nat one\n\n"
                                       "4\n00:00:01,900 --> 00:00:03,000\nat two\n")
    official = ["--video_dir", str(tmp_path), "--subtitle_dir", str(tmp_path), "--subtitle_rule", "sampled_frames"]
    args = build_parser(videomme.BENCHMARK).parse_args(["--dataset_path", str(path), *official])
    items = videomme.BENCHMARK.load(args)
    assert "listed below:\nat zero\nat one\nat two.\n" in items[0].prompt
    args = build_parser(videomme.BENCHMARK).parse_args(["--dataset_path", str(path), *official, "--max_frames", "2"])
    items = videomme.BENCHMARK.load(args)
    assert "listed below:\nat zero\nat two.\n" in items[0].prompt
    assert "listed below:\nNo subtitles available.\n" in items[3].prompt  # vid1: no subtitle file
    released = load(videomme, path, "--subtitle_dir", str(tmp_path))
    assert "listed below:\nat zero.\n" in released[0].prompt  # the released rule reads only tagged lines
