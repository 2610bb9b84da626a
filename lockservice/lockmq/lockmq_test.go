package lockmq_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/switchyard-dev/switchyard/internal/lbtest"
	"github.com/switchyard-dev/switchyard/internal/locktest"
	"github.com/switchyard-dev/switchyard/internal/natstest"
	"github.com/switchyard-dev/switchyard/internal/zktest"
	"github.com/switchyard-dev/switchyard/lockservice/lockclient"
	"github.com/switchyard-dev/switchyard/lockservice/lockmq"
	"github.com/switchyard-dev/switchyard/mq"
	lockv1 "github.com/switchyard-dev/switchyard/proto/switchyard/lock/v1"
	"github.com/switchyard-dev/switchyard/registry"
)

func TestMain(m *testing.M) { zktest.Main(m) }

// stack is NATS and ZooKeeper, for lock-service replicas each with its
// NATS front door.
type stack struct {
	url    string
	reg    *registry.Client
	zkAddr string
}

// startStack starts NATS and a replica with its door for each of ids.
func startStack(t *testing.T, ids ...string) *stack {
	t.Helper()
	st := &stack{url: natstest.Start(t).ClientURL(), reg: lbtest.Dial(t), zkAddr: zktest.Shared(t).Addr(0)}
	for _, id := range ids {
		st.serve(t, id, 4*time.Second)
	}
	return st
}

// serve starts replica id, with a ZooKeeper session timeout of session,
// and its door, with opts; both end with t.
func (st *stack) serve(t *testing.T, id string, session time.Duration, opts ...lockmq.Option) (*locktest.Replica, *lockmq.Door) {
	t.Helper()
	r := locktest.StartReplica(t, st.reg, st.zkAddr, id, session)
	d, err := lockmq.Serve(natstest.Connect(t, st.url), r.Server, append([]lockmq.Option{lockmq.WithLogger(zktest.Logger(t))}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := d.Close(); err != nil {
			t.Error(err)
		}
	})
	return r, d
}

// holdFor is the session timeout of a replica whose tests hold a lock
// while others wait for it, and the TTL of that lease: longer than the
// tests' contexts, so the lease outlasts the waits unrenewed.
const holdFor = time.Minute

// hold takes the lock name at r's server, for holdFor, and releases it
// when t ends (a replica closes only once its leases have ended).
func hold(ctx context.Context, t *testing.T, r *locktest.Replica, name string) *lockv1.Lease {
	t.Helper()
	resp, err := r.Server.Acquire(ctx, &lockv1.AcquireRequest{Name: name, Ttl: durationpb.New(holdFor)})
	if err != nil {
		t.Fatal(err)
	}
	lease := resp.GetLease()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := r.Server.Release(ctx, &lockv1.ReleaseRequest{Name: name, LeaseId: lease.GetLeaseId(), Token: lease.GetToken()}); err != nil {
			t.Errorf("releasing %s: %v", name, err)
		}
	})
	return lease
}

