package integration

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/creack/pty"
	"google.golang.org/grpc/codes"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-dev/berth/test/framework"
)

// nginxRef is the fixture image that serves HTTP on port 80.
const nginxRef = "registry.k8s.io/e2e-test-images/nginx:1.14-2"

// crictlCmd is crictl against the daemon, for tests that drive its stdio.
func crictlCmd(ctx context.Context, d *framework.Daemon, args ...string) *exec.Cmd {
	full := append([]string{"--runtime-endpoint", d.Endpoint, "--image-endpoint", d.Endpoint, "--timeout", "60s"}, args...)
	cmd := exec.CommandContext(ctx, "crictl", full...)
	cmd.Env = append(os.Environ(), "CRI_CONFIG_FILE=/dev/null")
	return cmd
}

// ptyReader collects what a pty master shows, for waiting on output.
type ptyReader struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (p *ptyReader) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.buf.Write(b)
}

func (p *ptyReader) String() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.buf.String()
}

func waitFor(t *testing.T, what string, within time.Duration, get func() string, re *regexp.Regexp) []string {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		if m := re.FindStringSubmatch(get()); m != nil {
			return m
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %q not seen within %s; got %q", what, re, within, get())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestStreamExec(t *testing.T) {
	e := newCtrEnv(t)
	podID, podCfg := e.pod(t, "exec")
	id := e.run(t, podID, podCfg, ctrConfig("sleeper", "sleep", "3600"))
	ctx := framework.Context(t)

	// Both transports: SPDY (the kubelet's) and websockets (kubectl's
	// since Kubernetes 1.31, served in front of the library).
	for _, tr := range []string{"spdy", "websocket"} {
		t.Run(tr, func(t *testing.T) {
			t.Run("exit code and streams", func(t *testing.T) {
				cmd := crictlCmd(ctx, e.d, "exec", "-r", tr, id, "sh", "-c", "echo to-out; echo to-err >&2; exit 3")
				var out, errb bytes.Buffer
				cmd.Stdout, cmd.Stderr = &out, &errb
				err := cmd.Run()
				// crictl exits 1 and names the remote exit code.
				if err == nil || !strings.Contains(errb.String(), "command terminated with exit code 3") {
					t.Errorf("crictl exec: %v, stderr %q; want exit code 3 reported", err, errb.String())
				}
				if out.String() != "to-out\n" || !strings.Contains(errb.String(), "to-err\n") {
					t.Errorf("stdout %q, stderr %q", out.String(), errb.String())
				}
			})

			t.Run("stdin", func(t *testing.T) {
				cmd := crictlCmd(ctx, e.d, "exec", "-r", tr, "-i", id, "sh", "-c", "tr a-z A-Z; echo done")
				cmd.Stdin = strings.NewReader("hello through stdin\n")
				out, err := cmd.CombinedOutput()
				if err != nil || string(out) != "HELLO THROUGH STDIN\ndone\n" {
					t.Errorf("crictl exec -i: %v: %q", err, out)
				}
			})

			t.Run("tty", func(t *testing.T) {
				cmd := crictlCmd(ctx, e.d, "exec", "-r", tr, "-it", id, "sh")
				ptmx, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: 30, Cols: 100})
				if err != nil {
					t.Fatal(err)
				}
				defer ptmx.Close()
				var screen ptyReader
				go func() { _, _ = io.Copy(&screen, ptmx) }()
				// The shell sees a terminal of the client's size, and its new size
				// after a resize.
				fmt.Fprintf(ptmx, "tty >/dev/null && echo IS-A-TTY; stty size; echo $((6*7))X\n")
				waitFor(t, "tty exec", 20*time.Second, screen.String, regexp.MustCompile(`IS-A-TTY\r\n30 100\r\n42X`))
				if err := pty.Setsize(ptmx, &pty.Winsize{Rows: 40, Cols: 123}); err != nil {
					t.Fatal(err)
				}
				// crictl forwards SIGWINCH's new size; the shell may read it a
				// moment later.
				deadline := time.Now().Add(10 * time.Second)
				for !strings.Contains(screen.String(), "40 123\r\n") && time.Now().Before(deadline) {
					fmt.Fprintf(ptmx, "stty size\n")
					time.Sleep(200 * time.Millisecond)
				}
				if !strings.Contains(screen.String(), "40 123\r\n") {
					t.Errorf("resize not seen: %q", screen.String())
				}
				fmt.Fprintf(ptmx, "exit 7\n")
				done := make(chan error, 1)
				go func() { done <- cmd.Wait() }()
				select {
				case err := <-done:
					time.Sleep(100 * time.Millisecond) // the pty's last bytes
					if err == nil || !strings.Contains(screen.String(), "exit code 7") {
						t.Errorf("crictl exec -it: %v; want exit code 7 reported: %q", err, screen.String())
					}
				case <-time.After(20 * time.Second):
					_ = cmd.Process.Kill()
					t.Fatalf("crictl exec -it did not end: %q", screen.String())
				}
			})

		})
	}

	t.Run("client gone kills the command", func(t *testing.T) {
		cctx, cancel := context.WithCancel(ctx)
		cmd := crictlCmd(cctx, e.d, "exec", id, "sh", "-c", "echo started; exec sleep 1234")
		stdout, _ := cmd.StdoutPipe()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		line, _ := bufio.NewReader(stdout).ReadString('\n')
		if line != "started\n" {
			t.Fatalf("got %q", line)
		}
		cancel()
		_ = cmd.Wait()
		deadline := time.Now().Add(10 * time.Second)
		for {
			r := e.execSync(t, id, "ps", "-o", "args")
			if !strings.Contains(string(r.Stdout), "sleep 1234") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("exec'd command outlived its client:\n%s", r.Stdout)
			}
			time.Sleep(100 * time.Millisecond)
		}
	})

	t.Run("errors", func(t *testing.T) {
		_, err := e.d.Runtime.Exec(ctx, &runtimeapi.ExecRequest{ContainerId: id, Stdout: true})
		if grpcCode(err) != codes.InvalidArgument {
			t.Errorf("exec without command: %v, want InvalidArgument", err)
		}
		_, err = e.d.Runtime.Exec(ctx, &runtimeapi.ExecRequest{ContainerId: "nosuchcontainer", Cmd: []string{"true"}, Stdout: true})
		if grpcCode(err) != codes.NotFound {
			t.Errorf("exec in unknown container: %v, want NotFound", err)
		}
		stopped := e.run(t, podID, podCfg, ctrConfig("quick", "true"))
		e.waitState(t, stopped, runtimeapi.ContainerState_CONTAINER_EXITED, 20*time.Second)
		_, err = e.d.Runtime.Exec(ctx, &runtimeapi.ExecRequest{ContainerId: stopped, Cmd: []string{"true"}, Stdout: true})
		if grpcCode(err) != codes.FailedPrecondition {
			t.Errorf("exec in exited container: %v, want FailedPrecondition", err)
		}
		out, err := e.d.Crictl(t, "exec", stopped, "true")
		if err == nil || !strings.Contains(out, "not running") {
			t.Errorf("crictl exec in exited container: %v: %s", err, out)
		}
		// A URL is single-use.
		resp, err := e.d.Runtime.Exec(ctx, &runtimeapi.ExecRequest{ContainerId: id, Cmd: []string{"true"}, Stdout: true})
		if err != nil {
			t.Fatal(err)
		}
		for i, want := range []int{http.StatusBadRequest, http.StatusNotFound} {
			r, err := http.Post(resp.Url, "text/plain", nil)
			if err != nil {
				t.Fatal(err)
			}
			r.Body.Close()
			// The first use consumes the token (a plain POST is no stream:
			// refused), the second finds nothing.
			if i == 1 && r.StatusCode != want {
				t.Errorf("second use of %s: %d, want %d", resp.Url, r.StatusCode, want)
			}
		}
		// The server still serves.
		if out, err := e.d.Crictl(t, "exec", id, "echo", "still"); err != nil || out != "still\n" {
			t.Errorf("exec after errors: %v: %q", err, out)
		}
	})

	t.Run("node and pod PID namespaces", func(t *testing.T) {
		cfg := ctrConfig("nodepid", "sleep", "3600")
		cfg.Linux.SecurityContext.NamespaceOptions.Pid = runtimeapi.NamespaceMode_NODE
		nodePid := e.run(t, podID, podCfg, cfg)
		// In the node's PID namespace PID 1 is the node's init, not sleep.
		out, err := e.d.Crictl(t, "exec", nodePid, "sh", "-c", "echo $(cat /proc/1/comm)")
		if err != nil || strings.TrimSpace(out) == "sleep" || out == "" {
			t.Errorf("exec in node PID namespace: %v: %q", err, out)
		}
		sharedCfg := e.podConfig("exec-shared")
		sharedCfg.Linux.SecurityContext.NamespaceOptions.Pid = runtimeapi.NamespaceMode_POD
		sharedID := runPod(t, e.d, sharedCfg)
		pcfg := ctrConfig("podpid", "sleep", "3600")
		pcfg.Linux.SecurityContext.NamespaceOptions.Pid = runtimeapi.NamespaceMode_POD
		podPid := e.run(t, sharedID, sharedCfg, pcfg)
		out, err = e.d.Crictl(t, "exec", podPid, "sh", "-c", "ps -o args | grep -c '^sleep 3600'")
		if err != nil || strings.TrimSpace(out) != "1" {
			t.Errorf("exec in pod PID namespace: %v: %q", err, out)
		}
	})
}

