// Package session owns pgpush's accounts, password hashing, and cookie
// sessions.
//
// A session has two halves: a signed and encrypted cookie holding a random
// token, and a row in pgpush.sessions keyed by the token's SHA-256. Deleting
// the row ends the session on every instance, which a cookie alone could not
// do; the token itself never reaches the database, so a leaked sessions table
// cannot be replayed as cookies.
package session

import (
	"context"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/mail"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/gorilla/sessions"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/pgpush/pgpush/db"
	"golang.org/x/crypto/bcrypt"
)

// Defaults for the zero values of Options.
const (
	DefaultMaxAge     = 7 * 24 * time.Hour
	DefaultHashCost   = 12
	DefaultCookieName = "pgpush_session"
)

// MinSecretBytes is the shortest SESSION_SECRET NewStore accepts.
const MinSecretBytes = 32

// MinPasswordChars is the shortest password AddUser accepts, in characters.
const MinPasswordChars = 8

// maxPasswordBytes is bcrypt's input limit; longer passwords would be
// silently truncated by older bcrypt code and are refused by newer.
const maxPasswordBytes = 72

// maxEmailBytes is the longest address SMTP can carry (RFC 5321 path limit).
const maxEmailBytes = 254

// maxRoleBytes bounds role names, which appear in grants and logs.
const maxRoleBytes = 64

// MaxSessionsPerUser is how many sessions one user holds at most: a login
// beyond ends the oldest (SPEC §2). Successful logins are not rate
// limited, so without it a script with the right password could fill
// pgpush.sessions, each row kept for MaxAge.
const MaxSessionsPerUser = 20

// tokenBytes is the size of the random token in the cookie.
const tokenBytes = 32

// tokenKey is the cookie value's key for the token.
const tokenKey = "token"

// HKDF info strings: one secret yields two independent keys.
const (
	hashKeyInfo  = "pgpush session cookie hmac key v1"
	blockKeyInfo = "pgpush session cookie aes key v1"
)

// Errors returned by Store. Compare with errors.Is.
var (
	ErrBadCredentials = errors.New("invalid email or password")
	ErrNoSession      = errors.New("not logged in")
	ErrUserExists     = errors.New("user already exists")
	ErrUserNotFound   = errors.New("user not found")
)

// PostgreSQL error codes matched by Store.
const (
	uniqueViolation     = "23505"
	foreignKeyViolation = "23503"
)

// User is one of pgpush's own accounts. The password hash never leaves the
// package.
type User struct {
	ID       int64             `json:"id"`
	Email    string            `json:"email"`
	Role     string            `json:"role"`
	Attrs    map[string]string `json:"attrs,omitempty"`
	Disabled bool              `json:"disabled,omitempty"`
}

// Options configures a Store. Zero values mean the documented defaults.
type Options struct {
	// Secret is SESSION_SECRET, at least MinSecretBytes long. The cookie's
	// HMAC and AES keys are derived from it.
	Secret []byte
	// MaxAge is how long a session lasts; 0 means DefaultMaxAge.
	MaxAge time.Duration
	// HashCost is the bcrypt cost for new passwords; 0 means DefaultHashCost.
	HashCost int
	// CookieName names the session cookie; "" means DefaultCookieName.
	CookieName string
	// Secure decides the cookie's Secure flag per request; nil means
	// r.TLS != nil. Behind a TLS-terminating proxy, pass a func that trusts
	// the proxy's header.
	Secure func(r *http.Request) bool
}

// Store reads and writes accounts and sessions. It is safe for concurrent
// use: after NewStore nothing mutates cookies, whose per-request options
// live on each sessions.Session rather than on the shared CookieStore.
type Store struct {
	pool       *pgxpool.Pool
	cookies    *sessions.CookieStore
	cookieName string
	maxAge     time.Duration
	hashCost   int
	secure     func(*http.Request) bool
	// dummyHash is compared against when the email is unknown, so that an
	// unknown email costs as much time as a wrong password. Made lazily: a
	// cost-12 hash takes a quarter second, which CLI commands need not pay.
	dummyHash func() ([]byte, error)
}

