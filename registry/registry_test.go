package registry_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"

	"github.com/switchyard-dev/switchyard/internal/zktest"
	registryv1 "github.com/switchyard-dev/switchyard/proto/switchyard/registry/v1"
	"github.com/switchyard-dev/switchyard/registry"
)

func TestMain(m *testing.M) { zktest.Main(m) }

// dial opens a registry client to connect, closed when tb ends.
func dial(tb testing.TB, connect string, opts ...registry.Option) *registry.Client {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	opts = append([]registry.Option{
		registry.WithSessionTimeout(2 * time.Second),
		registry.WithLogger(zktest.Logger(tb)),
	}, opts...)
	c, err := registry.Dial(ctx, connect, opts...)
	if err != nil {
		tb.Fatalf("dial %s: %v", connect, err)
	}
	tb.Cleanup(func() { c.Close() })
	return c
}

// service returns a service name of tb's own, so tests sharing a server do
// not see each other.
func service(tb testing.TB) string {
	return "test." + strings.NewReplacer("/", ".", " ", "_").Replace(tb.Name())
}

func instance(svc, id, addr string) *registryv1.Instance {
	return &registryv1.Instance{Service: svc, Id: id, Address: addr, Weight: 100, Zone: "z1", Version: "v1"}
}

func register(tb testing.TB, c *registry.Client, inst *registryv1.Instance) *registry.Registration {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := c.Register(ctx, inst)
	if err != nil {
		tb.Fatalf("register %s/%s: %v", inst.GetService(), inst.GetId(), err)
	}
	return r
}

func watch(tb testing.TB, c *registry.Client, svc string) *registry.Watcher {
	tb.Helper()
	w, err := c.Watch(svc)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(w.Close)
	return w
}

// await returns the first snapshot that satisfies cond, failing tb after
// 15s.
func await(tb testing.TB, w *registry.Watcher, what string, cond func(registry.Snapshot) bool) registry.Snapshot {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	var last registry.Snapshot
	for {
		snap, err := w.Next(ctx)
		if err != nil {
			tb.Fatalf("waiting for %s: %v; last snapshot: %s", what, err, describe(last))
		}
		if cond(snap) {
			return snap
		}
		last = snap
	}
}

func describe(s registry.Snapshot) string {
	var parts []string
	for _, inst := range s.Instances {
		parts = append(parts, fmt.Sprintf("%s(w=%d,%v)", inst.GetId(), inst.GetWeight(), inst.GetState()))
	}
	return fmt.Sprintf("seq=%d stale=%v held=%v [%s] problems=%v", s.Seq, s.Stale, s.Held, strings.Join(parts, " "), s.Problems)
}

func ids(s registry.Snapshot) []string {
	var out []string
	for _, inst := range s.Instances {
		out = append(out, inst.GetId())
	}
	return out
}

func hasIDs(want ...string) func(registry.Snapshot) bool {
	return func(s registry.Snapshot) bool { return slices.Equal(ids(s), want) }
}

func TestValidateName(t *testing.T) {
	tests := []struct {
		name string
		in   string
		ok   bool
	}{
		{"grpc service", "switchyard.echo.v1.EchoService", true},
		{"id", "host-1_8080", true},
		{"unicode", "zürich", true},
		{"empty", "", false},
		{"slash", "a/b", false},
		{"dot", ".", false},
		{"dotdot", "..", false},
		{"control", "a\x01b", false},
		{"newline", "a\nb", false},
		{"nul", "a\x00b", false},
		{"too long", strings.Repeat("x", registry.MaxNameLen+1), false},
		{"longest", strings.Repeat("x", registry.MaxNameLen), true},
		{"bad utf8", "a\xffb", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := registry.ValidateName(tt.in)
			if (err == nil) != tt.ok {
				t.Fatalf("ValidateName(%q) = %v, want ok=%v", tt.in, err, tt.ok)
			}
			if err != nil && !errors.Is(err, registry.ErrInvalidName) {
				t.Fatalf("error %v does not wrap ErrInvalidName", err)
			}
		})
	}
}

