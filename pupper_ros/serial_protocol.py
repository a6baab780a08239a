"""The Pupper Teensy serial protocol (DJI-motor Pupper, Pupper-V2-Interface firmware).

Host to Teensy: ``0x00``, one length byte, a msgpack map (single-precision floats), e.g. ``{"pos": [...12]}``.
Teensy to host: ``b"EE"``, a 2-byte big-endian length, a msgpack map with ``ts``, ``yaw``, ``pitch``, ``roll``,
``yaw_rate``, ``pitch_rate``, ``roll_rate``, ``pos`` (12), ``vel`` (12) and optional extras.
12-value arrays are a 3 x 4 array (rows: abduction, hip, knee; columns: legs) flattened column by column, so
firmware index ``i`` is leg ``i // 3``, joint row ``i % 3``.

There is no checksum: ``StatusDecoder`` resynchronises on the start bytes, bounds every length and validates every
field, and drops (and counts) whatever fails. It never raises on bad input.
"""

from __future__ import annotations

import math
import struct
from collections import Counter
from dataclasses import dataclass

import msgpack

HOST_START = 0x00
STATUS_START = b"EE"
MAX_HOST_PAYLOAD = 255  # one length byte
MAX_STATUS_PAYLOAD = 1024  # a full status map is about 250 bytes; anything much larger is garbage
NUM_JOINTS = 12
REQUIRED_STATUS_KEYS = ("ts", "yaw", "pitch", "roll", "yaw_rate", "pitch_rate", "roll_rate", "pos", "vel")
OPTIONAL_ARRAY_KEYS = ("cur", "pref", "vref", "cref", "lcur")
# Plausibility bounds: values beyond them are not a robot's and the frame is dropped.
MAX_ABS_POSITION = 4 * math.pi  # rad
MAX_ABS_VELOCITY = 300.0  # rad/s
MAX_ABS_ANGLE = 400.0  # covers degrees and radians
MAX_ABS_RATE = 2000.0  # covers deg/s and rad/s
MAX_ABS_CURRENT = 100.0  # A


class ProtocolError(ValueError):
    """A host frame that cannot be encoded (the caller's bug, not the wire's)."""


@dataclass
class StatusFrame:
    ts: float
    yaw: float
    pitch: float
    roll: float
    yaw_rate: float
    pitch_rate: float
    roll_rate: float
    pos: list[float]  # firmware order
    vel: list[float]
    mode: int | None = None
    cur: list[float] | None = None


def _single(value: float) -> float:
    """Round to single precision, as the firmware reads floats."""
    return struct.unpack("<f", struct.pack("<f", value))[0]


def encode_host_frame(message: dict) -> bytes:
    """``0x00``, length, msgpack map with floats packed single precision."""
    payload = msgpack.packb(message, use_single_float=True)
    if len(payload) > MAX_HOST_PAYLOAD:
        raise ProtocolError(f"host frame payload is {len(payload)} bytes; the protocol allows {MAX_HOST_PAYLOAD}")
    return bytes((HOST_START, len(payload))) + payload


def encode_status_frame(fields: dict) -> bytes:
    """The Teensy's side (used by the firmware emulator): ``EE``, big-endian length, msgpack map."""
    payload = msgpack.packb(fields, use_single_float=True)
    return STATUS_START + struct.pack(">H", len(payload)) + payload


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def validate_status(fields) -> tuple[StatusFrame | None, str]:
    """A ``StatusFrame`` from a decoded map, or (None, why it was rejected)."""
    if not isinstance(fields, dict):
        return None, "payload is not a map"
    missing = [k for k in REQUIRED_STATUS_KEYS if k not in fields]
    if missing:
        return None, f"missing {', '.join(missing)}"
    for key, bound in (("yaw", MAX_ABS_ANGLE), ("pitch", MAX_ABS_ANGLE), ("roll", MAX_ABS_ANGLE), ("yaw_rate", MAX_ABS_RATE),
                       ("pitch_rate", MAX_ABS_RATE), ("roll_rate", MAX_ABS_RATE)):
        value = fields[key]
        if not _number(value) or abs(value) > bound:
            return None, f"{key} is not a plausible number"
    if not _number(fields["ts"]):
        return None, "ts is not a finite number"
    for key, bound in (("pos", MAX_ABS_POSITION), ("vel", MAX_ABS_VELOCITY)):
        values = fields[key]
        if not isinstance(values, list) or len(values) != NUM_JOINTS:
            return None, f"{key} must be {NUM_JOINTS} numbers"
        if not all(_number(v) and abs(v) <= bound for v in values):
            return None, f"{key} has a non-finite or implausible value"
    current = fields.get("cur")
    if current is not None and (not isinstance(current, list) or len(current) != NUM_JOINTS
                                or not all(_number(v) and abs(v) <= MAX_ABS_CURRENT for v in current)):
        return None, "cur must be 12 plausible currents"
    mode = fields.get("mode")
    if mode is not None and (not isinstance(mode, int) or isinstance(mode, bool) or not 0 <= mode <= 5):
        return None, "mode must be an integer 0-5"
    frame = StatusFrame(
        ts=float(fields["ts"]), yaw=float(fields["yaw"]), pitch=float(fields["pitch"]), roll=float(fields["roll"]),
        yaw_rate=float(fields["yaw_rate"]), pitch_rate=float(fields["pitch_rate"]), roll_rate=float(fields["roll_rate"]),
        pos=[float(v) for v in fields["pos"]], vel=[float(v) for v in fields["vel"]], mode=mode,
        cur=[float(v) for v in current] if current is not None else None,
    )
    return frame, ""


