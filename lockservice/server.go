package lockservice

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/switchyard-dev/switchyard/internal/zkconn"
	"github.com/switchyard-dev/switchyard/lockservice/zklock"
	lockv1 "github.com/switchyard-dev/switchyard/proto/switchyard/lock/v1"
)

// Limits on requests; past them a request is INVALID_ARGUMENT.
const (
	MinTTL       = time.Second
	MaxTTL       = 5 * time.Minute
	DefaultTTL   = 10 * time.Second
	MaxOwnerLen  = 128
	MaxRequestID = 64
	MaxListLimit = 1000
)

// Config configures a Server. Start from DefaultConfig.
type Config struct {
	// Replica is this replica's instance id in the registry: leases name
	// it so that renewals and releases find their way back. Required.
	Replica string
	// MaxWaiters bounds the acquires one lock may have queued on this
	// replica.
	MaxWaiters int
	// MaxLeases bounds the leases this replica holds.
	MaxLeases int
	// Heartbeat is how often the replica checks that ZooKeeper still
	// hears it; 0 is an eighth of the session timeout. The validity it
	// grants is bounded by the last check that succeeded.
	Heartbeat time.Duration
	// MinValidity is the shortest validity worth granting: when the
	// session cannot guarantee that much, the replica answers UNAVAILABLE.
	MinValidity time.Duration
	// ClaimRetention is how long, at least, a request id stays refused
	// by every replica after its lease ended (the claim of its GUID in
	// ZooKeeper; see package zklock); 0 is zklock.DefaultClaimRetention.
	// A duplicate arriving later than that may be granted again.
	ClaimRetention time.Duration
	// WatchBuffer is how many events a Watch stream may have waiting to
	// be sent; a stream whose client reads slower than that is ended with
	// RESOURCE_EXHAUSTED. 0 is DefaultWatchBuffer.
	WatchBuffer int
	// Logger logs lease expiries, losses and failures.
	Logger *slog.Logger
	// Metrics, when set, registers the replica's lock metrics there:
	// switchyard_lock_leases and _waiting (gauges), _grants_total,
	// _ends_total{reason="released|expired|lost"} and the histogram
	// _wait_seconds, from an acquire's arrival to its grant, and
	// _broadcast_events_total (see Broadcast). Give each
	// replica in a process a registerer of its own.
	Metrics prometheus.Registerer
}

// DefaultConfig returns the defaults for replica.
func DefaultConfig(replica string) Config {
	return Config{Replica: replica, MaxWaiters: 1000, MaxLeases: 100000, MinValidity: 200 * time.Millisecond,
		ClaimRetention: zklock.DefaultClaimRetention, Logger: slog.Default()}
}

// Validate reports a config that cannot work.
func (c Config) Validate() error {
	switch {
	case c.Replica == "":
		return errors.New("lockservice: config: no replica id")
	case c.MaxWaiters < 1 || c.MaxLeases < 1:
		return fmt.Errorf("lockservice: config: limits %d waiters, %d leases: want 1 or more", c.MaxWaiters, c.MaxLeases)
	case c.Heartbeat < 0 || c.MinValidity <= 0:
		return fmt.Errorf("lockservice: config: heartbeat %v, min validity %v", c.Heartbeat, c.MinValidity)
	case c.ClaimRetention < 0:
		return fmt.Errorf("lockservice: config: claim retention %v is negative", c.ClaimRetention)
	case c.WatchBuffer < 0:
		return fmt.Errorf("lockservice: config: watch buffer %d is negative", c.WatchBuffer)
	case c.Logger == nil:
		return errors.New("lockservice: config: no logger")
	}
	return nil
}

