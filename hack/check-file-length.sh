#!/usr/bin/env bash
# Fails when a non-test Go file of the project has more than 600 lines: past
# that a file holds more than one responsibility; split it by what it does.
set -euo pipefail
cd "$(dirname "$0")/.."
max=600
bad=$(git ls-files --cached --others --exclude-standard -- '*.go' ':!:*_test.go' |
	while read -r f; do [ -f "$f" ] && n=$(wc -l <"$f") && [ "$n" -gt $max ] && echo "$f: $n lines"; done || true)
if [ -n "$bad" ]; then
	echo "check-file-length: non-test Go files over $max lines:" >&2
	echo "$bad" >&2
	exit 1
fi
echo "check-file-length: no non-test Go file over $max lines"
