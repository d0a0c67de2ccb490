"""Training samples: label masking, length limits, unreadable videos, frame folders, the collator, the monitor."""

import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from llava.constants import IGNORE_INDEX
from llava.train.dataset import (
    DataEvent,
    DecodedVideoCache,
    SupervisedVideoDataset,
    VideoCollator,
    load_frame_folder,
    tokenize_conversation,
)
from llava.train.example_data import write_example_videos
from llava.train.registry import TrainRecord
from llava.train.train import DataMonitor

TURNS = (
    ("user", "<image>\nWhat colour is the background?"),
    ("assistant", "red"),
    ("user", "Is the square white?"),
    ("assistant", "yes"),
)


def _record(video, turns=TURNS, frames=False, max_frame_num=6, fps=1.0):
    return TrainRecord(turns, video, "What colour is the background?", max_frame_num, fps, frames, "data.json#0")


def _dataset(tiny_model, records, max_length=4096, cache_dir=None):
    processor = tiny_model[2]
    cache = DecodedVideoCache(cache_dir, processor.video_processor) if cache_dir else None
    return SupervisedVideoDataset(records, processor, max_length, cache)


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("videos")
    write_example_videos(folder)
    return folder


def test_labels_keep_only_the_assistant_answers_and_the_text_is_the_chat_template(tiny_model):
    processor = tiny_model[2]
    tokenizer = processor.tokenizer
    ids, labels = tokenize_conversation(TURNS, processor, num_frames=5)
    assert ids.shape == labels.shape and (ids == processor.video_token_id).sum() == processor.video_token_count(5)
    targets = [(tokenizer.decode(ids[i : i + 1])) for i in range(len(ids)) if labels[i] != IGNORE_INDEX]
    assert "".join(targets) == "red<|im_end|>yes<|im_end|>"
    assert torch.equal(labels[labels != IGNORE_INDEX], ids[labels != IGNORE_INDEX])
    # The same token ids as the processor's chat template (one place for the qwen_1_5 format).
    messages = [{"role": "user", "content": [{"type": "video", "video": np.zeros((5, 8, 8, 3), np.uint8)},
                                             {"type": "text", "text": "What colour is the background?"}]},
                {"role": "assistant", "content": "red"}, {"role": "user", "content": "Is the square white?"},
                {"role": "assistant", "content": "yes"}]
    templated = processor.apply_chat_template(messages, tokenize=True, return_dict=True, return_tensors="pt")
    assert torch.equal(ids, templated["input_ids"][0])


def test_a_sample_has_its_frames_query_and_exact_visual_token_count(tiny_model, videos):
    _, model, processor, _ = tiny_model
    dataset = _dataset(tiny_model, [_record(videos / "blue.mp4", max_frame_num=9)])
    sample = dataset[0]
    assert sample.event is None and len(sample.frames) == 9  # 10 s at 1 fps, capped at 9
    assert sample.query == "What colour is the background?"
    batch = VideoCollator(processor)([sample])
    with torch.no_grad():
        (encoding,) = model.model.get_video_features(
            batch["pixel_values_videos"], batch["clip_pixel_values_videos"], batch["video_num_frames"],
            batch["clip_input_ids"], batch["clip_attention_mask"])
    assert encoding.tokens.shape[0] == (sample.input_ids == processor.video_token_id).sum() == processor.video_token_count(9)


def test_the_dataset_sampling_rate_is_honoured(tiny_model, videos):
    dataset = _dataset(tiny_model, [_record(videos / "red.mp4", max_frame_num=100),
                                    _record(videos / "red.mp4", max_frame_num=100, fps=2.0)])
    one_fps, two_fps = dataset[0], dataset[1]
    assert (len(one_fps.frames), len(two_fps.frames)) == (6, 12)  # a 6-second video


def test_long_samples_are_truncated_after_the_video_or_dropped(tiny_model, videos):
    record = _record(videos / "red.mp4")
    full = _dataset(tiny_model, [record])[0]
    video_end = int((full.input_ids == tiny_model[2].video_token_id).nonzero()[-1]) + 1
    # Room for everything up to the first answer's first token: cut the text, keep the video.
    first_answer = int((full.labels != IGNORE_INDEX).nonzero()[0])
    cut = _dataset(tiny_model, [record], max_length=first_answer + 1)[0]
    assert cut.event.kind == "truncated" and "data.json#0" == cut.event.source
    assert torch.equal(cut.input_ids, full.input_ids[: first_answer + 1]) and torch.equal(cut.labels, full.labels[: first_answer + 1])
    # The answer would be cut entirely, or the video does not fit: dropped, never cut inside the video.
    no_answer = _dataset(tiny_model, [record], max_length=first_answer)[0]
    assert not no_answer.usable and no_answer.event.kind == "dropped" and "no answer token" in no_answer.event.message
    too_small = _dataset(tiny_model, [record], max_length=video_end - 1)[0]
    assert not too_small.usable and "the video alone does not fit" in too_small.event.message


