"""Serial link figures, in one run on this machine:

  decoder throughput: status frames/s through ``StatusDecoder`` fed 4 KiB chunks of a recorded-like stream;
  command latency: from a status frame's arrival (the reader thread's timestamp) to the command frame written to
  the port, p50 and p99, and the part of it after the control tick starts (the processing, without the wait for
  the tick), with the real SerialBackend on a pseudo-terminal against the firmware emulator, the control loop at
  50 Hz and a standing policy.

Usage: python benchmarks/serial_link.py [--seconds S]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pupper_ros.serial_protocol import StatusDecoder, encode_status_frame  # noqa: E402


def decoder_throughput(frames: int = 200_000) -> float:
    fields = {"ts": 1, "yaw": 0.1, "pitch": 0.0, "roll": 0.0, "yaw_rate": 0.0, "pitch_rate": 0.0, "roll_rate": 0.0,
              "pos": [0.1] * 12, "vel": [0.0] * 12, "mode": 3}
    stream = encode_status_frame(fields) * frames
    decoder = StatusDecoder()
    start = time.perf_counter()
    count = 0
    for i in range(0, len(stream), 4096):
        count += len(decoder.feed(stream[i:i + 4096]))
    elapsed = time.perf_counter() - start
    assert count == frames and decoder.dropped == 0
    return count / elapsed


def command_latency(seconds: float):
    from pupper_ros.assembly import assemble, parameter_values
    from pupper_ros.policy import load_policy
    from pupper_ros.robot_profile import load_robot_profile
    from tests.policies import standing_network, write_policy

    profile = load_robot_profile()
    tmp = Path(tempfile.mkdtemp())
    policy = load_policy(write_policy(tmp / "stand.onnx", profile, standing_network()), profile)
    # The emulator runs in its own process, as the Teensy is its own computer (and so as not to share our GIL).
    link = tmp / "tty"
    emulator = subprocess.Popen([sys.executable, "-m", "pupper_ros.sim.firmware_emulator", "--link", str(link)],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    emulator.stdout.readline()  # its banner: the port is ready
    runtime = assemble(profile, policy, parameter_values(backend="serial", serial_port=str(link)))
    backend, controller, loop = runtime.backend, runtime.controller, runtime.loop
    arrival_to_write, tick_to_write = [], []
    original_write = backend.write
    tick_start = [0.0]

    def timed_write(command, now):
        original_write(command, now)
        written = time.monotonic()
        arrival_to_write.append(written - controller.sample.stamp)
        tick_to_write.append(written - tick_start[0])

    backend.write = timed_write
    original_tick = controller.tick

    def timed_tick(now):
        tick_start[0] = time.monotonic()
        return original_tick(now)

    controller.tick = timed_tick
    time.sleep(0.3)
    controller.activate(time.monotonic())
    loop.start()
    time.sleep(seconds)
    loop.stop()
    backend.close()
    emulator.communicate("q\n", timeout=10)
    return np.array(arrival_to_write[50:]) * 1000, np.array(tick_to_write[50:]) * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    print(f"status decoder: {decoder_throughput():,.0f} frames/s")
    total, processing = command_latency(args.seconds)
    print(f"status arrival -> command written: p50 {np.percentile(total, 50):.3f} ms  p99 {np.percentile(total, 99):.3f} ms  "
          f"(includes the wait for the next 50 Hz tick; status at 100 Hz)")
    print(f"tick start -> command written:     p50 {np.percentile(processing, 50):.3f} ms  p99 {np.percentile(processing, 99):.3f} ms  "
          f"over {len(total)} ticks")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