// Server serves LockService from one ZooKeeper session. It is safe for
// concurrent use. Close ends it.
type Server struct {
	lockv1.UnimplementedLockServiceServer
	metrics *metrics     // nil: none
	own     *zkconn.Conn // the session Dial made; closed by Close

	cfg    Config
	conn   *zkconn.Conn
	locker *zklock.Locker
	heard  heardClock

	ctx    context.Context // ends at Close
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once

	mu        sync.Mutex
	closing   bool
	leases    map[string]*lease      // by lease id
	byRequest map[string]*lease      // by request id
	ended     tombstones             // leases and requests that have ended, and why
	waiting   map[string]int         // acquires in progress, by lock name
	ending    map[*zklock.Grant]bool // grants being withdrawn
	draining  context.Context        // ends at Drain: waiting acquires give up
	drain     context.CancelFunc

	watchMu sync.Mutex
	watch   *watcher // nil while no Watch stream runs
	streams int      // Watch streams subscribed to watch
}

// lease is a grant held for a client.
type lease struct {
	id, requestID string
	grant         *zklock.Grant
	ttl           time.Duration // asked for
	expires       time.Time     // monotonic; guarded by Server.mu
	timer         *time.Timer
	pb            *lockv1.Lease
}

var _ lockv1.LockServiceServer = (*Server)(nil)

// Dial connects to the ZooKeeper servers in connect ("host:port,...") with
// a session of its own, asking for sessionTimeout (the server may grant
// another, which then bounds the leases), and returns a Server on it.
// Close closes the session too. This is how a program outside this module
// runs a replica.
func Dial(ctx context.Context, connect string, sessionTimeout time.Duration, cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	conn, err := zkconn.Dial(ctx, connect, sessionTimeout, cfg.Logger)
	if err != nil {
		return nil, fmt.Errorf("lockservice: %w", err)
	}
	s, err := New(conn, cfg)
	if err != nil {
		return nil, errors.Join(err, conn.Close())
	}
	s.own = conn
	return s, nil
}

// New returns a Server whose locks live in conn's session. conn stays the
// caller's: Close the Server first.
func New(conn *zkconn.Conn, cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	opts := []zklock.Option{zklock.WithLogger(cfg.Logger)}
	if cfg.ClaimRetention > 0 {
		opts = append(opts, zklock.WithClaimRetention(cfg.ClaimRetention))
	}
	m, err := newMetrics(cfg.Metrics)
	if err != nil {
		return nil, err
	}
	locker, err := zklock.New(conn, opts...)
	if err != nil {
		return nil, fmt.Errorf("lockservice: %w", err)
	}
	s := &Server{
		metrics:   m,
		cfg:       cfg,
		conn:      conn,
		locker:    locker,
		leases:    map[string]*lease{},
		byRequest: map[string]*lease{},
		ended:     newTombstones(1 << 14),
		waiting:   map[string]int{},
		ending:    map[*zklock.Grant]bool{},
	}
	s.draining, s.drain = context.WithCancel(context.Background())
	s.ctx, s.cancel = context.WithCancel(context.Background())
	// A first round trip now, so that a new replica can grant at once.
	first, cancel := context.WithTimeout(s.ctx, conn.SessionTimeout())
	s.beat(first)
	cancel()
	s.wg.Go(s.heartbeat)
	return s, nil
}

// Drain starts the replica's leaving: it refuses new acquires and ends
// the waiting ones with UNAVAILABLE, their nodes deleted, so that their
// clients retry at another replica. Leases already granted go on being
// renewed and released until Close. rpc.WithOnDrain runs it as the
// replica's drain begins. It is safe to call more than once.
func (s *Server) Drain() { s.drain() }

// Close stops the replica: acquires and renewals are refused from now on
// (so holders start learning of their loss), waiting acquires end, and
// Close waits until every lease it granted has ended (released, or its
// validity run out) before it deletes any node — so no holder is cut off
// before the validity it was promised. Then it closes the Locker, and the
// session if Dial made it. It is safe to call more than once.
func (s *Server) Close() error {
	var err error
	s.once.Do(func() {
		s.Drain()
		s.mu.Lock()
		s.closing = true
		var last time.Time
		for _, l := range s.leases {
			if l.expires.After(last) {
				last = l.expires
			}
		}
		s.mu.Unlock()
		if d := time.Until(last); d > 0 {
			time.Sleep(d)
		}
		s.cancel()
		s.wg.Wait()
		s.stopWatcher()
		s.mu.Lock()
		for _, l := range s.leases {
			l.timer.Stop()
		}
		s.mu.Unlock()
		err = s.locker.Close()
		if s.own != nil {
			err = errors.Join(err, s.own.Close())
		}
	})
	return err
}

