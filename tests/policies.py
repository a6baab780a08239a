"""Small random policies written with the project's exporter, for tests that need a real ONNX file."""

from __future__ import annotations

import torch

from pupper_ros.contract import CURRENT_CONTRACT
from pupper_ros.policy import build_metadata

TEST_PROVENANCE = {"steps": 0, "seed": 0, "date": "2026-11-25T00:00:00Z", "config_digest": "test"}


def tiny_network(inputs: int = CURRENT_CONTRACT.observation_size, outputs: int = 12, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(inputs, 32), torch.nn.ELU(), torch.nn.Linear(32, outputs), torch.nn.Tanh())


def metadata_for(profile, **overrides) -> dict:
    meta = build_metadata(CURRENT_CONTRACT, profile, command_low=profile.command_low,
                          command_high=profile.command_high, provenance=TEST_PROVENANCE)
    meta.update(overrides)
    return meta


def write_policy(path, profile, network: torch.nn.Module | None = None, inputs: int | None = None, **metadata_overrides):
    from training.export import export_policy

    inputs = CURRENT_CONTRACT.observation_size if inputs is None else inputs
    network = tiny_network(inputs) if network is None else network
    export_policy(network, inputs, path, metadata_for(profile, **metadata_overrides), parity_samples=32)
    return path


def standing_network(inputs: int = CURRENT_CONTRACT.observation_size) -> torch.nn.Module:
    """Always outputs zero actions: the robot holds its default pose. Stands in for a trained policy where a
    test needs the runtime around a policy rather than a gait."""
    network = torch.nn.Sequential(torch.nn.Linear(inputs, 12))
    torch.nn.init.zeros_(network[0].weight)
    torch.nn.init.zeros_(network[0].bias)
    return network


def constant_network(action, inputs: int = CURRENT_CONTRACT.observation_size) -> torch.nn.Module:
    """Always outputs ``action`` (12 values): a policy whose targets a test can tell apart from another's."""
    network = torch.nn.Sequential(torch.nn.Linear(inputs, 12))
    torch.nn.init.zeros_(network[0].weight)
    with torch.no_grad():
        network[0].bias.copy_(torch.as_tensor(action, dtype=torch.float32))
    return network
