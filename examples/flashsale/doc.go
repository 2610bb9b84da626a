// Package flashsale is the workload of `yard demo`, in readable form: a
// flash sale of a fixed inventory, where every purchase takes the item's
// lock from Switchyard's lock service, reads the item's stock at a store
// and writes it back one lower under the lock's fencing token, and releases
// the lock.
//
// The pieces, in the order a purchase meets them:
//
//   - Capacity is the downstream's fixed capacity: at most C purchases a
//     second start their work, whoever sends them (a token bucket with a
//     burst of one). It is what makes C known and settable.
//   - Shop.Purchase is the purchase procedure: wait for capacity, lock the
//     item (lockclient, over gRPC or NATS), Store.Read the stock, then
//     Store.Write the purchase from what was read, with the lock's fencing
//     token, unlock.
//   - Store is the stock, in memory, reached as a remote store would be: a
//     read, then a blind write of the stock computed from it. Only the
//     item's lock keeps two buyers from reading the same stock and both
//     writing it one lower; an update lost that way, or a unit sold beyond
//     the stock, is counted (StoreStats.Oversold) and found by Store.Audit.
//     Two checks at the write make retries, redeliveries and paused lock
//     holders harmless: each purchase id is applied at most once (a
//     duplicate gets the first outcome back and changes nothing), and a
//     fencing token lower than the highest the item has seen is refused.
//
// The shop is reached two ways, the two paths `yard demo` compares:
//
//   - RPC: NewGRPCServer serves switchyard.flashsale.v1.FlashSaleService
//     with rpc.NewServer, registered in the ZooKeeper registry; the caller
//     waits for the purchase to be applied. The RPC stack's limiter
//     (rpc.WithRateLimit, rpc.WithMaxConcurrent) turns excess calls away
//     with RESOURCE_EXHAUSTED at once.
//   - MQ: Queue.Enqueue publishes the same PurchaseRequest to a JetStream
//     work-queue stream (the purchase id as Nats-Msg-Id, so a repeated
//     publish is dropped by the server), and Workers — a fixed pool pulling
//     from one durable consumer whose MaxAckPending is the pool size — run
//     Shop.Purchase and ack after the store has applied it, or nak so that
//     it comes back. A worker that dies between the store's write and the
//     ack leaves the message to be redelivered; the store absorbs the
//     duplicate.
//
// The workers take their locks over NATS (package lockmq's transport to
// the lock service's NATS front door), so the MQ path needs no registry
// lookup at all; the gRPC server takes them over gRPC through the
// registry. Either transport gives the same leases and fencing tokens.
//
// The sale's events ("sold out", "price changed") go out the same two
// ways, for the broadcast demo: over RPC, every subscriber serves
// switchyard.flashsale.v1.SaleEventService (NewEventGRPCServer) and the
// producer's Notifier calls each instance it finds in the registry; over
// NATS, PublishEvent is one publish that every SubscribeEvents
// subscription receives, and PublishEventJetStream stores it in a stream
// that each subscriber's durable consumer (ConsumeEvents) reads at its own
// pace.
package flashsale
