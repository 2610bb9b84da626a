package lockqueue

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// The reasons a message is dropped (acknowledged without a grant and
// without a dead letter): the label of switchyard_lock_queued_dropped_total.
const (
	dropDeadline     = "deadline"      // the requester's deadline (or MaxWait) passed
	dropDuplicate    = "duplicate"     // granted before, and the lease has ended
	dropOtherReplica = "other_replica" // the request's node lives at another replica, which did not answer here
)

// metrics are a Worker's counters. A nil *metrics records nothing.
type metrics struct {
	granted prometheus.Counter
	dropped *prometheus.CounterVec
	dead    prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	if reg == nil {
		return nil, nil
	}
	m := &metrics{
		granted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "switchyard_lock_queued_granted_total", Help: "Queued acquires granted and answered by this worker.",
		}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchyard_lock_queued_dropped_total", Help: "Queued acquires dropped without a grant, by reason: deadline, duplicate, other_replica.",
		}, []string{"reason"}),
		dead: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "switchyard_lock_queued_dead_total", Help: "Queued acquires this worker dead-lettered.",
		}),
	}
	for _, c := range []prometheus.Collector{m.granted, m.dropped, m.dead} {
		if err := reg.Register(c); err != nil {
			var already prometheus.AlreadyRegisteredError
			if errors.As(err, &already) {
				return nil, fmt.Errorf("lockqueue: metrics: another worker's are registered there already; give each its own registerer: %w", err)
			}
			return nil, fmt.Errorf("lockqueue: metrics: %w", err)
		}
	}
	for _, r := range []string{dropDeadline, dropDuplicate, dropOtherReplica} {
		m.dropped.WithLabelValues(r)
	}
	return m, nil
}

func (m *metrics) grant() {
	if m != nil {
		m.granted.Inc()
	}
}

func (m *metrics) drop(reason string) {
	if m != nil {
		m.dropped.WithLabelValues(reason).Inc()
	}
}

func (m *metrics) died() {
	if m != nil {
		m.dead.Inc()
	}
}
