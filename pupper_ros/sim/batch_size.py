"""What every engine's batch refuses before it allocates anything: no robots, or more robots than the memory
available holds (each engine states what one of its robots takes)."""

from __future__ import annotations

import os


class BatchError(ValueError):
    """A batch that cannot be built; the message names what was wrong."""


def available_memory() -> int:
    """Bytes the kernel says a new allocation can get now (MemAvailable), or the physical memory where unknown."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def check_batch_size(robots: int, bytes_per_robot: int) -> None:
    """Refuse (BatchError) a batch of fewer than one robot, or one whose estimate exceeds the memory available."""
    if robots < 1:
        raise BatchError(f"a batch needs at least one robot, got {robots}")
    estimate, limit = robots * bytes_per_robot, available_memory()
    if estimate > limit:
        raise BatchError(f"{robots} robots need about {estimate / 1e9:.1f} GB ({bytes_per_robot / 1e3:,.0f} kB each), "
                         f"more than the {limit / 1e9:.1f} GB of memory available; use fewer")
