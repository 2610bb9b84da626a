package registry

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/go-zookeeper/zk"
	"google.golang.org/protobuf/proto"

	registryv1 "github.com/switchyard-dev/switchyard/proto/switchyard/registry/v1"
)

// Snapshot is what a watch knows of a service at one moment.
type Snapshot struct {
	// Service is the service watched.
	Service string
	// Instances are the instances, sorted by id, in every state (callers
	// that route skip DRAINING ones), including Held ones.
	Instances []*registryv1.Instance
	// Held lists the ids of instances whose nodes are gone but which the
	// last-known-good protection keeps for now.
	Held []string
	// Stale is true while ZooKeeper is unreachable: Instances is the last
	// list read, kept so callers go on routing to it.
	Stale bool
	// Problems are node records that could not be read (wrapping
	// ErrBadRecord); their instances are left out.
	Problems []error
	// Seq increases with every new snapshot of the watch.
	Seq uint64
}

// Watcher follows one service. It is not safe for concurrent use; make
// one per goroutine (they share the underlying watch).
type Watcher struct {
	sw     *serviceWatch
	seen   uint64
	closed bool
}

// Watch follows service. Every Watcher of one service on one Client
// shares one ZooKeeper children watch and one data watch, however many
// instances the service has and however many Watchers there are.
func (c *Client) Watch(service string) (*Watcher, error) {
	if err := ValidateName(service); err != nil {
		return nil, fmt.Errorf("service: %w", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, ErrClosed
	}
	sw := c.watches[service]
	if sw == nil {
		sw = &serviceWatch{
			c:       c,
			service: service,
			changed: make(chan struct{}),
			stop:    make(chan struct{}),
			done:    make(chan struct{}),
			held:    map[string]heldInstance{},
		}
		c.watches[service] = sw
		go sw.run()
	}
	sw.refs++
	return &Watcher{sw: sw}, nil
}

// Next returns the first snapshot, once the service has been read, and
// after that each newer one, waiting until there is one or ctx ends.
// Snapshots published while the caller was away are merged: Next returns
// the latest.
func (w *Watcher) Next(ctx context.Context) (Snapshot, error) {
	if w.closed {
		return Snapshot{}, ErrClosed
	}
	for {
		w.sw.mu.Lock()
		snap, changed := w.sw.snap, w.sw.changed
		w.sw.mu.Unlock()
		if snap.Seq > w.seen {
			w.seen = snap.Seq
			return snap, nil
		}
		select {
		case <-ctx.Done():
			return Snapshot{}, ctx.Err()
		case <-w.sw.done:
			return Snapshot{}, ErrClosed
		case <-changed:
		}
	}
}

// Close ends the Watcher; the last Watcher of a service ends its watch.
func (w *Watcher) Close() {
	if w.closed {
		return
	}
	w.closed = true
	c := w.sw.c
	c.mu.Lock()
	w.sw.refs--
	last := w.sw.refs == 0
	if last && c.watches[w.sw.service] == w.sw {
		delete(c.watches, w.sw.service)
	}
	c.mu.Unlock()
	if last {
		w.sw.halt()
	}
}

// serviceWatch is the one watch of a service on a Client.
type serviceWatch struct {
	c       *Client
	service string
	refs    int // guarded by c.mu

	mu      sync.Mutex
	snap    Snapshot
	changed chan struct{} // closed and replaced on every publish

	stop chan struct{}
	done chan struct{}
	once sync.Once

	// Owned by run.
	held map[string]heldInstance
}

type heldInstance struct {
	inst  *registryv1.Instance
	since time.Time
}

func (s *serviceWatch) halt() {
	s.once.Do(func() { close(s.stop) })
	<-s.done
}

// run keeps the snapshot current until halt. Any event — a watch firing,
// a session change, the periodic timer — schedules a re-read: at once if
// none ran within the coalescing window, else at the window's end, so a
// lone change is seen without delay and a burst costs one read per window.
func (s *serviceWatch) run() {
	defer close(s.done)
	opts := s.c.opts
	notify, cancel := s.c.conn.Subscribe()
	defer cancel()

	var childCh, dataCh <-chan zk.Event // nil while not armed
	var session int64
	due := time.NewTimer(0) // read at once
	defer due.Stop()
	periodic := time.NewTicker(jitter(opts.relistInterval))
	defer periodic.Stop()
	var holdC <-chan time.Time
	backoff := 50 * time.Millisecond
	var lastRead time.Time
	schedule := func(d time.Duration) { due.Reset(max(d, time.Until(lastRead.Add(opts.coalesce)))) }

	for {
		select {
		case <-s.stop:
			return
		case <-childCh:
			childCh = nil
			schedule(0)
		case <-dataCh:
			dataCh = nil
			schedule(0)
		case <-notify:
			if !s.c.conn.Connected() {
				s.setStale(true)
				continue
			}
			if sid := s.c.conn.Session(); sid != session {
				// A new session has none of the old one's watches.
				session = sid
				childCh, dataCh = nil, nil
			}
			schedule(0)
		case <-periodic.C:
			schedule(0)
		case <-holdC:
			holdC = nil
			schedule(0)
		case <-due.C:
			if !s.c.conn.Connected() {
				s.setStale(true)
				continue // the session event will schedule a read
			}
			lastRead = time.Now()
			list, err := readService(s.c.conn.ZK(), s.service, &childCh, &dataCh)
			if err != nil {
				s.c.opts.log.Warn("registry: reading service", "service", s.service, "err", err)
				schedule(backoff)
				backoff = min(2*backoff, time.Second)
				continue
			}
			backoff = 50 * time.Millisecond
			if next := s.apply(list, time.Now()); next > 0 {
				holdC = time.After(next)
			}
		}
	}
}

// listing is one read of a service.
type listing struct {
	instances map[string]*registryv1.Instance
	departed  map[string]time.Time
	problems  []error
}

// readService reads a service. childCh and dataCh, if not nil, point at
// watch channels: a nil one is armed by the read (and set), a set one is
// left alone; nil pointers mean a read without watches. A service that
// does not exist yet is empty, with an exists watch for its creation in
// place of the children watch.
func readService(zc *zk.Conn, service string, childCh, dataCh *<-chan zk.Event) (listing, error) {
	parent := instancesPath(service)
	var children []string
	var err error
	if childCh != nil && *childCh == nil {
		var ch <-chan zk.Event
		children, _, ch, err = zc.ChildrenW(parent)
		if err == nil {
			*childCh = ch
		}
	} else {
		children, _, err = zc.Children(parent)
	}
	if errors.Is(err, zk.ErrNoNode) {
		if childCh == nil {
			return listing{instances: map[string]*registryv1.Instance{}}, nil
		}
		ok, _, ch, err := zc.ExistsW(parent)
		if err != nil {
			return listing{}, err
		}
		if ok { // created meanwhile: read again at once
			return listing{}, errors.New("service appeared during read")
		}
		*childCh, *dataCh = ch, nil
		return listing{instances: map[string]*registryv1.Instance{}}, nil
	}
	if err != nil {
		return listing{}, err
	}
	var data []byte
	if dataCh != nil && *dataCh == nil {
		var ch <-chan zk.Event
		data, _, ch, err = zc.GetW(parent)
		if err == nil {
			*dataCh = ch
		}
	} else {
		data, _, err = zc.Get(parent)
	}
	if err != nil && !errors.Is(err, zk.ErrNoNode) {
		return listing{}, err
	}
	l := listing{instances: make(map[string]*registryv1.Instance, len(children)), departed: map[string]time.Time{}}
	for _, d := range decodeDepartures(data).GetDepartures() {
		l.departed[d.GetId()] = d.GetAt().AsTime()
	}

	// Read the records concurrently: go-zookeeper pipelines the requests
	// on its one connection.
	type result struct {
		inst *registryv1.Instance
		err  error
	}
	results := make([]result, len(children))
	sem := make(chan struct{}, 32)
	var wg sync.WaitGroup
	for i, id := range children {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			b, _, err := zc.Get(instancePath(service, id))
			switch {
			case errors.Is(err, zk.ErrNoNode): // gone meanwhile; the children watch fires
			case err != nil:
				results[i].err = err
			default:
				results[i].inst, results[i].err = DecodeInstance(service, id, b)
			}
		})
	}
	wg.Wait()
	for _, r := range results {
		switch {
		case errors.Is(r.err, ErrBadRecord):
			l.problems = append(l.problems, r.err)
		case r.err != nil:
			return listing{}, r.err
		case r.inst != nil:
			l.instances[r.inst.GetId()] = r.inst
		}
	}
	return l, nil
}

