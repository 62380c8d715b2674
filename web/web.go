// Package web owns what pgpush serves to browsers: the dashboard page at /,
// the pgpush.js client module and its TypeScript declarations, embedded in
// the binary so that a deployment is one file.
package web

import (
	"embed"
	"io/fs"
	"net/http"
)

//go:embed static
var static embed.FS

// DeclarationsPath is where the TypeScript declarations of pgpush.js are
// served (static/pgpush.d.ts).
const DeclarationsPath = "/pgpush.d.ts"

// declarationsType is set explicitly: Go's own table has no .ts, and a
// system mime.types may map .ts to video/mp2t (MPEG transport streams).
const declarationsType = "application/typescript; charset=utf-8"

// Files is the embedded static tree (index.html, pgpush.js, pgpush.d.ts, ...).
func Files() fs.FS {
	sub, err := fs.Sub(static, "static")
	if err != nil {
		panic(err) // the embed pattern guarantees the directory exists
	}
	return sub
}

// Handler serves the static files; "/" is the dashboard.
func Handler() http.Handler {
	files := http.FileServerFS(Files())
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == DeclarationsPath {
			w.Header().Set("Content-Type", declarationsType)
		}
		files.ServeHTTP(w, r)
	})
}
