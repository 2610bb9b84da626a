package zklock

import (
	"context"
	"fmt"
	"path"
	"time"

	"github.com/go-zookeeper/zk"
)

// Waiting returns how many Acquire calls wait on the attempt of (name,
// guid), so tests can tell that a retried Acquire has joined.
func (l *Locker) Waiting(name, guid string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	if s := l.slots[slotKey(name, guid)]; s != nil {
		return s.refs
	}
	return 0
}

// EscapeName exposes escapeName to the external tests, which find nodes
// by path.
func EscapeName(name string) string { return escapeName(name) }

// ClaimPath exposes the node of guid's claim.
func (l *Locker) ClaimPath(guid string) string { return l.claimPath(guid) }

// LostReply leaves in ZooKeeper what an Acquire whose create's reply was
// lost leaves: the claim of guid and a contender for name, made together
// in the Locker's session by the multi-op Acquire sends, for an attempt
// that no longer runs. It returns the contender's path.
func (l *Locker) LostReply(ctx context.Context, name, guid string, data []byte) (string, error) {
	dir, claim := l.dir(name), l.claimPath(guid)
	if err := l.makeDir(ctx, dir); err != nil {
		return "", err
	}
	if err := l.makePath(ctx, path.Dir(claim)); err != nil {
		return "", err
	}
	rec, err := encodeClaim(claimRecord{Lock: name, Dir: dir, Attempt: "lost", Session: fmt.Sprintf("%#x", l.conn.Session())})
	if err != nil {
		return "", err
	}
	res, err := l.zk.Multi(
		&zk.CreateRequest{Path: claim, Data: rec, Acl: l.acl, Flags: zk.FlagPersistent},
		&zk.CreateRequest{Path: dir + "/" + contenderPrefix(guid), Data: data, Acl: l.acl, Flags: zk.FlagEphemeralSequential},
		&zk.SetDataRequest{Path: dir, Version: -1})
	if err != nil {
		return "", err
	}
	return res[1].String, nil
}

// SweepPasses runs janitor passes of at most budget claims each, with the
// given retention, from a cursor of its own, until a pass ends short of
// its budget or max passes have run; it returns how many ran.
func (l *Locker) SweepPasses(ctx context.Context, budget, max int, retention time.Duration) (int, error) {
	var cur cursor
	for n := 1; ; n++ {
		more, err := l.sweep(ctx, &cur, budget, retention)
		if err != nil || !more || n == max {
			return n, err
		}
	}
}
