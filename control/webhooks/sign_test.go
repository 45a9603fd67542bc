package webhooks_test

import (
	"errors"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cxco/gateway/control/webhooks"
)

func TestVerifySignature(t *testing.T) {
	body := []byte(`{"id":"evt_1","type":"agent.status_changed"}`)
	now := time.Unix(1_800_000_000, 0)
	good := webhooks.Sign("whsec_one", now, body)
	for _, tc := range []struct {
		name   string
		secret string
		header string
		body   []byte
		at     time.Time
		want   error
	}{
		{"valid", "whsec_one", good, body, now, nil},
		{"valid 4 min later", "whsec_one", good, body, now.Add(4 * time.Minute), nil},
		{"older than 5 min", "whsec_one", good, body, now.Add(5*time.Minute + time.Second), webhooks.ErrSignatureExpired},
		{"from the future", "whsec_one", good, body, now.Add(-6 * time.Minute), webhooks.ErrSignatureExpired},
		{"wrong secret", "whsec_two", good, body, now, webhooks.ErrSignatureMismatch},
		{"body changed", "whsec_one", good, append([]byte(" "), body...), now, webhooks.ErrSignatureMismatch},
		{"timestamp changed", "whsec_one", strings.Replace(good, "t=1800000000", "t=1800000001", 1), body, now, webhooks.ErrSignatureMismatch},
		{"one of several v1", "whsec_one", good + ",v1=" + strings.Repeat("ab", 32), body, now, nil},
		{"spaces", "whsec_one", strings.ReplaceAll(good, ",", ", "), body, now, nil},
		{"no v1", "whsec_one", "t=1800000000", body, now, webhooks.ErrSignatureMalformed},
		{"no t", "whsec_one", good[strings.Index(good, "v1="):], body, now, webhooks.ErrSignatureMalformed},
		{"empty", "whsec_one", "", body, now, webhooks.ErrSignatureMalformed},
		{"v1 not hex", "whsec_one", "t=1800000000,v1=zz", body, now, webhooks.ErrSignatureMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := webhooks.VerifySignature(tc.secret, tc.header, tc.body, tc.at, 5*time.Minute)
			if !errors.Is(err, tc.want) || (tc.want == nil && err != nil) {
				t.Fatalf("VerifySignature = %v, want %v", err, tc.want)
			}
		})
	}
	if !strings.HasPrefix(good, "t=1800000000,v1=") || len(good) != len("t=1800000000,v1=")+64 {
		t.Fatalf("header %q", good)
	}
}

// TestDocsShowVerifySignature keeps README.md honest: the receiver example
// there contains VerifySignature and its errors exactly as this package (and every
// delivery test) uses them.
func TestDocsShowVerifySignature(t *testing.T) {
	docs, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	for _, want := range []struct{ file, decl string }{{"sign.go", "VerifySignature"}, {"errors.go", "ErrSignatureMalformed"}} {
		src, err := os.ReadFile(want.file)
		if err != nil {
			t.Fatal(err)
		}
		f, err := parser.ParseFile(fset, want.file, src, parser.ParseComments)
		if err != nil {
			t.Fatal(err)
		}
		var text string
		for _, d := range f.Decls {
			switch d := d.(type) {
			case *ast.FuncDecl:
				if d.Name.Name == want.decl {
					text = string(src[fset.Position(d.Pos()).Offset:fset.Position(d.End()).Offset])
				}
			case *ast.GenDecl:
				for _, sp := range d.Specs {
					if vs, ok := sp.(*ast.ValueSpec); ok && vs.Names[0].Name == want.decl {
						text = string(src[fset.Position(d.Pos()).Offset:fset.Position(d.End()).Offset])
					}
				}
			}
		}
		if text == "" {
			t.Fatalf("%s not found in %s", want.decl, want.file)
		}
		if !strings.Contains(string(docs), text) {
			t.Errorf("README.md does not show %s of %s verbatim:\n%s", want.decl, want.file, text)
		}
	}
}

// TestDocsReceiverBuilds type-checks the receiver program of README.md.
func TestDocsReceiverBuilds(t *testing.T) {
	docs, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	const open = "```go\npackage main\n"
	i := strings.Index(string(docs), open)
	if i < 0 {
		t.Fatal("README.md has no Go receiver program")
	}
	src := string(docs[i+len("```go\n"):])
	src = src[:strings.Index(src, "\n```")+1]
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module receiver\n\ngo 1.26\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("go", "vet", ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("the receiver in README.md does not build: %v\n%s", err, out)
	}
}