// NewStore returns a Store over pool. It fails when opts.Secret is shorter
// than MinSecretBytes or opts holds an invalid value.
func NewStore(pool *pgxpool.Pool, opts Options) (*Store, error) {
	if len(opts.Secret) < MinSecretBytes {
		return nil, fmt.Errorf("session secret is %d bytes, need at least %d", len(opts.Secret), MinSecretBytes)
	}
	s := &Store{
		pool:       pool,
		cookieName: opts.CookieName,
		maxAge:     opts.MaxAge,
		hashCost:   opts.HashCost,
		secure:     opts.Secure,
	}
	if s.cookieName == "" {
		s.cookieName = DefaultCookieName
	}
	if c := (&http.Cookie{Name: s.cookieName, Value: "x"}); c.Valid() != nil {
		return nil, fmt.Errorf("cookie name %q: %w", s.cookieName, c.Valid())
	}
	if s.maxAge == 0 {
		s.maxAge = DefaultMaxAge
	}
	if s.maxAge < time.Second {
		return nil, fmt.Errorf("session max age %v: must be at least 1s", s.maxAge)
	}
	if s.hashCost == 0 {
		s.hashCost = DefaultHashCost
	}
	if s.hashCost < bcrypt.MinCost || s.hashCost > bcrypt.MaxCost {
		return nil, fmt.Errorf("bcrypt cost %d: must be between %d and %d", s.hashCost, bcrypt.MinCost, bcrypt.MaxCost)
	}
	if s.secure == nil {
		s.secure = func(r *http.Request) bool { return r.TLS != nil }
	}

	// Two keys from one secret, so the cookie is both signed (HMAC-SHA256,
	// 64-byte key) and encrypted (AES-256), without asking operators for two.
	hashKey, err := hkdf.Key(sha256.New, opts.Secret, nil, hashKeyInfo, 64)
	if err != nil {
		return nil, fmt.Errorf("derive cookie hash key: %w", err)
	}
	blockKey, err := hkdf.Key(sha256.New, opts.Secret, nil, blockKeyInfo, 32)
	if err != nil {
		return nil, fmt.Errorf("derive cookie block key: %w", err)
	}
	s.cookies = sessions.NewCookieStore(hashKey, blockKey)
	// MaxAge also bounds the timestamp inside the cookie, so an old cookie
	// fails to decode even if a client ignores its expiry.
	s.cookies.MaxAge(s.maxAgeSeconds())
	s.cookies.Options.HttpOnly = true
	s.cookies.Options.SameSite = http.SameSiteLaxMode

	cost := s.hashCost
	s.dummyHash = sync.OnceValues(func() ([]byte, error) {
		pw := make([]byte, 16)
		rand.Read(pw)
		return bcrypt.GenerateFromPassword(pw, cost)
	})
	return s, nil
}

// CookieName is the name of the session cookie.
func (s *Store) CookieName() string { return s.cookieName }

func (s *Store) maxAgeSeconds() int { return int(s.maxAge / time.Second) }

// ValidateEmail reports whether email is a bare address ("a@example.com", no
// display name or surrounding space) short enough to deliver to.
func ValidateEmail(email string) error {
	if email == "" {
		return errors.New("email is required")
	}
	if len(email) > maxEmailBytes {
		return fmt.Errorf("email is longer than %d bytes", maxEmailBytes)
	}
	addr, err := mail.ParseAddress(email)
	if err != nil || addr.Name != "" || addr.Address != email {
		return fmt.Errorf("email %q is not a plain address like name@example.com", email)
	}
	return nil
}

