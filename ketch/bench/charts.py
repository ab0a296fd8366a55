"""PNG charts of a run, with matplotlib.

matplotlib costs about a second to import, so this module is imported only
when `--out DIR` asks for charts, and it selects the non-interactive Agg
backend before pyplot is loaded (no display is needed or touched).
"""

from __future__ import annotations

from pathlib import Path

from ketch.bench.report import label
from ketch.bench.results import Run


def write_charts(run: Run, out: Path) -> list[str]:
    """Write the charts that have data into out; returns their file names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    for name, draw in (("start-time.png", _start), ("memory.png", _memory),
                       ("storage.png", _storage), ("cpu.png", _cpu)):
        fig, ax = plt.subplots(figsize=(8, 4.5))
        try:
            if draw(run, ax):
                fig.tight_layout()
                fig.savefig(out / name, dpi=100)
                written.append(name)
        finally:
            plt.close(fig)
    return written


def _measured(run: Run, metric: str):
    return [(label(run, r.runtime), r) for r in run.results if r.metric == metric and r.ok]


def _start(run: Run, ax) -> bool:
    data = [(lbl, r.samples) for lbl, r in _measured(run, "start_trivial") if r.samples]
    if not data:
        return False
    ax.boxplot([s for _, s in data], whis=(10, 90))
    ax.set_xticks(range(1, len(data) + 1), [lbl for lbl, _ in data])
    for i, (_, s) in enumerate(data, start=1):
        ax.scatter([i] * len(s), s, s=12, alpha=0.6)
    ax.set_yscale("log")
    ax.set_ylabel("seconds to first output (log scale)")
    ax.set_title("Start time: `run IMAGE echo ready`, every sample (whiskers p10-p90)")
    return True


def _bars(ax, groups: list[str], series: dict[str, list[float]], ylabel: str, title: str):
    width = 0.8 / max(1, len(series))
    for i, (name, values) in enumerate(series.items()):
        xs = [g + i * width for g in range(len(groups))]
        ax.bar(xs, values, width=width, label=name)
    ax.set_xticks([g + width * (len(series) - 1) / 2 for g in range(len(groups))], groups)
    # Containers and VMs differ by orders of magnitude here: a log axis shows both.
    ax.set_yscale("log")
    ax.set_ylabel(ylabel + " (log scale)")
    ax.set_title(title)
    ax.legend()


def _memory(run: Run, ax) -> bool:
    idle = dict(_measured(run, "mem_idle"))
    app = dict(_measured(run, "mem_100m"))
    groups = sorted(set(idle) | set(app))
    if not groups:
        return False
    mb = 1e6
    _bars(ax, groups, {
        "idle (PSS)": [idle[g].value / mb if g in idle else 0 for g in groups],
        "app touching 100 MB (PSS)": [app[g].value / mb if g in app else 0 for g in groups],
    }, "MB per instance", "Host memory per instance (sum of PSS of its processes)")
    return True


def _storage(run: Run, ax) -> bool:
    one = dict(_measured(run, "storage_1"))
    three = dict(_measured(run, "storage_3"))
    groups = sorted(set(one) | set(three))
    if not groups:
        return False
    mb = 1e6
    _bars(ax, groups, {
        "1 instance": [one[g].value / mb if g in one else 0 for g in groups],
        "3 instances": [three[g].value / mb if g in three else 0 for g in groups],
    }, "MB allocated (image included)", "Disk used: allocated blocks, hard links once")
    return True


def _cpu(run: Run, ax) -> bool:
    data = _measured(run, "cpu")
    if not data:
        return False
    ax.bar([lbl for lbl, _ in data], [r.value for _, r in data])
    ax.axhline(100, color="black", linewidth=1, linestyle="--", label="native")
    ax.set_ylabel("% of native throughput")
    ax.set_title("CPU: busybox sha256sum, same binary everywhere")
    ax.legend()
    return True