// awaitWaiting waits until n acquires with request id rid wait at d,
// failing if one of them ends first (on errs) or ctx ends.
func awaitWaiting(ctx context.Context, t *testing.T, d *lockmq.Door, rid string, n int, errs <-chan error) {
	t.Helper()
	for d.Waiting(rid) < n {
		select {
		case err := <-errs:
			t.Fatalf("an acquire of request %q ended before it was waiting: %v", rid, err)
		case <-ctx.Done():
			t.Fatalf("%d acquires of request %q are not all waiting: %v", n, rid, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// TestConformanceNATS runs the lock service's conformance suite, unchanged,
// over NATS against two replicas in one queue group.
func TestConformanceNATS(t *testing.T) {
	st := startStack(t, "nats-one", "nats-two")
	nc := natstest.Connect(t, st.url)
	locktest.Run(t, locktest.Harness{
		Transport: func(tb testing.TB) lockclient.Transport {
			return lockmq.Transport(natstest.Connect(tb, st.url))
		},
		Describe: func(ctx context.Context, name string) (*lockv1.DescribeResponse, error) {
			return lockmq.Describe(ctx, nc, name)
		},
	})
}

// TestJSONLikeTheCLI talks to the front door as `nats req` would: raw
// JSON bytes with a Content-Type header, JSON back.
func TestJSONLikeTheCLI(t *testing.T) {
	st := startStack(t, "json-one")
	nc := natstest.Connect(t, st.url)
	req := func(subject, body string, hdr ...string) (*nats.Msg, map[string]any) {
		t.Helper()
		m := nats.NewMsg(subject)
		m.Header.Set("Content-Type", "application/json")
		for i := 0; i+1 < len(hdr); i += 2 {
			m.Header.Set(hdr[i], hdr[i+1])
		}
		m.Data = []byte(body)
		reply, err := nc.RequestMsg(m, 10*time.Second)
		if err != nil {
			t.Fatalf("%s: %v", subject, err)
		}
		if ct := reply.Header.Get("Content-Type"); ct != "application/json" {
			t.Fatalf("%s: reply Content-Type %q, want application/json", subject, ct)
		}
		var out map[string]any
		if err := json.Unmarshal(reply.Data, &out); err != nil {
			t.Fatalf("%s: reply is not JSON: %v: %q", subject, err, reply.Data)
		}
		return reply, out
	}

	reply, got := req(lockmq.TryAcquireSubject, `{"name":"orders/42","ttl":"10s"}`, "Switchyard-Timeout", "5s")
	if code := reply.Header.Get(micro.ErrorCodeHeader); code != "" {
		t.Fatalf("try_acquire: error %s %s", code, reply.Header.Get(micro.ErrorHeader))
	}
	lease, _ := got["lease"].(map[string]any)
	if lease["name"] != "orders/42" || lease["replica"] != "json-one" || lease["token"] == nil || lease["leaseId"] == nil {
		t.Fatalf("try_acquire answered %v, want a lease of orders/42 at json-one with a token and a lease id", got)
	}

	// Held: a second try-lock is ABORTED, as a JSON google.rpc.Status.
	reply, got = req(lockmq.TryAcquireSubject, `{"name":"orders/42"}`)
	if code := reply.Header.Get(micro.ErrorCodeHeader); code != "10" {
		t.Fatalf("second try_acquire: error code %q (%v), want 10 (ABORTED)", code, got)
	}
	if msg, _ := got["message"].(string); msg == "" || got["code"] != float64(codes.Aborted) {
		t.Errorf("second try_acquire's status body %v, want code 10 and a message", got)
	}

	_, got = req(lockmq.DescribeSubject, `{"name":"orders/42"}`)
	if holder, _ := got["holder"].(map[string]any); holder["token"] != lease["token"] {
		t.Errorf("describe answered %v, want the holder with token %v", got, lease["token"])
	}

	rel := `{"name":"orders/42","leaseId":"` + lease["leaseId"].(string) + `","token":"` + lease["token"].(string) + `"}`
	reply, got = req(lockmq.ReplicaSubject("json-one", lockmq.OpRelease), rel)
	if code := reply.Header.Get(micro.ErrorCodeHeader); code != "" {
		t.Fatalf("release: error %s %v", code, got)
	}
	reply, _ = req(lockmq.ReplicaSubject("json-one", lockmq.OpRelease), rel)
	if code := reply.Header.Get(micro.ErrorCodeHeader); code != "9" {
		t.Errorf("second release: error code %q, want 9 (FAILED_PRECONDITION)", code)
	}
}

// TestBadInput sends what a careless or hostile client might: every one
// gets a clear error reply (or, with no reply subject, is dropped), none
// is granted, and the door keeps serving.
func TestBadInput(t *testing.T) {
	st := startStack(t, "bad-one")
	nc := natstest.Connect(t, st.url)
	tests := []struct {
		name    string
		subject string
		ct      string
		body    string
		hdr     map[string]string
		want    codes.Code
	}{
		{"garbage protobuf", lockmq.AcquireSubject, "", "\xff\xff\xff\xff", nil, codes.InvalidArgument},
		{"bad json", lockmq.AcquireSubject, "application/json", `{"name":`, nil, codes.InvalidArgument},
		{"unknown field", lockmq.TryAcquireSubject, "application/json", `{"name":"bad/x","color":"red"}`, nil, codes.InvalidArgument},
		{"wrong content type", lockmq.TryAcquireSubject, "text/plain", `name=bad/x`, nil, codes.InvalidArgument},
		{"bad name", lockmq.TryAcquireSubject, "application/json", `{"name":"/abs"}`, nil, codes.InvalidArgument},
		{"dotdot name", lockmq.TryAcquireSubject, "application/json", `{"name":"a/../b"}`, nil, codes.InvalidArgument},
		{"ttl out of range", lockmq.TryAcquireSubject, "application/json", `{"name":"bad/x","ttl":"3600s"}`, nil, codes.InvalidArgument},
		{"bad deadline", lockmq.TryAcquireSubject, "application/json", `{"name":"bad/x"}`, map[string]string{"Switchyard-Deadline": "tomorrow"}, codes.InvalidArgument},
		{"deadline past", lockmq.TryAcquireSubject, "application/json", `{"name":"bad/x"}`, map[string]string{"Switchyard-Deadline": "2001-01-01T00:00:00Z"}, codes.DeadlineExceeded},
		{"request ids differ", lockmq.TryAcquireSubject, "application/json", `{"name":"bad/x","requestId":"a"}`, map[string]string{"Switchyard-Request-Id": "b"}, codes.InvalidArgument},
		{"unknown lease", lockmq.ReplicaSubject("bad-one", lockmq.OpRelease), "application/json", `{"name":"bad/x","leaseId":"00","token":"1"}`, nil, codes.PermissionDenied},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := nats.NewMsg(tt.subject)
			if tt.ct != "" {
				m.Header.Set("Content-Type", tt.ct)
			}
			for k, v := range tt.hdr {
				m.Header.Set(k, v)
			}
			m.Data = []byte(tt.body)
			reply, err := nc.RequestMsg(m, 10*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if code := status.Code(mq.StatusFromMsg(reply)); code != tt.want {
				t.Errorf("code %v (%v), want %v", code, mq.StatusFromMsg(reply), tt.want)
			}
		})
	}

	t.Run("no reply subject", func(t *testing.T) {
		m := nats.NewMsg(lockmq.AcquireSubject)
		m.Header.Set("Content-Type", "application/json")
		m.Data = []byte(`{"name":"bad/noreply","wait":true}`)
		if err := nc.PublishMsg(m); err != nil {
			t.Fatal(err)
		}
		if err := nc.Flush(); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		// The door keeps serving, and nothing was granted for the request.
		d, err := lockmq.Describe(ctx, nc, "bad/noreply")
		if status.Code(err) != codes.NotFound {
			t.Errorf("describe after a request without reply subject: %v %v, want NOT_FOUND", d, err)
		}
	})

	t.Run("gone replica", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		err := mq.Request(ctx, nc, lockmq.ReplicaSubject("no-such-replica", lockmq.OpKeepAlive),
			&lockv1.KeepAliveRequest{Name: "bad/x", LeaseId: "00", Token: 1}, &lockv1.KeepAliveResponse{})
		if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "no responders") {
			t.Errorf("keep-alive at a replica that is gone: %v, want UNAVAILABLE (no responders)", err)
		}
	})

	t.Run("oversized", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		err := mq.Request(ctx, nc, lockmq.AcquireSubject,
			&lockv1.AcquireRequest{Name: strings.Repeat("x", int(nc.MaxPayload())+1)}, &lockv1.AcquireResponse{})
		if status.Code(err) != codes.ResourceExhausted {
			t.Errorf("an acquire over the server's max payload: %v, want RESOURCE_EXHAUSTED", err)
		}
	})
}

