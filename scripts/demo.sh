#!/usr/bin/env bash
# What `make demo` shows after set-up: a base image built from the host's
# packages, then the main job.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }

step ketch --version
step ketch-runc --version

# Containers: run like docker run; a monitor (ketch-monitor) per container outlives the CLI.
ketch image inspect busybox >/dev/null 2>&1 || step ketch bootstrap busybox
step ketch run --rm busybox echo hello from a ketch container
step ketch run -d --name demo-web --memory 64m --cpus 0.5 --restart unless-stopped \
    busybox sh -c 'while true; do echo tick $(date +%T); sleep 1; done'
sleep 2
step ketch ps
step ketch logs --tail 2 demo-web
step ketch exec demo-web sh -c 'echo "inside: $(hostname), uid $(id -u)"'
step ketch inspect -f '{{.State.Status}} memory={{.HostConfig.Memory}} restart={{.HostConfig.RestartPolicy.Name}}' demo-web
step ketch stats --no-stream demo-web
step ketch rm -f demo-web

# The same image as a micro-VM: its own guest kernel under QEMU (KVM where it
# works, TCG emulation where it does not; `ketch info` says which).
step ketch run --rm --runtime vm busybox sh -c 'echo hello from a micro-VM, kernel $(uname -r)'
step ketch info

# The containers-vs-VMs comparison, measured here (quick mode).
step ketch bench --quick