// heardClock is the send time of the latest ZooKeeper round trip that
// succeeded: the server renewed the session no earlier, so the session
// cannot expire before it plus the session timeout.
type heardClock struct {
	mu sync.Mutex
	at time.Time
}

func (h *heardClock) set(t time.Time) {
	h.mu.Lock()
	if t.After(h.at) {
		h.at = t
	}
	h.mu.Unlock()
}

func (h *heardClock) get() time.Time {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.at
}

// heartbeat makes a cheap ZooKeeper round trip every Heartbeat, so that
// the validity the replica grants can rest on when it was last heard.
func (s *Server) heartbeat() {
	for {
		every := s.cfg.Heartbeat
		if every == 0 {
			every = s.conn.SessionTimeout() / 8
		}
		select {
		case <-time.After(every):
		case <-s.ctx.Done():
			return
		}
		s.beat(s.ctx)
	}
}

// beat makes one round trip to ZooKeeper and, if it succeeds, records
// when it was sent. go-zookeeper takes no context: a call still pending
// when ctx ends returns when the connection answers or closes.
func (s *Server) beat(ctx context.Context) {
	sent := time.Now()
	done := make(chan error, 1)
	go func() { _, _, err := s.conn.ZK().Exists("/"); done <- err }()
	select {
	case err := <-done:
		if err == nil {
			s.heard.set(sent)
		}
	case <-ctx.Done():
	}
}

// validity returns what the replica can promise now for asked: at most
// asked, and ending before the session could expire.
func (s *Server) validity(asked time.Duration, now time.Time) (time.Duration, error) {
	if !s.conn.Connected() {
		return 0, status.Error(codes.Unavailable, "the replica is not connected to ZooKeeper")
	}
	left := s.heard.get().Add(s.conn.SessionTimeout()).Sub(now)
	v := min(asked, left)
	if v < s.cfg.MinValidity {
		return 0, status.Errorf(codes.Unavailable, "the replica cannot promise a lease now: its ZooKeeper session is guaranteed for %v", max(left, 0))
	}
	return v, nil
}

var requestIDPattern = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// CheckRequestID returns nil if id is a request id the lock service takes
// (AcquireRequest.request_id): 1 to MaxRequestID bytes of [A-Za-z0-9_-].
// Otherwise it returns an INVALID_ARGUMENT status error. An acquire
// without a request id is given one, so callers that allow none check
// only ids that are not empty.
func CheckRequestID(id string) error {
	if len(id) > MaxRequestID {
		return status.Errorf(codes.InvalidArgument, "request id of %d bytes: want 1 to %d of [A-Za-z0-9_-]", len(id), MaxRequestID)
	}
	if !requestIDPattern.MatchString(id) {
		return status.Errorf(codes.InvalidArgument, "request id %q: want 1 to %d of [A-Za-z0-9_-]", id, MaxRequestID)
	}
	return nil
}

func checkName(name string) error {
	if err := zklock.ValidateName(name); err != nil {
		return status.Error(codes.InvalidArgument, err.Error())
	}
	return nil
}

