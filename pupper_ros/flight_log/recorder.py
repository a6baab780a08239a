"""Flight recorder: every control tick into an MCAP file in the ROS 2 message encoding (rosbag2's default storage).

The control thread only packs the tick's numbers into bytes and writes them, without waiting, to a pipe; a writer
process (``pupper_ros.flight_log.writer``) turns them into ROS messages and writes the file. Encoding and compressing
in a thread of the daemon would hold its GIL for milliseconds at a time, and the control loop would wait for it; a
process cannot. When the pipe is full the record is dropped and counted (``dropped``), never the tick (a lock-step
simulation, with no clock to keep, waits instead). ``close`` ends the input and the writer finishes the file (summary
and index); so does a daemon killed outright, since the writer finishes when its input ends. A power loss leaves every
chunk written before it readable (a chunk is finished every second of log time, or sooner when it is full).

Channels (all stamped with the control tick's time: ROS time on a robot, simulation time in simulation):
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
import fcntl
import hashlib
import importlib.util
import json
import os
import re
import select
import struct
import time
import subprocess
import sys
import threading
from pathlib import Path

import msgpack
import numpy as np

from pupper_ros.flight_log.schema import BODY_HEAD, FRAME_HEAD, HEADER_FORMAT, MESSAGE_TYPES, TOPICS, Frame

BUFFER_BYTES = 1024 * 1024  # the pipe to the writer: about 2 s of ticks at 500 Hz (Linux allows 1 MiB by default)
CHUNK_SIZE = 256 * 1024  # bytes; after a power loss the file is readable up to its last complete chunk

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


def observation_labels(contract) -> list[tuple[str, int]]:
    labels = []
    for frame in range(contract.history_length):
        prefix = "" if contract.history_length == 1 else f"t-{frame}/"
        labels += [(prefix + t.name, t.size) for t in contract.terms]
    return labels


def _jsonable(value):
    return value.tolist() if isinstance(value, np.ndarray) else str(value)


class FlightRecorder:
    """``clock_offset_ns``: added to the control loop's clock to give each message's time. A robot's log passes the
    node's ROS time minus the loop's monotonic clock, so Foxglove and rosbag place the log on the calendar and beside
    a ``ros2 bag record`` of the same run; a simulated log passes 0 and keeps simulation time. The header records it
    (``clock``), and the reader takes it off again, so replay works on the loop's own clock either way."""

    def __init__(self, path: str | Path, profile, policy, parameters: dict, backend: str,
                 buffer_bytes: int = BUFFER_BYTES, wait_when_full: bool = False, clock_offset_ns: int = 0):
        if importlib.util.find_spec("mcap_ros2") is None:
            raise RecorderError("recording needs the 'record' extra: pip install 'pupper_ros[record]'")
        self.path = Path(path).expanduser()
        self._n = profile.num_joints
        self._observation_size = policy.contract.observation_size
        self._frames = _TickFrames(self._n, self._observation_size)
        definitions = {t: message_definition(t) for t in set(MESSAGE_TYPES.values())}
        policy_path = Path(policy.info.path)
        self.header = {
            "format": HEADER_FORMAT,
            "robot": profile.name,
            "profile": dataclasses.asdict(profile),  # every field the run used (the URDF by path)
            "policy": {"path": str(policy_path), "sha256": file_digest(policy_path), "robot": policy.info.robot,
                       "contract": policy.contract.to_dict(), "provenance": policy.info.provenance},
            "parameters": parameters,
            "backend": backend,
            "clock": {"source": "ros" if clock_offset_ns else "loop", "offset_ns": int(clock_offset_ns)},
        }
        config = {"header": json.loads(json.dumps(self.header, default=_jsonable)), "joints": list(profile.joints),
                  "header_seconds": time.monotonic() if clock_offset_ns else 0.0,  # the header's own log time
                  "observation_size": policy.contract.observation_size,
                  "observation_labels": observation_labels(policy.contract), "definitions": definitions,
                  "topics": TOPICS, "types": MESSAGE_TYPES, "chunk_size": CHUNK_SIZE}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            log_file = open(self.path, "wb")
        except OSError as exc:
            raise RecorderError(f"cannot write the flight log {self.path}: {exc}") from exc
        with log_file:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "pupper_ros.flight_log.writer", "--fd", str(log_file.fileno())],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, pass_fds=(log_file.fileno(),))
        self._fd = self._process.stdin.fileno()
        _grow_pipe(self._fd, buffer_bytes)
        self._handover_dropped = 0  # records the pipe did not take
        self._writer_dropped = 0  # records the writer took but could not write (after a disk error)
        self._drop_lock = threading.Lock()  # the control thread and ROS callbacks both record
        self.written = 0
        self.error = ""
        self._closed = False
        self._last_state = None
        self._wait_when_full = wait_when_full  # lock-step simulation has no wall clock to keep: it waits instead
        try:
            self._send_blocking(_frame(Frame.CONFIG, 0.0, json.dumps(config).encode()))
            ready = self._process.stdout.readline()
        except OSError:  # the writer died before reading its configuration
            ready = b""
        status = json.loads(ready) if ready.strip() else {}
        if not status.get("ready"):
            self._process.stdin.close()
            self._process.wait(timeout=10)
            problem = status.get("error") or f"the writer process exited with {self._process.returncode}"
            raise RecorderError(f"cannot write the flight log {self.path}: {problem}")
        self.written = status.get("written", 0)
        os.set_blocking(self._fd, False)
        self._status_thread = threading.Thread(target=self._read_status, name="pupper-recorder-status", daemon=True)
        self._status_thread.start()

    # --- called from the control thread and ROS callbacks: pack and write, never wait ------------------------
    def _send_blocking(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view):]

    @property
    def dropped(self) -> int:
        return self._handover_dropped + self._writer_dropped

    def _drop(self, records: int) -> None:
        with self._drop_lock:
            self._handover_dropped += records

    def _send(self, parts: list, records: int) -> None:
        """One ``writev`` of these frames, at most PIPE_BUF bytes in all: the pipe takes all of it or none, so a tick
        is in the log whole or not at all and threads never interleave."""
        if self._closed or sum(len(part) for part in parts) > select.PIPE_BUF:
            self._drop(records)
            return
        try:
            os.writev(self._fd, parts)
        except BlockingIOError:
            if self._wait_when_full and self._wait_writable():
                self._send(parts, records)
            else:
                self._drop(records)
        except OSError as exc:  # the writer process is gone
            self.error = self.error or f"writer process: {exc}"
            self._drop(records)

    def _wait_writable(self, timeout: float = 10.0) -> bool:
        return bool(select.select([], [self._fd], [], timeout)[1])

    def record_tick(self, now: float, controller) -> None:
        sample, command, frames = controller.sample, controller.command, self._frames
        parts, records = [], 0
        if sample is not None:
            v = frames.sample_values
            n = self._n
            v[:n], v[n:2 * n], v[2 * n:2 * n + 4] = sample.joint_position, sample.joint_velocity, sample.orientation
            v[2 * n + 4:2 * n + 7] = sample.angular_velocity
            acceleration = sample.linear_acceleration
            v[2 * n + 7] = acceleration is not None
            v[2 * n + 8:] = 0.0 if acceleration is None else acceleration
            parts.append(frames.stamp(frames.sample, now))
            records += 2
        v = frames.command_values
        v[:self._n], v[self._n:2 * self._n], v[2 * self._n:] = command.position, command.kp, command.kd
        parts.append(frames.stamp(frames.command, now))
        records += 1
        if controller.ran_policy and controller.last_observation is not None:
            v = frames.policy_values
            v[:self._observation_size], v[self._observation_size:] = controller.last_observation, controller.last_raw_action
            parts.append(frames.stamp(frames.policy, now))
            records += 2
        state = controller.state.value
        if state != self._last_state:
            self._last_state = state
            parts.append(_frame(Frame.STATE, now, state.encode()))
            records += 1
        self._send(parts, records)

    def record_cmd_vel(self, now: float, linear: tuple, angular: tuple) -> None:
        self._send([_frame(Frame.CMD_VEL, now, struct.pack("<6d", *linear, *angular))], 1)

    def record_diagnostics(self, now: float, level, name: str, message: str, hardware_id: str, values: dict) -> None:
        """One DiagnosticStatus as published; ``level`` as rclpy gives it (a one-byte ``bytes``) or an int."""
        level = level[0] if isinstance(level, bytes) else int(level)
        self._send([_frame(Frame.DIAGNOSTICS, now, msgpack.packb([level, name, message, hardware_id, dict(values)]))], 1)

    # --- the writer's side ---------------------------------------------------------------------------------------
    def _read_status(self) -> None:
        for line in self._process.stdout:
            try:
                status = json.loads(line)
            except ValueError:
                continue
            self.written = status.get("written", self.written)
            self._writer_dropped = status.get("dropped", self._writer_dropped)
            self.error = status.get("error") or self.error

    def close(self, timeout: float = 30.0) -> None:
        """End the input; the writer writes what it has and finishes the file. Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            self._process.stdin.close()
        except OSError:
            pass
        try:
            self._process.wait(timeout)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
            self.error = self.error or f"the writer did not finish within {timeout} s and was killed"
        self._status_thread.join(timeout)
        if self._process.returncode not in (0, None) and not self.error:
            self.error = f"the writer process exited with {self._process.returncode}"

    def status(self) -> dict:
        return {"record_log": str(self.path), "records written": str(self.written),
                "records dropped": str(self.dropped), "recorder error": self.error or "none"}


class _TickFrames:
    """The frames of one tick, allocated once: numpy views write the numbers straight into each frame's bytes."""

    def __init__(self, joints: int, observation_size: int):
        self.sample, self.sample_values = self._allocate(Frame.SAMPLE, 2 * joints + 11, "<f8")
        self.command, self.command_values = self._allocate(Frame.COMMAND, 3 * joints, "<f8")
        self.policy, self.policy_values = self._allocate(Frame.POLICY, observation_size + joints, "<f4")

    @staticmethod
    def _allocate(kind: int, count: int, dtype: str):
        size = count * np.dtype(dtype).itemsize
        frame = bytearray(FRAME_HEAD.size + size)
        FRAME_HEAD.pack_into(frame, 0, BODY_HEAD.size + size, kind, 0.0)
        return frame, np.frombuffer(frame, dtype=dtype, count=count, offset=FRAME_HEAD.size)

    @staticmethod
    def stamp(frame: bytearray, now: float) -> bytearray:
        struct.pack_into("<d", frame, FRAME_HEAD.size - 8, now)
        return frame


def _frame(kind: int, now: float, payload: bytes) -> bytes:
    return FRAME_HEAD.pack(BODY_HEAD.size + len(payload), kind, now) + payload


def _grow_pipe(fd: int, size: int) -> None:
    """Ask Linux for a pipe of ``size`` bytes (the default holds 64 KiB); keep the default where that is refused."""
    set_size = getattr(fcntl, "F_SETPIPE_SZ", 1031)
    try:
        fcntl.fcntl(fd, set_size, size)
    except OSError:
        pass
