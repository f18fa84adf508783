package nri

import (
	"context"
	"fmt"

	nrilog "github.com/containerd/nri/pkg/log"
	"k8s.io/klog/v2"
)

// klogger routes the adaptation's log through klog: its info lines (each
// plugin call) at -v=2 and above, warnings and errors always.
type klogger struct{}

func (klogger) Debugf(_ context.Context, f string, a ...any) {
	klog.V(4).InfoS("NRI: " + fmt.Sprintf(f, a...))
}

func (klogger) Infof(_ context.Context, f string, a ...any) {
	klog.V(2).InfoS("NRI: " + fmt.Sprintf(f, a...))
}

func (klogger) Warnf(_ context.Context, f string, a ...any) {
	klog.InfoS("NRI warning: " + fmt.Sprintf(f, a...))
}

func (klogger) Errorf(_ context.Context, f string, a ...any) {
	klog.ErrorS(nil, "NRI: "+fmt.Sprintf(f, a...))
}

func init() { nrilog.Set(klogger{}) }
