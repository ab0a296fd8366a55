"""The report: the classic claims beside measured values, per-runtime details.

The claims table keeps the shape of the classic explainer (claim |
container | VM). The container column shows ketch's container when it was
measured, else the first other container runtime that was (its name is in
the cell); the VM column shows ketch's micro-VM and full VM, each with KVM
or TCG. Every cell is "claimed -> measured"; a figure whose spread is wide
carries "(wide spread)", and a figure that could not be measured says
"n/a" with the reason, never a blank.
"""

from __future__ import annotations

import textwrap

from ketch.bench.results import METRICS, Result, Run
from ketch.bench.stats import fmt_bytes, fmt_seconds

CONTAINER_ORDER = ["container", "podman", "docker", "runc"]
VM_ORDER = ["microvm", "fullvm"]
SHORT = {"container": "ketch", "microvm": "micro-VM", "fullvm": "full VM"}

#: (row title, metric, claimed for containers, claimed for VMs)
CLAIMS = [
    ("Start time", "start_trivial", "seconds", "minutes"),
    ("Size on disk (image + 1 instance)", "storage_1", "MBs", "GBs"),
    ("Memory of a 100 MB app", "mem_100m", "~110 MB", "~600 MB"),
    ("CPU throughput, % of native", "cpu", "95-100%", "90-95%"),
    ("Three instances on disk", "storage_3", "~530 MB", "~30 GB"),
]
#: Measured rows with no classic claim.
EXTRA_ROWS = [
    ("Start to HTTP answer", "start_http"),
    ("Host memory per idle instance (PSS)", "mem_idle"),
    ("Idle instances in the budget (extrapolated)", "density"),
]


#: One line per kind of figure, printed under the terminal tables (report.md has the
#: exact method of every figure).
METHOD_NOTES = [
    "Start: host clock, from spawning the command to the line 'ready' (or the first HTTP "
    "answer); 1 untimed warm-up per runtime.",
    "Memory: PSS = sum of Pss (smaps_rollup) over the instance's host processes (cgroup, "
    "monitor, QEMU); MemAvailable drop = whole-host view, noisier.",
    "Disk: allocated blocks (st_blocks*512), hard links once, image included; apparent size "
    "shown when files are sparse.",
    "CPU: busybox sha256sum, same binary inside and on the host, timed inside by /proc/uptime; "
    "I/O: busybox dd, fsync'd write, warm-cache read.",
    "Density: EXTRAPOLATED from PSS per idle instance, not run. (wide spread) = p90/median > "
    "1.5 or IQR/median > 0.3.",
]


def fmt_value(r: Result | None, *, short: bool = False) -> str:
    """One cell: the figure with its spread, or n/a and why."""
    if r is None:
        return "n/a: not run"
    if not r.ok:
        reason = r.reason or "no value"
        if short:
            # A whole runtime's reason is printed once under the tables, not in every cell.
            for whole in ("not available", "skipped in --quick"):
                if reason.startswith(whole):
                    return f"n/a: {whole} (see below)"
            reason = textwrap.shorten(reason, 70, placeholder="...")
        return "n/a: " + reason
    s = r.summary()
    if r.unit == "s":
        text = fmt_seconds(r.value)
        if s and s["n"] > 1:
            text += f" (p90 {fmt_seconds(s['p90'])}, n={s['n']})"
    elif r.unit == "bytes":
        text = fmt_bytes(r.value)
        if r.metric.startswith("storage") and r.extra.get("sparse"):
            text += f" (apparent {fmt_bytes(r.extra['apparent'])}: sparse)"
    elif r.unit == "%":
        text = f"{r.value:.0f}%"
        if s and s["n"] > 1:
            text += f" (p90 {s['p90']:.0f}%, n={s['n']})"
    elif r.unit == "MB/s":
        text = f"{r.value:.0f} MB/s"
    elif r.unit == "instances":
        text = f"{r.value:,.0f} (extrapolated)"
    else:
        text = f"{r.value:g} {r.unit}"
    if s and s["wide"]:
        text += " (wide spread)"
    return text


def pick_container(run: Run) -> str | None:
    """The runtime that fills the container column: ketch's, else the first measured."""
    for key in CONTAINER_ORDER:
        info = run.runtime(key)
        if info is not None and info.available:
            return key
    return None