// TestMicroDiscovery checks that `nats micro info` would find the door:
// the micro service answers $SRV.INFO with every subject.
func TestMicroDiscovery(t *testing.T) {
	st := startStack(t, "micro-one")
	nc := natstest.Connect(t, st.url)
	subject, err := micro.ControlSubject(micro.InfoVerb, lockmq.ServiceName, "")
	if err != nil {
		t.Fatal(err)
	}
	reply, err := nc.Request(subject, nil, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var info micro.Info
	if err := json.Unmarshal(reply.Data, &info); err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, e := range info.Endpoints {
		got[e.Subject] = true
		if e.Metadata["request"] == "" || e.Metadata["response"] == "" {
			t.Errorf("endpoint %s names no request or response message: %v", e.Subject, e.Metadata)
		}
	}
	for _, want := range []string{
		lockmq.AcquireSubject, lockmq.TryAcquireSubject, lockmq.DescribeSubject, lockmq.ListSubject,
		lockmq.ReplicaSubject("micro-one", lockmq.OpAcquire),
		lockmq.ReplicaSubject("micro-one", lockmq.OpKeepAlive),
		lockmq.ReplicaSubject("micro-one", lockmq.OpRelease),
	} {
		if !got[want] {
			t.Errorf("$SRV.INFO has no endpoint %s (has %v)", want, got)
		}
	}
	if info.Metadata["replica"] != "micro-one" {
		t.Errorf("service metadata %v, want replica micro-one", info.Metadata)
	}
}

func TestToken(t *testing.T) {
	tests := []struct{ in, want string }{
		{"orders/42", "orders/42"},
		{"a.b", "a%2Eb"},
		{"127.0.0.1:7070", "127%2E0%2E0%2E1:7070"},
		{"x*y>z", "x%2Ay%3Ez"},
		{"100%", "100%25"},
		{"sp ace", "sp%20ace"},
		{"héllo", "h%C3%A9llo"},
		{"", "%"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got := lockmq.Token(tt.in)
			if got != tt.want {
				t.Errorf("Token(%q) = %q, want %q", tt.in, got, tt.want)
			}
			back, err := lockmq.Untoken(got)
			if err != nil || back != tt.in {
				t.Errorf("Untoken(%q) = %q, %v, want %q", got, back, err, tt.in)
			}
		})
	}
	for _, bad := range []string{"%G0", "a%2", "%C3"} {
		if got, err := lockmq.Untoken(bad); err == nil {
			t.Errorf("Untoken(%q) = %q, want an error", bad, got)
		}
	}
}

