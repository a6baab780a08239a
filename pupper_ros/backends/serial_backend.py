"""The real robot over USB serial: the Pupper Teensy motor controller (pyserial + msgpack).

A reader thread drains the port and decodes status frames (the control loop never blocks on the port); ``write``
sends one command frame per tick. Gains and current limits are converted from the runtime's Nm units to the
firmware's amps with the profile's torque-per-amp; joints are mapped between the firmware's 3 x 4 layout and the
profile's order by name. The motors stay idle from ``open`` until the first command; ``close`` sends damping.
When the device disappears the reader reports it (writes raise ``BackendError``, so the supervisor goes to DAMPING),
then retries with backoff; frames flow again after a replug, and ``~/clear_fault`` stands the robot up.
"""

from __future__ import annotations

import math
import threading
import time

import numpy as np
import serial

from pupper_ros.backends.backend import Backend, BackendError
from pupper_ros.robot_profile import RobotProfile
from pupper_ros.backends.io import JointCommand, SensorSample
from pupper_ros.serial_protocol import FirmwareLayout, StatusDecoder, encode_host_frame

RECONNECT_BACKOFF = (0.1, 2.0)  # s, first and largest wait between reopen attempts
READ_CHUNK = 4096


def quaternion_from_euler(roll: float, pitch: float, yaw: float) -> np.ndarray:
    cr, sr = math.cos(roll / 2), math.sin(roll / 2)
    cp, sp = math.cos(pitch / 2), math.sin(pitch / 2)
    cy, sy = math.cos(yaw / 2), math.sin(yaw / 2)
    return np.array([sr * cp * cy - cr * sp * sy, cr * sp * cy + sr * cp * sy, cr * cp * sy - sr * sp * cy, cr * cp * cy + sr * sp * sy])


def describe_open_error(port: str, exc: Exception) -> str:
    text = str(exc)
    if "No such file" in text or "could not open port" in text and "[Errno 2]" in text:
        return f"cannot open {port}: no such device (is the robot powered and plugged in? look for /dev/ttyACM*)"
    if "busy" in text.lower() or "[Errno 16]" in text or "exclusive" in text.lower() or "lock" in text.lower():
        return f"cannot open {port}: the port is busy (another pupper-walk or a serial monitor has it open)"
    if "Permission denied" in text or "[Errno 13]" in text:
        return f"cannot open {port}: permission denied (add the user to the 'dialout' group)"
    return f"cannot open {port}: {text}"