func TestStreamAttach(t *testing.T) {
	e := newCtrEnv(t)
	podID, podCfg := e.pod(t, "attach")
	ctx := framework.Context(t)

	cfg := ctrConfig("shell", "sh")
	cfg.Stdin = true
	id := e.run(t, podID, podCfg, cfg)

	for _, tr := range []string{"spdy", "websocket"} {
		t.Run("stdin and stdout, detach, "+tr, func(t *testing.T) {
			attachDetach(ctx, t, e, id, tr)
		})
	}
	attachMore(ctx, t, e, podID, podCfg, id)
}

func attachDetach(ctx context.Context, t *testing.T, e *ctrEnv, id, tr string) {
	{
		cmd := crictlCmd(ctx, e.d, "attach", "-r", tr, "-i", id)
		stdin, _ := cmd.StdinPipe()
		var out ptyReader
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(stdin, "echo attached-$((40+2))\n")
		waitFor(t, "attach", 20*time.Second, out.String, regexp.MustCompile(`attached-42\n`))
		// Closing stdin detaches; the container keeps running.
		stdin.Close()
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("crictl attach: %v: %s", err, out.String())
			}
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			t.Fatal("crictl attach did not end when its stdin closed")
		}
		e.waitState(t, id, runtimeapi.ContainerState_CONTAINER_RUNNING, time.Second)
		// The log got the output too.
		st, _ := e.status(t, id)
		if lines := logLines(t, st.LogPath); len(lines) == 0 || !strings.Contains(strings.Join(lines, "\n"), "attached-42") {
			t.Errorf("log lacks the output: %q", lines)
		}
	}
}

