package lockservice

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/switchyard-dev/switchyard/lockservice/zklock"
	lockv1 "github.com/switchyard-dev/switchyard/proto/switchyard/lock/v1"
)

// Where the replicas elect their broadcaster (see Server.Broadcast): an
// ordinary zklock lock, BroadcastElection, under a root and a claim root
// of its own, apart from the locks the service grants.
const (
	BroadcastRoot      = "/switchyard/lockevents"
	BroadcastClaimRoot = "/switchyard/lockeventclaims"
	BroadcastElection  = "broadcaster"
)

const (
	// broadcastClaimRetention is the election Locker's claim retention.
	// Its guids are random, one per candidacy, so dedup buys nothing; a
	// claim outlives its node only when the node went with its session,
	// and goes this long after.
	broadcastClaimRetention = 2 * time.Minute
	// A broadcaster that stepped down stands again after a pause from
	// broadcastPauseMin, doubling up to broadcastPauseMax while terms
	// keep ending early; a term that lasted broadcastSteady starts over.
	broadcastPauseMin = 100 * time.Millisecond
	broadcastPauseMax = 5 * time.Second
	broadcastSteady   = 30 * time.Second
)

// Publish hands one event to a transport (NATS, say) and returns once the
// transport has it, or fails. meta says which broadcaster's term it
// belongs to and whether it is part of the snapshot a new broadcaster
// starts with. ctx ends when the broadcaster must stop — its term is over,
// or Broadcast's context ended: a Publish still running then should
// return. An error makes the broadcaster step down (see Server.Broadcast).
// Publish is called from one goroutine at a time, in the order of events.
type Publish func(ctx context.Context, ev *lockv1.LockEvent, meta BroadcastMeta) error

// BroadcastMeta is what a broadcaster says of an event beside the event.
type BroadcastMeta struct {
	// Term is the broadcaster's election fencing token: the creation zxid
	// of its node in the election, so each new broadcaster's is higher
	// than every earlier one's.
	Term uint64
	// Snapshot marks the events that re-announce the current holders (one
	// GRANTED each) when a broadcaster takes over, rather than report a
	// change as it happened.
	Snapshot bool
}

// Broadcast takes part in the election of the broadcaster, among every
// replica on which it runs, and while this replica is elected hands every
// event of every lock to publish: the events a Watch stream with the
// prefix "" carries, from the same ZooKeeper-derived watcher. It blocks
// until ctx ends or the replica drains or closes, and then returns nil;
// it returns an error only for one that retrying cannot cure (a nil
// publish). Run it in a goroutine of the caller's; once per replica is
// enough.
//
// The election is an ordinary lock, BroadcastElection, taken with a
// Locker of its own (under BroadcastRoot, claims under BroadcastClaimRoot)
// on the replica's ZooKeeper session, with wait: the candidates queue
// herd-free, one node each, and the holder is the broadcaster. Its grant's
// fencing token is the term (BroadcastMeta.Term). Once elected, the
// broadcaster first publishes the current holders of every lock, one
// GRANTED each in name order, with Snapshot set; then every event as the
// watcher reads it, in order, each lock's events in the order they
// happened.
//
// It steps down — gives its election node up, pauses (100ms, doubling up
// to 5s while terms keep ending early), and stands again at the back of
// the line — when publish fails or its watch falls behind (more than
// Config.WatchBuffer events waiting), logging why: it never publishes on
// past a gap it knows of. When its election grant is lost (its session
// ended, or the node was deleted) it stops publishing at once, publish's
// context ends, and it stands again. While its session is disconnected
// from ZooKeeper it publishes nothing, and goes on only once reconnected
// to the same session.
//
// What a subscriber gets: while ZooKeeper is healthy, exactly one
// replica publishes at a time. Across a handover events may be repeated
// — the new broadcaster's snapshot re-announces holders the old one had
// announced, marked Snapshot — or missed, for a holder that came and went
// while nobody was publishing (and, as for Watch, between two readings of
// a lock). Subscribers deduplicate by (name, token, type). Term
// increases with each new broadcaster (the same replica elected again
// gets a new one), so a subscriber may drop events of an older term once
// it has seen a newer one: a broadcaster cut off from ZooKeeper may learn
// late that its term ended, and a publish in flight then can land after
// the new broadcaster's first.
//
// When ctx ends, or the replica drains (Drain, or Close, which drains
// first), Broadcast stops publishing, withdraws its node in the election
// (or its place in line) and returns: within a round trip to ZooKeeper
// when it is healthy, and within about twice the session timeout (5s at
// least) when not. Withdrawing deletes the node and its guid's claim in
// one multi-op, so a Broadcast that returned leaves no node or claim of
// its own; a node it could not delete goes with the session. What stays
// in ZooKeeper is the persistent skeleton (the two roots, the 256 shard
// directories of the claim root), the election's directory until
// ZooKeeper sweeps the empty container, and the claim of a grant whose
// node went with its session (a lost term): the janitor of any running
// Broadcast's Locker deletes it some minutes later (zklock's claim
// retention, two minutes here). Close does not wait for Broadcast: a
// caller that closes the ZooKeeper connection itself (a Server made with
// New) should let Broadcast return first, or its node goes with the
// session rather than by its deletion.
func (s *Server) Broadcast(ctx context.Context, publish Publish) error {
	if publish == nil {
		return errors.New("lockservice: broadcast: nil publish function")
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(s.draining, cancel)()
	defer context.AfterFunc(s.ctx, cancel)()
	if s.broadcastOver(ctx) {
		return nil
	}
	el, err := zklock.New(s.conn,
		zklock.WithRoot(BroadcastRoot), zklock.WithClaimRoot(BroadcastClaimRoot),
		zklock.WithClaimRetention(broadcastClaimRetention), zklock.WithCleanupTimeout(s.stepDownTimeout()),
		zklock.WithLogger(s.cfg.Logger))
	if err != nil {
		return fmt.Errorf("lockservice: broadcast: %w", err)
	}
	defer el.Close()
	var pause time.Duration
	for {
		began := time.Now()
		err := s.broadcastTerm(ctx, el, publish)
		if s.broadcastOver(ctx) {
			return nil
		}
		if time.Since(began) >= broadcastSteady {
			pause = 0
		}
		pause = min(max(2*pause, broadcastPauseMin), broadcastPauseMax)
		s.cfg.Logger.Warn("lockservice: broadcast: stepped down; standing again", "after", pause, "err", err)
		t := time.NewTimer(pause)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil
		}
	}
}

