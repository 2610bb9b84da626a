// Package freeport picks unused TCP ports on the loopback interface.
//
// Servers that must keep their address across a restart (a ZooKeeper
// ensemble member that is stopped and started again, a NATS cluster node)
// cannot listen on port 0 and report what they got: their peers are
// configured with the address before they start. Such servers take their
// ports from here. Between Get returning and the server binding, another
// process could take a port; on a test machine that race is rare, and the
// server's own bind error then says so.
package freeport

import (
	"fmt"
	"net"
)

// Get returns n distinct TCP ports that were free on 127.0.0.1 when it was
// called. All n listeners are open at once before any is closed, so the
// ports are distinct from one another.
func Get(n int) ([]int, error) {
	ls := make([]net.Listener, 0, n)
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("freeport: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
