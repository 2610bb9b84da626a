package flashsale

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	flashsalev1 "github.com/switchyard-dev/switchyard/proto/switchyard/flashsale/v1"
)

// The NATS side of the sale's events: the same SaleEvent as the RPC path's
// Notify, as the body of one message (protobuf binary). Core NATS gives
// every subscriber connected at the moment of the publish one copy, at most
// once, and keeps nothing; a JetStream stream keeps the event, and each
// subscriber's durable consumer hands it over, at least once, whenever the
// subscriber is there to take it.

// ackTimeout bounds a JetStream subscriber's confirmed ack.
const ackTimeout = 5 * time.Second

// PublishEvent publishes ev on subject with core NATS: one message, which
// the server hands to every subscription on subject that exists at that
// moment. It returns once the message is in the connection's buffer (the
// producer learns nothing of the subscribers); FlushWithContext on nc to
// know the server has it.
func PublishEvent(nc *nats.Conn, subject string, ev *flashsalev1.SaleEvent) error {
	data, err := encodeEvent(ev)
	if err != nil {
		return err
	}
	if err := nc.Publish(subject, data); err != nil {
		return fmt.Errorf("flashsale: publishing event %q: %w", ev.GetEventId(), err)
	}
	return nil
}

// PublishEventJetStream publishes ev on subject, which a JetStream stream
// must capture, and returns once the stream has stored it. The event id is
// the message id, so a second publish of the same event within the
// stream's duplicate window is acknowledged and not stored again.
func PublishEventJetStream(ctx context.Context, js jetstream.JetStream, subject string, ev *flashsalev1.SaleEvent) (*jetstream.PubAck, error) {
	data, err := encodeEvent(ev)
	if err != nil {
		return nil, err
	}
	ack, err := js.Publish(ctx, subject, data, jetstream.WithMsgID(ev.GetEventId()))
	if err != nil {
		return nil, fmt.Errorf("flashsale: publishing event %q: %w", ev.GetEventId(), err)
	}
	return ack, nil
}

func encodeEvent(ev *flashsalev1.SaleEvent) ([]byte, error) {
	if ev.GetEventId() == "" {
		return nil, fmt.Errorf("%w: no event id", ErrInvalidEvent)
	}
	data, err := proto.Marshal(ev)
	if err != nil {
		return nil, fmt.Errorf("%w %q: %w", ErrInvalidEvent, ev.GetEventId(), err)
	}
	return data, nil
}

func decodeEvent(data []byte) (*flashsalev1.SaleEvent, error) {
	ev := &flashsalev1.SaleEvent{}
	if err := proto.Unmarshal(data, ev); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidEvent, err)
	}
	if ev.GetEventId() == "" {
		return nil, fmt.Errorf("%w: no event id", ErrInvalidEvent)
	}
	return ev, nil
}

type subscriberOptions struct {
	log     *slog.Logger
	consume []jetstream.PullConsumeOpt
}

// SubscriberOption configures SubscribeEvents and ConsumeEvents.
type SubscriberOption func(*subscriberOptions)

// WithSubscriberLogger sets where a subscriber logs messages it cannot
// decode and acks that fail (default slog.Default()).
func WithSubscriberLogger(l *slog.Logger) SubscriberOption {
	return func(o *subscriberOptions) { o.log = l }
}

// WithConsumeOptions adds options to ConsumeEvents' Consume (how many
// messages to buffer, say: jetstream.PullMaxMessages). SubscribeEvents
// ignores them.
func WithConsumeOptions(opts ...jetstream.PullConsumeOpt) SubscriberOption {
	return func(o *subscriberOptions) { o.consume = append(o.consume, opts...) }
}

// EventSubscriber is a subscriber's NATS front door: a core NATS
// subscription (SubscribeEvents) or a JetStream consumer being consumed
// (ConsumeEvents), handing each SaleEvent to an EventHandler, one at a
// time. The connection is the caller's; Close stops the deliveries and
// waits for the handler.
type EventSubscriber struct {
	handle EventHandler
	log    *slog.Logger
	ctx    context.Context // the handler's; ends at Close
	cancel context.CancelFunc

	sub  *nats.Subscription       // core NATS
	cons jetstream.ConsumeContext // JetStream

	mu      sync.Mutex
	closed  bool
	running sync.WaitGroup // handler calls in progress
	once    sync.Once
	err     error
}

