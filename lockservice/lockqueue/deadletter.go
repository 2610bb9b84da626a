package lockqueue

import (
	"context"
	"slices"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc/codes"

	"github.com/switchyard-dev/switchyard/mq"
)

// maxReason bounds the Switchyard-Dead-Reason header.
const maxReason = 1024

// deadLetter publishes a dead letter of the message seq of QueueStream
// (its headers h and body data) to DeadStream, with the reason, the code
// (none if OK), the deliveries and the sequence, under the message id
// "dlq-<seq>" so that workers dead-lettering the same message store it
// once. It reports whether it was such a duplicate.
//
// The original headers are kept except JetStream's own (Nats-*: a
// publisher's expectations must not apply to the dead-letter stream) and
// the dead-letter headers themselves (which only this function writes);
// the original Nats-Msg-Id moves to Switchyard-Original-Msg-Id.
func (w *Worker) deadLetter(ctx context.Context, h nats.Header, data []byte, seq, deliveries uint64, reason string, code codes.Code) (bool, error) {
	out := &nats.Msg{Subject: DeadSubject, Header: nats.Header{}, Data: data}
	for k, vs := range h {
		if hasPrefixFold(k, "Nats-") || isDeadHeader(k) {
			continue
		}
		out.Header[k] = slices.Clone(vs)
	}
	if id := mq.HeaderValue(h, HeaderMsgID); id != "" {
		out.Header.Set(HeaderOriginalMsgID, mq.HeaderText(id, maxReason))
	}
	out.Header.Set(HeaderDeadReason, mq.HeaderText(reason, maxReason))
	if code != codes.OK {
		out.Header.Set(HeaderDeadCode, strconv.Itoa(int(code)))
	}
	out.Header.Set(HeaderDeliveries, strconv.FormatUint(deliveries, 10))
	out.Header.Set(HeaderStreamSeq, strconv.FormatUint(seq, 10))
	ack, err := w.js.PublishMsg(ctx, out, jetstream.WithMsgID("dlq-"+strconv.FormatUint(seq, 10)), jetstream.WithExpectStream(DeadStream))
	if err != nil {
		return false, err
	}
	return ack.Duplicate, nil
}

func isDeadHeader(k string) bool {
	for _, d := range []string{HeaderDeadReason, HeaderDeadCode, HeaderDeliveries, HeaderStreamSeq, HeaderOriginalMsgID} {
		if strings.EqualFold(k, d) {
			return true
		}
	}
	return false
}

func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}

// replyTarget returns the Switchyard-Reply-To subject of h, or "" if it
// is missing or not a subject one can publish to.
func replyTarget(h nats.Header) string {
	s := mq.HeaderValue(h, HeaderReplyTo)
	if !publishable(s) {
		return ""
	}
	return s
}

// publishable reports whether s is a subject a worker may publish a
// reply to: printable ASCII without spaces, tokens not empty, no
// wildcards, and not a system subject ("$JS.API...", "$SYS...": a reply
// goes out with the worker's permissions, and must not become an API
// call).
func publishable(s string) bool {
	if s == "" || len(s) > 1024 || s[0] == '$' {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c >= 0x7f {
			return false
		}
	}
	for tok := range strings.SplitSeq(s, ".") {
		if tok == "" || tok == "*" || tok == ">" {
			return false
		}
	}
	return true
}
