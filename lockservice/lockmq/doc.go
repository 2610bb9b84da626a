// Package lockmq is the lock service's NATS front door and the lock
// client's NATS transport: the same service as over gRPC (package
// lockservice), reached by any NATS client — a Go program, the nats CLI,
// another language — with the same leases, fencing tokens and errors.
//
// Every replica serves the micro service "switchyard-lock" (so `nats micro
// ls` and `nats micro info switchyard-lock` list it, its replicas and its
// endpoints), on the subjects below. Messages are switchyard.lock.v1's
// (proto/switchyard/lock/v1/lock.proto), encoded as package mq's wire
// contract says: binary protobuf by default, protojson when Content-Type
// is application/json; a deadline in Switchyard-Deadline or
// Switchyard-Timeout; errors as a gRPC code in Nats-Service-Error-Code, its
// message in Nats-Service-Error, and a google.rpc.Status body.
//
// # Subjects
//
// Shared by the replicas (queue group "switchyard-lock": one answers):
//
//	switchyard.lock.v1.acquire       AcquireRequest → AcquireResponse
//	                                 waits in line while req.wait, until the deadline
//	switchyard.lock.v1.try_acquire   AcquireRequest → AcquireResponse, never waits
//	switchyard.lock.v1.describe      DescribeRequest → DescribeResponse
//	switchyard.lock.v1.list          ListRequest → ListResponse
//
// A replica's own (Lease.replica names it; ReplicaSubject escapes it):
//
//	switchyard.lock.v1.replica.<replica>.acquire     AcquireRequest → AcquireResponse
//	                                                 (where an OTHER_REPLICA error sends a retry)
//	switchyard.lock.v1.replica.<replica>.keep_alive  KeepAliveRequest → KeepAliveResponse
//	switchyard.lock.v1.replica.<replica>.release     ReleaseRequest → ReleaseResponse
//
// Published, with no reply:
//
//	switchyard.lock.v1.cancel          a requester gave up the acquire named by its
//	                                   Switchyard-Request-Id header; the replica where it
//	                                   waits ends the wait (every wait with that id, when
//	                                   retries joined it) and deletes its node
//	switchyard.lock.v1.events.<name>   LockEvent: every grant, release, expiry and loss
//
// # Events
//
// Doors started WithEvents stand in the election of the lock service's
// broadcaster (lockservice.Server.Broadcast); the one elected publishes
// every grant, release, expiry and loss of every lock, as its ZooKeeper
// watcher sees them — the same watcher that feeds the gRPC Watch stream:
// one source, two ways to receive. Each event is a LockEvent, in the
// door's chosen encoding (Content-Type says which), with headers
// Switchyard-Event-Term (the broadcaster's term, growing with each new
// broadcaster) and, on the re-announcement of current holders a new
// broadcaster starts with, Switchyard-Event-Snapshot: true. Delivery is
// core NATS: at most once per subscriber, to subscribers present at the
// time. Across a change of broadcaster, events may repeat (deduplicate by
// name, token and type) or be missed; a holder that comes and goes
// between two of the watcher's reads of its lock is missed too, by both
// ways alike. DecodeEvent reads one.
//
// # Queued acquires
//
// Package lockqueue adds a durable way in: AcquireRequests published to
// the JetStream work-queue stream SWITCHYARD_LOCK_QUEUE on subject
// switchyard.lock.v1.queue.acquire (Nats-Msg-Id: the request id;
// Switchyard-Reply-To: where the outcome goes), taken by the replicas'
// workers a bounded number at a time, and dead letters in
// SWITCHYARD_LOCK_DLQ on switchyard.lock.v1.queue.dead with the reason in
// Switchyard-Dead-Reason. lockqueue's doc has the whole contract.
//
// Names and replica ids are one subject token each, escaped by Token: "."
// and "*", ">", "%", whitespace and bytes outside printable ASCII become
// %XX; "/" stays ("orders/42" → switchyard.lock.v1.events.orders/42).
//
// An acquire's request id may come in the body (request_id) or in the
// Switchyard-Request-Id header; both, differing, are INVALID_ARGUMENT.
// Send one: it makes a retry idempotent, and it is what a cancel names.
//
// # Errors
//
// The codes are those of the gRPC service, one to one (see package
// lockservice): INVALID_ARGUMENT for a bad name, TTL, request id, body,
// content type or header; ABORTED for a try-lock of a held lock;
// DEADLINE_EXCEEDED for a wait that outlived its deadline (or a deadline
// already past on arrival); PERMISSION_DENIED for a lease id or token that
// does not match; FAILED_PRECONDITION for an ended lease, or with ErrorInfo
// reason OTHER_REPLICA naming the replica to ask instead; RESOURCE_EXHAUSTED
// for a lock with too many waiters, a replica with too many leases or
// requests in flight (WithMaxInFlight), or a request over the server's max
// payload; NOT_FOUND for a lock that does not exist; UNAVAILABLE for a
// replica that is draining, closing or cut off from ZooKeeper, and — on
// the requester's side — for a subject no one answers (a replica that is
// gone). A request without a reply subject is logged and dropped, never
// granted.
//
// # Differences from gRPC
//
// NATS cannot cancel a request in flight, so Transport publishes on
// switchyard.lock.v1.cancel when its caller gives up a wait, and every
// call carries its deadline: a replica never waits for a requester past
// the requester's deadline. A blocking acquire without a deadline (a nats
// CLI user who sent no Switchyard-Timeout) waits until granted, and the
// grant then holds the lock until its lease runs out if no one is there
// to use it.
package lockmq
