package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"k8s.io/klog/v2"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// notifySocket is systemd's $NOTIFY_SOCKET, taken out of the environment at
// start (takeNotifySocket): the shims, CNI plugins and hooks berthd starts
// must not inherit it (a shim outlives berthd, and systemd would take its
// messages for the service's). That is why berthd writes the sd_notify
// datagram itself rather than with go-systemd's daemon.SdNotify, which
// reads the variable at every call.
var notifySocket string

func takeNotifySocket() {
	notifySocket = os.Getenv("NOTIFY_SOCKET")
	os.Unsetenv("NOTIFY_SOCKET")
}

// notifyReadyWhenServing tells systemd (berth.service is Type=notify)
// READY=1 once the CRI socket answers a Version call, so that units ordered
// after berth.service (the kubelet) start against a runtime that serves,
// not one still recovering its pods. Without $NOTIFY_SOCKET (not started by
// systemd) it sends nothing. It gives up when done closes.
//
// go-systemd's daemon package writes the sd_notify datagram: the module is
// berth's already (the systemd cgroup driver's D-Bus client), and it handles
// the abstract-namespace socket names systemd uses.
func notifyReadyWhenServing(endpoint string, done <-chan struct{}) {
	if notifySocket == "" {
		return
	}
	conn, err := grpc.NewClient(endpoint, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		klog.ErrorS(err, "Cannot tell systemd berthd is ready")
		return
	}
	defer conn.Close()
	client := runtimeapi.NewRuntimeServiceClient(conn)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := client.Version(ctx, &runtimeapi.VersionRequest{})
		cancel()
		if err == nil {
			break
		}
		select {
		case <-done:
			return
		case <-time.After(50 * time.Millisecond):
		}
	}
	sdNotify("READY=1\nSTATUS=serving the CRI on " + endpoint)
}

// notifyStopping tells systemd berthd is shutting down (STOPPING=1), so
// that systemctl shows the unit deactivating while in-flight calls finish.
func notifyStopping() {
	if notifySocket != "" {
		sdNotify("STOPPING=1\nSTATUS=shutting down")
	}
}

// sdNotify sends one sd_notify(3) message: a datagram to the unix socket
// systemd named ("@..." is Linux's abstract namespace, which Go's "@"
// prefix maps to).
func sdNotify(state string) {
	if err := sendNotify(notifySocket, state); err != nil {
		klog.InfoS("Cannot notify systemd", "state", state, "err", err)
	}
}

func sendNotify(socket, state string) error {
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: socket, Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("dial %s: %w", socket, err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(state)); err != nil {
		return fmt.Errorf("write to %s: %w", socket, err)
	}
	return nil
}
