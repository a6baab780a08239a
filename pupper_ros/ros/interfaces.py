"""QoS of the daemon's interfaces that its clients (the demo, monitors, tests) must match."""

from __future__ import annotations

from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

STATE_HISTORY = 10  # ~/state samples kept for subscribers that join late


def state_qos() -> QoSProfile:
    """``~/state``'s QoS, for the publisher and its subscribers: reliable, transient local with a short history, so a
    monitor that joins late gets the recent transitions, the last one being the current state."""
    return QoSProfile(depth=STATE_HISTORY, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
