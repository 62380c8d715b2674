package session

import (
	"context"
	"errors"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/crypto/bcrypt"

	"github.com/pgpush/pgpush/db"
	"github.com/pgpush/pgpush/db/dbtest"
)

func TestMain(m *testing.M) {
	dbtest.Main(m)
}

// notifyTimeout bounds every wait for a NOTIFY; generous for a loaded CI box.
const notifyTimeout = 10 * time.Second

var testSecret = []byte("0123456789abcdef0123456789abcdef") // 32 bytes

type testBundle struct {
	store *Store
	pool  *pgxpool.Pool
	url   string
}

// setup gives each test its own database and a Store over it with the
// cheapest bcrypt cost.
func setup(t *testing.T, opts Options) *testBundle {
	t.Helper()
	pool, url := dbtest.NewPool(t)
	if opts.Secret == nil {
		opts.Secret = testSecret
	}
	if opts.HashCost == 0 {
		opts.HashCost = bcrypt.MinCost
	}
	store, err := NewStore(pool, opts)
	if err != nil {
		t.Fatalf("NewStore: %v", err)
	}
	return &testBundle{store: store, pool: pool, url: url}
}

func mustAddUser(t *testing.T, s *Store, email, role, password string, attrs map[string]string) User {
	t.Helper()
	u, err := s.AddUser(context.Background(), email, role, password, attrs)
	if err != nil {
		t.Fatalf("AddUser(%q): %v", email, err)
	}
	return u
}

// mustLogin logs u in and returns the cookie the response set.
func mustLogin(t *testing.T, s *Store, u User) *http.Cookie {
	t.Helper()
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodPost, "/api/v1/auth/login", nil)
	if err := s.Login(context.Background(), rec, req, u); err != nil {
		t.Fatalf("Login(%q): %v", u.Email, err)
	}
	return sessionCookie(t, s, rec)
}

func sessionCookie(t *testing.T, s *Store, rec *httptest.ResponseRecorder) *http.Cookie {
	t.Helper()
	for _, c := range rec.Result().Cookies() {
		if c.Name == s.CookieName() {
			return c
		}
	}
	t.Fatalf("response sets no %q cookie; Set-Cookie: %q", s.CookieName(), rec.Header().Values("Set-Cookie"))
	return nil
}

func requestWith(c *http.Cookie) *http.Request {
	req := httptest.NewRequest(http.MethodGet, "/api/v1/auth/me", nil)
	if c != nil {
		req.AddCookie(c)
	}
	return req
}

// listen returns a connection listening on db.ControlChannel. LISTEN has
// returned, so every NOTIFY committed afterwards will reach it.
func listen(t *testing.T, url string) *pgx.Conn {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("connect listener: %v", err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	if _, err := conn.Exec(ctx, "LISTEN "+db.ControlChannel); err != nil {
		t.Fatalf("LISTEN %s: %v", db.ControlChannel, err)
	}
	return conn
}

// waitPayloads waits for n notifications on conn and returns their payloads.
func waitPayloads(t *testing.T, conn *pgx.Conn, n int) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), notifyTimeout)
	defer cancel()
	var got []string
	for len(got) < n {
		nt, err := conn.WaitForNotification(ctx)
		if err != nil {
			t.Fatalf("WaitForNotification after %q: %v", got, err)
		}
		if nt.Channel != db.ControlChannel {
			t.Fatalf("notification channel = %q, want %q", nt.Channel, db.ControlChannel)
		}
		got = append(got, nt.Payload)
	}
	return got
}

func TestNewStore(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		opts    Options
		wantErr bool
	}{
		{name: "31-byte secret", opts: Options{Secret: testSecret[:31]}, wantErr: true},
		{name: "no secret", opts: Options{}, wantErr: true},
		{name: "32-byte secret", opts: Options{Secret: testSecret}},
		{name: "cost too high", opts: Options{Secret: testSecret, HashCost: bcrypt.MaxCost + 1}, wantErr: true},
		{name: "negative max age", opts: Options{Secret: testSecret, MaxAge: -time.Hour}, wantErr: true},
		{name: "bad cookie name", opts: Options{Secret: testSecret, CookieName: "a b"}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := NewStore(nil, tt.opts)
			if gotErr := err != nil; gotErr != tt.wantErr {
				t.Fatalf("NewStore() err = %v, want error: %v", err, tt.wantErr)
			}
		})
	}
}

