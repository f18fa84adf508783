#!/usr/bin/env bash
# Fails listing the files that gofmt would change: every Go file of the
# checkout (tracked or new, not ignored; the nested modules under test/ too)
# except vendored ones and generated ones (the "// Code generated ... DO NOT
# EDIT." header of go help generate), which are not ours to format.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$PATH:/usr/local/go/bin

files=()
while IFS= read -r -d '' f; do
	[ -f "$f" ] || continue # deleted in the worktree, not yet in the index
	case /$f in */vendor/*) continue ;; esac
	grep -qE '^// Code generated .* DO NOT EDIT\.$' "$f" && continue
	files+=("$f")
done < <(git ls-files -z --cached --others --exclude-standard -- '*.go')

bad=""
if [ ${#files[@]} -gt 0 ]; then
	bad=$(gofmt -l -- "${files[@]}")
fi
if [ -n "$bad" ]; then
	echo "check-gofmt: these files are not gofmt-formatted (run gofmt -w on them):" >&2
	echo "$bad" >&2
	exit 1
fi
echo "check-gofmt: ${#files[@]} Go files gofmt-formatted"
