package integration

import (
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/berth-dev/berth/test/framework"
)

// berth.service is Type=notify: berthd must send READY=1 once its socket
// answers and STOPPING=1 when told to stop, to the socket systemd names in
// $NOTIFY_SOCKET (here a datagram socket of the test's own).
func TestSystemdNotify(t *testing.T) {
	dir := framework.NewDirs(t)
	sock := filepath.Join(dir, "notify.sock")
	l, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	t.Setenv("NOTIFY_SOCKET", sock)
	d := framework.StartDaemon(t, dir)

	read := func(want string) {
		t.Helper()
		buf := make([]byte, 4096)
		// a generous bound on a hang: berthd sends it right after Version answers
		_ = l.SetReadDeadline(time.Now().Add(90 * time.Second))
		n, err := l.Read(buf)
		if err != nil {
			t.Fatalf("no %s from berthd: %v", want, err)
		}
		msg := string(buf[:n])
		if !strings.Contains("\n"+msg+"\n", "\n"+want+"\n") {
			t.Fatalf("berthd sent %q, want a message with %s", msg, want)
		}
	}
	read("READY=1")
	if err := d.Stop(t); err != nil {
		t.Errorf("berthd stop: %v", err)
	}
	read("STOPPING=1")
}