// Acquire takes a lock for the caller under a lease.
func (s *Server) Acquire(ctx context.Context, req *lockv1.AcquireRequest) (*lockv1.AcquireResponse, error) {
	received := time.Now()
	ttl, err := checkAcquire(req)
	if err != nil {
		return nil, err
	}
	rid := req.GetRequestId()
	if rid == "" {
		rid = randomHex(16)
	}
	if l, err := s.enter(req.GetName(), rid); l != nil || err != nil {
		return &lockv1.AcquireResponse{Lease: l}, err
	}
	defer s.leave(req.GetName())
	if _, err := s.validity(ttl, received); err != nil {
		return nil, err
	}

	data, err := proto.Marshal(&lockv1.Contender{
		Owner: req.GetOwner(), Replica: s.cfg.Replica, RequestId: rid,
		Since: timestamppb.New(received), Ttl: durationpb.New(ttl),
	})
	if err != nil {
		return nil, status.Errorf(codes.Internal, "encoding the contender: %v", err)
	}
	// A drain ends the wait (its node deleted) so the client retries elsewhere.
	actx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(s.draining, cancel)()
	grant, err := s.locker.Acquire(actx, req.GetName(), guidOf(rid), data, req.GetWait())
	if err != nil && s.draining.Err() != nil && ctx.Err() == nil {
		return nil, status.Error(codes.Unavailable, "the replica is draining; retry elsewhere")
	}
	switch {
	case errors.Is(err, zklock.ErrGUIDConflict):
		return nil, s.otherReplica(ctx, req.GetName(), rid)
	case errors.Is(err, zklock.ErrClaimEnded):
		return nil, s.toStatus(fmt.Errorf("request %q was granted before, and has ended: %w", rid, err))
	case errors.Is(err, zklock.ErrGUIDReused):
		return nil, s.toStatus(fmt.Errorf("request id %q was used for another lock: %w", rid, err))
	case err != nil:
		return nil, s.toStatus(err)
	}
	l, err := s.hold(ctx, grant, rid, ttl, received)
	if err != nil {
		return nil, err
	}
	return &lockv1.AcquireResponse{Lease: l}, nil
}

func checkAcquire(req *lockv1.AcquireRequest) (time.Duration, error) {
	if err := checkName(req.GetName()); err != nil {
		return 0, err
	}
	ttl := DefaultTTL
	if req.GetTtl() != nil {
		if err := req.GetTtl().CheckValid(); err != nil {
			return 0, status.Errorf(codes.InvalidArgument, "ttl: %v", err)
		}
		ttl = req.GetTtl().AsDuration()
	}
	if ttl < MinTTL || ttl > MaxTTL {
		return 0, status.Errorf(codes.InvalidArgument, "ttl %v is outside [%v, %v]", ttl, MinTTL, MaxTTL)
	}
	if rid := req.GetRequestId(); rid != "" {
		if err := CheckRequestID(rid); err != nil {
			return 0, err
		}
	}
	if o := req.GetOwner(); len(o) > MaxOwnerLen || !utf8.ValidString(o) {
		return 0, status.Errorf(codes.InvalidArgument, "owner: want at most %d bytes of UTF-8", MaxOwnerLen)
	}
	return ttl, nil
}

// enter admits an acquire of name with request id rid: it returns the
// lease a retry already has, refuses a request whose lease has ended and
// enforces the limits, or counts the acquire in.
func (s *Server) enter(name, rid string) (*lockv1.Lease, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.draining.Err() != nil {
		return nil, status.Error(codes.Unavailable, "the replica is draining; retry elsewhere")
	}
	if l := s.byRequest[rid]; l != nil {
		if l.pb.GetName() != name {
			return nil, status.Errorf(codes.InvalidArgument, "request id %q was used for lock %q", rid, l.pb.GetName())
		}
		return l.pb, nil
	}
	if why, ok := s.ended.get("request:" + rid); ok {
		return nil, status.Errorf(codes.FailedPrecondition, "request %q was granted before, and its lease %s", rid, why)
	}
	if s.waiting[name] >= s.cfg.MaxWaiters {
		return nil, status.Errorf(codes.ResourceExhausted, "lock %q has %d acquires queued on this replica, the limit", name, s.cfg.MaxWaiters)
	}
	if len(s.leases) >= s.cfg.MaxLeases {
		return nil, status.Errorf(codes.ResourceExhausted, "this replica holds %d leases, the limit", s.cfg.MaxLeases)
	}
	s.waiting[name]++
	s.metrics.queued(1)
	return nil, nil
}

func (s *Server) leave(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.metrics.queued(-1)
	if s.waiting[name]--; s.waiting[name] <= 0 {
		delete(s.waiting, name)
	}
}

