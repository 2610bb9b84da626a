// Package mq is Switchyard's NATS foundation: a connection that reports
// its state and can own an embedded server, and request-reply with
// protobuf messages under one wire contract, on both sides, for services
// (the lock service's NATS front door first) that answer on NATS what they
// answer over gRPC.
//
// Why a contract of our own: NATS carries bytes and headers and nothing
// else. Without one agreed encoding, deadline, request id and error shape,
// every service would invent its own, errors would lose their gRPC codes
// and details between the two transports, and a shell user with the nats
// CLI could not talk to a service at all. The contract keeps gRPC's
// meaning (codes, google.rpc.Status details, deadlines) while following
// NATS conventions where they exist (micro's error headers), so
// `nats micro` and `nats req` show errors as they show any service's.
//
// # The wire contract
//
// A request is a NATS request (a message with a reply subject) whose body
// is one protobuf message. Its headers (names matched without regard to
// case; written as shown):
//
//   - Content-Type: application/protobuf (binary protobuf, the default
//     when absent; application/x-protobuf is taken as the same) or
//     application/json (the proto3 JSON mapping, protojson: written with
//     lowerCamelCase names, read with either those or the proto names;
//     durations as "10s"). Parameters
//     such as charset are ignored. Any other value is INVALID_ARGUMENT.
//     Decoding is strict: an unknown JSON field is INVALID_ARGUMENT, as is
//     a body that does not parse. An empty body is the empty message.
//   - Accept: optional; application/protobuf or application/json (the
//     first of a comma-separated list that is one of them) asks for the
//     reply in that encoding. Otherwise the reply is in the request's.
//   - Switchyard-Request-Id: optional, opaque, at most 128 bytes of
//     printable ASCII (0x20-0x7e); otherwise INVALID_ARGUMENT.
//   - Switchyard-Deadline: optional, the absolute deadline in RFC 3339
//     with nanoseconds (time.RFC3339Nano), written in UTC. Request sets
//     it from its context's deadline; it assumes clocks in step.
//   - Switchyard-Timeout: optional, a positive Go duration ("5s") counted
//     from when the responder received the request, for shell users:
//     nats req -H Switchyard-Timeout:5s. With both, the earlier deadline
//     wins. A value that does not parse is INVALID_ARGUMENT; a deadline
//     already past on receipt is DEADLINE_EXCEEDED. The responder's
//     handler runs under a context that ends at the deadline.
//   - traceparent, tracestate: W3C Trace Context, carried as opaque
//     strings. A traceparent that is not 00-<32 hex>-<16 hex>-<2 hex>
//     (lowercase, ids not all zero) is dropped with its tracestate, not
//     an error.
//
// A reply carries Content-Type and its body in that encoding. A success
// reply's body is the response message. An error reply carries micro's
// error headers
//
//   - Nats-Service-Error-Code: the gRPC status code as a decimal number
//     ("5" for NOT_FOUND),
//   - Nats-Service-Error: the status message (one line, at most 1024
//     bytes; the code's name when the message is empty),
//
// and its body is a google.rpc.Status in the reply's encoding, so that
// details (errdetails.ErrorInfo, ...) survive one to one. A requester
// reads the status from the body when it parses and has the header's
// code, and otherwise from the two headers alone; a code header that is
// not a gRPC code number is UNKNOWN with the header's text kept in the
// message. Replies are decoded leniently (unknown JSON fields ignored),
// so that responders can add fields.
//
// Errors that are not gRPC statuses never reach the wire as text: a
// handler's plain error is INTERNAL "internal error" (and logged), a
// panic likewise, a context error DEADLINE_EXCEEDED or CANCELLED. A reply
// too large for the connection's maximum payload becomes a
// RESOURCE_EXHAUSTED error reply.
//
// On the requester's side, Request maps transport failures to codes: no
// responders UNAVAILABLE ("mq: no responders on <subject>"), the
// context's deadline or a NATS timeout DEADLINE_EXCEEDED, a canceled
// context CANCELLED, a request above the connection's maximum payload
// RESOURCE_EXHAUSTED (checked before publishing), a closed or draining
// connection UNAVAILABLE.
//
// Subjects are the caller's: this package puts no rule on them.
//
// # Pieces
//
// Connect makes a Conn (optionally with an embedded server) whose state
// changes reach WithStateHandler in order. Request and RequestMsg are the
// requester's side, and DecodeReply reads a reply that came otherwise.
// Handler adapts a typed function to a micro endpoint (MsgHandler to a
// plain subscription); Decode, Respond and RespondError (and the Msg
// forms of the last two) are the same steps for hand-written handlers,
// and PublishReply answers a request that came without a reply subject
// (from a stream). ParseMeta, ErrorHeaders, StatusFromMsg, HeaderValue,
// HeaderText, CheckRequestID and the codec functions are the contract's
// parts, for anything else that speaks it.
package mq
