"""The transformers-native API: AutoProcessor + chat template + AutoModelForCausalLM.generate, batches, the released
loader's call shape, the conversion of released checkpoints and composers registered from outside the package."""

import json
import shutil

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoProcessor

from llava import cli
from llava.convert import convert
from llava.eval.synthetic import write_video
from llava.inference import answer_video
from llava.model import Composer, register_composer
from llava.model.builder import load_pretrained_model
from llava.tiny import write_tiny_checkpoint

QUESTION = "What colour is the background when the white bar is at the left?"


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """Two videos of different lengths (12 and 7 sampled frames), so that a batch of both needs padding."""
    folder = tmp_path_factory.mktemp("api")
    return (write_video(folder / "long.mp4", seconds=12, fps=2, width=64, height=48),
            write_video(folder / "short.mp4", seconds=7, fps=1, width=48, height=64))


def _messages(video, text=QUESTION):
    return [{"role": "user", "content": [{"type": "video", "path": str(video)}, {"type": "text", "text": text}]}]


def _answers(model, processor, inputs, max_new_tokens=6):
    output = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
    return processor.batch_decode(output[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)


def test_auto_classes_answer_as_the_cli_does(tiny_checkpoint, videos, capsys):
    processor = AutoProcessor.from_pretrained(tiny_checkpoint)
    model = AutoModelForCausalLM.from_pretrained(tiny_checkpoint).eval()
    inputs = processor.apply_chat_template(_messages(videos[0]), add_generation_prompt=True, tokenize=True,
                                           return_dict=True, return_tensors="pt", padding=True, max_frame_num=600)
    assert inputs["video_num_frames"].tolist() == [12]
    assert int((inputs["input_ids"] == processor.video_token_id).sum()) == processor.video_token_count(12)
    output = model.generate(**inputs, max_new_tokens=6, do_sample=False)
    assert torch.equal(output[:, : inputs["input_ids"].shape[1]], inputs["input_ids"])  # prompt, then the answer
    answer = processor.decode(output[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True).strip()
    assert cli.main([str(videos[0]), QUESTION, "--model", str(tiny_checkpoint), "--max_new_tokens", "6",
                     "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["answer"] == answer


def test_a_left_padded_batch_answers_each_video_as_alone(tiny_checkpoint, videos):
    processor = AutoProcessor.from_pretrained(tiny_checkpoint)
    model = AutoModelForCausalLM.from_pretrained(tiny_checkpoint).eval()
    kwargs = dict(add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt", padding=True)
    batch = processor.apply_chat_template([_messages(videos[0]), _messages(videos[1], "Which colour comes last?")],
                                          **kwargs)
    mask = batch["attention_mask"]
    assert mask[1, 0] == 0 and mask[:, -1].all()  # the shorter prompt is padded on the left
    alone = [_answers(model, processor, processor.apply_chat_template(m, **kwargs))[0]
             for m in (_messages(videos[0]), _messages(videos[1], "Which colour comes last?"))]
    assert _answers(model, processor, batch) == alone
    with torch.no_grad():  # the last prompt position sees the same logits, padded or not
        batched = model(**batch).logits[:, -1]
        single = model(**processor.apply_chat_template(_messages(videos[1], "Which colour comes last?"),
                                                       **kwargs)).logits[:, -1]
    torch.testing.assert_close(batched[1:], single, rtol=0, atol=1e-4)


def test_the_released_loader_call_shape_gives_the_auto_model(tiny_checkpoint, videos):
    tokenizer, model, processor, max_length = load_pretrained_model(
        tiny_checkpoint, None, "llava_qwen", device_map="cpu", attn_implementation="sdpa",
        overwrite_config={"f2t_thrd": -1.0}, customized_config=None)
    auto = AutoModelForCausalLM.from_pretrained(tiny_checkpoint, attn_implementation="sdpa").eval()
    assert model.device.type == "cpu" and max_length == 32768 and processor.tokenizer is tokenizer
    tower = model.model.vision_tower.vision_tower.vision_model
    assert tower.config._attn_implementation == auto.model.vision_tower.vision_tower.vision_model.config._attn_implementation == "sdpa"
    assert model.model.chunk_size(100) == auto.model.chunk_size(100)
    inputs = processor.apply_chat_template(_messages(videos[1]), add_generation_prompt=True, tokenize=True,
                                           return_dict=True, return_tensors="pt")
    with torch.no_grad():
        torch.testing.assert_close(model(**inputs).logits, auto(**inputs).logits, rtol=0, atol=0)


def test_a_released_layout_checkpoint_converts_in_one_command(tiny_checkpoint, videos, tmp_path):
    released = tmp_path / "released"
    shutil.copytree(tiny_checkpoint, released, ignore=shutil.ignore_patterns(
        "processor_config.json", "chat_template.jinja", "clip_tokenizer"))
    shutil.copytree(tiny_checkpoint / "clip_tokenizer", released / "clip")  # where older checkpoints keep it
    config = json.loads((released / "config.json").read_text())
    del config["video_token_id"]
    (released / "config.json").write_text(json.dumps(config))
    _, model, processor, _ = load_pretrained_model(released, device_map="cpu")  # works before the conversion
    frames = np.random.RandomState(1).randint(0, 256, (9, 40, 40, 3), dtype=np.uint8)
    before = answer_video(model, processor, frames, QUESTION, QUESTION, 4).text
    convert(released)
    assert json.loads((released / "config.json").read_text())["video_token_id"] == processor.video_token_id
    converted = AutoProcessor.from_pretrained(released)
    auto = AutoModelForCausalLM.from_pretrained(released).eval()
    assert answer_video(auto, converted, frames, QUESTION, QUESTION, 4).text == before


class MaxAndMean(Composer):
    """A composer defined outside the package: two tokens per non-keyframe, the max and the mean of its patches."""

    tokens_per_frame = 2
    description = "keeps the max and the mean of each non-keyframe's patches"

    def __init__(self, config):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(config.hidden_size))

    def merge(self, features, image_embs, query, keys):
        return torch.stack([features.amax(1), features.mean(1)], dim=1) * self.scale


def test_a_registered_composer_runs_end_to_end(tmp_path):
    register_composer("max_and_mean", MaxAndMean)
    checkpoint = write_tiny_checkpoint(tmp_path / "custom", composer="max_and_mean", image_size=56)
    processor = AutoProcessor.from_pretrained(checkpoint)
    model = AutoModelForCausalLM.from_pretrained(checkpoint).eval()
    assert isinstance(model.model.composer_projector, MaxAndMean) and processor.tokens_per_frame == 2
    frames = np.random.RandomState(2).randint(0, 256, (11, 40, 40, 3), dtype=np.uint8)
    answer = answer_video(model, processor, frames, QUESTION, QUESTION, 3)
    assert answer.merged_tokens == 2 * (11 - 8) and answer.encoding.tokens.shape[0] == processor.video_token_count(11)
    spans = answer.encoding.frame_spans()
    other = next(f for f in range(11) if f not in answer.keyframes)
    with torch.no_grad():
        patches = model.model.project_frames(processor.video_processor(frames[other : other + 1]).siglip)
    start, end = spans[other]
    torch.testing.assert_close(answer.encoding.tokens[start:end], torch.stack([patches[0].amax(0), patches[0].mean(0)]))