func TestValidateEmail(t *testing.T) {
	t.Parallel()
	tests := []struct {
		email string
		ok    bool
	}{
		{"ada@example.com", true},
		{"Ada.Lovelace+x@Example.COM", true},
		{"", false},
		{"ada", false},
		{"@example.com", false},
		{"ada@", false},
		{" ada@example.com", false},
		{"Ada <ada@example.com>", false},
		{"ada@example.com, bob@example.com", false},
		{strings.Repeat("a", 250) + "@x.io", false},
	}
	for _, tt := range tests {
		if err := ValidateEmail(tt.email); (err == nil) != tt.ok {
			t.Errorf("ValidateEmail(%q) = %v, want ok: %v", tt.email, err, tt.ok)
		}
	}
}

func TestValidateRole(t *testing.T) {
	t.Parallel()
	tests := []struct {
		role string
		ok   bool
	}{
		{"admin", true},
		{"anonymous", true},
		{"support_team-2", true},
		{strings.Repeat("r", 64), true},
		{strings.Repeat("r", 65), false},
		{"", false},
		{"Admin", false},
		{"a b", false},
		{"röle", false},
		{"room:*", false},
	}
	for _, tt := range tests {
		if err := ValidateRole(tt.role); (err == nil) != tt.ok {
			t.Errorf("ValidateRole(%q) = %v, want ok: %v", tt.role, err, tt.ok)
		}
	}
}

func TestAddUserRejectsBadInput(t *testing.T) {
	t.Parallel()
	// Validation happens before any query, so no database is needed.
	s, err := NewStore(nil, Options{Secret: testSecret, HashCost: bcrypt.MinCost})
	if err != nil {
		t.Fatalf("NewStore: %v", err)
	}
	tests := []struct {
		name, email, role, password string
		attrs                       map[string]string
	}{
		{name: "bad email", email: "nope", role: "admin", password: "correct horse"},
		{name: "bad role", email: "a@example.com", role: "Admin", password: "correct horse"},
		{name: "empty password", email: "a@example.com", role: "admin", password: ""},
		{name: "7-char password", email: "a@example.com", role: "admin", password: "1234567"},
		{name: "73-byte password", email: "a@example.com", role: "admin", password: strings.Repeat("p", 73)},
		{name: "empty attr name", email: "a@example.com", role: "admin", password: "correct horse", attrs: map[string]string{"": "x"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if _, err := s.AddUser(context.Background(), tt.email, tt.role, tt.password, tt.attrs); err == nil {
				t.Fatalf("AddUser(%q, %q, %q) = nil error, want one", tt.email, tt.role, tt.password)
			}
		})
	}
}

func TestAuthenticate(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{})
	ctx := context.Background()
	ada := mustAddUser(t, b.store, "Ada@Example.com", "admin", "correct horse", map[string]string{"customer_id": "42"})
	mustAddUser(t, b.store, "gone@example.com", "viewer", "battery staple", nil)
	if _, err := b.store.DisableUser(ctx, "gone@example.com"); err != nil {
		t.Fatalf("DisableUser: %v", err)
	}

	tests := []struct {
		name, email, password string
		wantErr               error
	}{
		{name: "ok", email: "Ada@Example.com", password: "correct horse"},
		{name: "ok other case", email: "ada@EXAMPLE.com", password: "correct horse"},
		{name: "wrong password", email: "Ada@Example.com", password: "correct horsE", wantErr: ErrBadCredentials},
		{name: "empty password", email: "Ada@Example.com", password: "", wantErr: ErrBadCredentials},
		{name: "unknown email", email: "nobody@example.com", password: "correct horse", wantErr: ErrBadCredentials},
		{name: "disabled user", email: "gone@example.com", password: "battery staple", wantErr: ErrBadCredentials},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := b.store.Authenticate(ctx, tt.email, tt.password)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Authenticate(%q) err = %v, want %v", tt.email, err, tt.wantErr)
			}
			if tt.wantErr != nil {
				if got.ID != 0 {
					t.Errorf("Authenticate(%q) user = %+v on error, want zero", tt.email, got)
				}
				return
			}
			if got.ID != ada.ID || got.Email != "Ada@Example.com" || got.Role != "admin" || got.Attrs["customer_id"] != "42" {
				t.Errorf("Authenticate(%q) = %+v, want %+v", tt.email, got, ada)
			}
		})
	}
}

