"""Where the TPM policy keeps TensorRT engines: the user's cache folder, not beside the ONNX file
(the shipped policy sits in the installed, often read-only, package)."""

from __future__ import annotations

from pathlib import Path

import pytest

ort = pytest.importorskip("onnxruntime")

from models.tpm import onnx_policy  # noqa: E402
from models.types import ModelError  # noqa: E402
from policies import DEFAULT  # noqa: E402


def test_engines_go_to_the_users_cache_folder(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", "/var/cache/someone")
    assert onnx_policy.default_engine_cache() == Path("/var/cache/someone/tpm-agent/tensorrt")
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert onnx_policy.default_engine_cache() == Path.home() / ".cache/tpm-agent/tensorrt"


def test_an_engine_cache_that_cannot_be_made_is_one_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """This machine has no GPU: the GPU's presence and TensorRT's listing are faked (the two
    calls that ask the driver), so that the TensorRT branch runs up to its cache folder."""
    monkeypatch.setattr(onnx_policy, "_gpu_present", lambda: True)
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["TensorrtExecutionProvider"])
    blocker = tmp_path / "a-file"
    blocker.write_text("")  # a folder cannot be made under a file, even as root
    with pytest.raises(ModelError, match=r"cannot create the TensorRT engine cache .*a-file"):
        onnx_policy.OnnxTPMPolicy(DEFAULT, engine_cache_dir=blocker / "engines")
