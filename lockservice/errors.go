package lockservice

import (
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/switchyard-dev/switchyard/lockservice/lockclient"
)

func otherReplicaError(name, replica string) error {
	st := status.Newf(codes.FailedPrecondition, "the lease of %q is held by replica %q", name, replica)
	info := &errdetails.ErrorInfo{Reason: lockclient.OtherReplicaReason, Domain: lockclient.ErrorDomain, Metadata: map[string]string{"replica": replica}}
	if d, err := st.WithDetails(info); err == nil {
		st = d
	}
	return st.Err()
}

// tombstones remembers why leases and requests ended, for the most recent
// n of them, so that a late call is told FAILED_PRECONDITION with the
// reason rather than PERMISSION_DENIED, and a duplicate acquire is refused.
type tombstones struct {
	why   map[string]string
	order []string // ring of keys, oldest at next
	next  int
}

func newTombstones(n int) tombstones {
	return tombstones{why: make(map[string]string, n), order: make([]string, n)}
}

func (t *tombstones) put(key, why string) {
	if old := t.order[t.next]; old != "" {
		delete(t.why, old)
	}
	t.order[t.next] = key
	t.next = (t.next + 1) % len(t.order)
	t.why[key] = why
}

func (t *tombstones) get(key string) (string, bool) {
	why, ok := t.why[key]
	return why, ok
}