// hold makes the lease of a new grant, or returns the lease a concurrent
// acquire with the same request id made of the same grant. A grant it
// cannot back with a lease — the caller gave up meanwhile, the replica is
// draining, or its session can no longer promise a validity — is
// withdrawn, so that a retry with the request id (invited by UNAVAILABLE)
// queues anew rather than finding an orphaned grant.
func (s *Server) hold(ctx context.Context, grant *zklock.Grant, rid string, ttl time.Duration, received time.Time) (*lockv1.Lease, error) {
	granted := time.Now()
	s.mu.Lock()
	if l := s.byRequest[rid]; l != nil {
		s.mu.Unlock()
		return l.pb, nil
	}
	if s.ending[grant] || !grant.Held() {
		s.mu.Unlock()
		return nil, status.Errorf(codes.Unavailable, "the grant of %q ended before its lease was made; retry", grant.Name())
	}
	v, err := s.validity(ttl, granted)
	switch {
	case err != nil:
	case s.draining.Err() != nil:
		err = status.Error(codes.Unavailable, "the replica is draining; retry elsewhere")
	case ctx.Err() != nil:
		err = s.toStatus(ctx.Err())
	}
	if err != nil {
		s.ending[grant] = true
		s.mu.Unlock()
		s.withdraw(grant)
		s.mu.Lock()
		delete(s.ending, grant)
		s.mu.Unlock()
		return nil, err
	}
	l := &lease{
		id: randomHex(16), requestID: rid, grant: grant, ttl: ttl, expires: granted.Add(v),
		pb: &lockv1.Lease{
			Name: grant.Name(), Token: uint64(grant.Token()), Ttl: durationpb.New(v),
			Replica: s.cfg.Replica, RequestId: rid, Waited: durationpb.New(granted.Sub(received)),
		},
	}
	l.pb.LeaseId = l.id
	l.timer = time.AfterFunc(v, func() { s.expire(l) })
	s.leases[l.id] = l
	s.byRequest[rid] = l
	s.metrics.granted(granted.Sub(received))
	s.mu.Unlock()
	return l.pb, nil
}

// expire ends a lease whose validity ran out without a renewal, deleting
// its node so that the next waiter gets the lock.
func (s *Server) expire(l *lease) {
	s.mu.Lock()
	if s.leases[l.id] != l {
		s.mu.Unlock()
		return
	}
	if d := time.Until(l.expires); d > 0 { // renewed as the timer fired
		l.timer.Reset(d)
		s.mu.Unlock()
		return
	}
	s.end(l, "expired")
	s.mu.Unlock()
	s.cfg.Logger.Info("lockservice: lease expired", "lock", l.pb.GetName(), "token", l.pb.GetToken(), "request", l.requestID)
	s.expireGrant(l.grant)
}

// end forgets a lease, remembering why ("expired", "was released" or
// "was lost"). s.mu must be held.
func (s *Server) end(l *lease, why string) {
	s.metrics.ended(strings.TrimPrefix(why, "was "))
	l.timer.Stop()
	delete(s.leases, l.id)
	delete(s.byRequest, l.requestID)
	s.ended.put("lease:"+l.id, why)
	s.ended.put("request:"+l.requestID, why)
}

// expireGrant deletes the node of a grant whose lease expired, its claim
// recording the expiry for Watch streams at every replica, logging a
// failure: the node then goes with the session at the latest.
func (s *Server) expireGrant(g *zklock.Grant) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.locker.Expire(ctx, g); err != nil && !errors.Is(err, zklock.ErrNotHeld) {
		s.cfg.Logger.Warn("lockservice: deleting a lock's node", "lock", g.Name(), "err", err)
	}
}

// withdraw deletes the node of a grant no lease was made of, and its
// claim, logging a failure: the node then goes with the session at the
// latest.
func (s *Server) withdraw(g *zklock.Grant) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.locker.Withdraw(ctx, g); err != nil && !errors.Is(err, zklock.ErrNotHeld) {
		s.cfg.Logger.Warn("lockservice: withdrawing a grant", "lock", g.Name(), "err", err)
	}
}