func attachMore(ctx context.Context, t *testing.T, e *ctrEnv, podID string, podCfg *runtimeapi.PodSandboxConfig, id string) {
	t.Run("output only, twice at once", func(t *testing.T) {
		var outs [2]ptyReader
		var cmds [2]*exec.Cmd
		for i := range cmds {
			cmds[i] = crictlCmd(ctx, e.d, "attach", id)
			cmds[i].Stdout, cmds[i].Stderr = &outs[i], &outs[i]
			if err := cmds[i].Start(); err != nil {
				t.Fatal(err)
			}
		}
		// The attaches are set up once crictl got its URL; keep writing
		// until both see it.
		deadline := time.Now().Add(20 * time.Second)
		for time.Now().Before(deadline) {
			e.attachWrite(t, id, "echo both-see-this\n")
			if strings.Contains(outs[0].String(), "both-see-this") && strings.Contains(outs[1].String(), "both-see-this") {
				break
			}
			time.Sleep(300 * time.Millisecond)
		}
		for i := range cmds {
			if !strings.Contains(outs[i].String(), "both-see-this") {
				t.Errorf("attach %d saw %q", i, outs[i].String())
			}
			_ = cmds[i].Process.Kill()
			_ = cmds[i].Wait()
		}
	})

	t.Run("errors", func(t *testing.T) {
		_, err := e.d.Runtime.Attach(ctx, &runtimeapi.AttachRequest{ContainerId: id, Stdin: true})
		if grpcCode(err) != codes.InvalidArgument {
			t.Errorf("attach without stdout and stderr: %v, want InvalidArgument", err)
		}
		noStdin := e.run(t, podID, podCfg, ctrConfig("nostdin", "sleep", "3600"))
		_, err = e.d.Runtime.Attach(ctx, &runtimeapi.AttachRequest{ContainerId: noStdin, Stdin: true, Stdout: true})
		if grpcCode(err) != codes.FailedPrecondition {
			t.Errorf("attach stdin of a container without: %v, want FailedPrecondition", err)
		}
		exited := e.run(t, podID, podCfg, ctrConfig("exited", "true"))
		e.waitState(t, exited, runtimeapi.ContainerState_CONTAINER_EXITED, 20*time.Second)
		_, err = e.d.Runtime.Attach(ctx, &runtimeapi.AttachRequest{ContainerId: exited, Stdout: true})
		if grpcCode(err) != codes.FailedPrecondition {
			t.Errorf("attach to exited container: %v, want FailedPrecondition", err)
		}
	})

	t.Run("tty", func(t *testing.T) {
		cfg := ctrConfig("ttyshell", "sh")
		cfg.Stdin, cfg.Tty = true, true
		tid := e.run(t, podID, podCfg, cfg)
		cmd := crictlCmd(ctx, e.d, "attach", "-it", tid)
		ptmx, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: 25, Cols: 90})
		if err != nil {
			t.Fatal(err)
		}
		defer ptmx.Close()
		var screen ptyReader
		go func() { _, _ = io.Copy(&screen, ptmx) }()
		// crictl sends the terminal's size once attached; the shell may
		// read it a moment later.
		deadline := time.Now().Add(20 * time.Second)
		for !strings.Contains(screen.String(), "25 90\r\n") && time.Now().Before(deadline) {
			fmt.Fprintf(ptmx, "stty size\n")
			time.Sleep(300 * time.Millisecond)
		}
		if !strings.Contains(screen.String(), "25 90\r\n") {
			t.Fatalf("attach -it: terminal size not seen: %q", screen.String())
		}
		fmt.Fprintf(ptmx, "tty >/dev/null && echo ON-A-TTY\n")
		waitFor(t, "attach -it", 20*time.Second, screen.String, regexp.MustCompile(`ON-A-TTY\r\n`))
		// Leaving the attach leaves the container running.
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		e.waitState(t, tid, runtimeapi.ContainerState_CONTAINER_RUNNING, time.Second)
	})

	t.Run("stdin_once", func(t *testing.T) {
		cfg := ctrConfig("once", "sh", "-c", "cat; echo stdin-ended")
		cfg.Stdin, cfg.StdinOnce = true, true
		// Without a log file the output still reaches attach.
		cfg.LogPath = ""
		once := e.run(t, podID, podCfg, cfg)
		cmd := crictlCmd(ctx, e.d, "attach", "-i", once)
		cmd.Stdin = strings.NewReader("first line\n")
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "first line\nstdin-ended\n") {
			t.Errorf("attach with stdin_once: %v: %q", err, out)
		}
		st := e.waitState(t, once, runtimeapi.ContainerState_CONTAINER_EXITED, 20*time.Second)
		if st.ExitCode != 0 {
			t.Errorf("exit code %d", st.ExitCode)
		}
	})
}

