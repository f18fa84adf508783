#!/usr/bin/env bash
# The CI subset of the node e2e suite (make node-e2e-ci): a spec or two of
# each area, picked from the default set ([NodeConformance] less
# [Flaky]|[Slow]|[Serial]), through hack/node-e2e.sh. About 15 minutes on the
# 2-core machine once e2e_node.test is built (cached outside the checkout).
set -euo pipefail
areas=(
	# pod lifecycle
	'Pods should be submitted and removed'
	# probes
	'Probing container should be restarted with a /healthz http liveness probe'
	# lifecycle hooks
	'Container Lifecycle Hook when create a pod with lifecycle hook should execute poststart exec hook properly'
	# init containers and sidecars
	'InitContainer \[NodeConformance\] should invoke init containers on a RestartAlways pod'
	'Containers Lifecycle .*should launch init container serially before a regular container'
	# volumes
	'EmptyDir volumes should support \(root,0644,tmpfs\)'
	'ConfigMap should be consumable from pods in volume \[NodeConformance\]'
	# security context
	'Security Context When creating a pod with readOnlyRootFilesystem should run the container with writable rootfs when readOnlyRootFilesystem=false'
	# logs
	'Kubelet when scheduling a busybox command in a pod should print it to logs'
	# exec
	'Pods should support remote command execution over websockets'
	# DNS: hostname and FQDN in the pod
	'Hostname of Pod .*a pod with subdomain field has FQDN, hostname is shortname'
	# image pull
	'Container Runtime blackbox test when running a container with a new image should be able to pull image'
	'Container Runtime blackbox test when running a container with a new image should not be able to pull image from invalid registry'
)
focus=$(IFS='|'; echo "${areas[*]}")
export NODE_E2E_FOCUS="${NODE_E2E_CI_FOCUS:-$focus}"
export NODE_E2E_OUT=${NODE_E2E_OUT:-$(cd "$(dirname "$0")/.." && pwd)/_output/node-e2e-ci}
exec bash "$(dirname "$0")/node-e2e.sh"
