"""A stand-in for the Pupper's Teensy: speaks the firmware's side of the serial protocol on a pseudo-terminal, backed
by the PyBullet model of the robot (PD at 1 kHz, status at 100 Hz), so the runtime's real serial code can walk a
simulated robot. It injects faults on demand.

By hand:  python -m pupper_ros.sim.firmware_emulator --link /tmp/pupper-tty
then      pupper-walk --backend serial --port /tmp/pupper-tty
and type fault names on the emulator's stdin (``help`` lists them).
"""

from __future__ import annotations

import argparse
import collections
import math
import os
import struct
import sys
import threading
import time
import tty
from pathlib import Path

import msgpack
import numpy as np

from pupper_ros.robot_profile import RobotProfile, load_robot_profile
from pupper_ros.serial_protocol import FirmwareLayout, HostDecoder, encode_status_frame
from pupper_ros.sim import control_substeps, make_simulation
from pupper_ros.sim.sensor_faults import SensorFaults

FIRMWARE_TICK = 0.001  # the firmware's 1 kHz PD loop
STATUS_PERIOD = 0.01  # 100 Hz
FAULTS = ("garbage", "truncated", "oversized", "bad_msgpack", "missing_keys", "short_arrays", "nan", "stall", "unplug", "replug")


class FirmwareEmulator:
    def __init__(self, profile: RobotProfile, link: str | Path | None = None, realtime: bool = True,
                 sensor_faults: SensorFaults | None = None):
        self.profile = profile
        self.faults = sensor_faults or SensorFaults()
        self.layout = FirmwareLayout.from_profile(profile)
        self.link = Path(link) if link else None
        self.realtime = realtime
        # The real motors' rotor inertia keeps the firmware's 1 kHz PD stable; a model without one (the Pupper v2's has
        # no armature figure) needs the shorter step its profile gives, so each firmware tick is cut into substeps.
        self._substeps = control_substeps(profile, "pybullet", FIRMWARE_TICK)
        self.sim = make_simulation(profile, "pybullet", physics_dt=FIRMWARE_TICK / self._substeps)
        self.sim.reset(base_height=profile.standing_height)
        self.sim.set_targets(profile.default_pose, kp=0.0, kd=0.0)  # idle: motors off
        self.sim.step(int(0.5 / FIRMWARE_TICK) * self._substeps)
        self._order = list(self.layout.to_firmware)
        self._directions = np.asarray(self.layout.directions)
        self.decoder = HostDecoder()
        self.lock = threading.Lock()
        self.idle = True
        self.commands_received = 0
        self.max_abs_target_step = 0.0
        self.target_low = np.full(profile.num_joints, np.inf)  # the extremes of every target received while active
        self.target_high = np.full(profile.num_joints, -np.inf)
        # the extremes of the joint positions each stand-up can have begun from (the first command with kp > 0 after
        # none): what the last few status frames reported, since the host's measured pose is one of those
        self.start_low = np.full(profile.num_joints, np.inf)
        self.start_high = np.full(profile.num_joints, -np.inf)
        self._reported = collections.deque(maxlen=10)
        self.max_kp = self.max_kd = 0.0
        self._pending_faults: list[str] = []
        self._last_kp = 0.0
        self._stall_until = 0.0
        self._master: int | None = None
        self.device = ""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._open_pty()

    # --- the pseudo-terminal -----------------------------------------------------------------------------------
    def _open_pty(self) -> None:
        master, slave = os.openpty()
        tty.setraw(slave)
        os.set_blocking(master, False)
        self.device = os.ttyname(slave)
        self._slave = slave  # kept open so the slave name stays valid until a client opens it
        self._master = master
        if self.link is not None:
            tmp = self.link.with_name(self.link.name + ".new")
            tmp.unlink(missing_ok=True)
            tmp.symlink_to(self.device)
            os.replace(tmp, self.link)

    def unplug(self) -> None:
        with self.lock:
            for fd in (self._master, self._slave):
                if fd is not None:
                    os.close(fd)
            self._master = self._slave = None
            # The Teensy runs on the robot's power: it keeps applying the last command it received.

    def replug(self) -> None:
        with self.lock:
            if self._master is None:
                self.decoder = HostDecoder()
                self._open_pty()

    @property
    def port(self) -> str:
        return str(self.link) if self.link else self.device

    # --- running -----------------------------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="firmware-emulator", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        self.unplug()
        self.sim.close()
        if self.link is not None:
            self.link.unlink(missing_ok=True)

    def inject(self, fault: str, seconds: float = 1.0) -> None:
        if fault not in FAULTS:
            raise ValueError(f"unknown fault '{fault}'; choose from {', '.join(FAULTS)}")
        if fault == "unplug":
            self.unplug()
        elif fault == "replug":
            self.replug()
        elif fault == "stall":
            self._stall_until = time.monotonic() + seconds
        else:
            with self.lock:
                self._pending_faults.append(fault)

    def ground_truth(self):
        with self.lock:
            return self.sim.state()

    def _run(self) -> None:
        ticks_per_status = int(round(STATUS_PERIOD / FIRMWARE_TICK)) * self.faults.rate_divisor
        next_time = time.monotonic()
        tick = 0
        while not self._stop.is_set():
            with self.lock:
                self._read_host()
                self.sim.step(self._substeps)
                tick += 1
                if tick % ticks_per_status == 0 and time.monotonic() >= self._stall_until:
                    self._send_status(tick * FIRMWARE_TICK)
            if self.realtime:
                next_time += FIRMWARE_TICK
                delay = next_time - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                elif delay < -0.1:
                    next_time = time.monotonic()  # fell behind: do not burst

    def _read_host(self) -> None:
        if self._master is None:
            return
        try:
            data = os.read(self._master, 4096)
        except BlockingIOError:
            return
        except OSError:  # EIO: nobody has the port open right now
            return
        for message in self.decoder.feed(data):
            self._apply(message)

    def _apply(self, message: dict) -> None:
        tpa = self.layout.torque_per_amp
        if message.get("idle"):
            self.idle = True
            self.sim.set_targets(self.sim.targets, kp=0.0, kd=0.0)
            return
        if "pos" not in message:
            return
        self.commands_received += 1
        firmware = np.asarray(message["pos"], dtype=np.float64)
        targets = np.empty(self.profile.num_joints)
        targets[self._order] = firmware * self._directions
        kp = float(message.get("kp", 0.0)) * tpa
        kd = float(message.get("kd", 0.0)) * tpa
        if kp > 0:
            if (self.idle or self._last_kp == 0) and self._reported:
                np.minimum(self.start_low, np.min(self._reported, axis=0), out=self.start_low)
                np.maximum(self.start_high, np.max(self._reported, axis=0), out=self.start_high)
            if not self.idle and self._last_kp > 0:
                self.max_abs_target_step = max(self.max_abs_target_step, float(np.max(np.abs(targets - self.sim.targets))))
            np.minimum(self.target_low, targets, out=self.target_low)
            np.maximum(self.target_high, targets, out=self.target_high)
        self.max_kp, self.max_kd = max(self.max_kp, kp), max(self.max_kd, kd)
        self._last_kp = kp
        self.idle = False
        self.sim.set_targets(targets, kp=kp, kd=kd)

    def _status_fields(self, t: float) -> dict:
        state = self.sim.state()
        orientation, (wx, wy, wz) = self.faults.imu(state.base_orientation, state.base_angular_velocity)
        x, y, z, w = orientation
        roll = math.atan2(2 * (w * x + y * z), 1 - 2 * (x * x + y * y))
        pitch = math.asin(max(-1.0, min(1.0, 2 * (w * y - z * x))))
        yaw = math.atan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z))
        scale_a, scale_r = self.layout.imu_angle_scale, self.layout.imu_rate_scale
        self._reported.append(state.joint_position.copy())
        q, qd = self.faults.joints(self.profile.joints, state.joint_position, state.joint_velocity)
        pos = (q[self._order] * self._directions).tolist()
        vel = (qd[self._order] * self._directions).tolist()
        return {"ts": int(t * 1000), "yaw": yaw / scale_a, "pitch": pitch / scale_a, "roll": roll / scale_a,
                "yaw_rate": wz / scale_r, "pitch_rate": wy / scale_r, "roll_rate": wx / scale_r,
                "pos": pos, "vel": vel, "mode": 0 if self.idle else 3}

    def _send_status(self, t: float) -> None:
        if self._master is None:
            return
        fields = self._status_fields(t)
        frame = encode_status_frame(fields)
        if self._pending_faults:
            frame = _corrupt(self._pending_faults.pop(0), fields, frame)
        try:
            os.write(self._master, frame)
        except (BlockingIOError, OSError):
            pass  # nobody reading: the bytes are lost, as on a real USB link