func TestAddUserDuplicate(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{})
	mustAddUser(t, b.store, "ada@example.com", "admin", "correct horse", nil)

	for _, email := range []string{"ada@example.com", "ADA@example.com", "Ada@Example.Com"} {
		t.Run(email, func(t *testing.T) {
			t.Parallel()
			_, err := b.store.AddUser(context.Background(), email, "viewer", "another password", nil)
			if !errors.Is(err, ErrUserExists) {
				t.Fatalf("AddUser(%q) err = %v, want %v", email, err, ErrUserExists)
			}
		})
	}
}

func TestPasswordStoredAsBcryptHash(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{})
	const password = "correct horse battery"
	u := mustAddUser(t, b.store, "ada@example.com", "admin", password, nil)

	var hash string
	err := b.pool.QueryRow(context.Background(),
		`SELECT password_hash FROM pgpush.users WHERE id = $1`, u.ID).Scan(&hash)
	if err != nil {
		t.Fatalf("select password_hash: %v", err)
	}
	if strings.Contains(hash, password) {
		t.Fatalf("password_hash contains the password")
	}
	if cost, err := bcrypt.Cost([]byte(hash)); err != nil || cost != bcrypt.MinCost {
		t.Fatalf("bcrypt.Cost(password_hash) = %d, %v; want %d, nil", cost, err, bcrypt.MinCost)
	}
	if err := bcrypt.CompareHashAndPassword([]byte(hash), []byte(password)); err != nil {
		t.Fatalf("CompareHashAndPassword(password_hash, password) = %v, want nil", err)
	}
}

func TestListUsers(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{})
	ctx := context.Background()
	ada := mustAddUser(t, b.store, "ada@example.com", "admin", "correct horse", map[string]string{"team": "ops"})
	bob := mustAddUser(t, b.store, "bob@example.com", "viewer", "battery staple", nil)
	if _, err := b.store.DisableUser(ctx, "BOB@example.com"); err != nil {
		t.Fatalf("DisableUser: %v", err)
	}
	// A number written by hand in SQL is read back as its JSON text.
	if _, err := b.pool.Exec(ctx, `UPDATE pgpush.users SET attrs = '{"customer_id": 7}' WHERE id = $1`, bob.ID); err != nil {
		t.Fatalf("update attrs: %v", err)
	}

	got, err := b.store.ListUsers(ctx)
	if err != nil {
		t.Fatalf("ListUsers: %v", err)
	}
	want := []User{
		{ID: ada.ID, Email: "ada@example.com", Role: "admin", Attrs: map[string]string{"team": "ops"}},
		{ID: bob.ID, Email: "bob@example.com", Role: "viewer", Attrs: map[string]string{"customer_id": "7"}, Disabled: true},
	}
	if !slices.EqualFunc(got, want, equalUser) {
		t.Fatalf("ListUsers() = %+v, want %+v", got, want)
	}
}

func equalUser(a, b User) bool {
	return a.ID == b.ID && a.Email == b.Email && a.Role == b.Role && a.Disabled == b.Disabled &&
		maps.Equal(a.Attrs, b.Attrs)
}

