package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/streaming/pkg/httpstream"
	"k8s.io/streaming/pkg/httpstream/spdy"
)

// Exec round trip through the runtime's streaming server: the Exec call
// for a URL, then the session (SPDY, remote command protocol v4) of
// `echo ok` until its exit status arrives; as kubectl exec does, without
// a client process's start-up.
func init() {
	register("exec", benchExec)
}

func benchExec(e *env) error {
	spec := &runtimeapi.ImageSpec{Image: *containerImage}
	if st, err := e.images.ImageStatus(e.ctx, &runtimeapi.ImageStatusRequest{Image: spec}); err != nil || st.GetImage() == nil {
		if _, err := e.images.PullImage(e.ctx, &runtimeapi.PullImageRequest{Image: spec}); err != nil {
			return fmt.Errorf("pull %s: %w", *containerImage, err)
		}
	}
	podCfg := podConfig(strconv.FormatInt(time.Now().UnixNano(), 36)+"x", 0)
	podID, err := e.runPod(podCfg)
	if err != nil {
		return err
	}
	defer e.removePod(podID)
	cfg := containerConfig("exec")
	cfg.LogPath = ""
	resp, err := e.runtime.CreateContainer(e.ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: podID, Config: cfg, SandboxConfig: podCfg})
	if err != nil {
		return fmt.Errorf("CreateContainer: %w", err)
	}
	id := resp.ContainerId
	if _, err := e.runtime.StartContainer(e.ctx, &runtimeapi.StartContainerRequest{ContainerId: id}); err != nil {
		return fmt.Errorf("StartContainer: %w", err)
	}

	var urls, totals []time.Duration
	for range latencyContainers {
		start := time.Now()
		r, err := e.runtime.Exec(e.ctx, &runtimeapi.ExecRequest{ContainerId: id, Cmd: []string{"echo", "ok"}, Stdout: true})
		if err != nil {
			return fmt.Errorf("exec call: %w", err)
		}
		got := time.Now()
		out, err := spdyExec(r.Url)
		if err != nil {
			return err
		}
		if out != "ok\n" {
			return fmt.Errorf("exec echo ok: stdout %q", out)
		}
		urls, totals = append(urls, got.Sub(start)), append(totals, time.Since(start))
	}
	summary("Exec (URL)", urls)
	summary("Exec round trip (echo ok)", totals)
	return nil
}

// spdyExec runs a session whose request asked for stdout only, and returns
// the output once the status says the command succeeded.
func spdyExec(rawURL string) (string, error) {
	rt, err := spdy.NewRoundTripper(nil)
	if err != nil {
		return "", err
	}
	req, err := http.NewRequest(http.MethodPost, rawURL, nil)
	if err != nil {
		return "", err
	}
	req.Header.Set(httpstream.HeaderProtocolVersion, "v4.channel.k8s.io")
	resp, err := rt.RoundTrip(req)
	if err != nil {
		return "", fmt.Errorf("exec %s: %w", rawURL, err)
	}
	conn, err := rt.NewConnection(resp)
	if err != nil {
		return "", fmt.Errorf("exec %s: upgrade: %w", rawURL, err)
	}
	defer conn.Close()
	stream := func(typ string) (httpstream.Stream, error) {
		h := http.Header{}
		h.Set("streamType", typ)
		s, err := conn.CreateStream(h)
		if err != nil {
			return nil, fmt.Errorf("exec %s: %s stream: %w", rawURL, typ, err)
		}
		// The client sends nothing on either. A fast command may be over
		// (the connection closed) before this half-close is sent.
		_ = s.Close()
		return s, nil
	}
	errStream, err := stream("error")
	if err != nil {
		return "", err
	}
	outStream, err := stream("stdout")
	if err != nil {
		return "", err
	}
	out, err := io.ReadAll(outStream)
	if err != nil {
		return "", fmt.Errorf("exec %s: stdout: %w", rawURL, err)
	}
	statusJSON, err := io.ReadAll(errStream)
	if err != nil {
		return "", fmt.Errorf("exec %s: status: %w", rawURL, err)
	}
	var status struct {
		Status  string `json:"status"`
		Message string `json:"message"`
	}
	if err := json.Unmarshal(statusJSON, &status); err != nil || status.Status != "Success" {
		return "", fmt.Errorf("exec %s: status %s (%v)", rawURL, statusJSON, err)
	}
	return string(out), nil
}