// TestCancel sends acquires with one request id, as a requester retrying
// does, that join one wait on a held lock at one replica; a message on
// CancelSubject ends them all, whatever case its header name is in.
func TestCancel(t *testing.T) {
	st := startStack(t)
	r, d := st.serve(t, "cancel-one", holdFor)
	nc := natstest.Connect(t, st.url)
	tests := []struct {
		name   string
		header string // the name the cancel's request id goes under
		waits  int
	}{
		{name: "one wait", header: mq.HeaderRequestID, waits: 1},
		{name: "two waits", header: mq.HeaderRequestID, waits: 2},
		{name: "lowercase header", header: strings.ToLower(mq.HeaderRequestID), waits: 2},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// The acquires wait until cancelled; without the cancel they
			// would end at this deadline, DEADLINE_EXCEEDED, the lock
			// still held.
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			name := fmt.Sprintf("cancel/%d", i)
			hold(ctx, t, r, name)
			rid := fmt.Sprintf("cancel-%d", i)
			errs := make(chan error, tt.waits)
			for range tt.waits {
				go func() {
					errs <- mq.Request(ctx, nc, lockmq.AcquireSubject,
						&lockv1.AcquireRequest{Name: name, RequestId: rid, Wait: true}, &lockv1.AcquireResponse{})
				}()
			}
			awaitWaiting(ctx, t, d, rid, tt.waits, errs)

			m := nats.NewMsg(lockmq.CancelSubject)
			m.Header[tt.header] = []string{rid}
			if err := nc.PublishMsg(m); err != nil {
				t.Fatal(err)
			}
			for range tt.waits {
				if err := <-errs; status.Code(err) != codes.Canceled {
					t.Errorf("a cancelled acquire ended with %v, want CANCELLED", err)
				}
			}
			if n := d.Waiting(rid); n != 0 {
				t.Errorf("%d acquires of %q still registered after they ended", n, rid)
			}
		})
	}
}

