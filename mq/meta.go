package mq

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"google.golang.org/grpc/codes"
)

// MaxRequestIDLen is the longest request id, in bytes.
const MaxRequestIDLen = 128

// maxTraceStateLen is W3C's bound on tracestate; a longer one is dropped.
const maxTraceStateLen = 512

// maxQuoted bounds how much of a value Quote quotes.
const maxQuoted = 64

// Meta is what a request's headers say besides its body: who asks (for
// logs), by when, in which trace, and in which encodings.
type Meta struct {
	// RequestID is the opaque Switchyard-Request-Id, or "".
	RequestID string
	// Deadline is when the requester stops waiting; zero for none.
	Deadline time.Time
	// TraceParent and TraceState are the W3C Trace Context headers,
	// carried as they are; an invalid traceparent is dropped, with its
	// tracestate.
	TraceParent, TraceState string
	// ContentType is the body's encoding: ContentTypeProtobuf or
	// ContentTypeJSON ("" means protobuf).
	ContentType string
	// Accept is the encoding the reply is asked for in, or "" for the
	// request's own.
	Accept string
}

// ReplyContentType returns the encoding a reply to the request is sent
// in: Accept if set, else ContentType, else protobuf.
func (m Meta) ReplyContentType() string {
	switch {
	case m.Accept != "":
		return m.Accept
	case m.ContentType != "":
		return m.ContentType
	}
	return ContentTypeProtobuf
}

// ParseMeta reads the wire contract's request headers from h; received is
// when the request arrived, from which Switchyard-Timeout counts and
// against which the deadline is checked. A bad Content-Type, request id,
// deadline or timeout is an InvalidArgument status error (wrapping
// ErrContentType or ErrHeader); a deadline that had passed on receipt is
// DeadlineExceeded (wrapping ErrDeadline). On error the Meta returned
// still holds what parsed, ContentType and Accept in particular, so that
// the error reply can be encoded as the requester reads.
func ParseMeta(h nats.Header, received time.Time) (Meta, error) {
	var m Meta
	m.Accept = parseAccept(HeaderValue(h, HeaderAccept))
	if tp := HeaderValue(h, HeaderTraceParent); validTraceParent(tp) {
		m.TraceParent = tp
		if ts := HeaderValue(h, HeaderTraceState); len(ts) <= maxTraceStateLen && printableASCII(ts) {
			m.TraceState = ts
		}
	}
	ct, ctErr := RequestContentType(h)
	m.ContentType = ct
	id := HeaderValue(h, HeaderRequestID)
	idErr := CheckRequestID(id)
	if idErr == nil {
		m.RequestID = id
	}
	if ctErr != nil {
		return m, ctErr
	}
	if idErr != nil {
		return m, idErr
	}

	if v := HeaderValue(h, HeaderDeadline); v != "" {
		d, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			return m, errorf(codes.InvalidArgument, ErrHeader, " %s: %s is not an RFC 3339 time", HeaderDeadline, Quote(v))
		}
		m.Deadline = d.UTC()
	}
	if v := HeaderValue(h, HeaderTimeout); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return m, errorf(codes.InvalidArgument, ErrHeader, " %s: %s is not a positive Go duration", HeaderTimeout, Quote(v))
		}
		if t := received.Add(d).UTC(); m.Deadline.IsZero() || t.Before(m.Deadline) {
			m.Deadline = t
		}
	}
	if !m.Deadline.IsZero() && !m.Deadline.After(received) {
		return m, errorf(codes.DeadlineExceeded, ErrDeadline, ": the deadline %s had passed when the request arrived at %s",
			m.Deadline.Format(time.RFC3339Nano), received.UTC().Format(time.RFC3339Nano))
	}
	return m, nil
}

// CheckRequestID returns nil for a request id that may go in
// Switchyard-Request-Id (at most MaxRequestIDLen bytes of printable ASCII;
// "" is none, and fine), or else an InvalidArgument status error wrapping
// ErrHeader.
func CheckRequestID(id string) error {
	if len(id) > MaxRequestIDLen {
		return errorf(codes.InvalidArgument, ErrHeader, " %s: %d bytes, at most %d", HeaderRequestID, len(id), MaxRequestIDLen)
	}
	if !printableASCII(id) {
		return errorf(codes.InvalidArgument, ErrHeader, " %s: %s is not printable ASCII", HeaderRequestID, Quote(id))
	}
	return nil
}

// MergeRequestID reconciles the request id a request's body carries with
// the one its header named header carries: it returns the one given (the
// same if both are), or, if both are given and differ, an InvalidArgument
// status error.
func MergeRequestID(body, headerID, header string) (string, error) {
	switch {
	case headerID == "" || headerID == body:
		return body, nil
	case body == "":
		return headerID, nil
	}
	return "", newError(codes.InvalidArgument, fmt.Sprintf("request id %s in the body and %s in the %s header differ", Quote(body), Quote(headerID), header))
}

// Header returns m as request headers.
func (m Meta) Header() nats.Header {
	h := nats.Header{}
	m.WriteHeader(h)
	return h
}

// WriteHeader sets m's fields that are not empty as headers in h: the
// deadline in UTC as time.RFC3339Nano, tracestate only with traceparent.
func (m Meta) WriteHeader(h nats.Header) {
	set := func(k, v string) {
		if v != "" {
			h.Set(k, v)
		}
	}
	set(HeaderContentType, m.ContentType)
	set(HeaderAccept, m.Accept)
	set(HeaderRequestID, m.RequestID)
	if !m.Deadline.IsZero() {
		h.Set(HeaderDeadline, m.Deadline.UTC().Format(time.RFC3339Nano))
	}
	if m.TraceParent != "" {
		h.Set(HeaderTraceParent, m.TraceParent)
		set(HeaderTraceState, m.TraceState)
	}
}

// Context returns a context derived from parent that ends at m's
// deadline (if any), and its cancel function, which the caller must call.
func (m Meta) Context(parent context.Context) (context.Context, context.CancelFunc) {
	if m.Deadline.IsZero() {
		return context.WithCancel(parent)
	}
	return context.WithDeadline(parent, m.Deadline)
}

// validTraceParent reports whether s has the shape of a version-00 W3C
// traceparent: 00-<32 hex>-<16 hex>-<2 hex>, lowercase, with trace and
// parent ids that are not all zeros.
func validTraceParent(s string) bool {
	if len(s) != 55 || s[:3] != "00-" || s[35] != '-' || s[52] != '-' {
		return false
	}
	traceID, parentID, flags := s[3:35], s[36:52], s[53:]
	return lowerHex(traceID) && lowerHex(parentID) && lowerHex(flags) &&
		strings.Trim(traceID, "0") != "" && strings.Trim(parentID, "0") != ""
}

func lowerHex(s string) bool {
	for i := range len(s) {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

func printableASCII(s string) bool {
	for i := range len(s) {
		if c := s[i]; c < 0x20 || c > 0x7e {
			return false
		}
	}
	return true
}

// Quote quotes v, a value from outside, for an error message or a log:
// at most its first 64 bytes (cut at a rune boundary), followed by "..."
// if that is not all of it.
func Quote(v string) string {
	if len(v) > maxQuoted {
		return strconv.Quote(strings.ToValidUTF8(v[:maxQuoted], "")) + "..."
	}
	return strconv.Quote(v)
}
