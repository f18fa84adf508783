// Package vm holds the checks that the cgroup v2 test VM of hack/vm is what
// the other tests run in it assume: cgroup v2 only with the controllers
// berth uses, and in the systemd variant systemd as PID 1 with working
// transient units. In the systemd variant it also installs berth's Debian
// package as on a node and proves that restarting, stopping, killing and
// upgrading berth.service keeps the pods (service_test.go). They run only
// inside the VM (BERTH_VM_VARIANT is set).
package vm
