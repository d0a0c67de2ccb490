"""Dataset registry: sampling strategies, record resolution, and one clear message per registry error."""

import json
from pathlib import Path

import pytest

from llava.train.registry import RegistryError, load_registry, load_training_records, sample_records

REPO = Path(__file__).resolve().parents[1]


def _record(video="a.mp4", **extra):
    turns = [{"from": "human", "value": "<image>\nWhat is it?"}, {"from": "gpt", "value": "a cat"}]
    return {"video": video, "conversations": turns, **extra}


def _write(tmp_path, records, name="data.json"):
    path = tmp_path / name
    path.write_text(json.dumps(records))
    return path


def _registry(tmp_path, text):
    path = tmp_path / "registry.yaml"
    path.write_text(text)
    return path


def test_sampling_strategies_are_seeded_and_exact():
    items = list(range(10))
    assert sample_records(items, "all", 0) == items
    assert sample_records(items, "first:3", 0) == [0, 1, 2]
    assert sample_records(items, "end:2", 0) == [8, 9]
    drawn = sample_records(items, "random:4", 1)
    assert len(drawn) == 4 and drawn == sorted(drawn) and drawn == sample_records(items, "random:4", 1)
    assert len(sample_records(items, "random:50%", 0)) == 5
    assert sample_records(items, "random:20", 0) == items


def test_the_shipped_registry_and_example_file_are_valid():
    records = load_training_records(REPO / "training_data.yaml")
    assert len(records) == 10
    assert all(r.video.parent == REPO / "dataset" / "example" for r in records)
    assert {r.max_frame_num for r in records} == {4, 6, 12}  # record caps below the dataset's cap of 12


def test_records_resolve_folder_caps_fps_and_default_query(tmp_path):
    data = _write(tmp_path, [_record(query="cat?", max_frame_num=50), _record("/abs/b.mp4"), _record(max_frame_num=3)])
    registry = _registry(
        tmp_path,
        f"datasets:\n  - json_path: {data.name}\n    sampling_strategy: all\n    video_folder: videos\n"
        "    max_frame_num: 20\n    fps: 2\n",
    )
    first, second, third = load_training_records(registry, frames_upbound=10)
    assert first.video == tmp_path / "videos" / "a.mp4" and second.video == Path("/abs/b.mp4")
    assert (first.max_frame_num, second.max_frame_num, third.max_frame_num) == (10, 10, 3)
    assert first.fps == 2.0 and first.query == "cat?" and second.query == "What is it?"
    assert first.turns == (("user", "<image>\nWhat is it?"), ("assistant", "a cat"))
    assert first.source == f"{data}#0"


def test_a_json_data_path_uses_the_video_folder_argument(tmp_path):
    data = _write(tmp_path, [_record(), {"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello"}]}])
    with_video, text_only = load_training_records(data, video_folder=tmp_path / "v")
    assert with_video.video == tmp_path / "v" / "a.mp4" and text_only.video is None
    assert with_video.fps == 1.0 and with_video.max_frame_num == 600


@pytest.mark.parametrize(
    "yaml_text, message",
    [
        ("datasets:\n  - json_path: missing.json\n    sampling_strategy: all\n", r"datasets\[0\]: json_path .*missing.json does not exist"),
        ("datasets:\n  - json_path: data.json\n    sampling_strategy: [all\n", "not valid YAML"),
        ("datasets:\n  - json_path: data.json\n    sampling_strategy: some:3\n", r"datasets\[0\]: unknown sampling_strategy 'some:3'"),
        ("datasets:\n  - json_path: data.json\n", r"datasets\[0\]: missing required key 'sampling_strategy'"),
        ("datasets:\n  - sampling_strategy: all\n", r"datasets\[0\]: missing required key 'json_path'"),
        ("datasets:\n  - json_path: data.json\n    sampling_strategy: all\n    folder: x\n", r"unknown key\(s\) \['folder'\]"),
        ("datasets:\n  - json_path: data.json\n    sampling_strategy: all\n    max_frame_num: 0\n", "max_frame_num must be a positive integer"),
        ("datasets:\n  - json_path: data.json\n    sampling_strategy: all\n    frames: true\n    fps: 2\n", "fps applies to video files"),
        ("train: []\n", "top-level 'datasets:' list"),
    ],
)
def test_registry_errors_name_the_file_and_entry(tmp_path, yaml_text, message):
    _write(tmp_path, [_record()])
    registry = _registry(tmp_path, yaml_text)
    with pytest.raises(RegistryError, match=message) as error:
        load_training_records(registry)
    assert str(registry) in str(error.value)


@pytest.mark.parametrize(
    "record, message",
    [
        ({"video": "a.mp4"}, "#1: missing required key 'conversations'"),
        ({"conversations": [{"from": "human"}]}, r"#1: conversations\[0\] needs 'from' and 'value'"),
        ({"conversations": [{"from": "bot", "value": "x"}]}, "#1: .*'from' must be human or gpt"),
        ({"conversations": [{"from": "human", "value": "x"}]}, "#1: no gpt turn"),
        (_record(video=None), "#1: <image> in the conversation but no 'video' key"),
        (_record(conversations=[{"from": "human", "value": "no placeholder"}, {"from": "gpt", "value": "x"}]),
         "#1: a record with a video needs exactly one <image>"),
        (_record(max_frame_num="many"), "#1: max_frame_num must be a positive integer"),
        ("just text", "#1: a record must be a JSON object"),
    ],
)
def test_record_errors_name_the_file_and_record(tmp_path, record, message):
    data = _write(tmp_path, [_record(), record])
    with pytest.raises(RegistryError, match=message) as error:
        load_training_records(data)
    assert f"{data}#1" in str(error.value)


def test_file_level_errors(tmp_path):
    with pytest.raises(RegistryError, match="--data_path .*nothing.yaml: file not found"):
        load_registry(tmp_path / "nothing.yaml")
    broken = tmp_path / "broken.json"
    broken.write_text("[{")
    with pytest.raises(RegistryError, match="broken.json: not valid JSON"):
        load_training_records(broken)
    other = tmp_path / "data.txt"
    other.write_text("x")
    with pytest.raises(RegistryError, match="expected a .yaml/.yml registry"):
        load_registry(other)
