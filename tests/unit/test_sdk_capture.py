"""Reproducibility capture: the uncommitted diff (bounded), CUDA / cuDNN / driver versions, the
conda environment and the container, recorded without failing when a tool is missing."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
from google.protobuf.json_format import ParseDict
from trackd import _capture
from trackd._capture import CONDA_ARTIFACT, DIFF_ARTIFACT, FILE_MAX_BYTES, capture, container
from trackd._settings import CaptureEnv
from trackd_api.run.v1 import run_pb2


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.email=t@example.com", "-c", "user.name=t", *args], cwd=repo, check=True,
                   capture_output=True)


@pytest.fixture(autouse=True)
def _no_package_scan(monkeypatch: pytest.MonkeyPatch) -> None:
    """The package list (a second per call) is not what these tests are about."""
    monkeypatch.setattr(_capture, "capture_environment", dict)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    (repo / "train.py").write_text("lr = 0.1\n")
    (repo / "big.txt").write_text("")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "first")
    return repo


def executable(directory: Path, name: str, script: str) -> Path:
    directory.mkdir(exist_ok=True)
    path = directory / name
    path.write_text(f"#!/bin/sh\n{script}\n")
    path.chmod(0o755)
    return path


def test_a_dirty_checkout_keeps_its_uncommitted_diff(repo: Path) -> None:
    clean = capture(CaptureEnv(), cwd=repo, root=repo)
    assert clean.source["dirty"] is False and not clean.files and "diff_artifact" not in clean.source
    (repo / "train.py").write_text("lr = 0.01  # tuned\n")
    captured = capture(CaptureEnv(), cwd=repo, root=repo)
    diff = captured.files[DIFF_ARTIFACT]
    assert b"-lr = 0.1\n+lr = 0.01  # tuned" in diff.content and not diff.truncated and not diff.metadata
    assert captured.source["diff_artifact"] == DIFF_ARTIFACT and captured.source["diff_truncated"] is False
    source = ParseDict(captured.source, run_pb2.Source())  # every key is a field of the record
    assert source.dirty and source.diff_artifact == DIFF_ARTIFACT and source.commit


def test_a_diff_over_the_limit_is_cut_and_says_so(repo: Path) -> None:
    (repo / "big.txt").write_text("x" * 100 + "\n" * 1 + ("y" * 99 + "\n") * 12_000)  # ~1.2 MB of diff
    captured = capture(CaptureEnv(), cwd=repo, root=repo)
    diff = captured.files[DIFF_ARTIFACT]
    assert diff.truncated and len(diff.content) == FILE_MAX_BYTES
    assert diff.metadata == {"truncated": "true", "limit_bytes": str(FILE_MAX_BYTES)}
    assert captured.source["diff_truncated"] is True


def test_gpu_versions_from_nvidia_smi_and_torch_and_none_without_them(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delitem(sys.modules, "torch", raising=False)
    bare = capture(CaptureEnv(), cwd=repo, root=repo).environment
    assert not {"cuda_version", "cudnn_version", "driver_version"} & set(bare)
    assert "torch" not in sys.modules, "torch is never imported when it is not installed"
    executable(tmp_path / "bin", "nvidia-smi", 'echo "535.104.05"; echo "535.104.05"')
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    fake = tmp_path / "site" / "torch"  # what torch.version and torch.backends.cudnn tell
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text(
        "import types\nversion = types.SimpleNamespace(cuda='12.1')\n"
        "backends = types.SimpleNamespace(cudnn=types.SimpleNamespace(is_available=lambda: True,"
        " version=lambda: 8902))\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    installed = capture(CaptureEnv(), cwd=repo, root=repo).environment
    assert "torch" not in sys.modules, "an installed torch the script has not imported is left alone"
    assert "cuda_version" not in installed and installed["driver_version"] == "535.104.05"
    importlib.import_module("torch")  # the script's own import
    environment = capture(CaptureEnv(), cwd=repo, root=repo).environment
    monkeypatch.delitem(sys.modules, "torch", raising=False)
    assert (environment["cuda_version"], environment["cudnn_version"], environment["driver_version"]) == (
        "12.1", "8.9.2", "535.104.05")


def test_the_conda_environment_and_its_export(repo: Path, tmp_path: Path) -> None:
    conda = executable(tmp_path / "bin", "conda", 'echo "name: train"; echo "prefix: $4"')
    env = CaptureEnv(conda_prefix="/opt/conda/envs/train", conda_env="train", conda_exe=str(conda))
    captured = capture(env, cwd=repo, root=repo)
    assert captured.environment["conda_env"] == "train"
    assert captured.environment["conda_prefix"] == "/opt/conda/envs/train"
    assert captured.environment["conda_artifact"] == CONDA_ARTIFACT
    assert captured.files[CONDA_ARTIFACT].content == b"name: train\nprefix: /opt/conda/envs/train\n"
    broken = executable(tmp_path / "bin", "broken-conda", "exit 3")  # a failing conda: no export, no error
    assert CONDA_ARTIFACT not in capture(CaptureEnv(conda_prefix="/x", conda_exe=str(broken)), cwd=repo,
                                         root=repo).files


def test_the_container_as_far_as_it_can_be_known(tmp_path: Path) -> None:
    assert container(CaptureEnv(), tmp_path) == {}
    (tmp_path / ".dockerenv").touch()
    (tmp_path / "proc" / "1").mkdir(parents=True)
    ident = "ab" * 32
    (tmp_path / "proc" / "1" / "cgroup").write_text(f"0::/system.slice/docker-{ident}.scope\n")
    assert container(CaptureEnv(image="ghcr.io/acme/train:1.4"), tmp_path) == {
        "runtime": "docker", "id": ident, "image": "ghcr.io/acme/train:1.4"}
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / ".containerenv").write_text('engine="podman-4.9"\nimage="quay.io/acme/x:2"\n')
    assert container(CaptureEnv(), tmp_path)["image"] == "quay.io/acme/x:2"
    pod = container(CaptureEnv(kubernetes=True, pod="train-0", namespace="ml", node="gpu-7"), tmp_path)
    assert pod["runtime"] == "kubernetes" and (pod["pod"], pod["namespace"], pod["node"]) == ("train-0", "ml", "gpu-7")
    environment = ParseDict({"container": pod}, run_pb2.Environment())
    assert environment.container.pod == "train-0"


def test_capture_env_reads_conda_and_kubernetes_from_the_environment() -> None:
    env = CaptureEnv.from_env({"CONDA_PREFIX": "/c/envs/a", "CONDA_DEFAULT_ENV": "a", "TRACKD_IMAGE": " img:1 ",
                               "KUBERNETES_SERVICE_HOST": "10.0.0.1", "HOSTNAME": "pod-x", "POD_NAMESPACE": "ns"})
    assert (env.conda_prefix, env.conda_env, env.image, env.kubernetes, env.pod, env.namespace) == (
        "/c/envs/a", "a", "img:1", True, "pod-x", "ns")
    assert CaptureEnv.from_env({"HOSTNAME": "laptop"}).pod == ""