class StatusDecoder:
    """Incremental decoder of the Teensy's status stream; bytes may arrive in any pieces."""

    def __init__(self, max_payload: int = MAX_STATUS_PAYLOAD):
        self.max_payload = max_payload
        self._buffer = bytearray()
        self.frames = 0  # valid frames decoded
        self.dropped = 0  # frames that failed to parse or validate
        self.resyncs = 0  # times bytes were skipped to find a start marker
        self.discarded_bytes = 0
        self.last_error = ""
        self.drop_reasons: Counter = Counter()

    def feed(self, data: bytes) -> list[StatusFrame]:
        buffer = self._buffer
        buffer += data
        frames: list[StatusFrame] = []
        while True:
            start = buffer.find(STATUS_START)
            if start < 0:
                # Keep a trailing 'E' that may begin the next marker; the rest is garbage.
                keep = 1 if buffer[-1:] == STATUS_START[:1] else 0
                self._discard(len(buffer) - keep)
                return frames
            if start > 0:
                self._discard(start)
            if len(buffer) < 4:
                return frames
            length = (buffer[2] << 8) | buffer[3]
            if length == 0 or length > self.max_payload:
                self._reject(f"length {length} out of bounds")
                continue
            if len(buffer) < 4 + length:
                return frames
            payload = bytes(buffer[4:4 + length])
            try:
                fields = msgpack.unpackb(payload, raw=False, strict_map_key=False)
            except Exception as exc:  # msgpack raises several types on garbage; none may escape
                self._reject(f"invalid msgpack ({type(exc).__name__})")
                continue
            frame, why = validate_status(fields)
            if frame is None:
                self._reject(why)
                continue
            del buffer[:4 + length]
            self.frames += 1
            frames.append(frame)

    def _discard(self, count: int) -> None:
        if count > 0:
            del self._buffer[:count]
            self.resyncs += 1
            self.discarded_bytes += count

    def _reject(self, why: str) -> None:
        # The length of a bad frame cannot be trusted: skip one byte and look for the next marker.
        self.dropped += 1
        self.last_error = why
        self.drop_reasons[why] += 1
        del self._buffer[:1]
        self.discarded_bytes += 1


class HostDecoder:
    """The Teensy's side of the host stream (``0x00``, length byte, msgpack map): used by the firmware emulator."""

    def __init__(self):
        self._buffer = bytearray()
        self.frames = 0
        self.dropped = 0

    def feed(self, data: bytes) -> list[dict]:
        buffer = self._buffer
        buffer += data
        messages = []
        while True:
            start = buffer.find(bytes((HOST_START,)))
            if start < 0:
                buffer.clear()
                return messages
            if start > 0:
                del buffer[:start]
            if len(buffer) < 2:
                return messages
            length = buffer[1]
            if len(buffer) < 2 + length:
                return messages
            try:
                message = msgpack.unpackb(bytes(buffer[2:2 + length]), raw=False)
            except Exception:
                message = None
            if not isinstance(message, dict) or length == 0:
                self.dropped += 1
                del buffer[:1]
                continue
            del buffer[:2 + length]
            self.frames += 1
            messages.append(message)


@dataclass(frozen=True)
class FirmwareLayout:
    """How a robot's joints sit in the firmware's 12-value arrays, and the units of its numbers.

    Read from the ``serial`` section of a robot profile; ``to_firmware[i]`` is the profile index of firmware slot i.
    """

    to_firmware: tuple[int, ...]
    directions: tuple[float, ...]
    torque_per_amp: float  # Nm/A
    max_current: float  # A
    imu_angle_scale: float  # multiply status angles by this to get rad
    imu_rate_scale: float  # multiply status rates by this to get rad/s

    @classmethod
    def from_profile(cls, profile) -> "FirmwareLayout":
        section = profile.extra.get("serial")
        if not isinstance(section, dict):
            raise ValueError(f"robot {profile.name} has no 'serial' section in its profile; the serial backend needs one")
        names = section.get("firmware_joints")
        if not isinstance(names, list) or sorted(names) != sorted(profile.joints):
            raise ValueError(f"robot {profile.name}: serial.firmware_joints must name each of the profile's {profile.num_joints} joints once")
        directions = section.get("firmware_directions", [1.0] * NUM_JOINTS)
        if len(directions) != NUM_JOINTS or any(d not in (1, -1) for d in directions):
            raise ValueError(f"robot {profile.name}: serial.firmware_directions must be 12 values of +1 or -1")
        scales = {"rad": 1.0, "deg": math.pi / 180.0}
        units = (section.get("imu_angle_unit", "rad"), section.get("imu_rate_unit", "rad"))
        if any(u not in scales for u in units):
            raise ValueError(f"robot {profile.name}: serial.imu_angle_unit and imu_rate_unit must be 'rad' or 'deg'")
        torque_per_amp, max_current = float(section.get("torque_per_amp", 0)), float(section.get("max_current", 0))
        if not (torque_per_amp > 0 and max_current > 0):
            raise ValueError(f"robot {profile.name}: serial.torque_per_amp and serial.max_current must be positive")
        return cls(tuple(profile.joints.index(n) for n in names), tuple(float(d) for d in directions),
                   torque_per_amp, max_current, scales[units[0]], scales[units[1]])