// attachWrite writes to a container's stdin through an attach of its own.
func (e *ctrEnv) attachWrite(t *testing.T, id, s string) {
	t.Helper()
	cmd := crictlCmd(framework.Context(t), e.d, "attach", "-i", id)
	cmd.Stdin = strings.NewReader(s)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("attach to write: %v: %s", err, out)
	}
}

func TestStreamPortForward(t *testing.T) {
	e := newCtrEnv(t)
	ctx := framework.Context(t)
	if _, err := e.d.Images.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: nginxRef}}); err != nil {
		t.Fatalf("pull nginx: %v", err)
	}
	podID, podCfg := e.pod(t, "pf")
	cfg := ctrConfig("nginx")
	cfg.Image.Image = nginxRef
	e.run(t, podID, podCfg, cfg)

	// forward runs crictl port-forward from a free local port to port.
	forward := func(t *testing.T, pod string, port int, flags ...string) (int32, *ptyReader) {
		t.Helper()
		local := freePort(t)
		args := append(append([]string{"port-forward"}, flags...), pod, fmt.Sprintf("%d:%d", local, port))
		pf := crictlCmd(ctx, e.d, args...)
		var out ptyReader
		pf.Stdout, pf.Stderr = &out, &out
		if err := pf.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = pf.Process.Kill(); _ = pf.Wait() })
		waitFor(t, "port-forward", 20*time.Second, out.String, regexp.MustCompile(fmt.Sprintf(`Forwarding from 127.0.0.1:%d -> %d`, local, port)))
		return local, &out
	}
	client := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	get := func(port int32) (string, error) {
		r, err := client.Get(fmt.Sprintf("http://127.0.0.1:%d/", port))
		if err != nil {
			return "", err
		}
		defer r.Body.Close()
		b, err := io.ReadAll(r.Body)
		return string(b), err
	}
	getAll := func(t *testing.T, port int32, n int) {
		t.Helper()
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				body, err := get(port)
				if err == nil && !strings.Contains(body, "Welcome to nginx!") {
					err = fmt.Errorf("page %q", body)
				}
				errs <- err
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Errorf("GET through port-forward: %v", err)
			}
		}
	}

	// Several connections at once, on two forwards at once, one of them
	// tunneled through a websocket.
	local, _ := forward(t, podID, 80)
	local2, _ := forward(t, podID, 80, "-r", "websocket")
	getAll(t, local, 8)
	getAll(t, local2, 4)

	// Nobody listens on 81: the client is told, the server goes on serving.
	quiet, quietOut := forward(t, podID, 81)
	if body, err := get(quiet); err == nil {
		t.Errorf("GET of a port nobody listens on succeeded: %q", body)
	}
	waitFor(t, "refused forward", 10*time.Second, quietOut.String, regexp.MustCompile(`nothing listens on port 81`))
	getAll(t, local, 2)
	again, _ := forward(t, podID, 80)
	getAll(t, again, 2)

	t.Run("host network", func(t *testing.T) {
		hcfg := e.podConfig("pf-host")
		hcfg.Linux.SecurityContext.NamespaceOptions.Network = runtimeapi.NamespaceMode_NODE
		hostPod := runPod(t, e.d, hcfg)
		lis, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer lis.Close()
		go func() {
			for {
				c, err := lis.Accept()
				if err != nil {
					return
				}
				go func() {
					defer c.Close()
					line, _ := bufio.NewReader(c).ReadString('\n')
					fmt.Fprintf(c, "node says %s", line)
				}()
			}
		}()
		port := lis.Addr().(*net.TCPAddr).Port
		local, _ := forward(t, hostPod, port)
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", local), 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(20 * time.Second))
		fmt.Fprintf(c, "hello\n")
		got, err := io.ReadAll(c)
		if err != nil || string(got) != "node says hello\n" {
			t.Errorf("through host-network port-forward: %v %q", err, got)
		}
	})

	_, err := e.d.Runtime.PortForward(ctx, &runtimeapi.PortForwardRequest{PodSandboxId: "nosuchpod"})
	if grpcCode(err) != codes.NotFound {
		t.Errorf("port-forward to unknown pod: %v, want NotFound", err)
	}
}

