package session

import "errors"

// Principal is who a socket acts for: a logged-in user, or anonymous.
type Principal struct {
	UserID    int64
	Email     string
	Role      string
	Attrs     map[string]string
	SessionID string // empty for anonymous sockets
	// Name is the display name an anonymous client gave (Socket.IO auth
	// username); logged-in users are named by Email.
	Name string
}

// Anonymous reports whether the socket has no session.
func (p *Principal) Anonymous() bool { return p.SessionID == "" }

// Access is what one principal may do on one channel.
type Access struct {
	// Match lists data fields and the value each must equal for an event
	// to reach this principal (resolved from the grant's --match and the
	// user's attributes).
	Match   map[string]string
	Publish bool
}

// Errors Policy.Access returns.
var (
	ErrUnknownChannel = errors.New("unknown channel")
	ErrForbidden      = errors.New("not allowed")
)
