"""The result records of a benchmark run, and their JSON form.

A run yields a flat list of Result records, one per (runtime, metric). A
record either has a value or says why it has none (`reason`), so a reader
can never mistake a missing measurement for a zero. Raw samples are kept
beside the summary, so every figure can be recomputed from the JSON.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from ketch.bench.stats import summarize

#: metric key -> (what the row is called, unit)
METRICS: dict[str, tuple[str, str]] = {
    "start_trivial": ("start to first output (echo)", "s"),
    "start_http": ("start to HTTP answer (busybox httpd)", "s"),
    "mem_idle": ("host memory per idle instance (PSS)", "bytes"),
    "mem_100m": ("host memory per instance, app touching 100 MB (PSS)", "bytes"),
    "storage_1": ("disk for 1 instance incl. image (allocated)", "bytes"),
    "storage_3": ("disk for 3 instances incl. image (allocated)", "bytes"),
    "cpu": ("CPU workload, % of native (busybox sha256sum)", "%"),
    "io_write": ("sequential write (busybox dd, fsync)", "MB/s"),
    "io_read": ("sequential read (busybox dd, page cache warm)", "MB/s"),
    "density": ("idle instances in the memory budget (extrapolated)", "instances"),
}


@dataclass
class Result:
    runtime: str
    metric: str
    value: float | None = None
    unit: str = ""
    how: str = ""
    samples: list[float] = field(default_factory=list)
    extra: dict = field(default_factory=dict)
    reason: str | None = None
    target: str = ""  # for I/O: which filesystem ("writable layer", "volume", "VM disk")

    @property
    def ok(self) -> bool:
        return self.value is not None

    def summary(self) -> dict | None:
        return summarize(self.samples).to_dict() if self.samples else None

    def to_dict(self) -> dict:
        d = asdict(self)
        d["summary"] = self.summary()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Result:
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        return cls(**known)


def from_samples(runtime: str, metric: str, samples: list[float], how: str,
                 **extra) -> Result:
    """A result whose value is the median of its samples."""
    unit = METRICS[metric][1]
    if not samples:
        return Result(runtime, metric, unit=unit, how=how, reason="no sample succeeded")
    return Result(runtime, metric, value=summarize(samples).median, unit=unit, how=how,
                  samples=list(samples), extra=extra)


def missing(runtime: str, metric: str, reason: str, target: str = "") -> Result:
    return Result(runtime, metric, unit=METRICS[metric][1], reason=reason, target=target)


@dataclass
class RuntimeInfo:
    key: str
    label: str
    kind: str
    available: bool
    reason: str | None = None
    version: str = ""
    accel: str | None = None


@dataclass
class Run:
    """Everything one `ketch bench` run produced."""

    host: dict
    options: dict
    runtimes: list[RuntimeInfo] = field(default_factory=list)
    results: list[Result] = field(default_factory=list)
    cleanup: dict = field(default_factory=dict)
    seconds: float = 0.0

    def get(self, runtime: str, metric: str, target: str = "") -> Result | None:
        for r in self.results:
            if r.runtime == runtime and r.metric == metric and r.target == target:
                return r
        return None

    def runtime(self, key: str) -> RuntimeInfo | None:
        return next((r for r in self.runtimes if r.key == key), None)

    def to_dict(self) -> dict:
        return {"version": 1, "host": self.host, "options": self.options,
                "seconds": self.seconds,
                "runtimes": [asdict(r) for r in self.runtimes],
                "results": [r.to_dict() for r in self.results],
                "cleanup": self.cleanup}

    @classmethod
    def from_dict(cls, d: dict) -> Run:
        return cls(host=d.get("host", {}), options=d.get("options", {}),
                   runtimes=[RuntimeInfo(**r) for r in d.get("runtimes", [])],
                   results=[Result.from_dict(r) for r in d.get("results", [])],
                   cleanup=d.get("cleanup", {}), seconds=d.get("seconds", 0.0))
