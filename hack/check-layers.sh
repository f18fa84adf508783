#!/usr/bin/env bash
# Fails when an import points up the layer order of DESIGN.md:
#   cmd → cri → sandbox, imageservice → runtime, cni → errdefs
# A package may import its own top-level folder and any lower layer; sandbox
# and imageservice do not know each other, nor do runtime and cni. Tests of a
# package are held to the same order; test/ and hack/ may import anything.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$PATH:/usr/local/go/bin

module=$(go list -m)
rank() {
	case $1 in
	cmd) echo 5 ;;
	cri) echo 4 ;;
	sandbox | imageservice) echo 3 ;;
	runtime | cni) echo 2 ;;
	errdefs) echo 1 ;;
	*) echo "" ;;
	esac
}

bad=0
while read -r pkg imports; do
	from=${pkg#"$module"/}
	from=${from%%/*}
	rf=$(rank "$from")
	[ -n "$rf" ] || continue
	for imp in $imports; do
		case $imp in "$module"/*) ;; *) continue ;; esac
		to=${imp#"$module"/}
		to=${to%%/*}
		[ "$to" = "$from" ] && continue
		rt=$(rank "$to")
		if [ -z "$rt" ] || [ "$rt" -ge "$rf" ]; then
			echo "check-layers: ${pkg#"$module"/} imports ${imp#"$module"/} (layer $from may not import $to)" >&2
			bad=1
		fi
	done
done < <(go list -f '{{.ImportPath}} {{join .Imports " "}} {{join .TestImports " "}} {{join .XTestImports " "}}' ./...)

if [ "$bad" = 1 ]; then
	exit 1
fi
echo "check-layers: every import points down the layer order"
