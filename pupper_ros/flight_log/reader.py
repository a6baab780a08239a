"""Reading a flight log (``pupper-walk --record-log``) back into arrays, one row per control tick.

The file is read front to back as a stream, so a log cut by SIGKILL or power loss reads up to its last complete chunk;
``FlightLog.end`` then says where it ends. A file that is not MCAP, or an MCAP file the flight recorder did not write,
raises ``FlightLogError`` naming the file and what is wrong.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pupper_ros.flight_log.schema import (ACTION, CMD_VEL, HEADER_FORMAT, HEADER_TOPIC, IMU, JOINT_COMMANDS,
                                          JOINT_STATES, MCAP_MAGIC, OBSERVATION, STATE)


class FlightLogError(ValueError):
    """The file cannot be replayed: not MCAP, not a pupper_ros flight log, or nothing readable in it."""


@dataclass
class FlightLog:
    path: Path
    header: dict
    # per control tick (the command that tick sent, and the sensor sample it used)
    tick_time: np.ndarray  # s, the control loop's clock
    target: np.ndarray  # ticks x joints
    kp: np.ndarray
    kd: np.ndarray
    joint_position: np.ndarray
    joint_velocity: np.ndarray
    orientation: np.ndarray  # xyzw
    angular_velocity: np.ndarray  # body frame, rad/s
    # per policy step
    policy_time: np.ndarray
    observation: np.ndarray
    action: np.ndarray
    # events
    cmd_vel_time: np.ndarray
    cmd_vel: np.ndarray  # vx, vy, yaw rate
    states: list[tuple[float, str]] = field(default_factory=list)
    complete: bool = True  # False: the file ends without its summary section (cut mid-run)
    end: str = ""  # where a cut file ends, for the user

    @property
    def joints(self) -> list[str]:
        return list(self.header["profile"]["joints"])

    @property
    def parameters(self) -> dict:
        return self.header["parameters"]

    @property
    def ticks(self) -> int:
        return len(self.tick_time)

    def duration(self) -> float:
        return float(self.tick_time[-1] - self.tick_time[0]) if self.ticks else 0.0


def _check_magic(path: Path) -> None:
    try:
        with open(path, "rb") as f:
            magic = f.read(len(MCAP_MAGIC))
    except OSError as exc:
        raise FlightLogError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if magic != MCAP_MAGIC:
        raise FlightLogError(f"{path} is not an MCAP file (it does not start with the MCAP magic bytes); "
                             "a flight log is written by pupper-walk --record-log FILE.mcap")


def iter_messages(path: Path):
    """(topic, log time in integer ns, decoded message) for every readable message, then (None, None, why) where the file
    stops short of its footer, or (None, None, "") after a complete file."""
    from mcap.exceptions import EndOfFile, McapError
    from mcap.records import Channel, Footer, Message, Schema
    from mcap.stream_reader import CRCValidationError, StreamReader
    from mcap_ros2.decoder import DecoderFactory

    factory = DecoderFactory()
    schemas, channels, decoders = {}, {}, {}
    with open(path, "rb") as f:
        try:
            for record in StreamReader(f, validate_crcs=True).records:
                if isinstance(record, Schema):
                    schemas[record.id] = record
                elif isinstance(record, Channel):
                    channels[record.id] = record
                elif isinstance(record, Message):
                    channel = channels[record.channel_id]
                    decoder = decoders.get(channel.id)
                    if decoder is None:
                        decoder = decoders[channel.id] = factory.decoder_for(channel.message_encoding,
                                                                              schemas.get(channel.schema_id))
                    if decoder is not None:
                        yield channel.topic, record.log_time, decoder(record.data)
                elif isinstance(record, Footer):
                    yield None, None, ""
                    return
        except (EndOfFile, struct.error):
            yield None, None, "it ends inside a record, without the MCAP summary and footer"
            return
        except CRCValidationError as exc:
            yield None, None, f"a chunk fails its CRC check ({exc})"
            return
        except (McapError, ValueError, KeyError, RuntimeError) as exc:  # lz4/zstd errors on a damaged chunk
            yield None, None, f"it cannot be read past a damaged record ({type(exc).__name__}: {exc})"
            return
    yield None, None, "it ends without an MCAP footer"


def read_flight_log(path: str | Path) -> FlightLog:
    """The whole readable part of a flight log; ``complete`` is False (and ``end`` says where) for a cut file."""
    path = Path(path)
    _check_magic(path)
    header = None
    ticks, policy_steps, cmd_vel, states = [], [], [], []
    sample = imu = observation = None  # the latest of each, paired with what follows at the same tick time
    ending = ""
    offset_ns = 0  # the header's clock offset: a robot's log is in ROS time, its ticks on the loop's clock
    for topic, ns, message in iter_messages(path):
        if topic is None:
            ending = message
            break
        t = (ns - offset_ns) * 1e-9
        if topic == HEADER_TOPIC and header is None:
            header = json.loads(message.data)
            offset_ns = int(header.get("clock", {}).get("offset_ns", 0))
        elif topic == JOINT_STATES:
            sample = (t, message.position, message.velocity)
        elif topic == IMU:
            o, w = message.orientation, message.angular_velocity
            imu = (t, (o.x, o.y, o.z, o.w), (w.x, w.y, w.z))
        elif topic == JOINT_COMMANDS:
            # A tick is complete when the sample it used is in the file too (the recorder writes sample, then command).
            if sample is not None and imu is not None and sample[0] == imu[0] == t:
                ticks.append((t, message.position, message.velocity, message.effort, sample[1], sample[2], imu[1], imu[2]))
            sample = imu = None
        elif topic == OBSERVATION:
            observation = (t, message.data)
        elif topic == ACTION:
            if observation is not None and observation[0] == t:
                policy_steps.append((t, observation[1], message.data))
            observation = None
        elif topic == CMD_VEL:
            cmd_vel.append((t, (message.linear.x, message.linear.y, message.angular.z)))
        elif topic == STATE:
            states.append((t, message.data))
    if header is None or header.get("format") != HEADER_FORMAT:
        found = "no header" if header is None else f"header format {header.get('format')!r}"
        if ending and header is None:
            raise FlightLogError(f"{path} is cut before its first complete chunk, so nothing in it is readable: {ending}")
        raise FlightLogError(f"{path} is an MCAP file but not a pupper_ros flight log ({found} on {HEADER_TOPIC})")
    if not ticks:
        raise FlightLogError(f"{path} holds no complete control tick" + (f" (the file is cut: {ending})" if ending else
                             " (was the daemon ever activated?)"))
    n = len(header["profile"]["joints"])

    def column(rows, index, width, dtype=np.float64):
        return np.array([row[index] for row in rows], dtype=dtype).reshape(len(rows), width)

    log = FlightLog(
        path=path,
        header=header,
        tick_time=np.array([row[0] for row in ticks]),
        target=column(ticks, 1, n), kp=column(ticks, 2, n), kd=column(ticks, 3, n),
        joint_position=column(ticks, 4, n), joint_velocity=column(ticks, 5, n),
        orientation=column(ticks, 6, 4), angular_velocity=column(ticks, 7, 3),
        policy_time=np.array([row[0] for row in policy_steps]),
        observation=np.array([row[1] for row in policy_steps], dtype=np.float32),
        action=column(policy_steps, 2, n, np.float32),
        cmd_vel_time=np.array([row[0] for row in cmd_vel]),
        cmd_vel=column(cmd_vel, 1, 3),
        states=states,
    )
    if ending:
        log.complete = False
        last_state = states[-1][1] if states else "unknown"
        log.end = (f"{path} is cut ({path.stat().st_size:,} bytes; SIGKILL or power loss?): {ending}. Readable: "
                   f"{log.ticks} ticks, up to {log.duration():.3f} s after the first tick (last state {last_state}); "
                   "whatever came after is lost")
    return log