// An exec session without traffic for stream_idle_timeout is closed, and
// its command killed.
func TestStreamIdleTimeout(t *testing.T) {
	e := newCtrEnv(t)
	if err := e.d.Stop(t); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(e.dir, "config.toml"), []byte("stream_idle_timeout = \"2s\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	e.restart(t)
	podID, podCfg := e.pod(t, "idle")
	// Before this berthd stops (its Stop was registered by the restart).
	t.Cleanup(func() { removePod(t, e.d, podID) })
	id := e.run(t, podID, podCfg, ctrConfig("sleeper", "sleep", "3600"))
	ctx := framework.Context(t)

	cmd := crictlCmd(ctx, e.d, "exec", "-i", id, "sh", "-c", "echo waiting; exec sleep 4321")
	stdin, _ := cmd.StdinPipe() // kept open, silent
	defer stdin.Close()
	var out ptyReader
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
		if took := time.Since(start); took < 2*time.Second {
			t.Errorf("session ended after %s, before the idle timeout: %q", took, out.String())
		}
	case <-time.After(time.Minute):
		_ = cmd.Process.Kill()
		t.Fatalf("idle session still open after a minute: %q", out.String())
	}
	if !strings.Contains(out.String(), "waiting") {
		t.Errorf("output %q", out.String())
	}
	// A generous bound on a leak (the command is killed at once when the
	// session's connection closes), never a measure of speed.
	deadline := time.Now().Add(time.Minute)
	for {
		r := e.execSync(t, id, "ps", "-o", "args")
		if !strings.Contains(string(r.Stdout), "sleep 4321") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the idle session's command outlived it:\n%s", r.Stdout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