func TestLoginCookie(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		secure func(*http.Request) bool
		tls    bool
		want   bool
	}{
		{name: "default plain http", want: false},
		{name: "default tls", tls: true, want: true},
		{name: "func says secure", secure: func(*http.Request) bool { return true }, want: true},
		{name: "func says not secure", secure: func(*http.Request) bool { return false }, tls: true, want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, Options{Secure: tt.secure, MaxAge: time.Hour})
			u := mustAddUser(t, b.store, "ada@example.com", "admin", "correct horse", nil)

			rec := httptest.NewRecorder()
			target := "http://pgpush.test/api/v1/auth/login"
			if tt.tls {
				target = "https://pgpush.test/api/v1/auth/login"
			}
			req := httptest.NewRequest(http.MethodPost, target, nil)
			if err := b.store.Login(context.Background(), rec, req, u); err != nil {
				t.Fatalf("Login: %v", err)
			}
			c := sessionCookie(t, b.store, rec)
			if c.Secure != tt.want {
				t.Errorf("cookie Secure = %v, want %v", c.Secure, tt.want)
			}
			if !c.HttpOnly {
				t.Errorf("cookie HttpOnly = false, want true")
			}
			if c.SameSite != http.SameSiteLaxMode {
				t.Errorf("cookie SameSite = %v, want %v (Lax)", c.SameSite, http.SameSiteLaxMode)
			}
			if c.Path != "/" {
				t.Errorf("cookie Path = %q, want %q", c.Path, "/")
			}
			if c.MaxAge != 3600 {
				t.Errorf("cookie MaxAge = %d, want %d", c.MaxAge, 3600)
			}
			if c.Name != DefaultCookieName {
				t.Errorf("cookie Name = %q, want %q", c.Name, DefaultCookieName)
			}
		})
	}
}

func TestFromRequest(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{})
	ctx := context.Background()
	u := mustAddUser(t, b.store, "ada@example.com", "admin", "correct horse", map[string]string{"customer_id": "42"})
	cookie := mustLogin(t, b.store, u)

	got, id, err := b.store.FromRequest(ctx, requestWith(cookie))
	if err != nil {
		t.Fatalf("FromRequest: %v", err)
	}
	if !equalUser(got, u) {
		t.Errorf("FromRequest() user = %+v, want %+v", got, u)
	}
	if len(id) != 64 || strings.Contains(cookie.Value, id) {
		t.Errorf("FromRequest() id = %q, want 64 hex digits not found in the cookie", id)
	}
	var n int
	if err := b.pool.QueryRow(ctx, `SELECT count(*) FROM pgpush.sessions WHERE id = $1 AND user_id = $2`, id, u.ID).Scan(&n); err != nil || n != 1 {
		t.Errorf("sessions rows with id %q = %d, %v; want 1, nil", id, n, err)
	}

	// A cookie signed with another secret must not decode.
	other := setup(t, Options{Secret: []byte(strings.Repeat("x", 32))})
	otherUser := mustAddUser(t, other.store, "ada@example.com", "admin", "correct horse", nil)
	foreign := mustLogin(t, other.store, otherUser)

	tamperedValue := []byte(cookie.Value)
	tamperedValue[len(tamperedValue)/2] ^= 1

	tests := []struct {
		name   string
		cookie *http.Cookie
	}{
		{name: "no cookie"},
		{name: "garbage", cookie: &http.Cookie{Name: DefaultCookieName, Value: "garbage"}},
		{name: "empty", cookie: &http.Cookie{Name: DefaultCookieName, Value: ""}},
		{name: "base64 junk", cookie: &http.Cookie{Name: DefaultCookieName, Value: "MTcwMDAwMDAwMHxhYmN8ZGVm"}},
		{name: "tampered", cookie: &http.Cookie{Name: DefaultCookieName, Value: string(tamperedValue)}},
		{name: "other secret", cookie: foreign},
		{name: "other cookie name", cookie: &http.Cookie{Name: "other", Value: cookie.Value}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, id, err := b.store.FromRequest(ctx, requestWith(tt.cookie))
			if !errors.Is(err, ErrNoSession) {
				t.Fatalf("FromRequest() = %+v, %q, %v; want %v", got, id, err, ErrNoSession)
			}
		})
	}
}

