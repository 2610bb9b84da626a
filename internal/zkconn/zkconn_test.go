package zkconn_test

import (
	"context"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchyard-dev/switchyard/internal/zkconn"
	"github.com/switchyard-dev/switchyard/internal/zktest"
)

func TestMain(m *testing.M) { zktest.Main(m) }

func TestParseConnectString(t *testing.T) {
	tests := []struct {
		in string
		ok bool
	}{
		{"127.0.0.1:2181", true},
		{"a:1,b:2,[::1]:3", true},
		{" a:1 , b:2 ", true},
		{"a:1,b:2/app", false},
		{"", false},
		{"host", false},
		{"host:", false},
		{":2181", false},
		{"host:port", false},
		{"host:70000", false},
		{"a:1,,b:2", false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			if _, err := zkconn.ParseConnectString(tt.in); (err == nil) != tt.ok {
				t.Fatalf("ParseConnectString(%q) = %v, want ok=%v", tt.in, err, tt.ok)
			}
		})
	}
}

func TestDialUnreachableEndsWithContext(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	_, err := zkconn.Dial(ctx, "127.0.0.1:1", time.Second, zktest.Logger(t))
	if err == nil || !strings.Contains(err.Error(), "no session") {
		t.Fatalf("Dial to a closed port: %v", err)
	}
}

// TestSubscribeSeesNewSession partitions a connection past its session
// timeout: a subscriber is woken and finds a new session id afterwards.
func TestSubscribeSeesNewSession(t *testing.T) {
	proxy := zktest.NewProxy(t, zktest.Shared(t).Addr(0))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := zkconn.Dial(ctx, proxy.Addr(), time.Second, zktest.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	first := c.Session()
	notify, unsubscribe := c.Subscribe()
	defer unsubscribe()

	proxy.Cut()
	time.Sleep(2500 * time.Millisecond) // past the session timeout
	proxy.Heal()
	deadline := time.After(15 * time.Second)
	for {
		select {
		case <-notify:
			if c.Connected() && c.Session() != first && c.Session() != 0 {
				return
			}
		case <-deadline:
			t.Fatalf("no new session 15s after healing (session %#x, state %v)", c.Session(), c.State())
		}
	}
}

// TestDialSurvivesStalledHandshake puts a listener in front of ZooKeeper
// that, like a server still starting, accepts connections but leaves them
// unanswered for a while before it serves. Dial must give up on the
// stalled connection after about two thirds of the session timeout and
// retry, not wait go-zookeeper's ten times that (13s here).
func TestDialSurvivesStalledHandshake(t *testing.T) {
	target := zktest.Shared(t).Addr(0)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	ready := time.Now().Add(time.Second)
	var wg sync.WaitGroup
	t.Cleanup(wg.Wait)
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				if time.Now().Before(ready) {
					// Starting up: hold the connection, answer nothing.
					_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
					_, _ = io.Copy(io.Discard, c)
					return
				}
				up, err := net.Dial("tcp", target)
				if err != nil {
					return
				}
				defer up.Close()
				go func() { _, _ = io.Copy(up, c); up.Close() }()
				_, _ = io.Copy(c, up)
			})
		}
	})

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start := time.Now()
	c, err := zkconn.Dial(ctx, ln.Addr().String(), 2*time.Second, zktest.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	elapsed := time.Since(start)
	c.Close()
	ln.Close()
	if elapsed > 8*time.Second {
		t.Fatalf("session after %v: the stalled handshake was waited out", elapsed)
	}
	t.Logf("session after %v", elapsed.Round(time.Millisecond))
}

// TestSessionTimeoutIsTheGrantedOne asks for a session far longer than the
// test server's maximum (zkserver's default of a minute): SessionTimeout
// reports what the server granted, not what was asked for.
func TestSessionTimeoutIsTheGrantedOne(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := zkconn.Dial(ctx, zktest.Shared(t).ConnectString(), 10*time.Minute, zktest.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := c.SessionTimeout(); got != time.Minute {
		t.Fatalf("SessionTimeout = %v after asking for 10m, want the server's maximum, 1m", got)
	}
}
