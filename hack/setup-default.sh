#!/usr/bin/env bash
# Prepares the node for `make run`: the directories berthd uses by default.
set -euo pipefail
mkdir -p /etc/berth /etc/berth/certs.d /var/lib/berth /run/berth