// TestMaxInFlight gives a door room for one request: while a blocking
// acquire holds it, every other request is refused RESOURCE_EXHAUSTED at
// once.
func TestMaxInFlight(t *testing.T) {
	st := startStack(t)
	r, d := st.serve(t, "inflight-one", holdFor, lockmq.WithMaxInFlight(1))
	nc := natstest.Connect(t, st.url)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const name, rid = "inflight/x", "inflight-wait"
	lease := hold(ctx, t, r, name)
	errs := make(chan error, 1)
	go func() {
		errs <- mq.Request(ctx, nc, lockmq.AcquireSubject,
			&lockv1.AcquireRequest{Name: name, RequestId: rid, Wait: true}, &lockv1.AcquireResponse{})
	}()
	awaitWaiting(ctx, t, d, rid, 1, errs)

	tests := []struct {
		name    string
		subject string
		req     proto.Message
		resp    proto.Message
	}{
		{"acquire", lockmq.AcquireSubject, &lockv1.AcquireRequest{Name: "inflight/y", Wait: true}, &lockv1.AcquireResponse{}},
		{"try_acquire", lockmq.TryAcquireSubject, &lockv1.AcquireRequest{Name: "inflight/y"}, &lockv1.AcquireResponse{}},
		{"describe", lockmq.DescribeSubject, &lockv1.DescribeRequest{Name: name}, &lockv1.DescribeResponse{}},
		{"keep_alive", lockmq.ReplicaSubject("inflight-one", lockmq.OpKeepAlive),
			&lockv1.KeepAliveRequest{Name: name, LeaseId: lease.GetLeaseId(), Token: lease.GetToken()}, &lockv1.KeepAliveResponse{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := mq.Request(ctx, nc, tt.subject, tt.req, tt.resp)
			if status.Code(err) != codes.ResourceExhausted {
				t.Errorf("a request while the one slot is taken: %v, want RESOURCE_EXHAUSTED", err)
			}
		})
	}

	m := nats.NewMsg(lockmq.CancelSubject)
	m.Header.Set(mq.HeaderRequestID, rid)
	if err := nc.PublishMsg(m); err != nil {
		t.Fatal(err)
	}
	if err := <-errs; status.Code(err) != codes.Canceled {
		t.Errorf("the waiting acquire ended with %v, want CANCELLED", err)
	}
}

// TestServeBadOptions: options Serve cannot work with are its error, not
// a door that fails later (a bad events content type would fail every
// publish and make the broadcaster step down again and again).
func TestServeBadOptions(t *testing.T) {
	st := &stack{url: natstest.Start(t).ClientURL(), reg: lbtest.Dial(t), zkAddr: zktest.Shared(t).Addr(0)}
	r := locktest.StartReplica(t, st.reg, st.zkAddr, "bad-options", 4*time.Second)
	nc := natstest.Connect(t, st.url)
	for _, tt := range []struct {
		name string
		opt  lockmq.Option
		is   error
	}{
		{"no request in flight", lockmq.WithMaxInFlight(0), nil},
		{"events in text", lockmq.WithEvents("text/plain"), mq.ErrContentType},
	} {
		t.Run(tt.name, func(t *testing.T) {
			d, err := lockmq.Serve(nc, r.Server, tt.opt)
			if err == nil {
				d.Close()
				t.Fatal("Serve took it")
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("Serve: %v, want %v", err, tt.is)
			}
		})
	}
}
