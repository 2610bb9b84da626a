package lockbench

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/go-zookeeper/zk"

	"github.com/switchyard-dev/switchyard/internal/zkconn"
)

// rawParent holds the raw side's roots, one per run.
const rawParent = "/switchyard/bench"

// rawSide is the baseline: go-zookeeper create+delete pairs on one
// session, shared by all its workers as one client's calls would be.
type rawSide struct {
	conn *zkconn.Conn
	root string // persistent; the workers' nodes are its children
}

var _ cycler = (*rawSide)(nil)

// startRaw opens the raw side's session, makes its root, and proves the
// path with one cycle.
func startRaw(setup context.Context, cfg Config, run string) (*rawSide, error) {
	conn, err := zkconn.Dial(setup, cfg.ZK, cfg.SessionTimeout, cfg.Logger)
	if err != nil {
		return nil, dialError(setup, cfg, err)
	}
	s := &rawSide{conn: conn, root: rawParent + "/lock-" + run}
	for _, p := range []string{"/switchyard", rawParent, s.root} {
		_, err := conn.ZK().Create(p, nil, zk.FlagPersistent, zk.WorldACL(zk.PermAll))
		if err != nil && !errors.Is(err, zk.ErrNodeExists) {
			return nil, errors.Join(fmt.Errorf("lockbench: %s: creating %s: %w", SideRaw, p, err), s.stop())
		}
	}
	if err := s.cycle(1, 0)(setup); err != nil {
		return nil, errors.Join(fmt.Errorf("lockbench: %s: first cycle: %w", SideRaw, err), s.stop())
	}
	return s, nil
}

// dialError says why a ZooKeeper session could not be had during setup.
func dialError(setup context.Context, cfg Config, err error) error {
	if setup.Err() != nil {
		return fmt.Errorf("lockbench: no ZooKeeper session with %s within %v: %w", cfg.ZK, cfg.SetupTimeout, err)
	}
	return fmt.Errorf("lockbench: ZooKeeper at %s: %w", cfg.ZK, err)
}

func (s *rawSide) name() string { return SideRaw }

// cycle creates an ephemeral node of the worker's own — one for c=1,
// c distinct ones at c — and deletes it.
func (s *rawSide) cycle(c, i int) func(context.Context) error {
	p := s.root + "/c" + strconv.Itoa(c) + "-" + strconv.Itoa(i)
	zc, acl := s.conn.ZK(), zk.WorldACL(zk.PermAll)
	return func(context.Context) error {
		if _, err := zc.Create(p, nil, zk.FlagEphemeral, acl); err != nil {
			return fmt.Errorf("create %s: %w", p, err)
		}
		if err := zc.Delete(p, -1); err != nil {
			return fmt.Errorf("delete %s: %w", p, err)
		}
		return nil
	}
}

// stop deletes the root (and its parent, if no other run's root is in
// it) and closes the session. A node a failed cycle left goes with the
// session; it is deleted first so that the root can go now.
func (s *rawSide) stop() error {
	return errors.Join(s.deleteRoot(), s.conn.Close())
}

func (s *rawSide) deleteRoot() error {
	zc := s.conn.ZK()
	children, _, err := zc.Children(s.root)
	if errors.Is(err, zk.ErrNoNode) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("lockbench: reading %s: %w", s.root, err)
	}
	for _, c := range children {
		if err := zc.Delete(s.root+"/"+c, -1); err != nil && !errors.Is(err, zk.ErrNoNode) {
			return fmt.Errorf("lockbench: deleting %s/%s: %w", s.root, c, err)
		}
	}
	if err := zc.Delete(s.root, -1); err != nil && !errors.Is(err, zk.ErrNoNode) {
		return fmt.Errorf("lockbench: deleting %s: %w", s.root, err)
	}
	_ = zc.Delete(rawParent, -1) // ErrNotEmpty while other runs' roots are there
	return nil
}
