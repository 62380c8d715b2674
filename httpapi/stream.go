package httpapi

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/pgpush/pgpush/realtime"
	"github.com/pgpush/pgpush/realtime/filter"
	"github.com/pgpush/pgpush/session"
)

// maxStreamChannels bounds the channels of one event stream, as
// MaxSubscriptions bounds a socket's.
const maxStreamChannels = 100

// stream serves GET /api/v1/stream?channel=C[&channel=D…][&filter=JSON]:
// the events of /ws as Server-Sent Events, for EventSource and curl -N.
// The same cookie, grants, --match, filter, resume (Last-Event-ID) and
// per-address limit apply as on /ws.
func (s *Server) stream(w http.ResponseWriter, r *http.Request) {
	if !s.originAllowed(r) {
		writeError(w, http.StatusForbidden, "origin not allowed")
		return
	}
	q := r.URL.Query()
	st := realtime.Stream{Channels: q["channel"], LastEventID: r.Header.Get("Last-Event-ID")}
	if st.LastEventID == "" {
		st.LastEventID = q.Get("since") // curl users have no header to resend
	}
	if f := q.Get("filter"); f != "" {
		st.Filter = []byte(f)
	}
	switch {
	case len(st.Channels) == 0:
		writeError(w, http.StatusBadRequest, "want at least one channel: /api/v1/stream?channel=order_changes")
		return
	case len(st.Channels) > maxStreamChannels:
		writeError(w, http.StatusBadRequest, "too many channels in one stream")
		return
	}
	p, err := s.principal(r)
	if err != nil {
		if errors.Is(err, session.ErrNoSession) {
			writeError(w, http.StatusUnauthorized, "not logged in")
			return
		}
		s.internalError(w, "stream session", err)
		return
	}
	// Refused up front with an HTTP status, not as an error event on an
	// open stream: EventSource gives up on an error status, while it would
	// reconnect forever to a stream that can never carry anything.
	if _, err := filter.Compile(st.Filter); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	for _, ch := range st.Channels {
		_, err := s.Policy.Access(r.Context(), p, ch)
		switch {
		case err == nil:
		case errors.Is(err, session.ErrUnknownChannel):
			writeError(w, http.StatusNotFound, fmt.Sprintf("unknown channel %q", ch))
			return
		case errors.Is(err, session.ErrForbidden) && p.Anonymous():
			writeError(w, http.StatusUnauthorized, "not logged in")
			return
		case errors.Is(err, session.ErrForbidden):
			writeError(w, http.StatusForbidden, fmt.Sprintf("not allowed on channel %q", ch))
			return
		default:
			s.internalError(w, "stream access", err)
			return
		}
	}
	addr := s.Proxies.ClientIP(r)
	if !s.conns.acquire(addr) {
		writeError(w, http.StatusTooManyRequests, "too many sockets from this address")
		return
	}
	defer s.conns.release(addr)
	s.Hub.ServeSSE(w, r, p, st)
}
