package zkserver

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestConfigValidation(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"negative servers", Config{Servers: -1}, "want 1 to 9"},
		{"too many servers", Config{Servers: 11}, "want 1 to 9"},
		{"ports for absent servers", Config{Servers: 1, ClientPorts: []int{1, 2}}, "2 client ports for 1 servers"},
		{"tiny tick", Config{TickTime: time.Millisecond}, "below 10ms"},
		{"session below two ticks", Config{TickTime: time.Second, MaxSessionTimeout: time.Second}, "below two ticks"},
		{"no java", Config{Java: "/nonexistent/java"}, "not installed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Start(context.Background(), tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Start = %v, want an error saying %q", err, tt.want)
			}
		})
	}
	if _, err := Start(context.Background(), Config{Java: "/nonexistent/java"}); !errors.Is(err, ErrNotInstalled) {
		t.Fatalf("missing java: %v, want ErrNotInstalled", err)
	}
}

// TestStartFailureSaysWhy starts a JVM that cannot find ZooKeeper's main
// class: Start fails at once, not after its timeout, and shows the log.
func TestStartFailureSaysWhy(t *testing.T) {
	start := time.Now()
	_, err := Start(context.Background(), Config{Classpath: t.TempDir(), Dir: t.TempDir(), StartTimeout: time.Minute})
	if err == nil {
		t.Fatal("Start with an empty classpath succeeded")
	}
	if !strings.Contains(err.Error(), "exited") || !strings.Contains(err.Error(), "QuorumPeerMain") {
		t.Fatalf("error does not say the server exited, with its log: %v", err)
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Fatalf("Start took %v to notice the process died", d)
	}
}

func TestFourLetterRejectsBadWord(t *testing.T) {
	if _, err := FourLetter(context.Background(), "127.0.0.1:1", "stats"); err == nil {
		t.Fatal("a five-letter word was sent")
	}
}

func TestParseStats(t *testing.T) {
	tests := []struct {
		name   string
		answer string
		want   map[string]string
	}{
		{"srvr", "Zookeeper version: 3.8.0\nMode: follower\nZxid: 0x100000002\n", map[string]string{"Mode": "follower", "Zxid": "0x100000002", "Zookeeper version": "3.8.0"}},
		{"mntr", "zk_server_state\tleader\nzk_num_alive_connections\t3\n", map[string]string{"zk_server_state": "leader", "zk_num_alive_connections": "3"}},
		{"refused", "This ZooKeeper instance is not currently serving requests\n", map[string]string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := ParseStats(tt.answer)
			if len(got) != len(tt.want) {
				t.Fatalf("ParseStats = %v, want %v", got, tt.want)
			}
			for k, v := range tt.want {
				if got[k] != v {
					t.Fatalf("%s = %q, want %q (all: %v)", k, got[k], v, got)
				}
			}
		})
	}
}
