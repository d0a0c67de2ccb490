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
