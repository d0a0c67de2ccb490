"""Shared fixtures: the oracle directory and a tiny checkpoint written once per test session."""

from pathlib import Path

import pytest

from llava.tiny import write_tiny_checkpoint

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
ORACLE = SHARED / "oracle"
BENCHMARKS = SHARED / "benchmarks"
if not ORACLE.is_dir():
    raise RuntimeError(f"{ORACLE} is missing: the tests need the shared/ folder beside the repository")



@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A tiny random ViLAMP checkpoint (sig_pooling DFM, 27x27 SigLIP grid, K = 8)."""
    return write_tiny_checkpoint(tmp_path_factory.mktemp("tiny") / "tiny-vilamp", seed=0)


@pytest.fixture(scope="session")
def tiny_model(tiny_checkpoint):
    """(tokenizer, model, processor, max_length) loaded from `tiny_checkpoint`."""
    from llava.model.builder import load_pretrained_model

    return load_pretrained_model(tiny_checkpoint)


@pytest.fixture
def own_model(tiny_checkpoint):
    """A model of this test's own, loaded from `tiny_checkpoint`, for tests that change it (chunk size, rules)."""
    from llava.model.builder import load_model

    return load_model(tiny_checkpoint)


@pytest.fixture(scope="session")
def vilamp_server(tiny_checkpoint, tiny_model, tmp_path_factory):
    """`python -m llava.serve`'s app on `tiny_model`, served by uvicorn on 127.0.0.1 in a thread, with an API key.
    Its video folder holds clip.mp4 (12 s at 2 fps: 12 sampled frames, 8 keyframes) and broken.mp4 (not a video)."""
    import os
    from types import SimpleNamespace

    from llava.eval.synthetic import write_video
    from llava.serve.__main__ import build_app, build_parser, serving

    folder = tmp_path_factory.mktemp("served")
    video = write_video(folder / "clip.mp4", seconds=12, fps=2, width=64, height=48)
    (folder / "broken.mp4").write_bytes(b"this is not a video" * 100)
    key, variable = "test-key-7c1e9b", "VILAMP_TEST_SERVER_KEY"
    os.environ[variable] = key
    args = build_parser().parse_args(["--model", str(tiny_checkpoint), "--api-key-env", variable, "--video-dir",
                                      str(folder), "--upload-dir", str(tmp_path_factory.mktemp("uploads"))])
    _, model, processor, _ = tiny_model
    app = build_app(args, model, processor)
    del os.environ[variable]
    with serving(app) as url:
        yield SimpleNamespace(url=url, key=key, video=video, folder=folder, app=app, engine=app.state.engine,
                              model_id=tiny_checkpoint.name)
