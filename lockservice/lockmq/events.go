package lockmq

import (
	"context"
	"fmt"
	"strconv"

	"github.com/nats-io/nats.go"

	"github.com/switchyard-dev/switchyard/lockservice"
	"github.com/switchyard-dev/switchyard/mq"
	lockv1 "github.com/switchyard-dev/switchyard/proto/switchyard/lock/v1"
)

// The headers of an event published on EventSubject.
const (
	// HeaderEventTerm is the publishing broadcaster's term
	// (lockservice.BroadcastMeta.Term), in decimal: a subscriber may drop
	// events of a term lower than one it has seen.
	HeaderEventTerm = "Switchyard-Event-Term"
	// HeaderEventSnapshot is "true" on the events with which a new
	// broadcaster re-announces the current holders.
	HeaderEventSnapshot = "Switchyard-Event-Snapshot"
)

// Publisher returns the lockservice.Publish that puts each event on
// EventSubject(ev.name) over nc, encoded in contentType (mq's
// ContentTypeProtobuf or ContentTypeJSON; "" is protobuf), with
// Content-Type, HeaderEventTerm and, on snapshot events, HeaderEventSnapshot.
// Another content type is an error here, not at every publish (where it
// would make the broadcaster step down, again and again). A publish fails
// only when nc cannot take it (closed, say), which makes the broadcaster
// step down; while nc reconnects, nats.go buffers.
func Publisher(nc *nats.Conn, contentType string) (lockservice.Publish, error) {
	contentType, err := mq.RequestContentType(nats.Header{mq.HeaderContentType: {contentType}})
	if err != nil {
		return nil, fmt.Errorf("lockmq: events: %w", err)
	}
	return func(_ context.Context, ev *lockv1.LockEvent, meta lockservice.BroadcastMeta) error {
		data, err := mq.Marshal(contentType, ev)
		if err != nil {
			return fmt.Errorf("lockmq: event: %w", err)
		}
		m := &nats.Msg{Subject: EventSubject(ev.GetName()), Data: data, Header: nats.Header{}}
		m.Header.Set(mq.HeaderContentType, contentType)
		m.Header.Set(HeaderEventTerm, strconv.FormatUint(meta.Term, 10))
		if meta.Snapshot {
			m.Header.Set(HeaderEventSnapshot, "true")
		}
		if err := nc.PublishMsg(m); err != nil {
			return fmt.Errorf("lockmq: publishing an event: %w", err)
		}
		return nil
	}, nil
}

// DecodeEvent reads an event message from EventSubject: the event and
// what its broadcaster said of it.
func DecodeEvent(m *nats.Msg) (*lockv1.LockEvent, lockservice.BroadcastMeta, error) {
	ev := &lockv1.LockEvent{}
	if err := mq.DecodeBody(m.Header, m.Data, ev); err != nil {
		return nil, lockservice.BroadcastMeta{}, err
	}
	var meta lockservice.BroadcastMeta
	if t := mq.HeaderValue(m.Header, HeaderEventTerm); t != "" {
		term, err := strconv.ParseUint(t, 10, 64)
		if err != nil {
			return nil, meta, fmt.Errorf("lockmq: %s %q: %w", HeaderEventTerm, t, err)
		}
		meta.Term = term
	}
	meta.Snapshot = mq.HeaderValue(m.Header, HeaderEventSnapshot) == "true"
	return ev, meta, nil
}
