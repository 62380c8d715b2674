package httpapi

import (
	"cmp"
	"math"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/pgpush/pgpush/session"
	"github.com/pgpush/pgpush/triggers"
)

// overviewJSON is GET /api/v1/admin/overview: what the dashboard's
// operator view shows. Counts and history are this instance's; watched
// tables and grants are the database's.
type overviewJSON struct {
	Time             time.Time      `json:"time"`
	ConnectedSockets int            `json:"connected_sockets"`
	Listener         listenerJSON   `json:"listener"`
	Channels         []channelCount `json:"channels"`
	Watched          []watchedJSON  `json:"watched"`
	Grants           []grantJSON    `json:"grants"`
	History          historyJSON    `json:"history"`
}

type listenerJSON struct {
	Ready      bool  `json:"ready"`
	LagMillis  int64 `json:"lag_ms"`
	Reconnects int64 `json:"reconnects"`
}

// channelCount is a channel with the sockets subscribed to it here (a
// socket subscribes to a channel at most once).
type channelCount struct {
	Channel string `json:"channel"`
	Sockets int    `json:"sockets"`
}

type watchedJSON struct {
	Table   string   `json:"table"`
	Entity  string   `json:"entity"`
	Channel string   `json:"channel"`
	Columns []string `json:"columns"`
}

type grantJSON struct {
	Channel string            `json:"channel"`
	Role    string            `json:"role"`
	Publish bool              `json:"publish"`
	Match   map[string]string `json:"match"`
}

// historyJSON holds History's samples as columns, oldest first: the i-th
// entry of each column belongs to the i-th time.
type historyJSON struct {
	IntervalSeconds    float64         `json:"interval_seconds"`
	Time               []int64         `json:"time"` // Unix milliseconds, end of each interval
	ReceivedPerSecond  []float64       `json:"received_per_second"`
	DeliveredPerSecond []float64       `json:"delivered_per_second"`
	LatencyP50Millis   []optionalFloat `json:"latency_p50_ms"` // null: no event in that interval
	LatencyP99Millis   []optionalFloat `json:"latency_p99_ms"`
	ListenerLagMillis  []int64         `json:"listener_lag_ms"`
}

// optionalFloat is a number rounded to 3 decimals, or null for NaN.
type optionalFloat float64

func (f optionalFloat) MarshalJSON() ([]byte, error) {
	if math.IsNaN(float64(f)) {
		return []byte("null"), nil
	}
	return strconv.AppendFloat(nil, round3(float64(f)), 'f', -1, 64), nil
}

func round3(v float64) float64 { return math.Round(v*1000) / 1000 }

// adminOverview serves the operator view's data to admins: 401 without a
// session, 403 for any other role.
func (s *Server) adminOverview(w http.ResponseWriter, r *http.Request) {
	u, ok := s.requireUser(w, r)
	if !ok {
		return
	}
	if u.Role != session.RoleAdmin {
		writeError(w, http.StatusForbidden, "admins only")
		return
	}
	watched, err := triggers.List(r.Context(), s.Pool)
	if err != nil {
		s.internalError(w, "admin overview", err)
		return
	}
	grants, err := session.ListGrants(r.Context(), s.Pool)
	if err != nil {
		s.internalError(w, "admin overview", err)
		return
	}
	out := overviewJSON{
		Time:             time.Now().UTC(),
		ConnectedSockets: s.Hub.ClientCount(),
		Listener: listenerJSON{
			Ready:      s.ListenerReady(),
			LagMillis:  s.History.listener.LagMillis(),
			Reconnects: s.History.listener.Reconnects(),
		},
		Channels: []channelCount{},
		Watched:  make([]watchedJSON, 0, len(watched)),
		Grants:   make([]grantJSON, 0, len(grants)),
		History:  historyColumns(s.History.Samples()),
	}
	// Every watched channel is listed, with 0 when nobody listens here;
	// other channels (custom, rooms, notifications) while someone does.
	counts := s.Hub.ChannelCounts()
	for _, wt := range watched {
		if _, ok := counts[wt.Channel]; !ok {
			counts[wt.Channel] = 0
		}
		out.Watched = append(out.Watched, watchedJSON{wt.Table, wt.Entity, wt.Channel, wt.Columns})
	}
	for channel, n := range counts {
		out.Channels = append(out.Channels, channelCount{channel, n})
	}
	slices.SortFunc(out.Channels, func(a, b channelCount) int { return cmp.Compare(a.Channel, b.Channel) })
	for _, g := range grants {
		match := g.Match
		if match == nil {
			match = map[string]string{}
		}
		out.Grants = append(out.Grants, grantJSON{g.Channel, g.Role, g.Publish, match})
	}
	writeJSON(w, http.StatusOK, out)
}

func historyColumns(samples []Sample) historyJSON {
	n := len(samples)
	h := historyJSON{
		IntervalSeconds:    HistoryInterval.Seconds(),
		Time:               make([]int64, n),
		ReceivedPerSecond:  make([]float64, n),
		DeliveredPerSecond: make([]float64, n),
		LatencyP50Millis:   make([]optionalFloat, n),
		LatencyP99Millis:   make([]optionalFloat, n),
		ListenerLagMillis:  make([]int64, n),
	}
	for i, s := range samples {
		h.Time[i] = s.Time.UnixMilli()
		h.ReceivedPerSecond[i] = round3(s.ReceivedPerSecond)
		h.DeliveredPerSecond[i] = round3(s.DeliveredPerSecond)
		h.LatencyP50Millis[i] = optionalFloat(s.LatencyP50Millis)
		h.LatencyP99Millis[i] = optionalFloat(s.LatencyP99Millis)
		h.ListenerLagMillis[i] = s.ListenerLagMillis
	}
	return h
}
