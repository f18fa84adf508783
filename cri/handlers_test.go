package cri

import (
	"errors"
	"testing"

	"github.com/berth-dev/berth/errdefs"
)

func TestRuntimeHandlers(t *testing.T) {
	s := &Server{opts: Options{RuntimeHandlers: []string{"test-handler"}}}
	for _, h := range []string{"", "berth", "test-handler"} {
		if err := s.checkHandler(h); err != nil {
			t.Errorf("handler %q: %v", h, err)
		}
	}
	for _, h := range []string{"runc", "test-handler\n", "Test-Handler"} {
		if err := s.checkHandler(h); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("handler %q: %v, want InvalidArgument", h, err)
		}
	}
	hs := s.runtimeHandlers()
	if len(hs) != 2 || hs[0].Name != "" || hs[1].Name != "test-handler" || !hs[1].Features.RecursiveReadOnlyMounts {
		t.Errorf("Status handlers %v, want the default and test-handler with its features", hs)
	}
	if err := (&Server{}).checkHandler("test-handler"); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("unconfigured handler: %v", err)
	}
}