def _corrupt(fault: str, fields: dict, good: bytes) -> bytes:
    if fault == "garbage":
        return b"\x13\x37garbage EE\xff" + good
    if fault == "truncated":
        return good[: len(good) // 2]
    if fault == "oversized":
        return b"EE" + struct.pack(">H", 60000) + good[4:]
    if fault == "bad_msgpack":
        return b"EE\x00\x06\xc1\xc1\xc1\xc1\xc1\xc1"
    if fault == "missing_keys":
        return encode_status_frame({k: v for k, v in fields.items() if k not in ("pos", "vel")})
    if fault == "short_arrays":
        return encode_status_frame(dict(fields, pos=fields["pos"][:9]))
    if fault == "nan":
        payload = msgpack.packb(dict(fields, vel=[math.nan] * 12))
        return b"EE" + struct.pack(">H", len(payload)) + payload
    raise ValueError(fault)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pupper-firmware-emulator", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--robot", default="pupper_v3")
    parser.add_argument("--link", default="/tmp/pupper-tty", help="symlink to the pseudo-terminal (the port to give pupper-walk)")
    args = parser.parse_args(argv)
    emulator = FirmwareEmulator(load_robot_profile(args.robot), link=args.link)
    emulator.start()
    print(f"emulating the {args.robot} Teensy on {emulator.port} -> {emulator.device}; faults: {', '.join(FAULTS)}; quit: q", flush=True)
    try:
        for line in sys.stdin:
            words = line.split()
            if not words:
                continue
            if words[0] in ("q", "quit"):
                break
            try:
                emulator.inject(words[0], float(words[1]) if len(words) > 1 else 1.0)
                print(f"injected {words[0]}", flush=True)
            except ValueError as exc:
                print(exc, flush=True)
    except KeyboardInterrupt:
        pass
    finally:
        emulator.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