func TestDecodeInstance(t *testing.T) {
	tests := []struct {
		name string
		data string
		ok   bool
	}{
		{"good", `{"id":"i1","service":"s","address":"127.0.0.1:80","weight":5}`, true},
		{"unknown fields are ignored", `{"id":"i1","service":"s","address":"127.0.0.1:80","future":{"x":1}}`, true},
		{"garbage", `not json`, false},
		{"empty", ``, false},
		{"other id", `{"id":"i2","service":"s","address":"127.0.0.1:80"}`, false},
		{"other service", `{"id":"i1","service":"t","address":"127.0.0.1:80"}`, false},
		{"no address", `{"id":"i1","service":"s"}`, false},
		{"bad port", `{"id":"i1","service":"s","address":"h:99999"}`, false},
		{"unknown state", `{"id":"i1","service":"s","address":"h:1","state":7}`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inst, err := registry.DecodeInstance("s", "i1", []byte(tt.data))
			if (err == nil) != tt.ok {
				t.Fatalf("DecodeInstance = %v, %v; want ok=%v", inst, err, tt.ok)
			}
			if err != nil && !errors.Is(err, registry.ErrBadRecord) {
				t.Fatalf("error %v does not wrap ErrBadRecord", err)
			}
			if err == nil && inst.GetState() != registryv1.InstanceState_INSTANCE_STATE_SERVING {
				t.Fatalf("state %v, want SERVING for a record without one", inst.GetState())
			}
		})
	}
}