func TestFromRequestExpired(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{})
	ctx := context.Background()
	u := mustAddUser(t, b.store, "ada@example.com", "admin", "correct horse", nil)
	expired := mustLogin(t, b.store, u)
	live := mustLogin(t, b.store, u)

	_, id, err := b.store.FromRequest(ctx, requestWith(expired))
	if err != nil {
		t.Fatalf("FromRequest before expiry: %v", err)
	}
	if _, err := b.pool.Exec(ctx, `UPDATE pgpush.sessions SET expires_at = now() - interval '1 second' WHERE id = $1`, id); err != nil {
		t.Fatalf("expire session: %v", err)
	}
	if _, _, err := b.store.FromRequest(ctx, requestWith(expired)); !errors.Is(err, ErrNoSession) {
		t.Fatalf("FromRequest after expiry err = %v, want %v", err, ErrNoSession)
	}

	n, err := b.store.PruneExpired(ctx)
	if err != nil || n != 1 {
		t.Fatalf("PruneExpired() = %d, %v; want 1, nil", n, err)
	}
	if _, _, err := b.store.FromRequest(ctx, requestWith(live)); err != nil {
		t.Fatalf("FromRequest(live session) after PruneExpired: %v", err)
	}
}

func TestLogout(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{})
	ctx := context.Background()
	u := mustAddUser(t, b.store, "ada@example.com", "admin", "correct horse", nil)
	cookie := mustLogin(t, b.store, u)
	other := mustLogin(t, b.store, u) // a second browser stays logged in
	_, wantID, err := b.store.FromRequest(ctx, requestWith(cookie))
	if err != nil {
		t.Fatalf("FromRequest before Logout: %v", err)
	}
	conn := listen(t, b.url)

	rec := httptest.NewRecorder()
	id, err := b.store.Logout(ctx, rec, requestWith(cookie))
	if err != nil {
		t.Fatalf("Logout: %v", err)
	}
	if id != wantID {
		t.Errorf("Logout() id = %q, want %q", id, wantID)
	}
	if c := sessionCookie(t, b.store, rec); c.MaxAge != -1 || c.Value != "" {
		t.Errorf("Logout cookie MaxAge = %d, Value = %q; want -1, empty", c.MaxAge, c.Value)
	}
	if got, want := waitPayloads(t, conn, 1), []string{db.LogoutPayloadPrefix + wantID}; !slices.Equal(got, want) {
		t.Errorf("notifications = %q, want %q", got, want)
	}

	if _, _, err := b.store.FromRequest(ctx, requestWith(cookie)); !errors.Is(err, ErrNoSession) {
		t.Errorf("FromRequest after Logout err = %v, want %v", err, ErrNoSession)
	}
	if _, err := b.store.Logout(ctx, httptest.NewRecorder(), requestWith(cookie)); !errors.Is(err, ErrNoSession) {
		t.Errorf("second Logout err = %v, want %v", err, ErrNoSession)
	}
	if _, _, err := b.store.FromRequest(ctx, requestWith(other)); err != nil {
		t.Errorf("FromRequest(other session) after Logout: %v", err)
	}
}

func TestLogoutWithoutSession(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{})
	tests := []struct {
		name       string
		cookie     *http.Cookie
		wantExpire bool
	}{
		{name: "no cookie"},
		{name: "garbage cookie", cookie: &http.Cookie{Name: DefaultCookieName, Value: "garbage"}, wantExpire: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rec := httptest.NewRecorder()
			id, err := b.store.Logout(context.Background(), rec, requestWith(tt.cookie))
			if !errors.Is(err, ErrNoSession) || id != "" {
				t.Fatalf("Logout() = %q, %v; want \"\", %v", id, err, ErrNoSession)
			}
			if got := len(rec.Result().Cookies()) > 0; got != tt.wantExpire {
				t.Fatalf("Logout sets a cookie: %v, want %v", got, tt.wantExpire)
			}
		})
	}
}

