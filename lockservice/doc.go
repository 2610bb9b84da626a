// Package lockservice is Switchyard's distributed lock service: the
// server behind switchyard.lock.v1.LockService. Locks live in ZooKeeper
// (package zklock does the recipe); this package grants them under leases,
// enforces who may renew and release, bounds what it promises by what its
// ZooKeeper session can guarantee, and maps every outcome to a gRPC code
// in one place. Clients use package lockclient.
//
// # The contract
//
// Mutual exclusion: each acquire is an EPHEMERAL_SEQUENTIAL node under
// /switchyard/locks/<name>; the lowest sequence holds the lock; every other
// waiter watches only its predecessor, so a release wakes exactly one
// waiter. Creates are protected by a GUID derived from the request id.
//
// Fencing: every grant carries a token, its node's creation zxid, which
// strictly increases over the lock's whole history.
//
// Leases: a grant carries a lease id (128 random bits) and a validity. The
// holder renews it with KeepAlive; a lease not renewed in time expires and
// its node is deleted, which grants the lock to the next waiter. The
// validity a replica grants never outlasts what it can guarantee: it is
// at most the asked TTL, and it ends no later than the replica's ZooKeeper
// session could expire — the session timeout after the replica last heard
// from ZooKeeper, measured by a heartbeat from when it sent the request.
// While disconnected from ZooKeeper a replica grants and renews nothing
// (UNAVAILABLE). Validity runs from when the replica received the request
// plus the time it waited in line (Lease.waited); the client counts from
// when it sent the request plus the same wait, so its view ends first.
//
// Holder-only release and renewal: a lease id or token that does not
// match is PERMISSION_DENIED; a lease that expired, was released or was
// lost is FAILED_PRECONDITION — never a silent success.
//
// Idempotent acquire: a request id makes a retried acquire return the
// same lease, never a second grant. A retry that reaches another replica
// than the one that holds its node is FAILED_PRECONDITION naming that
// replica (ErrorInfo reason OTHER_REPLICA, metadata "replica"). A request
// whose lease has ended (released, expired, lost) is FAILED_PRECONDITION
// if it comes again, at any replica, so a late duplicate — a redelivered
// message, say — cannot take the lock a second time: the request id's
// GUID has a claim in ZooKeeper, made with its node and kept for
// Config.ClaimRetention (ten minutes by default) after the lease ended;
// a duplicate later than that may be granted again. The replica that
// granted it also remembers the reason, for its answer. A request that
// was never granted — its wait ended, its try-lock found the lock held,
// or the replica could not back the grant with a lease (UNAVAILABLE) — may
// be sent again with the same id. A request id used for one lock is
// INVALID_ARGUMENT for another.
//
// Not reentrant: two acquires of one name with different request ids are
// two contenders, even from one owner; the second waits for the first.
//
// Replicas: a lease lives on the replica whose session holds its node.
// KeepAlive and Release must reach that replica (lockclient does, through
// instance affinity); another replica answers FAILED_PRECONDITION naming
// it. If that replica dies, its session ends, its nodes go, and its
// leases' holders learn of the loss when their renewals fail, before the
// validity they were promised ends.
//
// Limits: a replica queues at most Config.MaxWaiters acquires per lock and
// holds at most Config.MaxLeases leases; past either, RESOURCE_EXHAUSTED.
//
// # Watch
//
// Watch streams the grants, releases, expiries and losses of the locks
// under a name prefix as ZooKeeper has them, so a stream at any replica
// sees every replica's locks: one source of truth. A stream begins with
// the current holders (one GRANTED each), then follows each lock's holder
// (its lowest-sequence contender): when it changes, an end event for the
// holder that went, then GRANTED for the next, in order per lock. The end
// is typed by why, which the party that deleted the node recorded in its
// guid's claim in the same multi-op (zklock's Release and Expire):
// RELEASED, EXPIRED, or — nothing recorded, the node went with its
// replica's session — LOST; a grant withdrawn before it was handed out
// (its claim gone with it) is RELEASED. Each replica runs one watcher for
// all its streams (from the first stream to the last, or Close): a
// children watch on the lock root and one per followed lock, never one
// per contender, read again when they fire and all at once after a
// session change. A stream whose client falls Config.WatchBuffer events
// behind is ended with RESOURCE_EXHAUSTED; streams end with UNAVAILABLE
// when the replica drains.
//
// # Events
//
// Every grant, release, expiry and loss of any lock has one source: the
// lock root in ZooKeeper, as the watcher above reads it. There are two
// ways to receive them. A Watch stream, at any replica, for a prefix; and
// the publications of the broadcaster (Server.Broadcast), which a front
// door such as NATS sends on: the replicas running Broadcast elect one,
// through a lock of their own under /switchyard/lockevents, and it hands
// every event to its transport, beginning with a snapshot of the current
// holders, each event stamped with its term (the election's fencing
// token). While ZooKeeper is healthy exactly one replica publishes at a
// time; across a handover events may be repeated (the snapshot) or, for
// a holder that came and went meanwhile, missed, so subscribers
// deduplicate by (name, token, type) and may drop events of a term older
// than one they have seen. A broadcaster that falls behind, or whose
// transport fails, steps down rather than publish on past a gap.
package lockservice