class SerialBackend(Backend):
    def __init__(self, profile: RobotProfile, control_period: float, *, port: str, baud: int = 500000,
                 damping_kd: float = 0.1):
        self.profile = profile
        self.damping_kd = min(damping_kd, profile.kd_max)
        self.port_name = port
        self.baud = baud
        self.layout = FirmwareLayout.from_profile(profile)
        self._from_firmware = np.argsort(self.layout.to_firmware)  # profile index -> firmware slot
        self._directions = np.asarray(self.layout.directions)
        self._port: serial.Serial | None = None
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._stop = threading.Event()
        self._reader: threading.Thread | None = None
        self.decoder = StatusDecoder()
        n = profile.num_joints
        self._sample = SensorSample(-math.inf, np.zeros(n), np.zeros(n), np.array([0, 0, 0, 1.0]), np.zeros(3))
        self._out = SensorSample(-math.inf, np.zeros(n), np.zeros(n), np.array([0, 0, 0, 1.0]), np.zeros(3))
        self._have_sample = False
        self._connected = False
        self.disconnect_reason = ""
        self.reconnects = 0
        self.write_errors = 0
        self._frame_times: list[float] = []
        self._position_fw = np.zeros(n)

    @classmethod
    def from_parameters(cls, profile, control_period, values, context=None) -> "SerialBackend":
        return cls(profile, control_period, port=values["serial_port"], baud=values["serial_baud"],
                   damping_kd=values["damping_kd"])

    # --- link --------------------------------------------------------------------------------------------------
    def open(self) -> None:
        self._port = self._open_port()
        self._connected = True
        self._send({"idle": True})  # motors idle until the runtime activates and commands them
        self._stop.clear()
        self._reader = threading.Thread(target=self._read_loop, name="pupper-serial-reader", daemon=True)
        self._reader.start()

    def _open_port(self) -> serial.Serial:
        try:
            return serial.Serial(self.port_name, self.baud, timeout=0.01, write_timeout=0.05, exclusive=True)
        except (serial.SerialException, OSError, ValueError) as exc:
            raise BackendError(describe_open_error(self.port_name, exc)) from exc

    def _read_loop(self) -> None:
        backoff = RECONNECT_BACKOFF[0]
        while not self._stop.is_set():
            port = self._port
            if port is None or not self._connected:
                if self._stop.wait(backoff):
                    return
                try:
                    self._port = self._open_port()
                    self.decoder = StatusDecoder()
                    self._connected = True
                    self.reconnects += 1
                    backoff = RECONNECT_BACKOFF[0]
                    self._send({"idle": True})
                except BackendError as exc:
                    self.disconnect_reason = str(exc)
                    backoff = min(backoff * 2, RECONNECT_BACKOFF[1])
                continue
            try:
                data = port.read(max(1, min(port.in_waiting, READ_CHUNK)))
            except (serial.SerialException, OSError, TypeError) as exc:
                self._lost(f"device disconnected ({exc})")
                continue
            if data:
                self._ingest(data, time.monotonic())

    def _ingest(self, data: bytes, arrival: float) -> None:
        frames = self.decoder.feed(data)
        if not frames:
            return
        frame = frames[-1]
        layout = self.layout
        position = np.asarray(frame.pos)[self._from_firmware] * self._directions[self._from_firmware]
        velocity = np.asarray(frame.vel)[self._from_firmware] * self._directions[self._from_firmware]
        orientation = quaternion_from_euler(frame.roll * layout.imu_angle_scale, frame.pitch * layout.imu_angle_scale,
                                            frame.yaw * layout.imu_angle_scale)
        rates = np.array([frame.roll_rate, frame.pitch_rate, frame.yaw_rate]) * layout.imu_rate_scale
        with self._lock:
            s = self._sample
            s.stamp = arrival
            s.joint_position[:] = position
            s.joint_velocity[:] = velocity
            s.orientation[:] = orientation
            s.angular_velocity[:] = rates
            self._have_sample = True
            self._frame_times.extend([arrival] * len(frames))
            if len(self._frame_times) > 500:
                del self._frame_times[:-500]

    def _lost(self, reason: str) -> None:
        self._connected = False
        self.disconnect_reason = reason
        port, self._port = self._port, None
        if port is not None:
            try:
                port.close()
            except (serial.SerialException, OSError):
                pass

    # --- backend interface -------------------------------------------------------------------------------------
    def latest_sample(self, now: float) -> SensorSample | None:
        with self._lock:  # copied into a sample allocated at open: the reader may update its own meanwhile
            if not self._have_sample:
                return None
            s, out = self._sample, self._out
            out.stamp = s.stamp
            out.joint_position[:] = s.joint_position
            out.joint_velocity[:] = s.joint_velocity
            out.orientation[:] = s.orientation
            out.angular_velocity[:] = s.angular_velocity
            return out

    def command_message(self, command: JointCommand) -> dict:
        layout = self.layout
        order = list(layout.to_firmware)
        position = command.position[order] * np.asarray(layout.directions)
        max_current = min(layout.max_current, self.profile.torque_limit / layout.torque_per_amp)
        return {
            "kp": float(command.kp[0]) / layout.torque_per_amp,  # A/rad
            "kd": float(command.kd[0]) / layout.torque_per_amp,  # A/(rad/s)
            "max_current": max_current,
            "pos": [float(v) for v in position],
        }

    def write(self, command: JointCommand, now: float) -> None:
        if not self._connected:
            raise BackendError(self.disconnect_reason or "serial port not connected")
        self._send(self.command_message(command))

    def _send(self, message: dict) -> None:
        port = self._port
        if port is None:
            raise BackendError(self.disconnect_reason or "serial port not connected")
        try:
            with self._write_lock:
                port.write(encode_host_frame(message))
        except (serial.SerialException, OSError) as exc:
            self.write_errors += 1
            self._lost(f"write failed ({exc})")
            raise BackendError(self.disconnect_reason) from exc

    def close(self) -> None:
        if self._port is not None and self._connected:
            sample = self.latest_sample(time.monotonic())
            damping = JointCommand(self.profile.num_joints)
            damping.position[:] = sample.joint_position if sample is not None else self.profile.default_pose
            damping.kd[:] = self.damping_kd
            try:
                self._send(self.command_message(damping))
                self.stop_report = f"damping sent (kp 0, kd {self.damping_kd:g}); the serial link has no acknowledgement"
            except BackendError as exc:
                self.stop_report = f"damping could not be sent: {exc}"
        self._stop.set()
        if self._reader is not None:
            self._reader.join(timeout=1.0)
        self._lost("closed")

    def problem(self) -> str:
        return "" if self._connected else (self.disconnect_reason or "serial port not connected")

    def message_times(self) -> dict[str, list[float]]:
        with self._lock:
            return {"status": list(self._frame_times)}

    def diagnostics(self) -> dict[str, str]:
        now = time.monotonic()
        with self._lock:
            recent = [t for t in self._frame_times if now - t < 1.0]
            age = now - self._sample.stamp if self._have_sample else math.inf
        return {
            "serial port": self.port_name,
            "serial connected": str(self._connected),
            "serial status rate (Hz)": str(len(recent)),
            "serial frames": str(self.decoder.frames),
            "serial frames dropped": str(self.decoder.dropped),
            "serial resyncs": str(self.decoder.resyncs),
            "serial last frame age (ms)": f"{age * 1000:.0f}" if math.isfinite(age) else "never",
            "serial reconnects": str(self.reconnects),
            "serial last problem": self.disconnect_reason or self.decoder.last_error,
        }
