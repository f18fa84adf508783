// Command kubeletbin is the upstream kubelet (k8s.io/kubernetes/cmd/kubelet),
// built from the Go module proxy so that berth's tests can drive berth with
// the real kubelet (test/integration/kubelet_test.go). Its main is
// upstream's, plus one knob for tests.
package main

import (
	"context"
	"os"

	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"          // for JSON log format registration
	_ "k8s.io/component-base/metrics/prometheus/clientgo" // for client metric registration
	_ "k8s.io/component-base/metrics/prometheus/version"  // for version metric registration
	"k8s.io/kubernetes/cmd/kubelet/app"
	"k8s.io/kubernetes/pkg/kubelet"
)

func main() {
	// The kubelet creates /var/log/containers, a fixed path no flag moves,
	// for links to every container log; a test kubelet makes it in its
	// temp dir instead (the links themselves use another constant and then
	// fail, logged, rather than land on the host).
	if dir := os.Getenv("BERTH_KUBELET_CONTAINER_LOGS_DIR"); dir != "" {
		kubelet.ContainerLogsDir = dir
	}
	command := app.NewKubeletCommand(context.Background())
	code := cli.Run(command)
	os.Exit(code)
}
