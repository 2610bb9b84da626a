package zklock

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/go-zookeeper/zk"
)

// DefaultClaimRoot is where the claims of guids live for DefaultRoot.
const DefaultClaimRoot = "/switchyard/lockclaims"

// DefaultClaimRetention is how long a claim is kept, by default, after
// its contender ended.
const DefaultClaimRetention = 10 * time.Minute

// Claims are spread over claimShards directories, so that no listing of
// one grows past what a ZooKeeper reply carries comfortably.
const claimShards = 256

// claimsPerPass bounds the claims the janitor reads in one pass.
const claimsPerPass = 1024

// claimPath returns the node of guid's claim: <claim root>/<shard>/<guid>.
func (l *Locker) claimPath(guid string) string {
	h := fnv.New32a()
	h.Write([]byte(guid))
	return fmt.Sprintf("%s/%02x/%s", l.opts.claimRoot, h.Sum32()%claimShards, guid)
}

// makeShards creates the claim root and every shard directory in it (the
// shard is one of them), once: persistent nodes, which stay.
func (l *Locker) makeShards(ctx context.Context, shard string) error {
	root := path.Dir(shard)
	have, err := l.children(ctx, root)
	if errors.Is(err, zk.ErrNoNode) {
		err = l.makePath(ctx, root)
	}
	if err != nil {
		return fmt.Errorf("zklock: creating %s: %w", root, err)
	}
	var missing []string
	for i := range claimShards {
		if s := fmt.Sprintf("%02x", i); !slices.Contains(have, s) {
			missing = append(missing, root+"/"+s)
		}
	}
	return each(len(missing), func(i int) error {
		_, err := call(ctx, l, func() (string, error) { return l.zk.Create(missing[i], nil, zk.FlagPersistent, l.acl) })
		if err != nil && !errors.Is(err, zk.ErrNodeExists) {
			return fmt.Errorf("zklock: creating %s: %w", missing[i], err)
		}
		return nil
	})
}

// claimRecord is a claim node's data.
type claimRecord struct {
	// Lock and Dir are the lock the guid was acquired for, and its
	// directory, where the janitor looks for the guid's contender.
	Lock string `json:"lock"`
	Dir  string `json:"dir"`
	// Attempt is the id of the attempt that made or last wrote the claim;
	// Session is its session then (for people reading it).
	Attempt string `json:"attempt"`
	Session string `json:"session"`
	// Ended is set by a janitor that found no contender: the claim's
	// retention runs from that write (its mtime).
	Ended bool `json:"ended,omitempty"`
	// Reason is why the guid's contender ended, written by the Locker
	// that deleted it in the same multi-op as the delete: reasonReleased
	// (Release) or reasonExpired (Expire). None means the node went
	// otherwise — with its session, deleted by another party, or at
	// Close (see HowEnded). The janitor keeps it when it marks the claim.
	Reason string `json:"reason,omitempty"`
}

// The reasons a claim records.
const (
	reasonReleased = "released"
	reasonExpired  = "expired"
)

func encodeClaim(r claimRecord) ([]byte, error) {
	b, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("zklock: encoding a claim: %w", err)
	}
	return b, nil
}

// decodeClaim reads a claim's data; ok is false for anything this package
// did not write.
func decodeClaim(b []byte) (r claimRecord, ok bool) {
	if json.Unmarshal(b, &r) != nil || !strings.HasPrefix(r.Dir, "/") || r.Attempt == "" {
		return claimRecord{}, false
	}
	return r, true
}

// abandon deletes what an attempt that granted nothing leaves: its node n
// (if any; looked for by guid if its create's outcome is unknown) with
// its guid's claim, or, the node being gone, the claim alone if the
// attempt made it. The guid may then be acquired again.
func (l *Locker) abandon(ctx context.Context, a *attempt, n *node) error {
	claim := l.claimPath(a.guid)
	if n != nil {
		err := l.removeNode(ctx, n, claimOp{path: claim})
		switch {
		case err == nil && n.name != "":
			return nil // deleted with its claim
		case err != nil && !gone(err):
			return err
		}
		// Gone before, or looked for by guid: the claim may be left.
	}
	return l.dropClaim(ctx, a, claim)
}

// dropClaim deletes the claim if this attempt made or last wrote it and no
// janitor has marked it ended since. Only the attempt queues under such a
// claim, and a janitor must mark a claim before it deletes it, so the
// version read is still this claim's if it is still this version: the
// version-checked delete never takes a claim made again by someone else.
func (l *Locker) dropClaim(ctx context.Context, a *attempt, claim string) error {
	r, err := read(ctx, l, func() (nodeRead, error) {
		data, stat, err := l.zk.Get(claim)
		return nodeRead{data: data, stat: stat}, err
	})
	switch {
	case errors.Is(err, zk.ErrNoNode):
		return nil
	case err != nil:
		return err
	}
	if rec, ok := decodeClaim(r.data); !ok || rec.Attempt != a.id || rec.Ended {
		return nil
	}
	_, err = call(ctx, l, func() (struct{}, error) { return struct{}{}, l.zk.Delete(claim, r.stat.Version) })
	if errors.Is(err, zk.ErrNoNode) || errors.Is(err, zk.ErrBadVersion) {
		return nil
	}
	return err
}

