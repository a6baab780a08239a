"""The evaluation's plot (``eval_velocity.png``): commanded against measured velocity, one panel per command."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def velocity_plot(traces: dict, path: Path) -> None:
    """One panel per command: the commanded (dashed) and measured velocity of its first episode."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 4, figsize=(16, 7), sharex=True)
    for ax, (name, (command, trace)) in zip(axes.flat, traces.items()):
        t, measured = np.array(trace["t"]), np.array(trace["measured"]).reshape(-1, 3)
        for i, (label, colour) in enumerate((("vx m/s", "C0"), ("vy m/s", "C1"), ("yaw rad/s", "C2"))):
            ax.plot(t, measured[:, i], colour, label=f"measured {label}")
            ax.axhline(command[i], color=colour, linestyle="--", linewidth=1)
        ax.set_title(name)
        ax.set_xlabel("s")
    axes.flat[0].legend(fontsize=7)
    fig.suptitle("commanded (dashed) and measured velocity, 1 s windows, first episode")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
