package freeport_test

import (
	"net"
	"strconv"
	"testing"

	"github.com/switchyard-dev/switchyard/internal/freeport"
)

func TestGetReturnsDistinctBindablePorts(t *testing.T) {
	ports, err := freeport.Get(8)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int]bool{}
	for _, p := range ports {
		if seen[p] {
			t.Fatalf("port %d returned twice in %v", p, ports)
		}
		seen[p] = true
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			t.Fatalf("port %d is not free: %v", p, err)
		}
		l.Close()
	}
}
