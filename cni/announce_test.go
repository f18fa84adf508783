package cni

import (
	"bytes"
	"net"
	"testing"
	"unsafe"
)

func TestARPPacket(t *testing.T) {
	mac, _ := net.ParseMAC("02:42:0a:00:00:09")
	got := arpPacket(mac, net.ParseIP("10.88.0.9").To4())
	want := []byte{
		0, 1, 8, 0, 6, 4, 0, 1, // Ethernet/IPv4, request
		0x02, 0x42, 0x0a, 0, 0, 9, 10, 88, 0, 9, // sender: the pod
		0, 0, 0, 0, 0, 0, 10, 88, 0, 9, // target: its own address
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("arp packet\n got % x\nwant % x", got, want)
	}
}

func TestNAPacket(t *testing.T) {
	mac, _ := net.ParseMAC("02:42:0a:00:00:09")
	ip := net.ParseIP("fd00::9")
	got := naPacket(mac, ip)
	if len(got) != 32 || got[0] != 136 || got[1] != 0 || got[4] != 0x20 {
		t.Fatalf("header % x", got[:8])
	}
	if !net.IP(got[8:24]).Equal(ip) {
		t.Fatalf("target %v", net.IP(got[8:24]))
	}
	if got[24] != 2 || got[25] != 1 || !bytes.Equal(got[26:32], mac) {
		t.Fatalf("link-layer option % x", got[24:])
	}
}

func TestHtons(t *testing.T) {
	v := htons(0x0806)
	b := (*[2]byte)(unsafe.Pointer(&v))
	if b[0] != 0x08 || b[1] != 0x06 {
		t.Fatalf("htons(0x0806) in memory: % x", b[:])
	}
}