def label(run: Run, key: str) -> str:
    info = run.runtime(key)
    name = SHORT.get(key, info.label if info else key)
    if info is not None and info.kind == "vm" and info.available:
        name += f" [{accel_word(info.accel)}]"
    return name


def accel_word(accel: str | None) -> str:
    """'KVM', 'TCG' or 'accel unknown' from what the VM runtime said."""
    # Only the leading word counts: the reason after it may name the other one
    # ("TCG (QEMU failed under KVM ...)").
    words = (accel or "").split()
    first = words[0].upper() if words else ""
    return first if first in ("KVM", "TCG") else "accel unknown"


def vm_cell(run: Run, metric: str, target: str = "") -> str:
    parts = []
    for key in VM_ORDER:
        if run.runtime(key) is None:
            continue
        parts.append(f"{label(run, key)}: {fmt_value(run.get(key, metric, target), short=True)}")
    return "; ".join(parts) if parts else "n/a: no VM runtime selected"


def container_cell(run: Run, metric: str, target: str = "") -> str:
    key = pick_container(run)
    if key is None:
        chosen = any(r.kind == "container" for r in run.runtimes)
        return f"n/a: no container runtime {'available' if chosen else 'selected'}"
    return f"{label(run, key)}: {fmt_value(run.get(key, metric, target), short=True)}"


def claims_rows(run: Run) -> list[tuple[str, str, str]]:
    """(claim, container cell, VM cell) rows of the seed table."""
    rows = []
    for title, metric, c_claim, v_claim in CLAIMS:
        rows.append((title, f"claimed {c_claim} -> {container_cell(run, metric)}",
                     f"claimed {v_claim} -> {vm_cell(run, metric)}"))
    for title, metric in EXTRA_ROWS:
        rows.append((title, container_cell(run, metric), vm_cell(run, metric)))
    return rows


def detail_rows(run: Run) -> tuple[list[str], list[list[str]]]:
    """Every metric (and I/O target) for every runtime: header, rows."""
    keys = [r.key for r in run.runtimes]
    header = ["measurement", *[label(run, k) for k in keys]]
    rows = []
    for metric, (title, _unit) in METRICS.items():
        targets = sorted({r.target for r in run.results if r.metric == metric}) or [""]
        for target in targets:
            name = f"{title} [{target}]" if target else title
            cells = []
            for k in keys:
                r = run.get(k, metric, target)
                has_other = any(x.runtime == k and x.metric == metric for x in run.results)
                # "-": this runtime has no such target (runc has no writable layer)
                cells.append("-" if r is None and has_other else fmt_value(r, short=True))
            rows.append([name, *cells])
        if metric == "mem_idle":
            rows.append(["host MemAvailable drop per idle instance (whole host, noisy)",
                         *[_memavailable(run.get(k, metric)) for k in keys]])
    return header, rows


def _memavailable(r: Result | None) -> str:
    if r is None or not r.ok or "memavailable_drop_per_instance" not in r.extra:
        return "n/a: see PSS row"
    drop = r.extra["memavailable_drop_per_instance"]
    # A negative drop means other work on the host freed more than the instances took.
    return fmt_bytes(drop) if drop >= 0 else f"{fmt_bytes(drop)} (host noise exceeded it)"


def unavailable(run: Run) -> list[str]:
    return [f"{r.label}: {r.reason}" if (r.reason or "").startswith("skipped")
            else f"{r.label}: not available: {r.reason}"
            for r in run.runtimes if not r.available]