// broadcastOver reports whether Broadcast is to return: its context
// ended, or the replica drains or closes.
func (s *Server) broadcastOver(ctx context.Context) bool {
	return ctx.Err() != nil || s.draining.Err() != nil || s.ctx.Err() != nil
}

// stepDownTimeout bounds how long a step-down waits for the deletion of
// the election node, and, as the election Locker's cleanup timeout, how
// long its deletion goes on in the background after that (until Close).
// Together they outlast a session timeout: a session still alive gets its
// node deleted, and a connection down for longer has lost its session,
// and the node with it.
func (s *Server) stepDownTimeout() time.Duration {
	return max(2500*time.Millisecond, s.conn.SessionTimeout())
}

// broadcastTerm stands in the election and, once elected, publishes until
// the term must end, and returns why; its election node (or its place in
// line) is gone by then.
func (s *Server) broadcastTerm(ctx context.Context, el *zklock.Locker, publish Publish) error {
	guid := randomHex(16)
	data, err := proto.Marshal(&lockv1.Contender{
		Owner: BroadcastElection, Replica: s.cfg.Replica, RequestId: guid, Since: timestamppb.Now(),
	})
	if err != nil {
		return err
	}
	g, err := el.Acquire(ctx, BroadcastElection, guid, data, true)
	if g != nil { // even with an error: granted as ctx ended
		defer s.stepDown(el, g)
	}
	if err != nil {
		return fmt.Errorf("standing for election: %w", err)
	}
	term := uint64(g.Token())
	session := g.Info().Session

	// The term's context ends with ctx or when the grant is lost.
	tctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-g.Lost():
			cancel()
		case <-tctx.Done():
		}
	}()
	over := func() error {
		if g.Err() != nil {
			return fmt.Errorf("the election was lost: %w", g.Err())
		}
		return tctx.Err()
	}

	w, ws, err := s.subscribe(tctx, "")
	if err != nil {
		if tctx.Err() != nil {
			return over()
		}
		return err
	}
	defer s.unsubscribe(w, ws)

	notify, unsubscribe := s.conn.Subscribe()
	defer unsubscribe()
	s.cfg.Logger.Info("lockservice: broadcast: elected", "term", term)
	err = s.pump(tctx, w, ws, func(ev *lockv1.LockEvent, snapshot bool) error {
		// Only while the session that holds the election is connected: one
		// cut off may have lost it without knowing yet.
		for !s.conn.Connected() || s.conn.Session() != session {
			select {
			case <-notify:
			case <-tctx.Done():
				return over()
			}
		}
		if g.Err() != nil || tctx.Err() != nil { // lost, before its watcher has cancelled tctx
			return over()
		}
		if err := publish(tctx, ev, BroadcastMeta{Term: term, Snapshot: snapshot}); err != nil {
			if tctx.Err() != nil {
				return over()
			}
			return fmt.Errorf("publishing %v of %q (token %d): %w", ev.GetType(), ev.GetName(), ev.GetToken(), err)
		}
		s.metrics.broadcast()
		return nil
	})
	if tctx.Err() != nil && errors.Is(err, tctx.Err()) {
		return over()
	}
	return err
}

// stepDown gives up the election node of g, and its claim.
func (s *Server) stepDown(el *zklock.Locker, g *zklock.Grant) {
	ctx, cancel := context.WithTimeout(context.Background(), s.stepDownTimeout())
	defer cancel()
	if err := el.Withdraw(ctx, g); err != nil && !errors.Is(err, zklock.ErrNotHeld) {
		s.cfg.Logger.Warn("lockservice: broadcast: giving up the election node", "token", g.Token(), "err", err)
	}
}
