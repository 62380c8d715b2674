//go:build unix

package web_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pgpush/pgpush/web"
)

// tscTimeout bounds one tsc run (a few hundred milliseconds normally).
const tscTimeout = time.Minute

// TestTypeScript checks static/pgpush.d.ts with tsc --noEmit against the
// typed example in test/types, whose @ts-expect-error lines must stay
// errors: the declarations have to accept the right use and refuse the
// wrong one.
func TestTypeScript(t *testing.T) {
	t.Parallel()
	tsc := filepath.Join("node_modules", ".bin", "tsc")
	if _, err := os.Stat(tsc); err != nil {
		skipOrFail(t, "web/node_modules/.bin/tsc is missing: run npm ci in web/")
	}
	ctx, cancel := context.WithTimeout(t.Context(), tscTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, tsc, "-p", filepath.Join("test", "types")).CombinedOutput()
	if err != nil {
		t.Fatalf("tsc -p test/types: %v\n%s", err, out)
	}
}

// TestDeclarationsMatchModule loads pgpush.js in Node and checks that its
// exports, and the members of a PgPush, are exactly what pgpush.d.ts
// declares (internal members aside), so that the two cannot drift apart.
func TestDeclarationsMatchModule(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("node"); err != nil {
		skipOrFail(t, "node is not installed (Node 20+ is needed for web/test)")
	}
	const script = `
import * as m from './static/pgpush.js';
class FakeSocket { constructor() { this.readyState = 0; } send() {} close() {} }
const c = new m.PgPush('ws://127.0.0.1:1/ws', { WebSocket: FakeSocket, reconnect: false });
const members = new Set();
for (let o = c; o && o !== Object.prototype; o = Object.getPrototypeOf(o)) {
  for (const k of Object.getOwnPropertyNames(o)) members.add(k);
}
c.close();
console.log(JSON.stringify({ exports: Object.keys(m), members: [...members] }));`
	ctx, cancel := context.WithTimeout(t.Context(), tscTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, "node", "--input-type=module", "-e", script).Output()
	if err != nil {
		t.Fatalf("node: %v", err)
	}
	var module struct {
		Exports []string `json:"exports"`
		Members []string `json:"members"`
	}
	if err := json.Unmarshal(out, &module); err != nil {
		t.Fatalf("node output %q: %v", out, err)
	}

	dts, err := os.ReadFile(filepath.Join("static", "pgpush.d.ts"))
	if err != nil {
		t.Fatal(err)
	}
	declared := regexp.MustCompile(`(?m)^export declare (?:const|function|class) (\w+)`).FindAllStringSubmatch(string(dts), -1)
	var exports []string
	for _, m := range declared {
		exports = append(exports, m[1])
	}
	if regexp.MustCompile(`(?m)^export default \w+;`).Match(dts) {
		exports = append(exports, "default")
	}
	slices.Sort(exports)
	slices.Sort(module.Exports)
	if !slices.Equal(exports, module.Exports) {
		t.Errorf("pgpush.d.ts declares exports %v, pgpush.js exports %v", exports, module.Exports)
	}

	class := string(dts)[strings.Index(string(dts), "export declare class PgPush {"):]
	class = class[:strings.Index(class, "\n}\n")]
	seen := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^  (?:readonly )?(\w+)[<(:?]`).FindAllStringSubmatch(class, -1) {
		name := m[1]
		if name == "constructor" || seen[name] {
			continue
		}
		seen[name] = true
		if !slices.Contains(module.Members, name) {
			t.Errorf("pgpush.d.ts declares PgPush.%s, which pgpush.js does not have", name)
		}
	}
	for _, public := range []string{"on", "off", "once", "subscribe", "unsubscribe", "publish", "liveRows", "close", "connected"} {
		if !seen[public] {
			t.Errorf("pgpush.d.ts does not declare PgPush.%s", public)
		}
	}
}

// TestDeclarationsServed: the static handler serves pgpush.d.ts with a
// TypeScript media type (httpapi routes /pgpush.d.ts to it).
func TestDeclarationsServed(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(web.Handler())
	defer srv.Close()

	want, err := fs.ReadFile(web.Files(), "pgpush.d.ts")
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(srv.URL + web.DeclarationsPath)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || !bytes.Equal(body, want) {
		t.Errorf("GET /pgpush.d.ts: status %d, %d bytes; want 200 and the %d bytes of static/pgpush.d.ts", resp.StatusCode, len(body), len(want))
	}
	if got := resp.Header.Get("Content-Type"); got != "application/typescript; charset=utf-8" {
		t.Errorf("Content-Type = %q, want application/typescript; charset=utf-8", got)
	}
}
