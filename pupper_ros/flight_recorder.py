"""Flight recorder: every control tick into an MCAP file in the ROS 2 message encoding (rosbag2's default storage).

The control thread only copies the tick's numbers into a tuple and puts it on a bounded queue (``record_tick``);
a writer thread turns records into ROS messages and writes them. When the queue is full the record is dropped and
counted (``dropped``), never the tick (a lock-step simulation, with no clock to keep, waits instead). ``close`` drains the queue and finishes the file (summary and index), so a
stopped run leaves a complete file; a run cut by SIGKILL leaves every chunk written before it readable (a chunk is
finished every FLUSH_SECONDS of log time, or sooner when it reaches CHUNK_SIZE).

Channels (all stamped with the control tick's time):
  /joint_states, /imu/data        sensor_msgs JointState, Imu: the sample the tick used, as measured
  ~/joint_commands                sensor_msgs/JointState: position = target, velocity = kp, effort = kd (as sent)
  /cmd_vel                        geometry_msgs/Twist, as received
  ~/state                         std_msgs/String, on each transition
  /diagnostics                    diagnostic_msgs/DiagnosticArray, as published
  ~/policy/observation, ~/policy/action   std_msgs/Float32MultiArray per policy step; dimension labels are the
                                  contract's term names (observation) and the profile's joint names (action)
  /pupper_ros/header              std_msgs/String, one JSON message first: profile, policy metadata and digest,
                                  node parameters, backend

Needs the ``record`` extra (``mcap``, ``mcap-ros2-support``); the message definitions are read from the installed
ROS message packages (``share/<package>/msg/*.msg``), which every ROS install and the ROS wheels have.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import queue
import re
import sys
import threading
from pathlib import Path

import numpy as np

from pupper_ros.parameters import NODE_NAME

HEADER_TOPIC = "/pupper_ros/header"
QUEUE_SIZE = 8192  # records: about 16 s of ticks at 500 Hz
CHUNK_SIZE = 256 * 1024  # bytes; after SIGKILL the file is readable up to its last complete chunk
FLUSH_SECONDS = 1.0  # and a chunk is finished at least this often (log time), so a cut file loses at most about this

JOINT_STATES, IMU, JOINT_COMMANDS, CMD_VEL, STATE, DIAGNOSTICS, OBSERVATION, ACTION = (
    "/joint_states", "/imu/data", f"/{NODE_NAME}/joint_commands", "/cmd_vel", f"/{NODE_NAME}/state", "/diagnostics",
    f"/{NODE_NAME}/policy/observation", f"/{NODE_NAME}/policy/action")

MESSAGE_TYPES = {
    JOINT_STATES: "sensor_msgs/msg/JointState",
    IMU: "sensor_msgs/msg/Imu",
    JOINT_COMMANDS: "sensor_msgs/msg/JointState",
    CMD_VEL: "geometry_msgs/msg/Twist",
    STATE: "std_msgs/msg/String",
    DIAGNOSTICS: "diagnostic_msgs/msg/DiagnosticArray",
    OBSERVATION: "std_msgs/msg/Float32MultiArray",
    ACTION: "std_msgs/msg/Float32MultiArray",
    HEADER_TOPIC: "std_msgs/msg/String",
}

_PRIMITIVES = {"bool", "byte", "char", "float32", "float64", "int8", "uint8", "int16", "uint16", "int32", "uint32",
               "int64", "uint64", "string", "wstring"}


class RecorderError(RuntimeError):
    """The recorder cannot start: a missing extra, message definition or an unwritable path; the message says which."""


def _share_dirs() -> list[Path]:
    prefixes = [p for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p] + [sys.prefix]
    return [Path(p) / "share" for p in prefixes]


def _msg_file(package: str, name: str) -> Path:
    for share in _share_dirs():
        path = share / package / "msg" / f"{name}.msg"
        if path.is_file():
            return path
    raise RecorderError(f"message definition {package}/msg/{name} not found under {', '.join(map(str, _share_dirs()))}")


def message_definition(datatype: str) -> str:
    """The ros2msg schema text of ``datatype`` ("pkg/msg/Name"): its .msg file, then every type it uses, each once."""
    package, _, name = datatype.split("/")
    order, texts, pending = [], {}, [(package, name)]
    while pending:
        pkg, msg = pending.pop(0)
        key = f"{pkg}/{msg}"
        if key in texts:
            continue
        text = _msg_file(pkg, msg).read_text()
        texts[key] = text
        order.append(key)
        for line in text.splitlines():
            parts = line.split("#", 1)[0].split()
            if len(parts) < 2:
                continue
            base = re.sub(r"<=\d+$", "", re.sub(r"\[[^\]]*\]$", "", parts[0]))
            if base in _PRIMITIVES:  # constants are always primitives, so they end here too
                continue
            if "/" in base:
                pending.append((base.split("/")[0], base.split("/")[-1]))
            else:
                pending.append(("std_msgs", base) if base == "Header" else (pkg, base))
    separator = "\n" + "=" * 80 + "\n"
    parts = [texts[order[0]]] + [f"MSG: {key}\n{texts[key]}" for key in order[1:]]
    return separator.join(part.rstrip("\n") for part in parts) + "\n"


def file_digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _stamp(seconds: float) -> dict:
    sec = int(seconds // 1)
    return {"sec": sec, "nanosec": int(round((seconds - sec) * 1e9)) % 1_000_000_000}


def _header(seconds: float) -> dict:
    return {"stamp": _stamp(seconds), "frame_id": ""}


def _labelled(values, labels: list[tuple[str, int]]) -> dict:
    dims = [{"label": label, "size": size, "stride": size} for label, size in labels]
    return {"layout": {"dim": dims, "data_offset": 0}, "data": [float(v) for v in values]}


def observation_labels(contract) -> list[tuple[str, int]]:
    labels = []
    for frame in range(contract.history_length):
        prefix = "" if contract.history_length == 1 else f"t-{frame}/"
        labels += [(prefix + t.name, t.size) for t in contract.terms]
    return labels


def _jsonable(value):
    return value.tolist() if isinstance(value, np.ndarray) else str(value)


class FlightRecorder:
    def __init__(self, path: str | Path, profile, policy, parameters: dict, backend: str,
                 queue_size: int = QUEUE_SIZE, wait_when_full: bool = False):
        try:
            from mcap_ros2.writer import Writer
        except ImportError as exc:
            raise RecorderError("recording needs the 'record' extra: pip install 'pupper_ros[record]'") from exc
        self.path = Path(path).expanduser()
        self._joints = list(profile.joints)
        self._observation_labels = observation_labels(policy.contract)
        self._action_labels = [(name, 1) for name in self._joints]
        schemas_text = {t: message_definition(t) for t in set(MESSAGE_TYPES.values())}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "wb")
        except OSError as exc:
            raise RecorderError(f"cannot write the flight log {self.path}: {exc}") from exc
        self._writer = Writer(self._file, chunk_size=CHUNK_SIZE)
        self._schemas = {t: self._writer.register_msgdef(t, text) for t, text in schemas_text.items()}
        policy_path = Path(policy.info.path)
        self.header = {
            "format": "pupper_ros flight log 1",
            "robot": profile.name,
            "profile": dataclasses.asdict(profile),  # every field the run used (the URDF by path)
            "policy": {"path": str(policy_path), "sha256": file_digest(policy_path), "robot": policy.info.robot,
                       "contract": policy.contract.to_dict(), "provenance": policy.info.provenance},
            "parameters": parameters,
            "backend": backend,
        }
        self._queue: queue.Queue = queue.Queue(maxsize=queue_size)
        # Lock-step simulation has no wall clock to keep, so there a full queue makes the tick wait and the log is
        # complete; on a real-time loop a full queue drops the record instead.
        self._wait_when_full = wait_when_full
        self.dropped = 0
        self.written = 0
        self.error = ""
        self._closed = False
        self._last_state = None
        self._write(HEADER_TOPIC, {"data": json.dumps(self.header, default=_jsonable)}, 0.0)
        self._finish_chunk()  # the header is on disk before the first tick
        self._flushed_at = None
        self._thread = threading.Thread(target=self._run, name="pupper-recorder", daemon=True)
        self._thread.start()

    # --- called from the control thread and ROS callbacks: copy, enqueue, never wait --------------------------
    def _put(self, record: tuple) -> None:
        try:
            if self._wait_when_full and self._thread.is_alive():
                self._queue.put(record, timeout=10.0)
            else:
                self._queue.put_nowait(record)
        except queue.Full:
            self.dropped += 1

    def record_tick(self, now: float, controller) -> None:
        sample, command = controller.sample, controller.command
        if sample is not None:
            acceleration = None if sample.linear_acceleration is None else tuple(sample.linear_acceleration)
            self._put(("sample", now, sample.joint_position.copy(), sample.joint_velocity.copy(),
                       tuple(sample.orientation), tuple(sample.angular_velocity), acceleration))
        self._put(("command", now, command.position.copy(), command.kp.copy(), command.kd.copy()))
        if controller.ran_policy and controller.last_observation is not None:
            self._put(("policy", now, controller.last_observation.copy(), controller.last_raw_action.copy()))
        state = controller.state.value
        if state != self._last_state:
            self._last_state = state
            self._put(("state", now, state))

    def record_cmd_vel(self, now: float, linear: tuple, angular: tuple) -> None:
        self._put(("cmd_vel", now, tuple(linear), tuple(angular)))

    def record_diagnostics(self, now: float, level, name: str, message: str, hardware_id: str, values: dict) -> None:
        """One DiagnosticStatus as published; ``level`` as rclpy gives it (a one-byte ``bytes``) or an int."""
        self._put(("diagnostics", now, level[0] if isinstance(level, bytes) else int(level), name, message,
                   hardware_id, dict(values)))

    # --- writer thread ------------------------------------------------------------------------------------------
    def _write(self, topic: str, message: dict, seconds: float) -> None:
        ns = max(0, int(round(seconds * 1e9)))
        self._writer.write_message(topic=topic, schema=self._schemas[MESSAGE_TYPES[topic]], message=message,
                                   log_time=ns, publish_time=ns)
        self.written += 1

    def _convert(self, record: tuple) -> None:
        kind, now = record[0], record[1]
        if kind == "sample":
            _, _, position, velocity, orientation, angular, acceleration = record
            self._write(JOINT_STATES, {"header": _header(now), "name": self._joints, "position": position.tolist(),
                                       "velocity": velocity.tolist(), "effort": []}, now)
            x, y, z, w = orientation
            imu = {"header": _header(now), "orientation": {"x": x, "y": y, "z": z, "w": w},
                   "orientation_covariance": [0.0] * 9,
                   "angular_velocity": dict(zip("xyz", angular)), "angular_velocity_covariance": [0.0] * 9,
                   "linear_acceleration": dict(zip("xyz", acceleration or (0.0, 0.0, 0.0))),
                   "linear_acceleration_covariance": [0.0] * 9 if acceleration is not None else [-1.0] + [0.0] * 8}
            self._write(IMU, imu, now)
        elif kind == "command":
            _, _, position, kp, kd = record
            self._write(JOINT_COMMANDS, {"header": _header(now), "name": self._joints, "position": position.tolist(),
                                         "velocity": kp.tolist(), "effort": kd.tolist()}, now)
        elif kind == "policy":
            _, _, observation, action = record
            self._write(OBSERVATION, _labelled(observation, self._observation_labels), now)
            self._write(ACTION, _labelled(action, self._action_labels), now)
        elif kind == "cmd_vel":
            _, _, linear, angular = record
            self._write(CMD_VEL, {"linear": dict(zip("xyz", linear)), "angular": dict(zip("xyz", angular))}, now)
        elif kind == "state":
            self._write(STATE, {"data": record[2]}, now)
        elif kind == "diagnostics":
            _, _, level, name, message, hardware_id, values = record
            status = {"level": level, "name": name, "message": message, "hardware_id": hardware_id,
                      "values": [{"key": k, "value": v} for k, v in values.items()]}
            self._write(DIAGNOSTICS, {"header": _header(now), "status": [status]}, now)

    def _finish_chunk(self) -> None:
        self._writer._writer.flush()  # mcap_ros2's Writer does not expose the McapWriter's flush (finish the chunk)

    def _run(self) -> None:
        while True:
            record = self._queue.get()
            if record is None:
                return
            try:
                self._convert(record)
                now = record[1]
                if self._flushed_at is None or now - self._flushed_at >= FLUSH_SECONDS or now < self._flushed_at:
                    if self._flushed_at is not None:
                        self._finish_chunk()
                    self._flushed_at = now
            except Exception as exc:  # noqa: BLE001 - a disk error stops recording, never the robot
                self.error = f"{type(exc).__name__}: {exc}"
                self._drain_and_count()
                return

    def _drain_and_count(self) -> None:
        while True:
            try:
                if self._queue.get_nowait() is not None:
                    self.dropped += 1
            except queue.Empty:
                return

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued, then finish the file. Idempotent."""
        if self._closed:
            return
        self._closed = True
        while self._thread.is_alive():  # the sentinel must get in even if the queue is full
            try:
                self._queue.put(None, timeout=0.1)
                break
            except queue.Full:
                continue
        self._thread.join(timeout)
        try:
            self._writer.finish()
        finally:
            self._file.close()

    def status(self) -> dict:
        return {"record_log": str(self.path), "records written": str(self.written),
                "records dropped": str(self.dropped), "recorder error": self.error or "none"}