// ValidateRole reports whether role matches [a-z0-9_-]{1,64}.
func ValidateRole(role string) error {
	if role == "" {
		return errors.New("role is required")
	}
	if len(role) > maxRoleBytes {
		return fmt.Errorf("role is longer than %d characters", maxRoleBytes)
	}
	for _, c := range role {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return fmt.Errorf("role %q: only a-z, 0-9, _ and - are allowed", role)
		}
	}
	return nil
}

// ValidatePassword reports whether password is acceptable to AddUser: at
// least MinPasswordChars characters and at most 72 bytes, bcrypt's limit.
func ValidatePassword(password string) error {
	if utf8.RuneCountInString(password) < MinPasswordChars {
		return fmt.Errorf("password must be at least %d characters", MinPasswordChars)
	}
	if len(password) > maxPasswordBytes {
		return fmt.Errorf("password must be at most %d bytes", maxPasswordBytes)
	}
	return nil
}

// AddUser creates an account. The email is stored as given and matched
// case-insensitively; a second account whose email differs only in case is
// ErrUserExists. The password is stored only as a bcrypt hash.
func (s *Store) AddUser(ctx context.Context, email, role, password string, attrs map[string]string) (User, error) {
	if err := ValidateEmail(email); err != nil {
		return User{}, err
	}
	if err := ValidateRole(role); err != nil {
		return User{}, err
	}
	if err := ValidatePassword(password); err != nil {
		return User{}, err
	}
	for k := range attrs {
		if k == "" {
			return User{}, errors.New("attribute name is empty")
		}
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(password), s.hashCost)
	if err != nil {
		return User{}, fmt.Errorf("hash password: %w", err)
	}
	// A nil map would be stored as JSON null, not the column's '{}'.
	stored := make(map[string]string, len(attrs))
	for k, v := range attrs {
		stored[k] = v
	}
	u := User{Email: email, Role: role}
	if len(stored) > 0 {
		u.Attrs = stored
	}
	err = s.pool.QueryRow(ctx, `
		INSERT INTO pgpush.users (email, role, attrs, password_hash)
		VALUES ($1, $2, $3, $4)
		RETURNING id`,
		email, role, stored, string(hash)).Scan(&u.ID)
	if err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == uniqueViolation {
			return User{}, fmt.Errorf("add user %q: %w", email, ErrUserExists)
		}
		return User{}, fmt.Errorf("add user %q: %w", email, err)
	}
	return u, nil
}

// DisableUser marks the account disabled and ends all its sessions. In the
// same transaction it announces each ended session on db.ControlChannel, so
// that every instance closes the sockets opened with them once it commits.
// It returns the ended session ids; disabling twice is not an error.
func (s *Store) DisableUser(ctx context.Context, email string) (sessionIDs []string, err error) {
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var userID int64
		err := tx.QueryRow(ctx, `
			UPDATE pgpush.users SET disabled_at = coalesce(disabled_at, now())
			WHERE lower(email) = lower($1)
			RETURNING id`, email).Scan(&userID)
		if errors.Is(err, pgx.ErrNoRows) {
			return ErrUserNotFound
		}
		if err != nil {
			return err
		}
		sessionIDs, err = endUserSessions(ctx, tx, userID)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("disable user %q: %w", email, err)
	}
	return sessionIDs, nil
}

// RemoveUser deletes the account and ends its sessions as DisableUser
// does. The demo uses it to replace its admin with a fresh password.
func (s *Store) RemoveUser(ctx context.Context, email string) error {
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var userID int64
		err := tx.QueryRow(ctx, `SELECT id FROM pgpush.users WHERE lower(email) = lower($1) FOR UPDATE`, email).Scan(&userID)
		if errors.Is(err, pgx.ErrNoRows) {
			return ErrUserNotFound
		}
		if err != nil {
			return err
		}
		if _, err := endUserSessions(ctx, tx, userID); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `DELETE FROM pgpush.users WHERE id = $1`, userID)
		return err
	})
	if err != nil {
		return fmt.Errorf("remove user %q: %w", email, err)
	}
	return nil
}