func FuzzDecodeInstance(f *testing.F) {
	f.Add([]byte(`{"id":"i1","service":"s","address":"127.0.0.1:80","weight":5,"metadata":{"a":"b"}}`))
	f.Add([]byte(`{"id":"i1"`))
	f.Add([]byte(`{"registeredAt":"2026-01-01T00:00:00Z","state":"INSTANCE_STATE_DRAINING"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		inst, err := registry.DecodeInstance("s", "i1", data)
		if err != nil {
			if !errors.Is(err, registry.ErrBadRecord) {
				t.Fatalf("error %v does not wrap ErrBadRecord", err)
			}
			return
		}
		if inst.GetId() != "i1" || inst.GetService() != "s" || inst.GetAddress() == "" {
			t.Fatalf("accepted an inconsistent record: %v", inst)
		}
	})
}

func TestRegisterRejectsBadInstances(t *testing.T) {
	c := dial(t, zktest.Shared(t).ConnectString())
	svc := service(t)
	tests := []struct {
		name string
		inst *registryv1.Instance
		want error
	}{
		{"empty service", instance("", "i", "127.0.0.1:1"), registry.ErrInvalidName},
		{"dotdot id", instance(svc, "..", "127.0.0.1:1"), registry.ErrInvalidName},
		{"slash id", instance(svc, "a/b", "127.0.0.1:1"), registry.ErrInvalidName},
		{"no port", instance(svc, "i", "127.0.0.1"), registry.ErrInvalidInstance},
		{"empty address", instance(svc, "i", ""), registry.ErrInvalidInstance},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := c.Register(context.Background(), tt.inst); !errors.Is(err, tt.want) {
				t.Fatalf("Register = %v, want %v", err, tt.want)
			}
		})
	}
}

// TestRegisterUpdateDeregister follows one instance through its life as a
// watcher on another session sees it.
func TestRegisterUpdateDeregister(t *testing.T) {
	connect := zktest.Shared(t).ConnectString()
	server, client := dial(t, connect), dial(t, connect)
	svc := service(t)
	w := watch(t, client, svc)
	await(t, w, "empty service", hasIDs())

	reg := register(t, server, instance(svc, "i1", "127.0.0.1:7001"))
	snap := await(t, w, "i1 registered", hasIDs("i1"))
	got := snap.Instances[0]
	if got.GetAddress() != "127.0.0.1:7001" || got.GetZone() != "z1" || got.GetState() != registryv1.InstanceState_INSTANCE_STATE_SERVING || got.GetRegisteredAt() == nil {
		t.Fatalf("watched record %v", got)
	}

	ctx := context.Background()
	if err := reg.Update(ctx, func(i *registryv1.Instance) {
		i.Weight = 7
		i.State = registryv1.InstanceState_INSTANCE_STATE_DRAINING
		i.Metadata = map[string]string{"k": "v"}
	}); err != nil {
		t.Fatal(err)
	}
	await(t, w, "weight 7, draining", func(s registry.Snapshot) bool {
		return len(s.Instances) == 1 && s.Instances[0].GetWeight() == 7 &&
			s.Instances[0].GetState() == registryv1.InstanceState_INSTANCE_STATE_DRAINING && s.Instances[0].GetMetadata()["k"] == "v"
	})
	if err := reg.Update(ctx, func(i *registryv1.Instance) { i.Address = "127.0.0.1:1" }); !errors.Is(err, registry.ErrInvalidInstance) {
		t.Fatalf("changing the address: %v, want ErrInvalidInstance", err)
	}

	if err := reg.Deregister(ctx); err != nil {
		t.Fatal(err)
	}
	snap = await(t, w, "empty after deregister", hasIDs())
	if len(snap.Held) != 0 {
		t.Fatalf("a deregistered instance is held: %v", snap.Held)
	}
	if err := reg.Update(ctx, func(*registryv1.Instance) {}); !errors.Is(err, registry.ErrClosed) {
		t.Fatalf("Update after Deregister: %v, want ErrClosed", err)
	}
}

func TestRegisterConflict(t *testing.T) {
	connect := zktest.Shared(t).ConnectString()
	a, b := dial(t, connect), dial(t, connect)
	svc := service(t)
	register(t, a, instance(svc, "same", "127.0.0.1:7001"))
	if _, err := b.Register(context.Background(), instance(svc, "same", "127.0.0.1:7002")); !errors.Is(err, registry.ErrConflict) {
		t.Fatalf("second Register of one id: %v, want ErrConflict", err)
	}
	// The first holder's record is untouched.
	w := watch(t, b, svc)
	snap := await(t, w, "the first record", hasIDs("same"))
	if snap.Instances[0].GetAddress() != "127.0.0.1:7001" {
		t.Fatalf("conflicting Register overwrote the record: %v", snap.Instances[0])
	}
}

// TestSessionExpiryReRegisters partitions the registering client from
// ZooKeeper past its session timeout, so the server expires the session
// and deletes the node; when the partition heals the client gets a new
// session and the node is back, owned by it.
func TestSessionExpiryReRegisters(t *testing.T) {
	srv := zktest.Shared(t)
	proxy := zktest.NewProxy(t, srv.Addr(0))
	const sessionTimeout = 2 * time.Second // short, and past a stall of the process once healed
	server := dial(t, proxy.Addr(), registry.WithSessionTimeout(sessionTimeout), registry.WithCheckInterval(time.Hour))
	observer := zktest.Connect(t, srv.ConnectString())
	svc := service(t)
	register(t, server, instance(svc, "i1", "127.0.0.1:7001"))
	path := registry.Root + "/" + svc + "/instances/i1"
	_, before, err := observer.Get(path)
	if err != nil {
		t.Fatal(err)
	}

	_, _, gone, err := observer.GetW(path)
	if err != nil {
		t.Fatal(err)
	}
	proxy.Cut()
	select {
	case ev := <-gone:
		if ev.Type != zk.EventNodeDeleted {
			t.Fatalf("event %v, want the node deleted by the session's expiry", ev)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the node outlived the partition by 10s: the session did not expire")
	}
	healed := time.Now()
	proxy.Heal()
	var after *zk.Stat
	for time.Since(healed) < 15*time.Second {
		var ok bool
		if ok, after, err = observer.Exists(path); err == nil && ok {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if after == nil || after.EphemeralOwner == 0 {
		t.Fatalf("node not re-created within 15s of the partition healing (last err %v)", err)
	}
	if after.EphemeralOwner == before.EphemeralOwner {
		t.Fatalf("node owned by the expired session %#x", before.EphemeralOwner)
	}
	if after.EphemeralOwner != server.SessionID() {
		t.Fatalf("node owned by %#x, want the client's new session %#x", after.EphemeralOwner, server.SessionID())
	}
	t.Logf("re-registered %v after the partition healed", time.Since(healed).Round(time.Millisecond))
}

// TestReconnectDoesNotFlap cuts the registering client's connection for
// less than its session timeout: the session survives, so the node must
// not be deleted and re-created (watchers would see a flap).
func TestReconnectDoesNotFlap(t *testing.T) {
	srv := zktest.Shared(t)
	proxy := zktest.NewProxy(t, srv.Addr(0))
	server := dial(t, proxy.Addr(), registry.WithSessionTimeout(8*time.Second), registry.WithCheckInterval(200*time.Millisecond))
	observer := zktest.Connect(t, srv.ConnectString())
	svc := service(t)
	register(t, server, instance(svc, "i1", "127.0.0.1:7001"))
	parent := registry.Root + "/" + svc + "/instances"
	_, before, err := observer.Get(parent + "/i1")
	if err != nil {
		t.Fatal(err)
	}
	_, _, childEvents, err := observer.ChildrenW(parent)
	if err != nil {
		t.Fatal(err)
	}

	proxy.Cut()
	time.Sleep(time.Second)
	proxy.Heal()
	// Let the client reconnect and its upkeep run a few self-checks.
	deadline := time.Now().Add(10 * time.Second)
	for server.SessionID() == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(time.Second)

	select {
	case ev := <-childEvents:
		t.Fatalf("the instance list changed across a reconnect: %v", ev)
	default:
	}
	_, after, err := observer.Get(parent + "/i1")
	if err != nil {
		t.Fatal(err)
	}
	if after.Czxid != before.Czxid || after.EphemeralOwner != before.EphemeralOwner {
		t.Fatalf("node re-created across a reconnect: czxid %#x→%#x owner %#x→%#x", before.Czxid, after.Czxid, before.EphemeralOwner, after.EphemeralOwner)
	}
}

// TestSelfCheckRepairsDrift has someone else change or delete the node;
// the registration's self-check puts it back.
func TestSelfCheckRepairsDrift(t *testing.T) {
	srv := zktest.Shared(t)
	server := dial(t, srv.ConnectString(), registry.WithCheckInterval(100*time.Millisecond))
	other := zktest.Connect(t, srv.ConnectString())
	w := watch(t, dial(t, srv.ConnectString()), service(t))
	svc := service(t)
	register(t, server, instance(svc, "i1", "127.0.0.1:7001"))
	await(t, w, "registered", hasIDs("i1"))
	path := registry.Root + "/" + svc + "/instances/i1"

	if _, err := other.Set(path, []byte(`{"id":"i1","service":"`+svc+`","address":"10.9.9.9:1"}`), -1); err != nil {
		t.Fatal(err)
	}
	// A write that bypasses the registry does not touch the service's
	// instances node, so watchers need not see it; the node itself must
	// be repaired.
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, _, err := other.Get(path)
		if err != nil {
			t.Fatal(err)
		}
		if inst, err := registry.DecodeInstance(svc, "i1", b); err == nil && inst.GetAddress() == "127.0.0.1:7001" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("drifted record not repaired within 10s: %s", b)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := other.Delete(path, -1); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(10 * time.Second)
	for {
		ok, stat, err := other.Exists(path)
		if err == nil && ok && stat.EphemeralOwner == server.SessionID() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("deleted node not restored within 10s (exists=%v err=%v)", ok, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestBadRecordIsReported writes a record that is not ours beside a good
// one: the watch reports it as a problem and keeps the good instance.
func TestBadRecordIsReported(t *testing.T) {
	srv := zktest.Shared(t)
	c := dial(t, srv.ConnectString())
	svc := service(t)
	register(t, c, instance(svc, "good", "127.0.0.1:7001"))
	raw := zktest.Connect(t, srv.ConnectString())
	if _, err := raw.Create(registry.Root+"/"+svc+"/instances/bad", []byte("\x00garbage"), zk.FlagEphemeral, zk.WorldACL(zk.PermAll)); err != nil {
		t.Fatal(err)
	}
	w := watch(t, c, svc)
	snap := await(t, w, "good with a problem", func(s registry.Snapshot) bool { return len(s.Problems) == 1 })
	if !slices.Equal(ids(snap), []string{"good"}) || !errors.Is(snap.Problems[0], registry.ErrBadRecord) {
		t.Fatalf("snapshot %s", describe(snap))
	}
}

// TestProtectionHoldsVanishedInstances crashes the session of two of three
// instances (no deregistration): the watch keeps them as held for the hold
// time, then drops them. One crash out of three is not held.
//
// The two share one session, so ending it deletes both nodes in one
// ZooKeeper transaction and the watch sees them vanish together. Two
// sessions closed one after the other could be seen one at a time, and
// one vanished out of two is not over the ratio.
func TestProtectionHoldsVanishedInstances(t *testing.T) {
	srv := zktest.Shared(t)
	svc := service(t)
	const hold = 1500 * time.Millisecond
	w := watch(t, dial(t, srv.ConnectString(), registry.WithProtection(0.5, hold)), svc)
	lone, pair := dial(t, srv.ConnectString()), dial(t, srv.ConnectString())
	register(t, lone, instance(svc, "i0", "127.0.0.1:7001"))
	register(t, pair, instance(svc, "i1", "127.0.0.1:7002"))
	register(t, pair, instance(svc, "i2", "127.0.0.1:7003"))
	await(t, w, "three", hasIDs("i0", "i1", "i2"))

	lone.Close() // one crash: a third, under the ratio
	snap := await(t, w, "i0 gone", hasIDs("i1", "i2"))
	if len(snap.Held) != 0 {
		t.Fatalf("held %v after one crash of three", snap.Held)
	}

	pair.Close() // i1 and i2 crash together: both of two, over the ratio
	start := time.Now()
	snap = await(t, w, "i1, i2 held", func(s registry.Snapshot) bool { return len(s.Held) == 2 })
	if !slices.Equal(ids(snap), []string{"i1", "i2"}) {
		t.Fatalf("held snapshot %s", describe(snap))
	}
	await(t, w, "empty after the hold", hasIDs())
	if d := time.Since(start); d < hold-200*time.Millisecond {
		t.Fatalf("held instances dropped after %v, before the hold of %v", d, hold)
	}
}

// TestWatchesPerService registers 100 instances and checks that a client
// watching the service (twice) holds watches on one path, the service's
// instances node (its children and its data), not one per instance.
func TestWatchesPerService(t *testing.T) {
	if n := watchedPathsFor100(t, zktest.Shared(t)); n != 1 {
		t.Fatalf("a client watching a service of 100 instances watches %d paths, want 1", n)
	}
}