// janitor deletes the claims whose contenders ended more than the
// retention ago, until Close. A pass every quarter of the retention reads
// at most claimsPerPass claims; one that stops at that bound is followed,
// 50ms later, by the next one, from where it stopped.
func (l *Locker) janitor() {
	every := max(l.opts.claimRetention/4, 10*time.Millisecond)
	t := time.NewTimer(every/2 + rand.N(every/2+1)) // Lockers started together spread out
	defer t.Stop()
	var cur cursor
	for {
		select {
		case <-l.ctx.Done():
			return
		case <-t.C:
		}
		more, err := l.sweep(l.ctx, &cur, claimsPerPass, l.opts.claimRetention)
		if l.ctx.Err() != nil {
			return
		}
		if err != nil {
			l.opts.log.Debug("zklock: sweeping claims", "root", l.opts.claimRoot, "err", err)
		}
		next := every
		if more && err == nil {
			next = min(every, 50*time.Millisecond)
		}
		t.Reset(next)
	}
}

// cursor is where a janitor's pass stopped, in its round through the
// claims in order: after claim after of shard. The zero cursor starts a
// round.
type cursor struct{ shard, after string }

// sweep is one pass of the janitor over at most budget claims, from cur
// on, with the given retention. It reports whether it stopped at the
// budget.
func (l *Locker) sweep(ctx context.Context, cur *cursor, budget int, retention time.Duration) (more bool, err error) {
	root := l.opts.claimRoot
	shards, err := l.children(ctx, root)
	switch {
	case errors.Is(err, zk.ErrNoNode):
		return false, nil
	case err != nil:
		return false, err
	}
	slices.Sort(shards)
	i, _ := slices.BinarySearch(shards, cur.shard)
	shards = shards[i:] // a round runs through the shards in order, over passes
	var claims []string
	for _, shard := range shards {
		guids, err := l.children(ctx, root+"/"+shard)
		switch {
		case errors.Is(err, zk.ErrNoNode):
			continue
		case err != nil:
			return false, err
		}
		slices.Sort(guids)
		if shard == cur.shard && cur.after != "" {
			j, found := slices.BinarySearch(guids, cur.after)
			if found {
				j++
			}
			guids = guids[j:]
		}
		for _, guid := range guids {
			claims = append(claims, root+"/"+shard+"/"+guid)
			if len(claims) == budget {
				*cur = cursor{shard: shard, after: guid}
				return true, l.sweepClaims(ctx, claims, retention)
			}
		}
		cur.after = ""
	}
	*cur = cursor{}
	return false, l.sweepClaims(ctx, claims, retention)
}

func (l *Locker) sweepClaims(ctx context.Context, claims []string, retention time.Duration) error {
	return each(len(claims), func(i int) error { return l.sweepClaim(ctx, claims[i], retention) })
}

// sweepClaim looks at one claim. One marked ended is deleted once the mark
// is older than the retention: the delete is version-checked, and a
// contender made under a claim writes it, so none was made since the
// mark. An unmarked one younger than a quarter of the retention is most
// likely in use and left for a later pass. An older one whose guid has a
// contender in its lock's directory, in any session, is kept; one without
// is marked ended (its mtime then says since when), by a version-checked
// write: the directory is read after the claim, so it shows any contender
// made with, or under, the version read.
func (l *Locker) sweepClaim(ctx context.Context, claim string, retention time.Duration) error {
	r, err := l.get(ctx, claim)
	switch {
	case errors.Is(err, zk.ErrNoNode):
		return nil
	case err != nil:
		return err
	}
	rec, ok := decodeClaim(r.data)
	if !ok {
		return nil // not a claim of this package's: not ours to judge
	}
	age := time.Since(time.UnixMilli(r.stat.Mtime))
	if rec.Ended {
		if age < retention {
			return nil
		}
		_, err = call(ctx, l, func() (struct{}, error) { return struct{}{}, l.zk.Delete(claim, r.stat.Version) })
		switch {
		case err == nil:
			l.claimsSwept.Add(1)
		case errors.Is(err, zk.ErrNoNode), errors.Is(err, zk.ErrBadVersion):
		default:
			return err
		}
		return nil
	}
	if age < retention/4 {
		return nil
	}
	children, err := l.children(ctx, rec.Dir)
	if err != nil && !errors.Is(err, zk.ErrNoNode) {
		return err
	}
	guid := path.Base(claim)
	if slices.ContainsFunc(queue(children), func(c contender) bool { return c.guid == guid }) {
		return nil
	}
	rec.Ended = true
	data, err := encodeClaim(rec)
	if err != nil {
		return err
	}
	_, err = call(ctx, l, func() (*zk.Stat, error) { return l.zk.Set(claim, data, r.stat.Version) })
	if errors.Is(err, zk.ErrNoNode) || errors.Is(err, zk.ErrBadVersion) {
		return nil
	}
	return err
}
