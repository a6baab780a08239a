"""Ways to reach a robot: each backend reads sensor samples and writes joint commands.

Backends are imported by name only when asked for, so the runtime on a robot never loads PyBullet.
"""

from __future__ import annotations

import importlib

from pupper_ros.backends.backend import Backend, BackendError, BackendParameterError

BACKENDS = {
    "sim": "pupper_ros.backends.sim_backend:SimBackend",
    "serial": "pupper_ros.backends.serial_backend:SerialBackend",
    "ros2_control": "pupper_ros.backends.ros2_control_backend:Ros2ControlBackend",
}


def backend_class(name: str) -> type[Backend]:
    if name not in BACKENDS:
        raise ValueError(f"unknown backend '{name}'; choose one of {', '.join(BACKENDS)}")
    module, cls = BACKENDS[name].split(":")
    try:
        return getattr(importlib.import_module(module), cls)
    except ModuleNotFoundError as exc:
        raise ValueError(f"backend '{name}' is not available here: {exc}") from exc


__all__ = ["BACKENDS", "Backend", "BackendError", "BackendParameterError", "backend_class"]
