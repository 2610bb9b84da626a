// Package lockqueue queues acquires of the lock service on JetStream: a
// requester publishes an acquire request and goes on; the replicas take
// the requests from a work queue, a bounded number at a time, wait for
// each lock, and publish the lease to the subject the requester named. A
// burst far above what the replicas handle at once is stored, not
// refused, and every request ends granted exactly once, dropped because
// its requester gave up, or dead-lettered with a reason — none is lost.
//
// Replicas run a Worker each (Start); requesters use Enqueue, or a
// Requester, which owns an inbox and hands each outcome to its request.
// Messages are switchyard.lock.v1's, encoded by package mq's wire
// contract (Content-Type: binary protobuf by default, protojson with
// application/json; errors as a gRPC code in Nats-Service-Error-Code, the
// message in Nats-Service-Error, and a google.rpc.Status body).
//
// # Streams, consumer, subjects
//
//	SWITCHYARD_LOCK_QUEUE   stream, subject switchyard.lock.v1.queue.acquire;
//	                        work-queue retention, file storage, Duplicates
//	                        window Config.Duplicates (2m), at most
//	                        Config.MaxMsgs (100000) messages with DiscardNew:
//	                        a full queue refuses the publish (the publisher
//	                        gets an error, RESOURCE_EXHAUSTED from Enqueue),
//	                        it never drops a request it took
//	lock-acquirers          its durable pull consumer, shared by every
//	                        replica: AckExplicit, AckWait Config.AckWait
//	                        (30s), MaxDeliver Config.MaxDeliver (5),
//	                        MaxAckPending Config.MaxAckPending (256): the
//	                        bound on requests in flight across all replicas
//	SWITCHYARD_LOCK_DLQ     stream, subject switchyard.lock.v1.queue.dead:
//	                        dead letters; limits retention, file storage,
//	                        kept Config.DeadMaxAge (forever by default)
//	$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.SWITCHYARD_LOCK_QUEUE.lock-acquirers
//	                        JetStream's advisory (core NATS, JSON) for a
//	                        message that hit MaxDeliver; every Worker
//	                        subscribes
//
// Start creates or updates both streams and the consumer with its Config
// (so give every replica the same one).
//
// # A queued request
//
// The body is a lockv1.AcquireRequest. Its headers:
//
//   - Nats-Msg-Id: the request id (required). JetStream drops a message
//     whose id it has seen within the Duplicates window (PubAck.Duplicate).
//     The body's request_id is taken from it when empty; a body whose
//     request_id differs, or a Switchyard-Request-Id header that differs,
//     is a bad request. The request id makes the acquire idempotent at the
//     lock service, so a message delivered twice is never granted twice.
//   - Switchyard-Reply-To: the subject the outcome is published to
//     (required). It must be a subject one can publish to, without
//     wildcards, and not a "$" system subject (a reply goes out with the
//     worker's permissions).
//   - Switchyard-Deadline (mq's header, RFC 3339, UTC): when the requester
//     gives up. Switchyard-Timeout (a Go duration) is read too, counted
//     from when JetStream stored the message. A request is never granted
//     after its deadline, nor later than Config.MaxWait (5m) after it was
//     stored, which is also the deadline of a request without one. Keep
//     MaxWait below the lock service's ClaimRetention (ten minutes), so
//     that no redelivery can outlive the claim of its request id.
//   - Content-Type, Accept: as package mq says; the reply is in the
//     encoding asked for.
//
// Whatever its body says, a queued acquire waits in line (wait is taken
// as true).
//
// # Outcomes
//
// Every reply carries Switchyard-Request-Id, the request id, and is sent
// to Switchyard-Reply-To:
//
//   - Granted: the AcquireResponse, then the message is acknowledged
//     (double ack). The lease lives at the replica its replica field
//     names; renew and release it there (lockmq's Transport does). If the
//     reply cannot be published the message is handed back (Nak): a
//     redelivery to the same replica finds the same lease (the request id
//     is idempotent) and sends it; one to another replica is told
//     OTHER_REPLICA, and that worker asks the replica holding the lease,
//     on its NATS front door (lockmq's switchyard.lock.v1.replica.<replica>.acquire),
//     which answers with the same lease, and sends it. A requester may so
//     see the same lease twice; Requester ignores the second.
//   - Dropped (acknowledged, no grant, no dead letter): the deadline has
//     passed when the message is consumed or while it waits (no reply:
//     the requester has gone; but DEADLINE_EXCEEDED when it was MaxWait's
//     cap that passed, as the requester may still wait); the lock service
//     answers FAILED_PRECONDITION because the request was granted before
//     and its lease has ended (a late duplicate); or its node lives at
//     another replica that does not answer the forwarded request (it is
//     that replica's to answer).
//   - Handed back for a later delivery (NakWithDelay of Config.RetryDelay,
//     doubled per delivery, at most AckWait): UNAVAILABLE (the replica is
//     draining or cut off from ZooKeeper: another replica may take it),
//     RESOURCE_EXHAUSTED (too many waiters or leases), ABORTED, and a
//     reply or dead letter that could not be published. A Worker being
//     closed hands its waiting requests back at once (Nak), their nodes
//     deleted, so that another replica takes them; one granted meanwhile
//     is answered first.
//   - Dead-lettered: a bad request (headers or body that do not parse or
//     contradict each other) or an error that retrying cannot mend
//     (INVALID_ARGUMENT, PERMISSION_DENIED, NOT_FOUND, INTERNAL, ...):
//     the worker publishes the dead letter, then the error reply (when
//     there is a reply subject; an error that is not a lock-service
//     status is INTERNAL "internal error" there, its text kept in the
//     dead letter's reason), then terminates the message (Term). A
//     message that fails MaxDeliver times (retryable errors each time):
//     on the advisory, every Worker reads the message from the stream
//     (by its stream_seq), publishes the dead letter with the reason
//     "delivered N times without success: <last error>" (the last error
//     as the worker that handled it recorded it; a worker that does not
//     know it waits a moment so that the one that does goes first),
//     answers UNAVAILABLE with that reason, and deletes the message from
//     the work queue. As a backstop for an advisory no worker received,
//     each Worker sweeps at Start and every Config.SweepInterval (1m): if
//     the consumer's figures show messages JetStream gave up on, it
//     dead-letters the delivered messages stored longer ago than MaxWait
//     plus AckWait (none of which can be granted any more).
//
// # Dead letters
//
// A dead letter on switchyard.lock.v1.queue.dead carries the original
// body and headers (except JetStream's own Nats-* headers) and:
//
//	Switchyard-Dead-Reason      why, in words (one line, at most 1024 bytes)
//	Switchyard-Dead-Code        the gRPC code number: 3 (INVALID_ARGUMENT) for a
//	                            bad request, the lock service's code for its
//	                            refusals, 14 (UNAVAILABLE) for MaxDeliver
//	Switchyard-Deliveries       how many times JetStream had delivered it (a
//	                            sweep, which cannot tell, gives MaxDeliver)
//	Switchyard-Stream-Seq       its sequence in SWITCHYARD_LOCK_QUEUE
//	Switchyard-Original-Msg-Id  its Nats-Msg-Id, the request id
//	Nats-Msg-Id                 dlq-<its sequence>, so that workers
//	                            dead-lettering one message store it once; the
//	                            one whose dead letter is stored sends the
//	                            error reply
//
// # Bounds
//
// A Worker handles at most Config.Concurrency (16) requests at once, each
// pulled alone when a handler is free (nothing waits in a client buffer
// while its AckWait runs); MaxAckPending bounds them across the replicas.
// A request waiting for its lock holds its handler, and reports progress
// (InProgress) every AckWait/3 so that it is not delivered again.
//
// # Metrics
//
// With Config.Metrics: switchyard_lock_queued_granted_total,
// switchyard_lock_queued_dropped_total{reason="deadline|duplicate|other_replica"}
// and switchyard_lock_queued_dead_total.
package lockqueue
