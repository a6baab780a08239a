"""Writes a torch policy as a pupper_ros ONNX policy file, and refuses to write one that disagrees with torch."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch

from pupper_ros.policy import INPUT_NAME, METADATA_KEY, OUTPUT_NAME

PARITY_TOLERANCE = 1e-5


class ExportParityError(RuntimeError):
    """The exported ONNX model does not reproduce the torch policy."""


def _onnx_actions(model_bytes: bytes, observations: np.ndarray) -> np.ndarray:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])
    return session.run([OUTPUT_NAME], {INPUT_NAME: observations})[0]


def export_policy(
    policy: torch.nn.Module,
    observation_size: int,
    path: str | Path,
    metadata: dict,
    *,
    parity_samples: int = 256,
    seed: int = 0,
) -> float:
    """Export ``policy`` (obs [batch, observation_size] -> actions [batch, 12]) with ``metadata`` to ``path``.

    The model is checked against torch on ``parity_samples`` random observations (plus a zero one) before it is
    written; returns the max abs difference. Nothing is written when it exceeds ``PARITY_TOLERANCE``.
    """
    policy = policy.eval()
    example = torch.zeros(2, observation_size)
    batch = torch.export.Dim("batch", min=1)
    with torch.no_grad(), tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "policy.onnx"
        torch.onnx.export(
            policy,
            (example,),
            str(raw),
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_shapes=({0: batch},),
            dynamo=True,
            external_data=False,
            verbose=False,
        )
        model = onnx.load_model(str(raw))
    del model.metadata_props[:]
    entry = model.metadata_props.add()
    entry.key = METADATA_KEY
    entry.value = json.dumps(metadata, sort_keys=True)
    onnx.checker.check_model(model)
    model_bytes = model.SerializeToString()

    rng = np.random.default_rng(seed)
    observations = rng.normal(0.0, 1.0, size=(parity_samples, observation_size)).astype(np.float32)
    observations[0] = 0.0
    with torch.no_grad():
        expected = policy(torch.from_numpy(observations)).numpy()
    got = _onnx_actions(model_bytes, observations)
    if got.shape != expected.shape:
        raise ExportParityError(f"ONNX output shape {got.shape} differs from torch {expected.shape}")
    difference = float(np.max(np.abs(got - expected)))
    if not difference < PARITY_TOLERANCE:
        raise ExportParityError(
            f"ONNX and torch outputs differ by {difference:.3g} (tolerance {PARITY_TOLERANCE}); {path} not written"
        )

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, suffix=".onnx.tmp")
    with os.fdopen(fd, "wb") as f:
        f.write(model_bytes)
    os.replace(tmp_name, path)  # atomic: a reader never sees half a model
    return difference