// find returns the live lease a KeepAlive or Release names, or the error
// to answer.
func (s *Server) find(ctx context.Context, name, id string, token uint64) (*lease, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	s.mu.Lock()
	l := s.leases[id]
	why, ended := s.ended.get("lease:" + id)
	s.mu.Unlock()
	switch {
	case l == nil && ended:
		return nil, status.Errorf(codes.FailedPrecondition, "lease of %q %s", name, why)
	case l == nil:
		return nil, s.notHere(ctx, name)
	case l.pb.GetName() != name || l.pb.GetToken() != token:
		return nil, status.Errorf(codes.PermissionDenied, "lease does not match lock %q token %d", name, token)
	}
	if err := l.grant.Err(); err != nil {
		s.mu.Lock()
		if s.leases[l.id] == l {
			s.end(l, "was lost")
		}
		s.mu.Unlock()
		return nil, status.Errorf(codes.FailedPrecondition, "lease of %q was lost: %v", name, err)
	}
	return l, nil
}

// notHere answers a KeepAlive or Release of a lease this replica does not
// know: FAILED_PRECONDITION naming the replica whose session holds the
// lock, if it is another, or PERMISSION_DENIED.
func (s *Server) notHere(ctx context.Context, name string) error {
	d, err := s.locker.Describe(ctx, name)
	if err == nil {
		if c := contenderOf(d.Holder); c.GetReplica() != "" && c.GetReplica() != s.cfg.Replica {
			return otherReplicaError(name, c.GetReplica())
		}
	}
	return status.Errorf(codes.PermissionDenied, "no lease of %q with that id on this replica", name)
}

// otherReplica answers an acquire whose request id has a node in another
// replica's session: the caller is to retry there.
func (s *Server) otherReplica(ctx context.Context, name, rid string) error {
	d, err := s.locker.Describe(ctx, name)
	if err != nil {
		return s.toStatus(err)
	}
	for _, zc := range append([]zklock.Contender{d.Holder}, d.Waiters...) {
		if c := contenderOf(zc); c.GetRequestId() == rid && c.GetReplica() != s.cfg.Replica {
			return otherReplicaError(name, c.GetReplica())
		}
	}
	return status.Errorf(codes.Aborted, "request %q of %q is held by another ZooKeeper session; retry", rid, name)
}

// KeepAlive renews a lease.
func (s *Server) KeepAlive(ctx context.Context, req *lockv1.KeepAliveRequest) (*lockv1.KeepAliveResponse, error) {
	received := time.Now()
	l, err := s.find(ctx, req.GetName(), req.GetLeaseId(), req.GetToken())
	if err != nil {
		return nil, err
	}
	v, err := s.validity(l.ttl, received)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.leases[l.id] != l:
		return nil, status.Errorf(codes.FailedPrecondition, "lease of %q ended", req.GetName())
	case s.closing:
		return nil, status.Error(codes.FailedPrecondition, "the replica is shutting down: the lease will not be renewed")
	case !received.Before(l.expires):
		return nil, status.Errorf(codes.FailedPrecondition, "lease of %q expired", req.GetName())
	}
	l.expires = received.Add(v)
	l.timer.Reset(time.Until(l.expires))
	return &lockv1.KeepAliveResponse{Ttl: durationpb.New(v)}, nil
}

// Release gives a lock up.
func (s *Server) Release(ctx context.Context, req *lockv1.ReleaseRequest) (*lockv1.ReleaseResponse, error) {
	l, err := s.find(ctx, req.GetName(), req.GetLeaseId(), req.GetToken())
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	if s.leases[l.id] != l {
		s.mu.Unlock()
		return nil, status.Errorf(codes.FailedPrecondition, "lease of %q ended", req.GetName())
	}
	s.end(l, "was released")
	s.mu.Unlock()
	if err := s.locker.Release(ctx, l.grant); err != nil {
		if errors.Is(err, zklock.ErrNotHeld) {
			return nil, status.Errorf(codes.FailedPrecondition, "lease of %q was lost: %v", req.GetName(), err)
		}
		// The node is deleted in the background, or goes with the session.
		s.cfg.Logger.Warn("lockservice: release", "lock", req.GetName(), "err", err)
	}
	return &lockv1.ReleaseResponse{}, nil
}

