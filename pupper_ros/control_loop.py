"""The fixed-rate loop around a ``Controller``: a dedicated thread on a monotonic clock.

``next += period; sleep until next`` (never sleep(dt) after the work: that drifts). A tick that ends past its
deadline counts as an overrun; the loop skips ahead by whole periods and never bursts to catch up (ros2_control's
rule). In lock-step mode the clock is simulated time and the loop does not sleep.
"""

from __future__ import annotations

import threading
import time
from collections import deque

import numpy as np

from pupper_ros.controller import Controller


class LoopStats:
    """Period and tick-duration samples of the last few seconds, plus running counters."""

    def __init__(self, window: int):
        self.periods = deque(maxlen=window)
        self.durations = deque(maxlen=window)
        self.inference = deque(maxlen=window)
        self.ticks = 0
        self.overruns = 0
        self.missed_ticks = 0

    @staticmethod
    def percentile(samples, q: float) -> float:
        return float(np.percentile(np.fromiter(samples, float), q)) if samples else float("nan")

    def summary(self) -> dict[str, float]:
        return {
            "period_mean_ms": 1000 * (float(np.mean(self.periods)) if self.periods else float("nan")),
            "period_p99_ms": 1000 * self.percentile(self.periods, 99),
            "tick_p99_ms": 1000 * self.percentile(self.durations, 99),
            "inference_p99_ms": 1000 * self.percentile(self.inference, 99),
            "ticks": self.ticks,
            "overruns": self.overruns,
        }


class ControlLoop:
    def __init__(self, controller: Controller, period: float, lockstep: bool = False, on_tick=None):
        self.controller = controller
        self.period = period
        self.lockstep = lockstep
        self.on_tick = on_tick  # called after each tick with (now, controller); must be quick
        self.stats = LoopStats(window=max(10, int(round(5.0 / period))))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.sim_time = 0.0

    def now(self) -> float:
        return self.sim_time if self.lockstep else time.monotonic()

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="pupper-control", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 1.0) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        self._thread = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def run_ticks(self, count: int) -> None:
        """Lock-step only: run ``count`` ticks in the calling thread."""
        for _ in range(count):
            self._tick_lockstep()

    def _tick_lockstep(self) -> None:
        started = time.perf_counter()
        self.controller.tick(self.sim_time)
        self.stats.durations.append(time.perf_counter() - started)
        self.stats.periods.append(self.period)
        if self.controller.ran_policy:
            self.stats.inference.append(self.controller.last_inference_s)
        self.stats.ticks += 1
        if self.on_tick:
            self.on_tick(self.sim_time, self.controller)
        self.sim_time += self.period

    def _run(self) -> None:
        if self.lockstep:
            while not self._stop.is_set():
                self._tick_lockstep()
            return
        period = self.period
        next_deadline = time.monotonic()
        last_start = None
        supervisor = self.controller.supervisor
        while not self._stop.is_set():
            start = time.monotonic()
            if last_start is not None:
                self.stats.periods.append(start - last_start)
            last_start = start
            self.controller.tick(start)
            self.stats.durations.append(time.monotonic() - start)
            if self.controller.ran_policy:
                self.stats.inference.append(self.controller.last_inference_s)
            self.stats.ticks += 1
            if self.on_tick:
                self.on_tick(start, self.controller)
            next_deadline += period
            now = time.monotonic()
            missed = 0
            if now > next_deadline:
                missed = int((now - next_deadline) // period) + 1
                next_deadline += missed * period  # skip whole periods, never burst
                self.stats.overruns += 1
                self.stats.missed_ticks += missed
            with self.controller.lock:
                supervisor.note_overrun(missed)
            remaining = next_deadline - time.monotonic()
            if remaining > SPIN_MARGIN:
                self._stop.wait(remaining - SPIN_MARGIN)
            _yield_until(next_deadline)


SPIN_MARGIN = 0.0003  # s before a deadline where the loop stops sleeping and yields instead (sleep wake-up jitter)


def _yield_until(deadline: float) -> None:
    while time.monotonic() < deadline:
        time.sleep(0)