def text_table(header: list[str], rows: list[list[str]], width: int = 120) -> str:
    """A plain-text table with wrapped cells, for terminals that are not TTYs and logs."""
    ncol = len(header)
    col = max(12, (width - 3 * (ncol - 1)) // ncol)
    first = min(34, col + 8)
    widths = [first] + [max(12, (width - first - 3 * (ncol - 1)) // max(1, ncol - 1))] * (ncol - 1)
    lines = []
    for row in [header, ["-" * w for w in widths], *rows]:
        wrapped = [textwrap.wrap(c, w) or [""] for c, w in zip(row, widths, strict=True)]
        for i in range(max(len(w) for w in wrapped)):
            lines.append(" | ".join(
                (w[i] if i < len(w) else "").ljust(widths[j]) for j, w in enumerate(wrapped)
            ).rstrip())
    return "\n".join(lines)


def render_text(run: Run, width: int = 120) -> str:
    out = ["Containers vs VMs, measured on this machine "
           f"({run.options.get('mode', '?')} run, {run.seconds:.0f} s)", ""]
    out.append(text_table(["claim", "container", "VM"],
                          [list(r) for r in claims_rows(run)], width))
    out += ["", "All runtimes:", ""]
    header, rows = detail_rows(run)
    out.append(text_table(header, rows, width))
    out += ["", *unavailable(run), *cleanup_lines(run), "", *METHOD_NOTES]
    return "\n".join(out).rstrip() + "\n"


def cleanup_lines(run: Run) -> list[str]:
    c = run.cleanup or {}
    if not c:
        return []
    if c.get("clean"):
        return ["Cleanup: every instance removed; no process, mount or cgroup left."]
    found = {k: v for k, v in c.items() if k != "clean" and v}
    return [f"Cleanup had to remove leftovers: {found}"]


def _md_row(cells: list[str]) -> str:
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


def render_markdown(run: Run, charts: list[str] | None = None) -> str:
    """report.md: the tables, the host, how each figure was measured, the charts."""
    h = run.host
    out = ["# ketch bench: containers vs VMs on this machine", "",
           f"Mode: {run.options.get('mode')}, timed starts per runtime: "
           f"{run.options.get('runs') or 'default (quick 3, VMs 2; full 10, VMs 5)'}, "
           f"wall time {run.seconds:.0f} s. Host: Linux {h.get('kernel')}, {h.get('cpus')} CPUs, "
           f"{fmt_bytes(h.get('mem_total', 0))} RAM. busybox: {h.get('busybox')} "
           f"(sha256 {str(h.get('busybox_sha256', '?'))[:16]}...), the same binary in every "
           f"instance.", "", "## The classic claims, measured", "",
           _md_row(["claim", "container", "VM"]), _md_row(["---"] * 3)]
    out += [_md_row(list(r)) for r in claims_rows(run)]
    header, rows = detail_rows(run)
    out += ["", "## Every runtime", "", _md_row(header), _md_row(["---"] * len(header))]
    out += [_md_row(r) for r in rows]
    out += ["", "## Runtimes", ""]
    for info in run.runtimes:
        state = ("measured" if info.available else info.reason
                 if (info.reason or "").startswith("skipped")
                 else f"not available: {info.reason}")
        accel = f", acceleration: {info.accel}" if info.kind == "vm" else ""
        out.append(f"- **{info.label}** ({info.version or 'version unknown'}{accel}): {state}")
    out += ["", "## How each figure was measured", ""]
    for r in run.results:
        if r.ok and r.how:
            where = f" [{r.target}]" if r.target else ""
            out.append(f"- {label(run, r.runtime)}, {METRICS[r.metric][0]}{where}: {r.how}")
    out += ["", "Spread: a figure is marked *(wide spread)* when p90/median > 1.5 or "
            "IQR/median > 0.3. Raw samples are in report.json.", ""]
    if charts:
        out += ["## Charts", ""] + [f"![{c}]({c})" for c in charts] + [""]
    out += cleanup_lines(run)
    return "\n".join(out).rstrip() + "\n"


def render_rich(run: Run, console) -> None:
    """The same tables drawn by rich (imported only here, only on a TTY)."""
    from rich.table import Table

    claims = Table(title="Containers vs VMs, measured on this machine", show_lines=True)
    for name in ("claim", "container", "VM"):
        claims.add_column(name, overflow="fold")
    for row in claims_rows(run):
        claims.add_row(*row)
    console.print(claims)
    header, rows = detail_rows(run)
    detail = Table(title="All runtimes", show_lines=False)
    for name in header:
        detail.add_column(name, overflow="fold")
    for row in rows:
        detail.add_row(*row)
    console.print(detail)
    for line in [*unavailable(run), *cleanup_lines(run), "", *METHOD_NOTES]:
        console.print(line, markup=False, highlight=False)