// endUserSessions deletes a user's sessions and announces each end, so
// every instance closes their sockets once tx commits.
func endUserSessions(ctx context.Context, tx pgx.Tx, userID int64) ([]string, error) {
	rows, err := tx.Query(ctx, `DELETE FROM pgpush.sessions WHERE user_id = $1 RETURNING id`, userID)
	if err != nil {
		return nil, err
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, err
	}
	for _, id := range ids {
		if err := notifyLogout(ctx, tx, id); err != nil {
			return nil, err
		}
	}
	return ids, nil
}

// ListUsers returns every account, disabled ones included, in creation order.
func (s *Store) ListUsers(ctx context.Context) ([]User, error) {
	rows, err := s.pool.Query(ctx, `
		SELECT id, email, role, attrs, disabled_at IS NOT NULL
		FROM pgpush.users ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("list users: %w", err)
	}
	users, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (User, error) {
		var u User
		var attrs []byte
		if err := row.Scan(&u.ID, &u.Email, &u.Role, &attrs, &u.Disabled); err != nil {
			return User{}, err
		}
		u.Attrs, err = decodeAttrs(attrs)
		return u, err
	})
	if err != nil {
		return nil, fmt.Errorf("list users: %w", err)
	}
	return users, nil
}

// Authenticate checks an email and password. An unknown email, a wrong
// password and a disabled account all give ErrBadCredentials, and all take
// one bcrypt comparison, so neither the answer nor its timing tells which
// emails have accounts.
func (s *Store) Authenticate(ctx context.Context, email, password string) (User, error) {
	var (
		u        User
		attrs    []byte
		hash     string
		disabled bool
	)
	err := s.pool.QueryRow(ctx, `
		SELECT id, email, role, attrs, password_hash, disabled_at IS NOT NULL
		FROM pgpush.users WHERE lower(email) = lower($1)`, email).
		Scan(&u.ID, &u.Email, &u.Role, &attrs, &hash, &disabled)
	if errors.Is(err, pgx.ErrNoRows) {
		dummy, err := s.dummyHash()
		if err != nil {
			return User{}, fmt.Errorf("authenticate: %w", err)
		}
		bcrypt.CompareHashAndPassword(dummy, []byte(password))
		return User{}, ErrBadCredentials
	}
	if err != nil {
		return User{}, fmt.Errorf("authenticate: %w", err)
	}
	if bcrypt.CompareHashAndPassword([]byte(hash), []byte(password)) != nil || disabled {
		return User{}, ErrBadCredentials
	}
	u.Attrs, err = decodeAttrs(attrs)
	if err != nil {
		return User{}, fmt.Errorf("authenticate: %w", err)
	}
	return u, nil
}

// Login starts a session for u and sets its cookie on w. The cookie holds a
// fresh random token; the database holds only the token's SHA-256. When u
// then holds more than MaxSessionsPerUser sessions, the oldest end in the
// same transaction and are announced as a logout is, so every instance
// closes their sockets.
func (s *Store) Login(ctx context.Context, w http.ResponseWriter, r *http.Request, u User) error {
	if u.Disabled {
		return fmt.Errorf("login user %d: %w", u.ID, ErrBadCredentials)
	}
	token := make([]byte, tokenBytes)
	rand.Read(token) // never returns an error (crypto/rand, Go 1.24+)
	id := sessionID(token)
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		// The user's row lock orders concurrent logins, so that together
		// they cannot leave more than MaxSessionsPerUser sessions.
		err := tx.QueryRow(ctx, `SELECT id FROM pgpush.users WHERE id = $1 FOR UPDATE`, u.ID).Scan(new(int64))
		if errors.Is(err, pgx.ErrNoRows) {
			return ErrUserNotFound
		}
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `
			INSERT INTO pgpush.sessions (id, user_id, expires_at)
			VALUES ($1, $2, now() + make_interval(secs => $3))`,
			id, u.ID, s.maxAge.Seconds()); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, `
			DELETE FROM pgpush.sessions WHERE id IN (
				SELECT id FROM pgpush.sessions WHERE user_id = $1 AND id <> $2
				ORDER BY created_at DESC, id OFFSET $3)
			RETURNING id`, u.ID, id, MaxSessionsPerUser-1)
		if err != nil {
			return err
		}
		ended, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return err
		}
		for _, old := range ended {
			if err := notifyLogout(ctx, tx, old); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		var pgErr *pgconn.PgError
		if errors.Is(err, ErrUserNotFound) || errors.As(err, &pgErr) && pgErr.Code == foreignKeyViolation {
			return fmt.Errorf("login user %d: %w", u.ID, ErrUserNotFound)
		}
		return fmt.Errorf("login user %d: %w", u.ID, err)
	}
	sess := sessions.NewSession(s.cookies, s.cookieName)
	sess.Options = s.cookieOptions(r, s.maxAgeSeconds())
	sess.Values[tokenKey] = base64.RawURLEncoding.EncodeToString(token)
	if err := s.cookies.Save(r, w, sess); err != nil {
		return fmt.Errorf("login user %d: encode cookie: %w", u.ID, err)
	}
	return nil
}

// Logout ends the session named by r's cookie and expires the cookie. In the
// same transaction it announces the end on db.ControlChannel, so every instance
// closes the sockets opened with it once the delete commits. Without a
// valid cookie for a live session it returns ErrNoSession.
func (s *Store) Logout(ctx context.Context, w http.ResponseWriter, r *http.Request) (sessionID string, err error) {
	id, ok := s.sessionIDFromCookie(r)
	if !ok {
		s.expireCookie(w, r)
		return "", ErrNoSession
	}
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `DELETE FROM pgpush.sessions WHERE id = $1`, id)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return ErrNoSession
		}
		return notifyLogout(ctx, tx, id)
	})
	if errors.Is(err, ErrNoSession) {
		s.expireCookie(w, r)
		return "", ErrNoSession
	}
	if err != nil {
		// Keep the cookie: the session is still live, and the client may retry.
		return "", fmt.Errorf("logout: %w", err)
	}
	s.expireCookie(w, r)
	return id, nil
}

// expireCookie tells the client to drop its session cookie, if it sent one.
// An unreadable cookie is expired too: it can never log anyone in again.
func (s *Store) expireCookie(w http.ResponseWriter, r *http.Request) {
	if _, err := r.Cookie(s.cookieName); err == nil {
		http.SetCookie(w, sessions.NewCookie(s.cookieName, "", s.cookieOptions(r, -1)))
	}
}

// FromRequest returns the user and session id behind r's cookie. A missing,
// tampered or undecodable cookie, an unknown or expired session and a
// disabled user are all ErrNoSession; other errors mean the database failed.
func (s *Store) FromRequest(ctx context.Context, r *http.Request) (User, string, error) {
	id, ok := s.sessionIDFromCookie(r)
	if !ok {
		return User{}, "", ErrNoSession
	}
	var u User
	var attrs []byte
	err := s.pool.QueryRow(ctx, `
		SELECT u.id, u.email, u.role, u.attrs
		FROM pgpush.sessions s JOIN pgpush.users u ON u.id = s.user_id
		WHERE s.id = $1 AND s.expires_at > now() AND u.disabled_at IS NULL`, id).
		Scan(&u.ID, &u.Email, &u.Role, &attrs)
	if errors.Is(err, pgx.ErrNoRows) {
		return User{}, "", ErrNoSession
	}
	if err != nil {
		return User{}, "", fmt.Errorf("look up session: %w", err)
	}
	if u.Attrs, err = decodeAttrs(attrs); err != nil {
		return User{}, "", fmt.Errorf("look up session: %w", err)
	}
	return u, id, nil
}

// PruneExpired deletes expired sessions and returns how many it deleted.
// No logout is announced: sockets check expiry themselves, if at all, and an
// expired session can no longer open new ones.
func (s *Store) PruneExpired(ctx context.Context) (int64, error) {
	tag, err := s.pool.Exec(ctx, `DELETE FROM pgpush.sessions WHERE expires_at <= now()`)
	if err != nil {
		return 0, fmt.Errorf("prune expired sessions: %w", err)
	}
	return tag.RowsAffected(), nil
}

// sessionIDFromCookie decodes r's cookie and returns its session id. Any
// failure (no cookie, bad signature, expired timestamp, wrong shape) is
// reported as !ok; the reason is not interesting to a caller and must not
// reach a log with the cookie in it.
func (s *Store) sessionIDFromCookie(r *http.Request) (string, bool) {
	if _, err := r.Cookie(s.cookieName); err != nil {
		return "", false
	}
	// New, not Get: Get caches in a registry stored by rewriting *r.
	sess, err := s.cookies.New(r, s.cookieName)
	if err != nil || sess.IsNew {
		return "", false
	}
	enc, ok := sess.Values[tokenKey].(string)
	if !ok {
		return "", false
	}
	token, err := base64.RawURLEncoding.DecodeString(enc)
	if err != nil || len(token) != tokenBytes {
		return "", false
	}
	return sessionID(token), true
}

// cookieOptions are the cookie attributes for r. They are built per request
// because Secure depends on r, and the shared CookieStore must not change.
func (s *Store) cookieOptions(r *http.Request, maxAge int) *sessions.Options {
	return &sessions.Options{
		Path:     "/",
		MaxAge:   maxAge,
		HttpOnly: true,
		SameSite: http.SameSiteLaxMode,
		Secure:   s.secure(r),
	}
}

// sessionID is the database id of token: hex SHA-256. It is what callers and
// logs see; the token itself stays in the cookie.
func sessionID(token []byte) string {
	sum := sha256.Sum256(token)
	return hex.EncodeToString(sum[:])
}

// notifyLogout announces the end of session id on db.ControlChannel. NOTIFY
// fires on commit, so a rolled-back end announces nothing.
func notifyLogout(ctx context.Context, tx pgx.Tx, id string) error {
	_, err := tx.Exec(ctx, `SELECT pg_notify($1, $2)`, db.ControlChannel, db.LogoutPayloadPrefix+id)
	if err != nil {
		return fmt.Errorf("notify %s: %w", db.ControlChannel, err)
	}
	return nil
}

// decodeAttrs reads the attrs column. Attributes are strings when set through
// AddUser; a value written as another JSON type by hand (42, true) is kept as
// its JSON text so that grant matching still sees it.
func decodeAttrs(raw []byte) (map[string]string, error) {
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("decode user attrs: %w", err)
	}
	if len(m) == 0 {
		return nil, nil
	}
	attrs := make(map[string]string, len(m))
	for k, v := range m {
		switch v := v.(type) {
		case string:
			attrs[k] = v
		case nil:
			attrs[k] = ""
		default:
			b, err := json.Marshal(v)
			if err != nil {
				return nil, fmt.Errorf("decode user attrs: %w", err)
			}
			attrs[k] = string(b)
		}
	}
	return attrs, nil
}

// LiveSessions reports which of ids are still valid sessions (not ended,
// not expired, user not disabled). Instances use it to close sockets whose
// session ended while they could not hear the announcement.
func (s *Store) LiveSessions(ctx context.Context, ids []string) (map[string]bool, error) {
	live := make(map[string]bool, len(ids))
	if len(ids) == 0 {
		return live, nil
	}
	rows, err := s.pool.Query(ctx, `
		SELECT s.id FROM pgpush.sessions s JOIN pgpush.users u ON u.id = s.user_id
		WHERE s.id = ANY($1) AND s.expires_at > now() AND u.disabled_at IS NULL`, ids)
	if err != nil {
		return nil, fmt.Errorf("check sessions: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("check sessions: %w", err)
		}
		live[id] = true
	}
	return live, rows.Err()
}
