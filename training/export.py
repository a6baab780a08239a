"""Writes a torch policy as a pupper_ros ONNX policy file, and refuses to write one that disagrees with torch."""

from __future__ import annotations

import json
import logging
import os
import warnings
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
    observation_mean: np.ndarray | None = None,
    observation_std: np.ndarray | None = None,
) -> float:
    """Export ``policy`` (obs [batch, observation_size] -> actions [batch, 12]) with ``metadata`` to ``path``.

    The model is checked against torch on ``parity_samples`` random observations (plus a zero one) before it is
    written; returns the max abs difference. Nothing is written when it exceeds ``PARITY_TOLERANCE``. The random
    observations are ``mean + std * N(0, 1)`` (default 0 and 1): a trained policy passes its normalizer's statistics,
    so parity is checked where the policy works rather than hundreds of standard deviations away from it.
    """
    policy = policy.eval()
    example = torch.zeros(2, observation_size)
    batch = torch.export.Dim("batch", min=1)
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)  # its notes on optional torchvision ops
    with torch.no_grad(), tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
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
    mean = np.zeros(observation_size) if observation_mean is None else np.asarray(observation_mean, dtype=np.float64)
    std = np.ones(observation_size) if observation_std is None else np.asarray(observation_std, dtype=np.float64)
    observations = (mean + std * rng.normal(0.0, 1.0, size=(parity_samples, observation_size))).astype(np.float32)
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
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_name, 0o666 & ~umask)  # mkstemp makes 0600; the daemon may run as another user (systemd unit)
    os.replace(tmp_name, path)  # atomic: a reader never sees half a model
    return difference


def policy_from_checkpoint(checkpoint: str | Path):
    """The deterministic actor (observation normalizer inside) of a training checkpoint, with its training state."""
    from rsl_rl.utils import resolve_class

    from pupper_ros.contract import CURRENT_CONTRACT
    from training.config import load_config
    from training.env import CRITIC_EXTRA
    from training.ppo_adapter import rsl_rl_config
    from training.vec_env import observation_groups

    state = torch.load(checkpoint, weights_only=False, map_location="cpu")
    config = load_config(overrides=state["config"])
    n = CURRENT_CONTRACT.observation_size
    obs = observation_groups(torch.zeros(1, n), torch.zeros(1, n + CRITIC_EXTRA))
    rsl_cfg = rsl_rl_config(config)
    actor_class, actor_cfg = resolve_class(rsl_cfg["actor"])
    actor = actor_class(obs, rsl_cfg["obs_groups"], "actor", CURRENT_CONTRACT.action_size, **actor_cfg)
    actor.load_state_dict(state["algorithm"]["actor_state_dict"])
    return actor.as_onnx(verbose=False).eval(), state, config


def export_checkpoint(checkpoint: str | Path, out: str | Path) -> float:
    from pupper_ros.contract import CURRENT_CONTRACT
    from pupper_ros.policy import build_metadata
    from pupper_ros.robot_profile import load_robot_profile

    policy, state, config = policy_from_checkpoint(checkpoint)
    profile = load_robot_profile(config.robot)
    provenance = {
        "steps": int(state["env_steps"]),
        "iteration": int(state["iteration"]),
        "seed": int(state["seed"]),
        "date": state["saved"],
        "config_digest": state["config_digest"],
        "wall_clock_s": round(float(state["wall_clock"]), 1),
        "trainer": f"pupper_ros training (rsl-rl-lib PPO, {config.env.engine}{', batched' if config.env.batched else ''})",
    }
    metadata = build_metadata(CURRENT_CONTRACT, profile, command_low=profile.command_low,
                              command_high=profile.command_high, provenance=provenance)
    actor = state["algorithm"]["actor_state_dict"]
    return export_policy(policy, CURRENT_CONTRACT.observation_size, out, metadata,
                         observation_mean=actor["obs_normalizer._mean"].numpy().ravel(),
                         observation_std=actor["obs_normalizer._std"].numpy().ravel())


def main(argv: list[str] | None = None) -> int:
    import argparse
    import sys

    from training.run_files import resolve_checkpoint

    parser = argparse.ArgumentParser(prog="pupper-export", description="Export a training run or checkpoint as a pupper_ros ONNX policy.")
    parser.add_argument("run_or_checkpoint", help="a run directory (its latest checkpoint) or a checkpoint .pt file")
    parser.add_argument("-o", "--output", required=True, type=Path, help="the .onnx file to write")
    args = parser.parse_args(argv)
    try:
        checkpoint = resolve_checkpoint(args.run_or_checkpoint)
        difference = export_checkpoint(checkpoint, args.output)
    except (FileNotFoundError, ExportParityError) as exc:
        print(f"pupper-export: {exc}", file=sys.stderr)
        return 1
    print(f"pupper-export: wrote {args.output} from {checkpoint} (onnxruntime vs torch max abs difference {difference:.2e})")
    return 0
if __name__ == "__main__":
    raise SystemExit(main())