def test_an_unreadable_video_becomes_a_failed_event_naming_it(tiny_model, tmp_path):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video at all")
    sample = _dataset(tiny_model, [_record(broken)])[0]
    assert not sample.usable and sample.event.kind == "failed" and str(broken) in sample.event.message


def test_the_frame_cache_serves_later_epochs_and_notices_a_replaced_video(tiny_model, videos, tmp_path, monkeypatch):
    video = tmp_path / "clip.mp4"
    shutil.copy(videos / "red.mp4", video)
    records = [_record(video), _record(video, max_frame_num=3)]  # another frame cap is another cache entry
    decoded = [_dataset(tiny_model, [r])[0].frames for r in records]
    dataset = _dataset(tiny_model, records, cache_dir=tmp_path / "cache")
    assert all(torch.equal(dataset[i].frames.siglip, decoded[i].siglip) for i in range(2))  # first epoch
    assert len(list((tmp_path / "cache").iterdir())) == 2

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again")

    monkeypatch.setattr("llava.train.dataset.load_video", no_decoding)
    for i in range(2):  # later epochs: read back, identical
        frames = dataset[i].frames
        assert torch.equal(frames.siglip, decoded[i].siglip) and torch.equal(frames.clip, decoded[i].clip)
    monkeypatch.undo()
    shutil.copy(videos / "blue.mp4", video)  # replaced: decoded again, not served stale
    assert dataset[0].frames.siglip[0, 0, 0, 2] > 150


def test_an_unreadable_cache_file_is_decoded_again_and_a_missing_video_still_fails(tiny_model, videos, tmp_path):
    record = _record(videos / "green.mp4")
    dataset = _dataset(tiny_model, [record, _record(tmp_path / "gone.mp4")], cache_dir=tmp_path / "cache")
    expected = dataset[0].frames.siglip
    dataset.cache.path(record).write_bytes(b"truncated")
    assert torch.equal(dataset[0].frames.siglip, expected)
    assert np.load(dataset.cache.path(record))["siglip"].shape == tuple(expected.shape)  # rewritten whole
    missing = dataset[1]
    assert missing.event.kind == "failed" and "gone.mp4" in missing.event.message


def test_frame_folders_are_read_in_name_order_and_capped(tiny_model, tmp_path):
    processor = tiny_model[2].video_processor
    for i in range(10):
        Image.fromarray(np.full((40, 60, 3), i * 20, dtype=np.uint8)).save(tmp_path / f"frame_{i:03d}.png")
    (tmp_path / "notes.txt").write_text("ignored")
    frames = load_frame_folder(tmp_path, processor, max_frame_num=4)
    assert len(frames) == 4
    assert [int(frames.siglip[i, 0, 0, 0]) for i in range(4)] == [0, 60, 120, 180]  # files 0, 3, 6, 9
    sample = _dataset(tiny_model, [_record(tmp_path, frames=True, max_frame_num=5)])[0]
    assert sample.event is None and len(sample.frames) == 5


def test_the_collator_pads_and_replaces_an_all_skipped_batch(tiny_model, videos, tmp_path):
    processor = tiny_model[2]
    dataset = _dataset(tiny_model, [_record(videos / "red.mp4"), _record(tmp_path / "missing.mp4"),
                                    _record(None, turns=(("user", "hi"), ("assistant", "hello")))])
    collate = VideoCollator(processor)
    batch = collate([dataset[0], dataset[1], dataset[2]])
    assert batch["num_samples"] == 2 and batch["input_ids"].shape[0] == 2
    assert batch["video_num_frames"].tolist() == [6] and batch["pixel_values_videos"].shape[0] == 6
    assert (batch["input_ids"][1] != processor.video_token_id).all()
    assert [e.kind for e in batch["data_events"]] == ["failed"]
    assert batch["attention_mask"][1].sum() == dataset[2].input_ids.shape[0]
    assert (batch["labels"][1][batch["attention_mask"][1] == 0] == IGNORE_INDEX).all()
    empty = collate([dataset[1]])
    assert empty["num_samples"] == 0 and "pixel_values_videos" not in empty and (empty["labels"] == IGNORE_INDEX).all()


def test_the_monitor_stops_past_the_failure_fraction():
    monitor = DataMonitor(num_records=20, max_failed_fraction=0.1)
    failed = [DataEvent("failed", f"d.json#{i}", "bad") for i in range(3)]
    monitor.update(failed[:2] + failed[:2] + [DataEvent("truncated", "d.json#5", "long")])  # repeats count once
    assert monitor.counts == {"truncated": 1, "dropped": 0, "failed": 4} and len(monitor.failed) == 2
    with pytest.raises(RuntimeError, match="3 records have unreadable videos.*d.json#2: bad"):
        monitor.update(failed[2:])
