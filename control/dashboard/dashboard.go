// Package dashboard is the gateway's web dashboard: static pages embedded in the
// binary (no CDN, no build step: plain JavaScript modules) that sign in with a
// company or user API key and use the public API, plus the browser side of the
// WebRTC "talk to this agent" test call.
//
// Mount it on the control plane's listener with Routes (cmd/cxco does):
//
//	control.Options{Extra: dashboard.Routes()}
package dashboard

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strings"
	"time"
)

//go:embed index.html assets
var files embed.FS

// Routes are the dashboard's patterns for an http.ServeMux: the page at exactly
// "/" and its assets under /assets/. Nothing else is taken, so unknown /api
// paths keep their JSON errors. ("/assets" itself is taken too: the control
// plane drops trailing slashes, and the mux would redirect it back forever.)
func Routes() map[string]http.Handler {
	h := Handler()
	return map[string]http.Handler{"GET /{$}": h, "GET /assets/": h, "GET /assets": h}
}

// asset is one embedded file, ready to serve.
type asset struct {
	body  []byte
	ctype string
	etag  string
}

// Handler serves the page and its assets, with a strict Content-Security-Policy
// (everything from this origin only) and revalidated caching (ETag).
func Handler() http.Handler {
	assets := map[string]*asset{}
	_ = fs.WalkDir(files, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := files.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		ct := mime.TypeByExtension(path.Ext(p))
		switch path.Ext(p) { // not left to the machine's mime.types
		case ".js":
			ct = "text/javascript; charset=utf-8"
		case ".css":
			ct = "text/css; charset=utf-8"
		case ".html":
			ct = "text/html; charset=utf-8"
		case ".svg":
			ct = "image/svg+xml"
		}
		assets["/"+p] = &asset{body: b, ctype: ct, etag: `"` + hex.EncodeToString(sum[:8]) + `"`}
		return nil
	})
	assets["/"] = assets["/index.html"]
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a := assets[r.URL.Path]
		if a == nil || strings.HasSuffix(r.URL.Path, "/") && r.URL.Path != "/" {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.WriteHeader(http.StatusNotFound)
			_, _ = w.Write([]byte("not found\n"))
			return
		}
		h := w.Header()
		h.Set("Content-Type", a.ctype)
		h.Set("Cache-Control", "no-cache")
		h.Set("ETag", a.etag)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "+
			"connect-src 'self'; media-src 'self' blob: mediastream:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'")
		h.Set("Permissions-Policy", "microphone=(self), camera=()")
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(a.body))
	})
}
