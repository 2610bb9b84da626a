package lockservice

import (
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are a replica's lock figures, beside the RPC metrics the rpc
// package keeps for every call:
//
//	switchyard_lock_leases                 leases this replica holds now
//	switchyard_lock_waiting                acquires waiting in line on it now
//	switchyard_lock_grants_total           leases granted
//	switchyard_lock_ends_total{reason}     leases ended: released, expired, lost
//	switchyard_lock_wait_seconds           time from an acquire's arrival to its grant
//	switchyard_lock_broadcast_events_total lock events it published as the broadcaster (Server.Broadcast)
//
// A nil *metrics records nothing.
type metrics struct {
	leases  prometheus.Gauge
	waiting prometheus.Gauge
	grants  prometheus.Counter
	ends    *prometheus.CounterVec
	wait    prometheus.Histogram
	events  prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	if reg == nil {
		return nil, nil
	}
	m := &metrics{
		leases:  prometheus.NewGauge(prometheus.GaugeOpts{Name: "switchyard_lock_leases", Help: "Leases this replica holds."}),
		waiting: prometheus.NewGauge(prometheus.GaugeOpts{Name: "switchyard_lock_waiting", Help: "Acquires waiting in line on this replica."}),
		grants:  prometheus.NewCounter(prometheus.CounterOpts{Name: "switchyard_lock_grants_total", Help: "Leases granted by this replica."}),
		ends: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchyard_lock_ends_total", Help: "Leases ended, by reason: released, expired, lost.",
		}, []string{"reason"}),
		wait: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "switchyard_lock_wait_seconds", Help: "Time from an acquire's arrival to its grant.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 4, 10), // 0.5ms … ~2.2min
		}),
		events: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "switchyard_lock_broadcast_events_total", Help: "Lock events this replica published as the elected broadcaster.",
		}),
	}
	for _, c := range []prometheus.Collector{m.leases, m.waiting, m.grants, m.ends, m.wait, m.events} {
		if err := reg.Register(c); err != nil {
			var already prometheus.AlreadyRegisteredError
			if errors.As(err, &already) {
				return nil, fmt.Errorf("lockservice: metrics: another replica's are registered there already; give each its own registerer: %w", err)
			}
			return nil, fmt.Errorf("lockservice: metrics: %w", err)
		}
	}
	for _, r := range []string{"released", "expired", "lost"} {
		m.ends.WithLabelValues(r) // present at 0 from the start
	}
	return m, nil
}

func (m *metrics) granted(waited time.Duration) {
	if m == nil {
		return
	}
	m.grants.Inc()
	m.leases.Inc()
	m.wait.Observe(waited.Seconds())
}

func (m *metrics) ended(reason string) {
	if m == nil {
		return
	}
	m.leases.Dec()
	m.ends.WithLabelValues(reason).Inc()
}

func (m *metrics) queued(delta int) {
	if m == nil {
		return
	}
	m.waiting.Add(float64(delta))
}

func (m *metrics) broadcast() {
	if m == nil {
		return
	}
	m.events.Inc()
}
