package lockmq

import (
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// The subjects of the lock service's NATS front door (see the package
// doc for each one's messages and errors).
const (
	// Prefix starts every subject of the lock service.
	Prefix = "switchyard.lock.v1"

	// AcquireSubject takes an AcquireRequest at any replica (queue group
	// QueueGroup) and answers an AcquireResponse.
	AcquireSubject = Prefix + ".acquire"
	// TryAcquireSubject is AcquireSubject with the request's wait taken
	// as false, whatever it says: a try-lock.
	TryAcquireSubject = Prefix + ".try_acquire"
	// DescribeSubject takes a DescribeRequest at any replica.
	DescribeSubject = Prefix + ".describe"
	// ListSubject takes a ListRequest at any replica.
	ListSubject = Prefix + ".list"

	// CancelSubject is where a requester that gave up a waiting acquire
	// says so: a plain publish, no reply, no body, with the acquire's
	// Switchyard-Request-Id. Every replica listens (no queue group), and
	// the one where the acquire waits ends the wait, deleting its node.
	// NATS cannot cancel a request the way gRPC does.
	CancelSubject = Prefix + ".cancel"

	// EventsPrefix starts the subjects that lock events are published on,
	// one per lock: EventSubject. Subscribe to EventsPrefix + ".>" for
	// every lock's.
	EventsPrefix = Prefix + ".events"

	// QueueGroup is the queue group of the subjects shared by the
	// replicas, so that one replica answers each request.
	QueueGroup = "switchyard-lock"
	// ServiceName is the front door's name as nats micro shows it.
	ServiceName = "switchyard-lock"
	// ServiceVersion is its version (semver, as micro requires).
	ServiceVersion = "1.0.0"
)

// The operations of a replica's own subjects: ReplicaSubject(replica, op).
const (
	OpAcquire   = "acquire"
	OpKeepAlive = "keep_alive"
	OpRelease   = "release"
)

// ReplicaSubject is the subject of operation op at replica: the NATS form
// of instance affinity, since a lease lives on the replica whose ZooKeeper
// session holds its node (Lease.replica names it).
//
//	switchyard.lock.v1.replica.<Token(replica)>.<op>
func ReplicaSubject(replica, op string) string {
	return Prefix + ".replica." + Token(replica) + "." + op
}

// EventSubject is the subject that the events of the lock called name are
// published on:
//
//	switchyard.lock.v1.events.<Token(name)>
//
// A name is one token however many "/" it has ("orders/42" is
// switchyard.lock.v1.events.orders/42), so the wildcard for every lock is
// EventsPrefix + ".*" or ".>"; a prefix of names is not a subject
// wildcard, and a subscriber filters by Event's name itself.
func EventSubject(name string) string { return EventsPrefix + "." + Token(name) }

// Token escapes s into one NATS subject token: bytes that a token cannot
// hold or that would change its meaning — ".", "*", ">", whitespace and
// other bytes outside printable ASCII — and "%" itself become %XX (upper
// case hex of each byte). Everything else, "/" included, stays as it is,
// so common names read as they are. The empty string, which no name or
// replica id is, becomes a lone "%", which no escape is.
func Token(s string) string {
	if s == "" {
		return "%"
	}
	clean := true
	for i := 0; i < len(s); i++ {
		if escapes(s[i]) {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 8)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if escapes(c) {
			fmt.Fprintf(&b, "%%%02X", c)
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// Untoken reverses Token.
func Untoken(t string) (string, error) {
	if t == "%" {
		return "", nil
	}
	if !strings.Contains(t, "%") {
		return t, nil
	}
	var b strings.Builder
	for i := 0; i < len(t); i++ {
		if t[i] != '%' {
			b.WriteByte(t[i])
			continue
		}
		if i+2 >= len(t) {
			return "", fmt.Errorf("lockmq: bad escape at %d in %q", i, t)
		}
		v, err := strconv.ParseUint(t[i+1:i+3], 16, 8)
		if err != nil {
			return "", fmt.Errorf("lockmq: bad escape at %d in %q", i, t)
		}
		b.WriteByte(byte(v))
		i += 2
	}
	out := b.String()
	if !utf8.ValidString(out) {
		return "", fmt.Errorf("lockmq: %q is not UTF-8 once unescaped", t)
	}
	return out, nil
}

func escapes(c byte) bool {
	return c <= ' ' || c >= 0x7f || c == '.' || c == '*' || c == '>' || c == '%'
}