// apply turns a listing into the published snapshot, applying the
// last-known-good protection, and returns how long until the next held
// instance's hold runs out (0 if none is held).
//
// The protection rule: an instance that was in the last snapshot and is
// gone now either departed (Deregister recorded it after it registered) or
// vanished (its session ended: a crash, or a registry fault). If the
// vanished ones are more than the protection ratio of the last snapshot, or
// are all of it, they are kept, marked Held, for up to the hold time or
// until they return or depart. Departures are never held, so a service
// whose instances all deregister does become empty.
func (s *serviceWatch) apply(l listing, now time.Time) time.Duration {
	s.mu.Lock()
	prev := s.snap.Instances
	s.mu.Unlock()
	opts := s.c.opts

	departedSince := func(inst *registryv1.Instance) bool {
		at, ok := l.departed[inst.GetId()]
		return ok && !at.Before(inst.GetRegisteredAt().AsTime())
	}
	var vanished []*registryv1.Instance
	for _, inst := range prev {
		if _, ok := l.instances[inst.GetId()]; !ok && !departedSince(inst) {
			if _, held := s.held[inst.GetId()]; !held {
				vanished = append(vanished, inst)
			}
		}
	}
	if len(vanished) > 0 && (len(l.instances) == 0 || float64(len(vanished)) > opts.protectRatio*float64(len(prev))) && opts.holdFor > 0 {
		for _, inst := range vanished {
			s.held[inst.GetId()] = heldInstance{inst: inst, since: now}
		}
		s.c.opts.log.Warn("registry: instances vanished without deregistering; keeping them as last known good",
			"service", s.service, "vanished", len(vanished), "of", len(prev), "hold", opts.holdFor)
	}

	out := make([]*registryv1.Instance, 0, len(l.instances)+len(s.held))
	for _, inst := range l.instances {
		out = append(out, inst)
	}
	var heldIDs []string
	var next time.Duration
	for id, h := range s.held {
		_, back := l.instances[id]
		left := h.since.Add(opts.holdFor).Sub(now)
		if back || departedSince(h.inst) || left <= 0 {
			delete(s.held, id)
			continue
		}
		out = append(out, h.inst)
		heldIDs = append(heldIDs, id)
		if next == 0 || left < next {
			next = left
		}
	}
	slices.SortFunc(out, func(a, b *registryv1.Instance) int {
		return cmp.Compare(a.GetId(), b.GetId())
	})
	slices.Sort(heldIDs)
	s.publish(Snapshot{Service: s.service, Instances: out, Held: heldIDs, Problems: l.problems})
	return next
}

// setStale marks the current snapshot stale (or not) and publishes that.
func (s *serviceWatch) setStale(stale bool) {
	s.mu.Lock()
	snap := s.snap
	s.mu.Unlock()
	if snap.Seq == 0 || snap.Stale == stale {
		return
	}
	snap.Stale = stale
	s.publish(snap)
}

// publish replaces the snapshot if it differs from the current one and
// wakes every waiting Next.
func (s *serviceWatch) publish(snap Snapshot) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cur := s.snap
	if cur.Seq > 0 && sameSnapshot(cur, snap) {
		return
	}
	snap.Seq = cur.Seq + 1
	s.snap = snap
	close(s.changed)
	s.changed = make(chan struct{})
}

func sameSnapshot(a, b Snapshot) bool {
	if a.Stale != b.Stale || len(a.Problems) != len(b.Problems) || !slices.Equal(a.Held, b.Held) {
		return false
	}
	return slices.EqualFunc(a.Instances, b.Instances, func(x, y *registryv1.Instance) bool { return proto.Equal(x, y) })
}
