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
	"embed"
	"net/http"

	"github.com/cxco/gateway/control/internal/static"
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

// Handler serves the page and its assets, with a strict Content-Security-Policy
// (everything from this origin only) and revalidated caching (ETag).
func Handler() http.Handler {
	return static.Handler(files, static.Options{Prefix: "/", Index: "index.html", Header: http.Header{
		"Content-Security-Policy": {"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
			"connect-src 'self'; media-src 'self' blob: mediastream:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"},
		"Permissions-Policy": {"microphone=(self), camera=()"},
	}})
}
