package httpapi

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/pgpush/pgpush/realtime"
)

// ListenerStats is what /metrics reads from the listener.
type ListenerStats interface {
	Ready() bool
	Reconnects() int64
	LagMillis() int64
}

// NewMetrics registers pgpush's metrics and returns the /metrics handler.
// Counters are read from the hub and listener at scrape time, so the hot
// path only touches atomics.
func NewMetrics(hub *realtime.Hub, listener ListenerStats) http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	stats := hub.Stats()
	counter := func(name, help string, fn func() float64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, fn)
	}
	gauge := func(name, help string, fn func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, fn)
	}
	latency := prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "pgpush_event_latency_seconds",
		Help:    "Time from an event's commit to its fan-out into socket queues.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
	})
	hub.ObserveLatency(func(d time.Duration) { latency.Observe(d.Seconds()) })
	reg.MustRegister(
		latency,
		gauge("pgpush_connected_sockets", "Open WebSocket connections.", func() float64 { return float64(hub.ClientCount()) }),
		counter("pgpush_sockets_opened_total", "WebSocket connections accepted.", func() float64 { return float64(stats.SocketsOpened.Load()) }),
		counter("pgpush_events_received_total", "Events read from the event log and dispatched.", func() float64 { return float64(stats.Received.Load()) }),
		counter("pgpush_events_delivered_total", "Event frames queued to sockets (one per subscriber).", func() float64 { return float64(stats.Delivered.Load()) }),
		counter("pgpush_slow_disconnects_total", "Sockets closed with 1013 for reading too slowly.", func() float64 { return float64(stats.SlowDisconnects.Load()) }),
		counter("pgpush_fanout_writes_total", "Writes the fan-out made to /ws sockets; with pgpush_events_delivered_total, how many events a write carries.", func() float64 { return float64(stats.FanoutWrites.Load()) }),
		counter("pgpush_listener_reconnects_total", "Times the LISTEN connection was re-established.", func() float64 { return float64(listener.Reconnects()) }),
		gauge("pgpush_listener_connected", "1 when the listener is connected and caught up.", func() float64 {
			if listener.Ready() {
				return 1
			}
			return 0
		}),
		gauge("pgpush_listener_lag_seconds", "Age of the newest event when the listener dispatched it.", func() float64 {
			return float64(listener.LagMillis()) / 1000
		}),
		droppedCollector{stats},
		subscriptionsCollector{hub},
	)
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg})
}

var droppedDesc = prometheus.NewDesc("pgpush_events_dropped_total",
	"Event frames not delivered, by reason (the socket was closed and resumes with since).", []string{"reason"}, nil)

type droppedCollector struct{ stats *realtime.Stats }

func (droppedCollector) Describe(ch chan<- *prometheus.Desc) { ch <- droppedDesc }

func (c droppedCollector) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(droppedDesc, prometheus.CounterValue, float64(c.stats.DroppedSlow.Load()), "slow_client")
	ch <- prometheus.MustNewConstMetric(droppedDesc, prometheus.CounterValue, float64(c.stats.DroppedResuming.Load()), "resume_backlog")
}

var subscriptionsDesc = prometheus.NewDesc("pgpush_subscriptions",
	"Live subscriptions per channel on this instance.", []string{"channel"}, nil)

type subscriptionsCollector struct{ hub *realtime.Hub }

func (subscriptionsCollector) Describe(ch chan<- *prometheus.Desc) { ch <- subscriptionsDesc }

func (c subscriptionsCollector) Collect(ch chan<- prometheus.Metric) {
	for channel, n := range c.hub.ChannelCounts() {
		ch <- prometheus.MustNewConstMetric(subscriptionsDesc, prometheus.GaugeValue, float64(n), channel)
	}
}
