// Package apidocs is the API reference page, GET /api/docs: the gateway's own
// OpenAPI document (/api/openapi.json) rendered in the browser by Swagger UI
// 5.35.0 (swagger-ui-dist from the npm registry, Apache-2.0; see
// swagger-ui/README.md), embedded in the binary: nothing is loaded from
// elsewhere at run time.
package apidocs

import (
	"embed"
	"net/http"

	"github.com/cxco/gateway/control/internal/static"
)

//go:embed index.html docs.js docs.css swagger-ui
var files embed.FS

// Path is where the page is served; its files are under Path + "/".
const Path = "/api/docs"

// Handler serves the page at Path and its files below it. Its
// Content-Security-Policy allows this origin only: scripts, styles, and the
// requests "Try it out" makes to the API. notFound answers the paths below
// Path that are no file.
func Handler(notFound http.Handler) http.Handler {
	return static.Handler(files, static.Options{Prefix: Path + "/", Index: "index.html", NotFound: notFound, Header: http.Header{
		"Content-Security-Policy": {"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
			"connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"},
	}})
}
