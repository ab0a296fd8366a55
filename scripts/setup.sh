#!/usr/bin/env bash
# Idempotent set-up for a Debian 12 machine, as root: the apt packages ketch
# uses or is compared with, a virtualenv in .venv, and the package installed
# into it (editable). Fast when everything is already in place.
set -euo pipefail
cd "$(dirname "$0")/.."

# Runtime needs, then what tests and benchmarks compare against or drive
# (runc, docker.io and podman: the engines ketch is measured against and
# that drive ketch-runc in the interop tests).
APT_PACKAGES=(
    python3 python3-venv python3-dev gcc make git ca-certificates
    busybox-static libseccomp2 iproute2 nftables e2fsprogs util-linux
    mmdebstrap debootstrap
    qemu-system-x86 qemu-utils erofs-utils libc6-dev
    docker-registry apache2-utils skopeo umoci
    runc conmon golang-go tini
    docker.io podman
)

missing=()
for p in "${APT_PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$p")
    fi
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# docker-registry's package starts a system service on :5000; tests run their
# own registries on free ports, so the packaged one is not needed.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet docker-registry 2>/dev/null; then
    systemctl stop docker-registry || true
fi

# Debian's own python3 (built with PGO and LTO): measured 10-17% faster than
# a self-built interpreter for `ketch run` and `ketch images` (BENCHMARKS.md,
# "Interpreter"). PYTHON=... picks another; a venv of a different base is remade.
PY=${PYTHON:-/usr/bin/python3}
[ -x "$PY" ] || PY=python3
base() { "$1" -c 'import sys; print(sys.base_prefix, sys.version)'; }
if [ -x .venv/bin/python ] && [ "$(base .venv/bin/python)" != "$(base "$PY")" ]; then
    echo "setup: the virtualenv was made with another Python; making it again with $PY"
    rm -rf .venv .stamp-venv
fi
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
# pip copies script files (the ketch-runc launcher) at install time: reinstall
# when they change too.
if [ ! -f .stamp-venv ] || [ pyproject.toml -nt .stamp-venv ] \
        || [ ketch/runtime/ketch-runc -nt .stamp-venv ]; then
    .venv/bin/pip install -q --upgrade pip >/dev/null 2>&1 || true
    # compat mode: a plain .pth path entry instead of an import-hook finder,
    # which would cost every `ketch` start-up ~15 ms of imports (pathlib & co).
    if ! .venv/bin/pip install -q -e '.[dev]' --config-settings editable_mode=compat \
            >.venv/pip-install.log 2>&1; then
        cat .venv/pip-install.log >&2
        exit 1
    fi
    touch .stamp-venv
fi
# The installed ketch-runc launcher starts as a sh script (portable: pip rewrites
# a `#!python` line and drops its options). Here the venv's path is known: point
# the first line straight at its Python with -IS, which saves every container
# start the sh exec (~1.5 ms). The rest of the file is the same either way.
venv_py="$PWD/.venv/bin/python3"
case "$venv_py" in
    *[[:space:]]*) ;;   # a shebang cannot name a path with spaces: keep sh
    *) if [ "$(head -n1 .venv/bin/ketch-runc)" != "#!$venv_py -IS" ]; then
           sed -i "1s|.*|#!$venv_py -IS|" .venv/bin/ketch-runc
       fi ;;
esac
# The same launcher as bin/ketch (it picks the engine's CLI by its name) instead
# of pip's entry-point script, which runs site first.
if ! cmp -s .venv/bin/ketch-runc .venv/bin/ketch; then
    cp .venv/bin/ketch-runc .venv/bin/ketch.tmp && mv .venv/bin/ketch.tmp .venv/bin/ketch
fi
# ketch-monitor, the per-container monitor (C: it lives as long as its
# container), built beside the venv's python where the engine looks for it.
if [ ! -x .venv/bin/ketch-monitor ] || [ ketch/engine/monitor.c -nt .venv/bin/ketch-monitor ]; then
    gcc -O2 -Wall -Wextra -Werror -o .venv/bin/ketch-monitor.tmp ketch/engine/monitor.c
    mv .venv/bin/ketch-monitor.tmp .venv/bin/ketch-monitor
fi
# Bytecode for every module now, so commands never compile at start-up (an
# editable install writes none, and PYTHONDONTWRITEBYTECODE would stop Python
# from caching it later). Quick when nothing changed.
.venv/bin/python -m compileall -q ketch >/dev/null

# vm-kernel: the guest kernel micro-VMs boot (Debian's cloud kernel, fetched
# with apt-get download into the shared cache, KETCH_VM_CACHE or
# /var/cache/ketch/vm). Skipped when already there.
if ! .venv/bin/ketch vm kernel >/dev/null 2>&1; then
    echo "setup: installing the micro-VM guest kernel"
    .venv/bin/ketch vm kernel --install >/dev/null
fi
