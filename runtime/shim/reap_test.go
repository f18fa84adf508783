package shim

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

func threads(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "Threads:"); ok {
			n, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatal("no Threads line")
	return 0
}

// Waiting for many live children holds no thread per child (a blocking
// wait would: 40 children, 40 more threads), and each is reaped once it
// exits.
func TestReapHoldsNoThreadPerChild(t *testing.T) {
	const children = 40
	var cmds []*exec.Cmd
	var done []<-chan struct{}
	t.Cleanup(func() {
		for _, c := range cmds {
			_ = c.Process.Kill()
		}
	})
	before := threads(t)
	for i := 0; i < children; i++ {
		c := exec.Command("sleep", "60")
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		cmds = append(cmds, c)
		done = append(done, reap(c))
	}
	time.Sleep(200 * time.Millisecond) // let any blocking wait start
	if grew := threads(t) - before; grew >= children/2 {
		t.Errorf("threads grew by %d while waiting for %d children", grew, children)
	}
	for i, d := range done {
		select {
		case <-d:
			t.Fatalf("child %d reported exited while it runs", i)
		default:
		}
	}
	for _, c := range cmds {
		_ = c.Process.Kill()
	}
	for i, d := range done {
		select {
		case <-d:
		case <-time.After(time.Minute):
			t.Fatalf("child %d killed but not reaped", i)
		}
		if cmds[i].ProcessState == nil {
			t.Fatalf("child %d: no exit status after reap", i)
		}
		if _, err := os.Stat("/proc/" + strconv.Itoa(cmds[i].Process.Pid)); err == nil {
			// The pid may be reused already; a zombie of ours would have
			// us as its parent.
			if b, _ := os.ReadFile("/proc/" + strconv.Itoa(cmds[i].Process.Pid) + "/stat"); strings.Contains(string(b), ") Z ") {
				t.Errorf("child %d is a zombie after reap", i)
			}
		}
	}
}

// A child that exits at once (before the pidfd is opened or watched) is
// reaped all the same.
func TestReapQuickExit(t *testing.T) {
	c := exec.Command("true")
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	select {
	case <-reap(c):
	case <-time.After(time.Minute):
		t.Fatal("not reaped")
	}
	if !c.ProcessState.Success() {
		t.Fatalf("exit status %v", c.ProcessState)
	}
}