// Describe shows a lock's holder and waiters.
func (s *Server) Describe(ctx context.Context, req *lockv1.DescribeRequest) (*lockv1.DescribeResponse, error) {
	if err := checkName(req.GetName()); err != nil {
		return nil, err
	}
	d, err := s.locker.Describe(ctx, req.GetName())
	if err != nil {
		return nil, s.toStatus(err)
	}
	resp := &lockv1.DescribeResponse{Name: d.Name, Holder: contenderOf(d.Holder)}
	for _, w := range d.Waiters {
		resp.Waiters = append(resp.Waiters, contenderOf(w))
	}
	return resp, nil
}

// List lists locks by name prefix.
func (s *Server) List(ctx context.Context, req *lockv1.ListRequest) (*lockv1.ListResponse, error) {
	limit := int(req.GetLimit())
	if limit == 0 {
		limit = MaxListLimit
	}
	if limit > MaxListLimit {
		return nil, status.Errorf(codes.InvalidArgument, "limit %d is over %d", limit, MaxListLimit)
	}
	names, err := s.locker.List(ctx, req.GetPrefix())
	if err != nil {
		return nil, s.toStatus(err)
	}
	resp := &lockv1.ListResponse{}
	if len(names) > limit {
		names, resp.Truncated = names[:limit], true
	}
	for _, name := range names {
		d, err := s.locker.Describe(ctx, name)
		if errors.Is(err, zklock.ErrNoLock) {
			continue // released since
		}
		if err != nil {
			return nil, s.toStatus(err)
		}
		resp.Locks = append(resp.Locks, &lockv1.LockSummary{Name: name, Holder: contenderOf(d.Holder), Waiters: uint32(len(d.Waiters))})
	}
	return resp, nil
}

// contenderOf decodes what a replica stored in a contender node: binary
// protobuf (a replica writes it on every acquire, and protojson cost half
// of an acquire's CPU), or protojson, which replicas before that wrote.
// The token comes from the node itself. Data that does not decode (written
// by something else) leaves the other fields empty.
func contenderOf(c zklock.Contender) *lockv1.Contender {
	out := &lockv1.Contender{}
	if len(c.Data) > 0 && c.Data[0] == '{' {
		_ = protojson.UnmarshalOptions{DiscardUnknown: true}.Unmarshal(c.Data, out)
	} else if proto.Unmarshal(c.Data, out) != nil {
		out.Reset()
	}
	out.Token = uint64(c.Token)
	if out.GetSince() == nil {
		out.Since = timestamppb.New(c.Created)
	}
	return out
}

// toStatus maps the errors of the layers below to gRPC codes, in one
// place; an error it does not know is INTERNAL and logged.
func (s *Server) toStatus(err error) error {
	if _, ok := status.FromError(err); ok {
		return err
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, err.Error())
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, err.Error())
	case errors.Is(err, zklock.ErrInvalidName), errors.Is(err, zklock.ErrInvalidGUID), errors.Is(err, zklock.ErrDataTooLarge),
		errors.Is(err, zklock.ErrGUIDReused):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, zklock.ErrLocked):
		return status.Error(codes.Aborted, err.Error())
	case errors.Is(err, zklock.ErrNoLock):
		return status.Error(codes.NotFound, err.Error())
	case errors.Is(err, zklock.ErrNotHeld), errors.Is(err, zklock.ErrDeleted), errors.Is(err, zklock.ErrClaimEnded):
		return status.Error(codes.FailedPrecondition, err.Error())
	case errors.Is(err, zklock.ErrSessionLost), errors.Is(err, zklock.ErrClosed):
		return status.Error(codes.Unavailable, err.Error())
	}
	s.cfg.Logger.Error("lockservice: unexpected error", "err", err)
	return status.Error(codes.Internal, "internal error")
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// guidOf derives the protected-create GUID of a request id, so that a
// retried acquire finds its node.
func guidOf(rid string) string {
	h := sha256.Sum256([]byte(rid))
	return hex.EncodeToString(h[:16])
}
