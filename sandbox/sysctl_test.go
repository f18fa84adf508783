package sandbox

import (
	"errors"
	"testing"

	"github.com/berth-dev/berth/errdefs"
)

func TestValidateSysctls(t *testing.T) {
	for _, tc := range []struct {
		cfg Config
		ok  bool
	}{
		{Config{Sysctls: map[string]string{"net.ipv4.ip_unprivileged_port_start": "0", "kernel.shmmax": "1000"}}, true},
		{Config{Sysctls: map[string]string{"net/ipv4/conf/eth0.1/forwarding": "1"}}, true},
		{Config{Sysctls: map[string]string{"fs.mqueue.msg_max": "20"}}, true},
		{Config{Sysctls: map[string]string{"kernel.msgmax": "1"}, HostIPC: true}, false},
		{Config{Sysctls: map[string]string{"net.ipv4.ip_forward": "1"}, HostNetwork: true}, false},
		{Config{Sysctls: map[string]string{"vm.swappiness": "1"}}, false},
		{Config{Sysctls: map[string]string{"kernel.hostname": "x"}}, false},
		{Config{Sysctls: map[string]string{"net/../vm/swappiness": "1"}}, false},
		{Config{Sysctls: map[string]string{"net.ipv4.ip_forward": "1\nvm"}}, false},
	} {
		err := validateSysctls(&tc.cfg)
		if tc.ok != (err == nil) {
			t.Errorf("%v: err = %v", tc.cfg.Sysctls, err)
		}
		if err != nil && !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("%v: %v is not InvalidArgument", tc.cfg.Sysctls, err)
		}
	}
}
