package lockservice_test

import (
	"context"
	"testing"
	"time"

	"github.com/switchyard-dev/switchyard/internal/zktest"
	"github.com/switchyard-dev/switchyard/lockservice"
	lockv1 "github.com/switchyard-dev/switchyard/proto/switchyard/lock/v1"
)

// TestDial runs a replica on a session of its own: it grants, and Close
// waits out the lease, then ends the session, which leaves no node; a bad
// connect string or config fails Dial.
func TestDial(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cfg := lockservice.DefaultConfig("dialled")
	cfg.Logger = zktest.Logger(t)
	s, err := lockservice.Dial(ctx, zktest.Shared(t).ConnectString(), 2*time.Second, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Acquire(ctx, &lockv1.AcquireRequest{Name: "test/dialled"}); err != nil {
		s.Close()
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	conn := zktest.Connect(t, zktest.Shared(t).ConnectString())
	if n := contenders(t, conn); n != 0 {
		t.Fatalf("%d contender nodes left after Close", n)
	}

	if _, err := lockservice.Dial(ctx, "127.0.0.1", time.Second, cfg); err == nil {
		t.Fatal("Dial with a connect string without a port succeeded")
	}
	bad := cfg
	bad.Replica = ""
	if _, err := lockservice.Dial(ctx, zktest.Shared(t).ConnectString(), time.Second, bad); err == nil {
		t.Fatal("Dial with no replica id succeeded")
	}
}
