// Command imagebin is the one static program inside berth's test images. It
// plays the parts critest expects from the real images, chosen by the name it
// is started as:
//
//	nginx             an HTTP server that looks like nginx to ps/pidof: its
//	                  command line says "master process" and it writes
//	                  /var/run/nginx.pid; it listens on the ports named by
//	                  "listen N;" in /etc/nginx/conf.d/*.conf (80 if none)
//	httpd-foreground  an HTTP server on :80 that logs a line naming httpd
//	pause             sleeps until SIGINT or SIGTERM and reaps children
//	nnp               prints "Effective uid: N" (installed setuid root)
//	nmeter            busybox's nmeter, its %[N]t time only (see nmeter.go)
//
// A Go program rather than a busybox script, because as PID 1 of a container's
// own PID namespace the kernel drops signals it has no handler for: a shell
// script would ignore SIGTERM and every stop would wait for the kill timeout.
package main

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"syscall"
)

// nginxTitle is what the real nginx shows as its command line.
const nginxTitle = "nginx: master process nginx -g daemon off;"

func main() {
	name := filepath.Base(os.Args[0])
	switch {
	case strings.HasPrefix(name, "nginx") || strings.HasPrefix(os.Args[0], "nginx:"):
		nginx()
	case strings.HasPrefix(name, "httpd"):
		httpd()
	case name == "pause":
		pause()
	case name == "nnp":
		fmt.Printf("Effective uid: %d\n", os.Geteuid())
	case name == "nmeter":
		nmeter(os.Args[1:])
	default:
		fmt.Fprintf(os.Stderr, "imagebin: unknown role %q (nginx, httpd-foreground, pause, nnp, nmeter)\n", name)
		os.Exit(2)
	}
}

func nginx() {
	if !strings.Contains(os.Args[0], "master process") {
		// Re-exec under the same file so that comm (what pidof matches) stays
		// "nginx" while the command line becomes nginx's process title (the
		// real nginx overwrites its arguments with it, too).
		exe, err := os.Executable()
		if err != nil {
			fatal("nginx: find executable: %v", err)
		}
		err = syscall.Exec(exe, []string{nginxTitle}, os.Environ())
		fatal("nginx: exec %s: %v", exe, err)
	}
	ports := nginxPorts("/etc/nginx/conf.d")
	const pidFile = "/var/run/nginx.pid"
	if err := os.MkdirAll(filepath.Dir(pidFile), 0o755); err != nil {
		fatal("nginx: %v", err)
	}
	if err := os.WriteFile(pidFile, []byte(fmt.Sprintf("%d\n", os.Getpid())), 0o644); err != nil {
		fatal("nginx: write pid file: %v", err)
	}
	defer os.Remove(pidFile)
	serve("nginx", "/usr/share/nginx/html", ports, syscall.SIGTERM, syscall.SIGINT, syscall.SIGQUIT)
}

var listenRE = regexp.MustCompile(`(?m)^\s*listen\s+(?:[^\s;]*:)?(\d+)[^;]*;`)

func nginxPorts(dir string) []string {
	files, _ := filepath.Glob(filepath.Join(dir, "*.conf"))
	seen := map[string]bool{}
	var ports []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, m := range listenRE.FindAllStringSubmatch(string(b), -1) {
			if !seen[m[1]] {
				seen[m[1]] = true
				ports = append(ports, m[1])
			}
		}
	}
	if len(ports) == 0 {
		return []string{"80"}
	}
	sort.Strings(ports)
	return ports
}

func httpd() {
	serve("httpd", "/usr/local/apache2/htdocs", []string{"80"},
		syscall.SIGTERM, syscall.SIGINT, syscall.SIGQUIT, syscall.SIGWINCH)
}

// serve answers GETs from root on every port and returns on one of sigs.
func serve(name, root string, ports []string, sigs ...os.Signal) {
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, sigs...)
	files := http.FileServer(http.Dir(root))
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Printf("%s: %s %s %s\n", name, r.RemoteAddr, r.Method, r.URL.Path)
		files.ServeHTTP(w, r)
	})
	for _, p := range ports {
		ln, err := net.Listen("tcp", ":"+p)
		if err != nil {
			fatal("%s: listen on port %s: %v", name, p, err)
		}
		go func() { _ = http.Serve(ln, handler) }()
	}
	fmt.Printf("%s: serving %s on port %s (pid %d)\n", name, root, strings.Join(ports, ","), os.Getpid())
	s := <-stop
	fmt.Printf("%s: got %v, exiting\n", name, s)
}

func pause() {
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for s := range sigs {
		if s == syscall.SIGCHLD {
			for {
				pid, err := syscall.Wait4(-1, nil, syscall.WNOHANG, nil)
				if pid <= 0 || err != nil {
					break
				}
			}
			continue
		}
		fmt.Fprintf(os.Stderr, "Shutting down, got signal: %v\n", s)
		return
	}
}

func fatal(format string, args ...any) {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
	os.Exit(1)
}
