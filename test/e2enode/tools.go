//go:build tools

// Package e2enode pins what `make node-e2e` builds from the Go module proxy:
// the Kubernetes node e2e suite (k8s.io/kubernetes/test/e2e_node, built with
// `go test -c`, so its test-only imports are required through `go get -t`
// rather than kept by `go mod tidy`), the agnhost test image's binary and
// the ginkgo CLI of the version the suite is written against.
package e2enode

import (
	_ "github.com/onsi/ginkgo/v2/ginkgo"
	_ "k8s.io/kubernetes/test/images/agnhost"
)
