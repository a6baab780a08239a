"""The policy file: one ONNX model with input ``obs`` [batch, N], output ``actions`` [batch, 12], and a JSON
description in its ``metadata_props`` under ``METADATA_KEY``. ``load_policy`` checks everything before it serves.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pupper_ros.contract import CONTRACTS, PolicyContract
from pupper_ros.robot_profile import COMMAND_AXES, RobotProfile

METADATA_KEY = "pupper_ros.policy"
INPUT_NAME = "obs"
OUTPUT_NAME = "actions"
_POSE_TOLERANCE = 1e-6
_REQUIRED_FIELDS = ("contract", "robot", "joints", "default_pose", "kp", "kd", "command_ranges", "provenance")
_PROVENANCE_FIELDS = ("steps", "seed", "date", "config_digest")


class PolicyLoadError(ValueError):
    """The policy file cannot be used with this robot; the message names the first mismatch found."""


def build_metadata(
    contract: PolicyContract,
    profile: RobotProfile,
    *,
    command_low: np.ndarray,
    command_high: np.ndarray,
    provenance: dict,
) -> dict:
    """The description an exporter stores in the model; provenance holds steps, seed, date and config_digest."""
    missing = [k for k in _PROVENANCE_FIELDS if k not in provenance]
    if missing:
        raise ValueError(f"provenance lacks {', '.join(missing)}")
    return {
        "contract": contract.to_dict(),
        "robot": profile.name,
        "joints": list(profile.joints),
        "default_pose": [float(x) for x in profile.default_pose],
        "kp": profile.kp,
        "kd": profile.kd,
        "command_ranges": {a: [float(lo), float(hi)] for a, lo, hi in zip(COMMAND_AXES, command_low, command_high)},
        "provenance": dict(provenance),
    }


@dataclass(frozen=True)
class PolicyInfo:
    path: Path
    contract: PolicyContract
    robot: str
    command_low: np.ndarray
    command_high: np.ndarray
    provenance: dict


class OnnxPolicy:
    """A validated policy, served by onnxruntime on one thread. ``__call__`` maps one observation to 12 actions."""

    def __init__(self, session, info: PolicyInfo):
        self._session = session
        self.info = info
        self._input = np.zeros((1, info.contract.observation_size), dtype=np.float32)
        self._output = np.zeros((1, info.contract.action_size), dtype=np.float32)
        # Bound once to these two buffers: a call copies the observation in and runs, with no per-call feed
        # dictionary or output allocation (about 2 us of the control step's budget).
        self._binding = session.io_binding()
        self._binding.bind_cpu_input(INPUT_NAME, self._input)
        self._binding.bind_output(OUTPUT_NAME, "cpu", 0, np.float32, list(self._output.shape), self._output.ctypes.data)

    @property
    def contract(self) -> PolicyContract:
        return self.info.contract

    def __call__(self, observation: np.ndarray) -> np.ndarray:
        """The action for one observation: a view of an internal buffer, valid until the next call."""
        self._input[0] = observation
        self._session.run_with_iobinding(self._binding)
        return self._output[0]

    def run_batch(self, observations: np.ndarray) -> np.ndarray:
        return self._session.run([OUTPUT_NAME], {INPUT_NAME: np.asarray(observations, dtype=np.float32)})[0]


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise PolicyLoadError(message)


def read_metadata(model, where: str) -> dict:
    entries = {p.key: p.value for p in model.metadata_props}
    _check(METADATA_KEY in entries, f"{where}: no '{METADATA_KEY}' entry in metadata_props (not a pupper_ros policy?)")
    try:
        meta = json.loads(entries[METADATA_KEY])
    except json.JSONDecodeError as exc:
        raise PolicyLoadError(f"{where}: metadata '{METADATA_KEY}' is not valid JSON: {exc}") from exc
    _check(isinstance(meta, dict), f"{where}: metadata '{METADATA_KEY}' must be a JSON object")
    missing = [k for k in _REQUIRED_FIELDS if k not in meta]
    _check(not missing, f"{where}: metadata lacks field(s) {', '.join(missing)}")
    return meta


def _contract_from_metadata(meta: dict, where: str) -> PolicyContract:
    contract = meta["contract"]
    _check(isinstance(contract, dict) and "version" in contract, f"{where}: metadata 'contract' has no 'version'")
    version = contract["version"]
    _check(
        version in CONTRACTS,
        f"{where}: contract version {version!r} is unknown; this pupper_ros knows version(s) {sorted(CONTRACTS)}",
    )
    known = CONTRACTS[version]
    expected = known.to_dict()
    for key in expected:
        _check(
            contract.get(key) == expected[key],
            f"{where}: contract version {version} field '{key}' differs from its definition: "
            f"model has {contract.get(key)!r}, expected {expected[key]!r}",
        )
    return known


def _check_robot(meta: dict, profile: RobotProfile, where: str) -> None:
    _check(meta["robot"] == profile.name, f"{where}: model is for robot '{meta['robot']}', this robot is '{profile.name}'")
    joints = meta["joints"]
    _check(isinstance(joints, list), f"{where}: metadata 'joints' must be a list")
    if joints != list(profile.joints):
        first = next((i for i, (a, b) in enumerate(zip(joints, profile.joints)) if a != b), min(len(joints), profile.num_joints))
        got = joints[first] if first < len(joints) else "<end>"
        want = profile.joints[first] if first < profile.num_joints else "<end>"
        raise PolicyLoadError(f"{where}: joint order differs from robot {profile.name} at index {first}: model has '{got}', robot has '{want}'")
    pose = np.asarray(meta["default_pose"], dtype=np.float64)
    _check(
        pose.shape == profile.default_pose.shape and np.allclose(pose, profile.default_pose, atol=_POSE_TOLERANCE),
        f"{where}: default_pose {meta['default_pose']} differs from robot {profile.name}'s {profile.default_pose.tolist()}",
    )
    for gain, value in (("kp", profile.kp), ("kd", profile.kd)):
        _check(
            isinstance(meta[gain], (int, float)) and math.isclose(meta[gain], value, rel_tol=1e-9),
            f"{where}: model was trained with {gain} {meta[gain]}, robot {profile.name} runs {gain} {value}",
        )
    ranges = meta["command_ranges"]
    _check(
        isinstance(ranges, dict) and set(ranges) == set(COMMAND_AXES)
        and all(isinstance(r, list) and len(r) == 2 and r[0] < r[1] for r in ranges.values()),
        f"{where}: metadata 'command_ranges' must map {', '.join(COMMAND_AXES)} to [low, high]",
    )
    prov = meta["provenance"]
    _check(isinstance(prov, dict), f"{where}: metadata 'provenance' must be an object")
    missing = [k for k in _PROVENANCE_FIELDS if k not in prov]
    _check(not missing, f"{where}: metadata provenance lacks {', '.join(missing)}")


def _check_finite_weights(model, where: str) -> None:
    from onnx import numpy_helper

    for init in model.graph.initializer:
        values = numpy_helper.to_array(init)
        if values.dtype.kind == "f" and not np.all(np.isfinite(values)):
            bad = int(np.count_nonzero(~np.isfinite(values)))
            raise PolicyLoadError(f"{where}: weight '{init.name}' has {bad} non-finite value(s)")


def _check_io(session, contract: PolicyContract, where: str) -> None:
    inputs, outputs = session.get_inputs(), session.get_outputs()
    _check([i.name for i in inputs] == [INPUT_NAME], f"{where}: inputs are {[i.name for i in inputs]}, expected ['{INPUT_NAME}']")
    _check(OUTPUT_NAME in [o.name for o in outputs], f"{where}: outputs are {[o.name for o in outputs]}, expected '{OUTPUT_NAME}'")
    width_in = inputs[0].shape[-1] if len(inputs[0].shape) == 2 else None
    _check(
        width_in == contract.observation_size,
        f"{where}: input '{INPUT_NAME}' has shape {inputs[0].shape}, contract v{contract.version} needs [batch, {contract.observation_size}]",
    )
    out = next(o for o in outputs if o.name == OUTPUT_NAME)
    width_out = out.shape[-1] if len(out.shape) == 2 else None
    _check(
        width_out == contract.action_size,
        f"{where}: output '{OUTPUT_NAME}' has shape {out.shape}, contract v{contract.version} needs [batch, {contract.action_size}]",
    )


def load_policy(path: str | Path, profile: RobotProfile) -> OnnxPolicy:
    """Validate the model at ``path`` against ``profile`` and return it ready to serve. Raises ``PolicyLoadError``."""
    import onnx
    import onnxruntime as ort

    path = Path(path)
    where = f"policy {path}"
    _check(path.is_file(), f"{where}: file not found")
    try:
        model = onnx.load_model(str(path))
        onnx.checker.check_model(model)
    except Exception as exc:  # onnx raises protobuf DecodeError, ValidationError or OSError here
        raise PolicyLoadError(f"{where}: not a valid ONNX model ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from exc

    meta = read_metadata(model, where)
    contract = _contract_from_metadata(meta, where)
    _check_robot(meta, profile, where)
    _check_finite_weights(model, where)

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    try:
        session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise PolicyLoadError(f"{where}: onnxruntime cannot load it ({exc})") from exc
    _check_io(session, contract, where)

    ranges = meta["command_ranges"]
    info = PolicyInfo(
        path=path,
        contract=contract,
        robot=meta["robot"],
        command_low=np.array([ranges[a][0] for a in COMMAND_AXES], dtype=np.float64),
        command_high=np.array([ranges[a][1] for a in COMMAND_AXES], dtype=np.float64),
        provenance=meta["provenance"],
    )
    policy = OnnxPolicy(session, info)
    probe = policy(np.zeros(contract.observation_size, dtype=np.float32))
    _check(probe.shape == (contract.action_size,) and np.all(np.isfinite(probe)), f"{where}: output on a zero observation is not finite")
    return policy
