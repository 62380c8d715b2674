// Package web owns what pgpush serves to browsers: the dashboard page at /
// and the pgpush.js client module, embedded in the binary so that a
// deployment is one file.
package web

import (
	"embed"
	"io/fs"
	"net/http"
)

//go:embed static
var static embed.FS

// Files is the embedded static tree (index.html, pgpush.js, ...).
func Files() fs.FS {
	sub, err := fs.Sub(static, "static")
	if err != nil {
		panic(err) // the embed pattern guarantees the directory exists
	}
	return sub
}

// Handler serves the static files; "/" is the dashboard.
func Handler() http.Handler {
	return http.FileServerFS(Files())
}
