"""`ketch bench`: the containers-vs-VMs comparison, measured on this machine.

    suite.py       a run: private work directory, runtimes in turn, cleanup and its check
    runtimes.py    adapters over command lines: ketch container / micro-VM, podman, docker
    vms.py         the full-VM adapter (`ketch vm create/start/rm`)
    ocirunc.py     the host's runc with bundles built here (the floor for a start)
    rootfs.py      the busybox rootfs given to runc, podman and docker (the host's binary)
    measure.py     start, HTTP start, memory (PSS, MemAvailable), disk, density
    throughput.py  CPU (% of native) and sequential I/O, one start per round
    workloads.py   the busybox command lines and how the host times them
    probes.py      /proc and file-metadata readings: PSS, MemAvailable, cgroups, blocks
    stats.py       median, p90, quartiles, the wide-spread flag
    results.py     result records and their JSON
    report.py      the claims table, per-runtime table, text / rich / markdown
    charts.py      PNG charts (matplotlib, imported only when writing them)
"""
