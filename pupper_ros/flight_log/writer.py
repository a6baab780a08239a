"""The flight recorder's writer process: records from the daemon on stdin, an MCAP file out (ROS 2 encoding).

Started by ``FlightRecorder`` with the open log file as file descriptor ``--fd``. It runs in its own process, at a
lower priority than the daemon, so that encoding and compressing never hold the daemon's GIL (a writer thread there
added milliseconds to the control loop's period). It ignores SIGINT and SIGTERM and finishes the file (summary and
index) when stdin closes, so whatever stops the daemon, a SIGKILL included, the file is finished once its records
are in. Status goes to stdout, one JSON
object a line: ``{"ready": true}`` after the header, then ``written``, ``dropped`` and ``error`` counts.

Frames on stdin: a 4-byte little-endian length, then a kind byte, the tick time (float64) and the payload; the first
frame (kind CONFIG) is JSON: the header, joint names, label layouts and message definitions.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import struct
import sys

import msgpack

from pupper_ros.flight_log.schema import BODY_HEAD, Frame

NICENESS = 10
STATUS_SECONDS = 1.0  # log time between status lines (and finished chunks)


def _nanoseconds(seconds: float, offset_ns: int) -> int:
    """A loop-clock time as the log's time: integer ns, with the header's clock offset (ROS time on a robot)."""
    return max(0, int(round(seconds * 1e9)) + offset_ns)


def _stamp(ns: int) -> dict:
    return {"sec": ns // 1_000_000_000, "nanosec": ns % 1_000_000_000}


def _labelled(values, labels) -> dict:
    dims = [{"label": label, "size": size, "stride": size} for label, size in labels]
    return {"layout": {"dim": dims, "data_offset": 0}, "data": list(values)}


class LogWriter:
    def __init__(self, out, config: dict):
        from mcap_ros2.writer import Writer

        self.topics = config["topics"]
        self.joints = config["joints"]
        self.n = len(self.joints)
        self.observation_size = config["observation_size"]
        self.observation_labels = [tuple(x) for x in config["observation_labels"]]
        self.action_labels = [(name, 1) for name in self.joints]
        self._types = config["types"]  # topic -> message type
        self._writer = Writer(out, chunk_size=config["chunk_size"])
        self._schemas = {t: self._writer.register_msgdef(t, text) for t, text in config["definitions"].items()}
        self.written = 0
        self.offset_ns = int(config["header"].get("clock", {}).get("offset_ns", 0))
        self.write(self.topics["header"], {"data": json.dumps(config["header"])}, config.get("header_seconds", 0.0))
        self.flush()  # the header is on disk before the first tick

    def _header(self, seconds: float) -> dict:
        return {"stamp": _stamp(_nanoseconds(seconds, self.offset_ns)), "frame_id": ""}

    def write(self, topic: str, message: dict, seconds: float) -> None:
        ns = _nanoseconds(seconds, self.offset_ns)
        self._writer.write_message(topic=topic, schema=self._schemas[self._types[topic]], message=message,
                                   log_time=ns, publish_time=ns)
        self.written += 1

    def flush(self) -> None:
        self._writer._writer.flush()  # mcap_ros2's Writer does not expose the McapWriter's flush (finish the chunk)

    def finish(self) -> None:
        self._writer.finish()

    def frame(self, kind: int, now: float, payload: bytes) -> None:
        t, n = self.topics, self.n
        if kind == Frame.SAMPLE:
            v = struct.unpack(f"<{2 * n + 11}d", payload)
            position, velocity = v[:n], v[n:2 * n]
            x, y, z, w = v[2 * n:2 * n + 4]
            angular, has_acceleration, acceleration = v[2 * n + 4:2 * n + 7], v[2 * n + 7], v[2 * n + 8:]
            self.write(t["joint_states"], {"header": self._header(now), "name": self.joints, "position": list(position),
                                           "velocity": list(velocity), "effort": []}, now)
            imu = {"header": self._header(now), "orientation": {"x": x, "y": y, "z": z, "w": w},
                   "orientation_covariance": [0.0] * 9,
                   "angular_velocity": dict(zip("xyz", angular)), "angular_velocity_covariance": [0.0] * 9,
                   "linear_acceleration": dict(zip("xyz", acceleration)),
                   # REP 145: a first covariance element of -1 says the field was not measured
                   "linear_acceleration_covariance": [0.0] * 9 if has_acceleration else [-1.0] + [0.0] * 8}
            self.write(t["imu"], imu, now)
        elif kind == Frame.COMMAND:
            v = struct.unpack(f"<{3 * n}d", payload)
            self.write(t["joint_commands"], {"header": self._header(now), "name": self.joints, "position": list(v[:n]),
                                             "velocity": list(v[n:2 * n]), "effort": list(v[2 * n:])}, now)
        elif kind == Frame.POLICY:
            v = struct.unpack(f"<{self.observation_size + n}f", payload)
            self.write(t["observation"], _labelled(v[:self.observation_size], self.observation_labels), now)
            self.write(t["action"], _labelled(v[self.observation_size:], self.action_labels), now)
        elif kind == Frame.CMD_VEL:
            v = struct.unpack("<6d", payload)
            self.write(t["cmd_vel"], {"linear": dict(zip("xyz", v[:3])), "angular": dict(zip("xyz", v[3:]))}, now)
        elif kind == Frame.STATE:
            self.write(t["state"], {"data": payload.decode()}, now)
        elif kind == Frame.DIAGNOSTICS:
            level, name, message, hardware_id, values = msgpack.unpackb(payload)
            status = {"level": level, "name": name, "message": message, "hardware_id": hardware_id,
                      "values": [{"key": k, "value": v} for k, v in values.items()]}
            self.write(t["diagnostics"], {"header": self._header(now), "status": [status]}, now)


def _read_exactly(stream, size: int) -> bytes | None:
    data = stream.read(size)
    return data if len(data) == size else None


def _frames(stream):
    """(kind, time, payload) until end of input (or a frame cut by the sender's death)."""
    while True:
        length = _read_exactly(stream, 4)
        if length is None:
            return
        body = _read_exactly(stream, struct.unpack("<I", length)[0])
        if body is None:
            return
        kind, now = BODY_HEAD.unpack_from(body)
        yield kind, now, body[BODY_HEAD.size:]


def _status(**values) -> None:
    sys.stdout.write(json.dumps(values) + "\n")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="the flight recorder's writer process (started by pupper-walk)")
    parser.add_argument("--fd", type=int, required=True, help="the open log file")
    args = parser.parse_args(argv)
    for sig in (signal.SIGINT, signal.SIGTERM):  # the daemon decides when to stop: it closes stdin
        signal.signal(sig, signal.SIG_IGN)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a file-size limit is a write error, not death
    try:
        os.nice(NICENESS)  # background work: the control loop must win every contest for a core
    except OSError:
        pass
    stdin = sys.stdin.buffer
    out = os.fdopen(args.fd, "wb")
    frames = _frames(stdin)
    first = next(frames, None)
    if first is None or first[0] != Frame.CONFIG:
        _status(error="no configuration frame")
        return 2
    try:
        log = LogWriter(out, json.loads(first[2]))
    except Exception as exc:  # noqa: BLE001 - reported to the daemon, which fails its configure with it
        _status(error=f"{type(exc).__name__}: {exc}")
        return 1
    _status(ready=True, written=log.written)
    dropped, error, reported = 0, "", None
    for kind, now, payload in frames:
        if error:
            dropped += 1  # keep reading, so the daemon's writes never block on a dead writer
            continue
        try:
            log.frame(kind, now, payload)
            if reported is None or now - reported >= STATUS_SECONDS or now < reported:
                if reported is not None:
                    log.flush()
                reported = now
                _status(written=log.written, dropped=dropped, error=error)
        except Exception as exc:  # noqa: BLE001 - a disk error stops recording, never the robot
            error = f"{type(exc).__name__}: {exc}"
            dropped += 1
            _status(written=log.written, dropped=dropped, error=error)
    if not error:
        try:
            log.finish()
        except Exception as exc:  # noqa: BLE001
            error = f"{type(exc).__name__}: {exc}"
    try:
        out.close()
    except OSError as exc:
        error = error or f"{type(exc).__name__}: {exc}"
    _status(written=log.written, dropped=dropped, error=error, finished=not error)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
