#!/usr/bin/env bash
# The CI subset of the node e2e suite (make node-e2e-ci): a spec or two of
# each area, picked from the default set ([NodeConformance] less
# [Flaky]|[Slow]|[Serial]), through hack/node-e2e.sh; part of make test. 18
# specs, under 2 minutes on the 2-core machine once e2e_node.test is built
# (cached outside the checkout).
set -euo pipefail
areas=(
	# pod lifecycle
	'Pods should be submitted and removed'
	# probes
	'Probing container should be restarted with a /healthz http liveness probe'
	# lifecycle hooks
	'Container Lifecycle Hook when create a pod with lifecycle hook should execute poststart exec hook properly'
	# an HTTPS hook (agnhost netexec with the stand-in's /localhost.crt)
	'\] Container Lifecycle Hook when create a pod with lifecycle hook should execute poststart https hook properly'
	# init containers and sidecars
	'InitContainer should invoke init containers on a RestartAlways pod'
	'Restartable Init Container Lifecycle Hook when create a pod with lifecycle hook should execute poststart exec hook properly'
	'Containers Lifecycle .*should launch init container serially before a regular container'
	# volumes
	'EmptyDir volumes should support \(root,0644,tmpfs\)'
	'\[sig-storage\] ConfigMap should be consumable from pods in volume \[Conformance\]'
	'\[sig-storage\] Downward API volume should provide container.s memory limit'
	# environment from a configMap (keys like data-1, no shell names)
	'\[sig-node\] ConfigMap should be consumable via the environment'
	# security context
	'Security Context When creating a pod with readOnlyRootFilesystem should run the container with writable rootfs when readOnlyRootFilesystem=false'
	# logs
	'Kubelet when scheduling a busybox command in a pod should print the output to logs'
	# a termination message read back from the log (a last line without newline)
	'should report termination message from log output if TerminationMessagePolicy FallbackToLogsOnError is set'
	# exec
	'Pods should support remote command execution over websockets'
	# DNS: hostname and FQDN in the pod
	'Hostname of Pod .*a pod with subdomain field has FQDN, hostname is shortname'
	'Kubelet when scheduling an agnhost Pod with hostAliases should write entries to /etc/hosts'
	# image pull (the blackbox pull specs are not in the default set)
	'A pod is running only regular containers when the regular container has its image updated should successfully restart when the image is updated, restartPolicy=Always'
)
focus=$(IFS='|'; echo "${areas[*]}")
export NODE_E2E_FOCUS="${NODE_E2E_CI_FOCUS:-$focus}"
export NODE_E2E_OUT=${NODE_E2E_OUT:-$(cd "$(dirname "$0")/.." && pwd)/_output/node-e2e-ci}
exec bash "$(dirname "$0")/node-e2e.sh"
