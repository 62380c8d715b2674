package client

import (
	"errors"
	"fmt"
)

var (
	// ErrBadCredentials means the server refused the email or password.
	ErrBadCredentials = errors.New("wrong email or password")
	// ErrClosed is returned by calls on a closed Client, and is the Err of
	// subscriptions that ended because the Client closed.
	ErrClosed = errors.New("client is closed")
	// ErrNotConnected is returned by Subscribe before Connect succeeded.
	ErrNotConnected = errors.New("client is not connected: call Connect first")
	// ErrAlreadySubscribed is returned by Subscribe for a channel the
	// Client already holds a subscription to.
	ErrAlreadySubscribed = errors.New("already subscribed")
	// ErrSnapshotUnsupported means the server confirmed a subscription
	// with SubscribeOptions.Snapshot without sending any snapshot frame:
	// it predates SPEC §3.2. The subscription is not made.
	ErrSnapshotUnsupported = errors.New("the server sent no snapshot (it does not support SPEC §3.2 snapshots)")
	// ErrUnsubscribedByServer ends a subscription the server ended without
	// saying why.
	ErrUnsubscribedByServer = errors.New("the server ended the subscription")
)

// ServerError is an error frame from the server: {"type":"error",
// "message":…,"channel":…}. Channel is empty when the frame named none.
type ServerError struct {
	Channel string
	Message string
}

func (e *ServerError) Error() string {
	if e.Channel == "" {
		return "server: " + e.Message
	}
	return fmt.Sprintf("server: %s: %s", e.Channel, e.Message)
}

// CloseError is a WebSocket close the Client did not ask for, with the
// server's code and reason (1008: no session or session ended, 1013: too
// slow to read, 1001: server shutdown).
type CloseError struct {
	Code   int
	Reason string
}

func (e *CloseError) Error() string {
	if e.Reason == "" {
		return fmt.Sprintf("connection closed by the server (%d)", e.Code)
	}
	return fmt.Sprintf("connection closed by the server (%d: %s)", e.Code, e.Reason)
}

// HTTPError is a refused HTTP request or WebSocket handshake, with the
// server's {"error":…} text.
type HTTPError struct {
	Op         string // "log in", "open /ws"
	StatusCode int
	Message    string
}

func (e *HTTPError) Error() string {
	if e.Message == "" {
		return fmt.Sprintf("%s: HTTP %d", e.Op, e.StatusCode)
	}
	return fmt.Sprintf("%s: HTTP %d: %s", e.Op, e.StatusCode, e.Message)
}
