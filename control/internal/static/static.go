// Package static serves files embedded in the binary (the dashboard, the API
// reference page) with their content types, revalidated caching (ETag) and
// the security headers a page of the gateway needs. A file stored as NAME.gz
// is served at NAME: as it is to clients that accept gzip, decompressed for
// the others.
package static

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strings"
	"time"
)

// Options say where the files are served and with which headers.
type Options struct {
	// Prefix is the URL path of the folder's root, ending in "/" ("/", "/api/docs/").
	Prefix string
	// Index is the file served at the prefix itself ("/" or, for "/api/docs/",
	// "/api/docs" without its slash, as the control plane strips it).
	Index string
	// Header is set on every response (Content-Security-Policy and the like).
	Header http.Header
	// NotFound answers paths that are no file (nil: a plain-text 404).
	NotFound http.Handler
}

type file struct {
	body  []byte
	gz    bool // body is gzip-compressed
	ctype string
	etag  string
}

// Handler serves every file of fsys under o.Prefix; anything else is a plain 404.
func Handler(fsys fs.FS, o Options) http.Handler {
	files := map[string]*file{}
	_ = fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(fsys, p)
		if err != nil {
			return err
		}
		f := &file{body: b}
		name := p
		if strings.HasSuffix(p, ".gz") {
			name, f.gz = strings.TrimSuffix(p, ".gz"), true
		}
		sum := sha256.Sum256(b)
		f.etag = `"` + hex.EncodeToString(sum[:8]) + `"`
		f.ctype = contentType(name)
		files[o.Prefix+name] = f
		return nil
	})
	if o.Index != "" {
		root := strings.TrimSuffix(o.Prefix, "/")
		if root == "" {
			root = "/"
		}
		files[root] = files[o.Prefix+o.Index]
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f := files[r.URL.Path]
		if f == nil && o.NotFound != nil {
			o.NotFound.ServeHTTP(w, r)
			return
		}
		if f == nil {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.WriteHeader(http.StatusNotFound)
			_, _ = w.Write([]byte("not found\n"))
			return
		}
		h := w.Header()
		for k, v := range o.Header {
			h[k] = v
		}
		h.Set("Content-Type", f.ctype)
		h.Set("Cache-Control", "no-cache")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Frame-Options", "DENY")
		h.Add("Vary", "Accept-Encoding")
		body := f.body
		if f.gz {
			if acceptsGzip(r) {
				h.Set("Content-Encoding", "gzip")
				h.Set("ETag", f.etag)
			} else {
				zr, err := gzip.NewReader(bytes.NewReader(f.body))
				if err == nil {
					body, err = io.ReadAll(zr)
				}
				if err != nil {
					http.Error(w, "cannot decompress "+r.URL.Path, http.StatusInternalServerError)
					return
				}
				h.Set("ETag", strings.TrimSuffix(f.etag, `"`)+`-identity"`)
			}
		} else {
			h.Set("ETag", f.etag)
		}
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(body))
	})
}

func contentType(name string) string {
	switch path.Ext(name) { // not left to the machine's mime.types
	case ".js":
		return "text/javascript; charset=utf-8"
	case ".css":
		return "text/css; charset=utf-8"
	case ".html":
		return "text/html; charset=utf-8"
	case ".svg":
		return "image/svg+xml"
	case ".md", ".txt", "":
		return "text/plain; charset=utf-8"
	}
	if t := mime.TypeByExtension(path.Ext(name)); t != "" {
		return t
	}
	return "application/octet-stream"
}

func acceptsGzip(r *http.Request) bool {
	for _, part := range strings.Split(r.Header.Get("Accept-Encoding"), ",") {
		coding, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		if strings.EqualFold(strings.TrimSpace(coding), "gzip") || strings.TrimSpace(coding) == "*" {
			q := strings.ReplaceAll(strings.TrimSpace(params), " ", "")
			return q != "q=0" && q != "q=0.0" && q != "q=0.00" && q != "q=0.000"
		}
	}
	return false
}