func newEventSubscriber(handle EventHandler, opts []SubscriberOption) (*EventSubscriber, subscriberOptions) {
	o := subscriberOptions{log: slog.Default()}
	for _, opt := range opts {
		opt(&o)
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &EventSubscriber{handle: handle, log: o.log, ctx: ctx, cancel: cancel}, o
}

// SubscribeEvents subscribes handle to the events published on subject
// with core NATS, through nc. The handler is called one event at a time,
// in order; events that arrive meanwhile wait in the subscription's
// pending buffer, and past its pending limits (Subscription,
// SetPendingLimits) nats.go drops them and reports ErrSlowConsumer to
// nc's error handler. Events published while the subscription does not
// exist never reach it. Flush nc to know the server has the subscription.
func SubscribeEvents(nc *nats.Conn, subject string, handle EventHandler, opts ...SubscriberOption) (*EventSubscriber, error) {
	s, _ := newEventSubscriber(handle, opts)
	sub, err := nc.Subscribe(subject, s.onCore)
	if err != nil {
		s.cancel()
		return nil, fmt.Errorf("flashsale: subscribing to %s: %w", subject, err)
	}
	s.sub = sub
	return s, nil
}

// ConsumeEvents consumes cons, a JetStream consumer (a durable one keeps
// the subscriber's place while it is away), and hands each event to
// handle, one at a time. An event handled without error is acked, and the
// ack confirmed by the server; one whose handler fails is nakked, to come
// back; one that does not decode is terminated. The consumer should use
// explicit acks; since a message can come more than once (an ack lost, a
// subscriber stopped before it acked), the handler should dedup by event
// id.
func ConsumeEvents(cons jetstream.Consumer, handle EventHandler, opts ...SubscriberOption) (*EventSubscriber, error) {
	s, o := newEventSubscriber(handle, opts)
	errs := jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
		s.log.Debug("flashsale: consuming events", "err", err)
	})
	cc, err := cons.Consume(s.onJetStream, append([]jetstream.PullConsumeOpt{errs}, o.consume...)...)
	if err != nil {
		s.cancel()
		return nil, fmt.Errorf("flashsale: consuming events: %w", err)
	}
	s.cons = cc
	return s, nil
}

// Subscription returns the core NATS subscription (nil for a JetStream
// subscriber), for its pending limits and its count of dropped messages.
func (s *EventSubscriber) Subscription() *nats.Subscription { return s.sub }

// enter admits one handler call, unless the subscriber is closed.
func (s *EventSubscriber) enter() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.running.Add(1)
	return true
}

func (s *EventSubscriber) onCore(msg *nats.Msg) {
	if !s.enter() {
		return
	}
	defer s.running.Done()
	ev, err := decodeEvent(msg.Data)
	if err != nil {
		s.log.Warn("flashsale: dropping a message that is not an event", "subject", msg.Subject, "err", err)
		return
	}
	if _, err := s.handle(s.ctx, ev); err != nil {
		s.log.Debug("flashsale: event handler failed", "event", ev.GetEventId(), "err", err)
	}
}

func (s *EventSubscriber) onJetStream(msg jetstream.Msg) {
	if !s.enter() {
		return // not acked: it comes back to the consumer's next subscriber
	}
	defer s.running.Done()
	ev, err := decodeEvent(msg.Data())
	if err != nil {
		s.log.Warn("flashsale: terminating a message that is not an event", "subject", msg.Subject(), "err", err)
		_ = msg.TermWithReason("does not decode as switchyard.flashsale.v1.SaleEvent")
		return
	}
	if _, err := s.handle(s.ctx, ev); err != nil {
		_ = msg.Nak()
		return
	}
	// A handled event is acked even while Close runs, so that it does not
	// come back.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(s.ctx), ackTimeout)
	defer cancel()
	if err := msg.DoubleAck(ctx); err != nil {
		s.log.Warn("flashsale: ack failed; the event will come back", "event", ev.GetEventId(), "err", err)
	}
}

// Close stops the deliveries (unsubscribes, or stops consuming), ends the
// context of a handler in progress (a JetStream event it had not finished
// is nakked), and waits for it. Events not yet handled are left: on core
// NATS they are gone; on JetStream they come back to the consumer's next
// subscriber. It is safe to call more than once.
func (s *EventSubscriber) Close() error {
	s.once.Do(func() {
		switch {
		case s.sub != nil:
			if err := s.sub.Unsubscribe(); err != nil && !errors.Is(err, nats.ErrConnectionClosed) && !errors.Is(err, nats.ErrBadSubscription) {
				s.err = fmt.Errorf("flashsale: unsubscribing from %s: %w", s.sub.Subject, err)
			}
		case s.cons != nil:
			s.cons.Stop()
			t := time.NewTimer(ackTimeout)
			select {
			case <-s.cons.Closed():
			case <-t.C:
				s.err = errors.New("flashsale: consuming events did not stop")
			}
			t.Stop()
		}
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		s.cancel()
		s.running.Wait()
	})
	return s.err
}
