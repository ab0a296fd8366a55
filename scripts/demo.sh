#!/usr/bin/env bash
# What `make demo` shows after set-up: a base image built from the host's
# packages, then the main job.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }

step ketch --version
step ketch-runc --version
