"""The training entry point on the tiny model (single process): train, save, reload, resume, overfit, LoRA."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from llava.model.builder import load_pretrained_model
from llava.train.example_data import write_example_videos
from llava.train.merge_lora import merge_lora
from llava.train.registry import RegistryError
from llava.train.train import TrainingSetupError, build_trainer, main, parse_args

REPO = Path(__file__).resolve().parents[1]
ALL_PARTS = "mm_mlp_adapter,mm_language_model,frame_selector,composer_projector,mm_vision_tower"


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("example-videos")
    write_example_videos(folder)
    return folder


def _argv(checkpoint, output, videos, data=REPO / "example-10.json", *extra):
    return [
        "--model_name_or_path", str(checkpoint), "--data_path", str(data), "--video_folder", str(videos),
        "--output_dir", str(output), "--report_to", "none", "--save_strategy", "no", "--logging_steps", "1",
        "--dataloader_num_workers", "0", "--seed", "0", *extra,
    ]  # fmt: skip


def _logits(model, trainer, index=0):
    batch = trainer.data_collator([trainer.train_dataset[index]])
    inputs = {k: v for k, v in batch.items() if k not in ("labels", "data_events", "num_samples")}
    with torch.no_grad():
        return model.eval()(**inputs).logits


@pytest.mark.slow
def test_entry_point_trains_saves_reloads_and_resumes(tiny_checkpoint, tmp_path, videos):
    out = tmp_path / "run"
    argv = _argv(tiny_checkpoint, out, videos, REPO / "example-10.json", "--max_steps", "3",
                 "--per_device_train_batch_size", "2", "--dataloader_num_workers", "2", "--save_strategy", "steps",
                 "--save_steps", "3", "--mm_tunable_parts", ALL_PARTS, "--mm_vision_tower_lr", "1e-4")
    trainer = main(argv)
    assert trainer.state.global_step == 3
    assert all(r.get("data_failed", 0) == 0 for r in trainer.state.log_history)
    base, trained = load_file(tiny_checkpoint / "model.safetensors"), load_file(out / "model.safetensors")
    for prefix in ("model.layers.0", "model.mm_projector", "model.vision_tower", "model.frame_selector",
                   "model.composer_projector.linear_q", "model.composer_projector.tau"):
        assert any(not torch.equal(base[k], trained[k]) for k in base if k.startswith(prefix)), prefix
    # The output directory and the intermediate checkpoint load like released checkpoints, with the same logits.
    for folder in (out, out / "checkpoint-3"):
        _, loaded, _, max_length = load_pretrained_model(folder)
        torch.testing.assert_close(_logits(loaded, trainer), _logits(trainer.model, trainer), rtol=0, atol=1e-5)
    assert (out / "clip_tokenizer" / "tokenizer.json").exists() and (out / "processor_config.json").exists()
    assert max_length == trainer.model.config.tokenizer_model_max_length
    resumed = main(argv[:-8] + ["--max_steps", "4", "--resume_from_checkpoint", str(out / "checkpoint-3"),
                                "--mm_tunable_parts", ALL_PARTS, "--mm_vision_tower_lr", "1e-4"])
    assert resumed.state.global_step == 4


@pytest.mark.slow
def test_one_batch_is_overfitted_in_twenty_steps(tiny_checkpoint, tmp_path, videos):
    data = tmp_path / "one.json"
    data.write_text(json.dumps(json.loads((REPO / "example-10.json").read_text())[6:7]))
    trainer = main(_argv(tiny_checkpoint, tmp_path / "overfit", videos, data, "--max_steps", "20",
                         "--learning_rate", "1e-2", "--lr_scheduler_type", "constant",
                         "--mm_tunable_parts", "mm_mlp_adapter,mm_language_model,composer_projector"))
    losses = [r["loss"] for r in trainer.state.log_history if "loss" in r]
    assert len(losses) == 20 and losses[-1] < 0.5 * losses[0], losses


@pytest.mark.slow
def test_lora_run_saves_an_adapter_that_merges(tiny_checkpoint, tmp_path, videos):
    out = tmp_path / "lora"
    trainer = main(_argv(tiny_checkpoint, out, videos, REPO / "example-10.json", "--max_steps", "2",
                         "--lora_enable", "True", "--lora_r", "4", "--lora_alpha", "8", "--learning_rate", "1e-2",
                         "--mm_tunable_parts", "mm_mlp_adapter,mm_language_model,composer_projector"))
    assert (out / "adapter_config.json").exists() and not (out / "model.safetensors").exists()
    adapter = load_file(out / "adapter_model.safetensors")
    assert any("lora_A" in k and "layers.0.self_attn.q_proj" in k for k in adapter)
    assert not any("vision_tower" in k or "frame_selector" in k for k in adapter)  # LoRA only on the LLM
    assert any("mm_projector" in k for k in adapter) and any("composer_projector.tau" in k for k in adapter)
    merged = merge_lora(out, tmp_path / "merged")  # base model read from the adapter's config
    _, merged_model, _, _ = load_pretrained_model(merged)
    _, on_the_fly, _, _ = load_pretrained_model(out, model_base=tiny_checkpoint)
    _, base, _, _ = load_pretrained_model(tiny_checkpoint)
    logits = _logits(merged_model, trainer)
    torch.testing.assert_close(logits, _logits(on_the_fly, trainer), rtol=0, atol=1e-5)
    torch.testing.assert_close(logits, _logits(trainer.model.merge_and_unload(), trainer), rtol=0, atol=1e-4)
    assert not torch.allclose(logits, _logits(base, trainer), atol=1e-3)
    assert not torch.equal(merged_model.model.mm_projector[0].weight, base.model.mm_projector[0].weight)


@pytest.mark.parametrize(
    "extra, error, message",
    [
        (["--mm_tunable_parts", "mm_mlp_adapter,vision"], TrainingSetupError,
         r"--mm_tunable_parts .*unknown part\(s\) \['vision'\]"),
        (["--mm_vision_tower_lr", "1e-5"], TrainingSetupError, "mm_vision_tower is not in --mm_tunable_parts"),
        (["--version", "llava_v1"], TrainingSetupError, "--version 'llava_v1': only qwen_1_5"),
        (["--lora_enable", "True", "--lora_target_modules", "q_proj,fc1"], TrainingSetupError,
         r"--lora_target_modules .*unknown \['fc1'\]"),
    ],
)
def test_bad_arguments_stop_before_training(tiny_checkpoint, tmp_path, videos, extra, error, message):
    with pytest.raises(error, match=message):
        build_trainer(*parse_args(_argv(tiny_checkpoint, tmp_path / "x", videos, REPO / "example-10.json", *extra)))


def test_registry_errors_stop_before_the_model_loads(tmp_path, videos):
    registry = tmp_path / "registry.yaml"
    registry.write_text("datasets:\n  - json_path: nowhere.json\n    sampling_strategy: all\n")
    with pytest.raises(RegistryError, match=r"registry.yaml: datasets\[0\]: json_path .*nowhere.json does not exist"):
        build_trainer(*parse_args(_argv(tmp_path / "no-checkpoint", tmp_path / "x", videos, registry)))


def test_the_vision_tower_gets_its_own_learning_rate(tiny_checkpoint, tmp_path, videos):
    trainer = build_trainer(*parse_args(_argv(tiny_checkpoint, tmp_path / "x", videos, REPO / "example-10.json",
                                              "--mm_tunable_parts", "mm_vision_tower,mm_mlp_adapter",
                                              "--learning_rate", "1e-3", "--mm_vision_tower_lr", "2e-5")))
    optimizer = trainer.create_optimizer()
    tower = {id(p) for p in trainer.model.model.vision_tower.parameters()}
    for group in optimizer.param_groups:
        ids = {id(p) for p in group["params"]}
        assert not ids or ids <= tower or not ids & tower
        if ids:
            assert group["lr"] == (2e-5 if ids <= tower else 1e-3)
    assert sum(len(g["params"]) for g in optimizer.param_groups) == sum(
        p.requires_grad for p in trainer.model.parameters()
    )


def test_unreadable_videos_past_the_fraction_stop_training(tiny_checkpoint, tmp_path, videos):
    records = json.loads((REPO / "example-10.json").read_text())[:4]
    records[1]["video"] = records[2]["video"] = "missing.mp4"
    data = tmp_path / "broken.json"
    data.write_text(json.dumps(records))
    with pytest.raises(RuntimeError, match=r"2 records have unreadable videos.*missing.mp4"):
        main(_argv(tiny_checkpoint, tmp_path / "x", videos, data, "--max_steps", "4", "--max_failed_fraction", "0.3"))