func TestDisableUser(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{})
	ctx := context.Background()
	ada := mustAddUser(t, b.store, "ada@example.com", "admin", "correct horse", nil)
	bob := mustAddUser(t, b.store, "bob@example.com", "viewer", "battery staple", nil)
	adaCookies := []*http.Cookie{mustLogin(t, b.store, ada), mustLogin(t, b.store, ada)}
	bobCookie := mustLogin(t, b.store, bob)

	var wantIDs []string
	for _, c := range adaCookies {
		_, id, err := b.store.FromRequest(ctx, requestWith(c))
		if err != nil {
			t.Fatalf("FromRequest before DisableUser: %v", err)
		}
		wantIDs = append(wantIDs, id)
	}
	slices.Sort(wantIDs)
	conn := listen(t, b.url)

	ids, err := b.store.DisableUser(ctx, "ADA@example.com")
	if err != nil {
		t.Fatalf("DisableUser: %v", err)
	}
	slices.Sort(ids)
	if !slices.Equal(ids, wantIDs) {
		t.Errorf("DisableUser() ids = %q, want %q", ids, wantIDs)
	}
	got := waitPayloads(t, conn, len(wantIDs))
	slices.Sort(got)
	var wantPayloads []string
	for _, id := range wantIDs {
		wantPayloads = append(wantPayloads, db.LogoutPayloadPrefix+id)
	}
	if !slices.Equal(got, wantPayloads) {
		t.Errorf("notifications = %q, want %q", got, wantPayloads)
	}

	for i, c := range adaCookies {
		if _, _, err := b.store.FromRequest(ctx, requestWith(c)); !errors.Is(err, ErrNoSession) {
			t.Errorf("FromRequest(session %d) after DisableUser err = %v, want %v", i, err, ErrNoSession)
		}
	}
	if _, _, err := b.store.FromRequest(ctx, requestWith(bobCookie)); err != nil {
		t.Errorf("FromRequest(bob) after disabling ada: %v", err)
	}
	if _, err := b.store.Authenticate(ctx, "ada@example.com", "correct horse"); !errors.Is(err, ErrBadCredentials) {
		t.Errorf("Authenticate(disabled) err = %v, want %v", err, ErrBadCredentials)
	}
	ids, err = b.store.DisableUser(ctx, "ada@example.com")
	if err != nil || len(ids) != 0 {
		t.Errorf("second DisableUser() = %q, %v; want no ids, nil", ids, err)
	}
	if _, err := b.store.DisableUser(ctx, "nobody@example.com"); !errors.Is(err, ErrUserNotFound) {
		t.Errorf("DisableUser(unknown) err = %v, want %v", err, ErrUserNotFound)
	}
}

func TestLoginDisabledOrUnknownUser(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{})
	tests := []struct {
		name    string
		user    User
		wantErr error
	}{
		{name: "disabled", user: User{ID: 1, Disabled: true}, wantErr: ErrBadCredentials},
		{name: "unknown id", user: User{ID: 999}, wantErr: ErrUserNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rec := httptest.NewRecorder()
			err := b.store.Login(context.Background(), rec, requestWith(nil), tt.user)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Login(%+v) err = %v, want %v", tt.user, err, tt.wantErr)
			}
			if n := len(rec.Result().Cookies()); n != 0 {
				t.Fatalf("Login(%+v) set %d cookies, want 0", tt.user, n)
			}
		})
	}
}

func TestRemoveUser(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{})
	ctx := context.Background()
	ada := mustAddUser(t, b.store, "ada@example.com", "admin", "correct horse", nil)
	cookie := mustLogin(t, b.store, ada)
	_, id, err := b.store.FromRequest(ctx, requestWith(cookie))
	if err != nil {
		t.Fatalf("FromRequest before RemoveUser: %v", err)
	}
	conn := listen(t, b.url)

	if err := b.store.RemoveUser(ctx, "ADA@example.com"); err != nil {
		t.Fatalf("RemoveUser: %v", err)
	}
	if got, want := waitPayloads(t, conn, 1), []string{db.LogoutPayloadPrefix + id}; !slices.Equal(got, want) {
		t.Errorf("notifications = %q, want %q", got, want)
	}
	if _, _, err := b.store.FromRequest(ctx, requestWith(cookie)); !errors.Is(err, ErrNoSession) {
		t.Errorf("FromRequest after RemoveUser err = %v, want %v", err, ErrNoSession)
	}
	// The address is free again: the demo re-creates its admin this way.
	mustAddUser(t, b.store, "ada@example.com", "admin", "another horse", nil)
	if err := b.store.RemoveUser(ctx, "nobody@example.com"); !errors.Is(err, ErrUserNotFound) {
		t.Errorf("RemoveUser(unknown) err = %v, want %v", err, ErrUserNotFound)
	}
}
