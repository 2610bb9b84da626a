package registry

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/go-zookeeper/zk"

	registryv1 "github.com/switchyard-dev/switchyard/proto/switchyard/registry/v1"
)

// ServiceSummary is one service as Services lists it.
type ServiceSummary struct {
	// Name is the service name.
	Name string `json:"service"`
	// Instances counts its instance nodes.
	Instances int `json:"instances"`
}

// Services lists every registered service, sorted by name, with how many
// instance nodes each has. It reads without setting watches.
func (c *Client) Services() ([]ServiceSummary, error) {
	zc := c.conn.ZK()
	names, _, err := zc.Children(Root)
	if errors.Is(err, zk.ErrNoNode) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("registry: listing services: %w", err)
	}
	out := make([]ServiceSummary, len(names))
	errs := make([]error, len(names))
	var wg sync.WaitGroup
	for i, name := range names {
		wg.Go(func() {
			out[i].Name = name
			ok, st, err := zc.Exists(instancesPath(name))
			if err != nil {
				errs[i] = fmt.Errorf("registry: %s: %w", name, err)
				return
			}
			if ok {
				out[i].Instances = int(st.NumChildren)
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	slices.SortFunc(out, func(a, b ServiceSummary) int { return cmp.Compare(a.Name, b.Name) })
	return out, nil
}

// Instances reads the instances of service once, sorted by id, without
// setting watches. Records that cannot be read are returned as problems
// (each wrapping ErrBadRecord) beside the instances that can. A service
// that never registered an instance is ErrNoService, so that a misspelt
// name is not mistaken for an empty service.
func (c *Client) Instances(service string) ([]*registryv1.Instance, []error, error) {
	if err := ValidateName(service); err != nil {
		return nil, nil, fmt.Errorf("service: %w", err)
	}
	ok, _, err := c.conn.ZK().Exists(instancesPath(service))
	if err != nil {
		return nil, nil, fmt.Errorf("registry: reading %s: %w", service, err)
	}
	if !ok {
		return nil, nil, fmt.Errorf("%w: %s", ErrNoService, service)
	}
	l, err := readService(c.conn.ZK(), service, nil, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("registry: reading %s: %w", service, err)
	}
	out := make([]*registryv1.Instance, 0, len(l.instances))
	for _, inst := range l.instances {
		out = append(out, inst)
	}
	slices.SortFunc(out, func(a, b *registryv1.Instance) int { return cmp.Compare(a.GetId(), b.GetId()) })
	return out, l.problems, nil
}

// Node is one znode as Tree lists it.
type Node struct {
	// Path is the node's full path.
	Path string `json:"path"`
	// Type is "persistent", "ephemeral", "persistent_sequential" or
	// "ephemeral_sequential". Sequence is inferred from the name's
	// ten-digit suffix, which is how ZooKeeper names sequential nodes.
	Type string `json:"type"`
	// DataBytes is the size of the node's data.
	DataBytes int32 `json:"data_bytes"`
	// Children counts the node's children.
	Children int32 `json:"children"`
	// EphemeralOwner is the owning session of an ephemeral node, as hex.
	EphemeralOwner string `json:"ephemeral_owner,omitempty"`
}

// Tree lists path and every node below it, depth first in name order, up
// to limit nodes (0: no limit). It is for operators: registry data, locks,
// anything in ZooKeeper.
func (c *Client) Tree(path string, limit int) ([]Node, error) {
	zc := c.conn.ZK()
	var out []Node
	var walk func(p string) error
	walk = func(p string) error {
		if limit > 0 && len(out) >= limit {
			return nil
		}
		ok, st, err := zc.Exists(p)
		if err != nil {
			return fmt.Errorf("registry: %s: %w", p, err)
		}
		if !ok {
			return nil // gone meanwhile
		}
		out = append(out, nodeOf(p, st))
		if st.NumChildren == 0 {
			return nil
		}
		children, _, err := zc.Children(p)
		if errors.Is(err, zk.ErrNoNode) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("registry: %s: %w", p, err)
		}
		slices.Sort(children)
		for _, ch := range children {
			child := p + "/" + ch
			if p == "/" {
				child = "/" + ch
			}
			if err := walk(child); err != nil {
				return err
			}
		}
		return nil
	}
	if path == "" || path[0] != '/' {
		return nil, fmt.Errorf("%w: path %q is not absolute", ErrInvalidName, path)
	}
	ok, _, err := zc.Exists(path)
	if err != nil {
		return nil, fmt.Errorf("registry: %s: %w", path, err)
	}
	if !ok {
		return nil, fmt.Errorf("registry: %s: %w", path, zk.ErrNoNode)
	}
	if err := walk(path); err != nil {
		return nil, err
	}
	return out, nil
}

func nodeOf(path string, st *zk.Stat) Node {
	n := Node{Path: path, Type: "persistent", DataBytes: st.DataLength, Children: st.NumChildren}
	if st.EphemeralOwner != 0 {
		n.Type = "ephemeral"
		n.EphemeralOwner = fmt.Sprintf("%#x", st.EphemeralOwner)
	}
	if isSequential(path) {
		n.Type += "_sequential"
	}
	return n
}

// isSequential reports whether the last path element ends in the
// ten-digit counter ZooKeeper appends to sequential nodes.
func isSequential(path string) bool {
	if len(path) < 10 {
		return false
	}
	for _, r := range path[len(path)-10:] {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}
