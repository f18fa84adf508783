package sandbox

import (
	"testing"
	"time"
)

func TestParseNetDev(t *testing.T) {
	in := `Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:     840      10    0    0    0     0          0         0      840      10    0    0    0     0       0          0
  eth0:   12345      67    1    2    0     0          0         0     5432      21    3    4    0     0       0          0
`
	ifs, err := parseNetDev([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	if len(ifs) != 1 {
		t.Fatalf("got %d interfaces, want eth0 only: %+v", len(ifs), ifs)
	}
	want := Interface{Name: "eth0", RxBytes: 12345, RxPackets: 67, RxErrors: 1, RxDropped: 2, TxBytes: 5432, TxPackets: 21, TxErrors: 3, TxDropped: 4}
	if ifs[0] != want {
		t.Fatalf("got %+v, want %+v", ifs[0], want)
	}
	if _, err := parseNetDev([]byte("h\nh\neth0: 1 2 x\n")); err == nil {
		t.Fatal("short line accepted")
	}
}

func TestNanoCores(t *testing.T) {
	id := newID()
	t0 := time.Now()
	if n := nanoCores(id, t0, 1e9); n != 0 {
		t.Fatalf("first sample: %d", n)
	}
	if n := nanoCores(id, t0.Add(2*time.Second), 2e9); n != 5e8 {
		t.Fatalf("half a core: %d", n)
	}
	// A read that began before the last one (a call's and the
	// collector's overlapping) leaves the newer sample in place.
	if n := nanoCores(id, t0.Add(time.Second), 19e8); n != 0 {
		t.Fatalf("older sample: %d", n)
	}
	if n := nanoCores(id, t0.Add(4*time.Second), 3e9); n != 5e8 {
		t.Fatalf("rate after an older sample: %d, want half a core since the newest", n)
	}
}

func TestNetnsInterfacesOwnNamespace(t *testing.T) {
	ifs, err := NetnsInterfaces("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range ifs {
		if i.Name == "lo" {
			t.Fatal("loopback listed")
		}
	}
}
