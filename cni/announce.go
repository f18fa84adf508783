package cni

import (
	"encoding/binary"
	"fmt"
	"net"

	"golang.org/x/sys/unix"
)

// announce makes the pod's neighbours (the node's bridge first, and the
// other pods on it) forget the MAC address an earlier pod had for the same
// IP: host-local hands a released address out again, and the node's
// neighbour entry for it, which lives on the bridge and outlives the old
// veth, keeps pointing at the old pod for up to a minute. Until it expires
// the node cannot reach the new pod: the kubelet's probes to it time out
// (seen as a failed gRPC liveness probe in the node e2e suite once its /24
// wrapped). Newer bridge plugins announce the address themselves; the
// Debian 12 one does not, and other plugins may not either, so berth does
// it for every network: a gratuitous ARP for each IPv4 address and an
// unsolicited neighbour advertisement (override flag) for each IPv6 one,
// sent from the pod's interface. Existing entries take the new address;
// nothing is created where there was none.
func announce(netns string, ips []string) error {
	if netns == "" || len(ips) == 0 {
		return nil
	}
	return InNetNS(netns, func() error {
		ifc, err := net.InterfaceByName(IfName)
		if err != nil {
			return fmt.Errorf("find %s: %w", IfName, err)
		}
		if len(ifc.HardwareAddr) != 6 {
			return nil // not Ethernet (e.g. a point-to-point plugin): no neighbour cache to fix
		}
		for _, s := range ips {
			ip := net.ParseIP(s)
			switch {
			case ip == nil:
				return fmt.Errorf("address %q", s)
			case ip.To4() != nil:
				err = gratuitousARP(ifc, ip.To4())
			default:
				err = unsolicitedNA(ifc, ip)
			}
			if err != nil {
				return fmt.Errorf("announce %s on %s: %w", s, IfName, err)
			}
		}
		return nil
	})
}

// arpPacket is an ARP request for ip from ip (RFC 5227's announcement).
func arpPacket(mac net.HardwareAddr, ip net.IP) []byte {
	b := make([]byte, 28)
	binary.BigEndian.PutUint16(b[0:], 1)      // Ethernet
	binary.BigEndian.PutUint16(b[2:], 0x0800) // IPv4
	b[4], b[5] = 6, 4
	binary.BigEndian.PutUint16(b[6:], 1) // request
	copy(b[8:], mac)
	copy(b[14:], ip)
	// target hardware address stays zero
	copy(b[24:], ip)
	return b
}

func gratuitousARP(ifc *net.Interface, ip net.IP) error {
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ARP)))
	if err != nil {
		return fmt.Errorf("packet socket: %w", err)
	}
	defer unix.Close(fd)
	to := &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ARP), Ifindex: ifc.Index, Halen: 6}
	copy(to.Addr[:], []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	return unix.Sendto(fd, arpPacket(ifc.HardwareAddr, ip), 0, to)
}

// naPacket is an ICMPv6 neighbour advertisement for target with the
// override flag and the target link-layer address option; the kernel fills
// in the checksum of a raw ICMPv6 socket.
func naPacket(mac net.HardwareAddr, target net.IP) []byte {
	b := make([]byte, 32)
	b[0] = 136  // neighbour advertisement
	b[4] = 0x20 // override; not solicited, not a router
	copy(b[8:], target.To16())
	b[24], b[25] = 2, 1 // target link-layer address, 8 bytes
	copy(b[26:], mac)
	return b
}

func unsolicitedNA(ifc *net.Interface, ip net.IP) error {
	fd, err := unix.Socket(unix.AF_INET6, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_ICMPV6)
	if err != nil {
		return fmt.Errorf("icmpv6 socket: %w", err)
	}
	defer unix.Close(fd)
	// Receivers drop neighbour discovery that crossed a router.
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_MULTICAST_HOPS, 255); err != nil {
		return err
	}
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_MULTICAST_IF, ifc.Index); err != nil {
		return err
	}
	to := &unix.SockaddrInet6{ZoneId: uint32(ifc.Index)}
	copy(to.Addr[:], net.IPv6linklocalallnodes)
	return unix.Sendto(fd, naPacket(ifc.HardwareAddr, ip), 0, to)
}

// htons is v in network byte order, as the socket calls take it.
func htons(v uint16) uint16 {
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], v)
	return binary.NativeEndian.Uint16(b[:])
}
