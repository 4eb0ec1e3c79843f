"""The framework integrations against the real stack (tests/conftest.py's session stack), each
with its real framework training a tiny model on CPU for a few steps.

These tests run in the frameworks venv (`make test-frameworks`, part of `make test`): the
frameworks are heavy (PyTorch alone is gigabytes) and the light client must not need them. The
main run never collects this directory (pyproject's `norecursedirs`); here a missing framework
fails the run at import, it is never skipped."""

from __future__ import annotations

import os

# before any framework is imported: one thread each (2 shared cores), Keras on PyTorch (no JAX or
# TensorFlow in the venv), and nothing fetched from the Hugging Face hub (there is none here)
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("KERAS_BACKEND", "torch")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from collections.abc import Callable  # noqa: E402

import pytest  # noqa: E402
import trackd  # noqa: E402
from trackd_platform.stack import EmbeddedStack  # noqa: E402

pytestmark = pytest.mark.integration


def steps_of(run_id: str, key: str) -> list[tuple[int, float]]:
    """A series as stored: (step, value) in step order."""
    return [(p.step, p.value) for p in trackd.get_metric_history(run_id, key)]


def assert_series(run_id: str, key: str, expected: list[tuple[int, float]]) -> None:
    """The series stored under `key` is `expected`: the same steps, values equal as float32 allows."""
    stored = steps_of(run_id, key)
    assert [s for s, _ in stored] == [s for s, _ in expected], key
    assert [v for _, v in stored] == pytest.approx([float(v) for _, v in expected], rel=1e-6), key


def artifact_paths(run_id: str, path: str = "") -> set[str]:
    return {a.path for a in trackd.list_artifacts(run_id, path, recursive=True) if not a.is_dir}


@pytest.fixture
def experiment(stack: EmbeddedStack, unique: Callable[[str], str]) -> str:
    return unique("frameworks")
