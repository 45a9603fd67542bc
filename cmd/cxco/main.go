// Command cxco is the CXCo gateway: `cxco serve` runs it, `cxco providersim` runs the
// local voice-AI provider simulator, `cxco version` says what it is.
package main

import (
	"context"
	"encoding"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

const usage = `cxco — the CXCo gateway: AI voice agents on real phone numbers.

Usage:
  cxco serve [flags]         run the gateway (control plane, SIP, media, bridge)
  cxco providersim [flags]   run the local voice-AI provider simulator
  cxco version               print the version
  cxco <command> --help      the flags of a command and their environment variables
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr, nil))
}

func run(args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	var err error
	switch args[0] {
	case "serve":
		err = serveCmd(ctx, args[1:], stdout, stderr, getenv)
	case "providersim":
		err = providersimCmd(ctx, args[1:], stdout, stderr, getenv)
	case "version", "--version", "-v":
		err = versionCmd(args[1:], stdout, stderr)
	case "help", "--help", "-h":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "cxco: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "cxco %s: %v\n", args[0], err)
		return 1
	}
	return 0
}

func versionCmd(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("version", "Usage: cxco version\n\nPrints the version, the Go version and the commit it was built from.")
	fs.SetOutput(stderr)
	if err := fs.parse(args, func(string) string { return "" }); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "cxco %s\n", versionString())
	return nil
}

func versionString() string {
	v := version
	if bi, ok := debug.ReadBuildInfo(); ok {
		v += " " + bi.GoVersion
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				v += " " + s.Value[:12]
			}
		}
	}
	return v
}

func newLogger(w io.Writer, format, level string) *slog.Logger {
	var lv slog.Level
	_ = lv.UnmarshalText([]byte(level))
	opts := &slog.HandlerOptions{Level: lv}
	if format == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	opts.ReplaceAttr = readableJSON
	return slog.New(slog.NewJSONHandler(w, opts))
}

// readableJSON writes values in JSON logs as the text format does: a duration as
// "10m0s" rather than a count of nanoseconds, and a value with a String method (a
// media format, an SDP direction) by its name rather than its number. Values that
// marshal themselves keep their own form.
func readableJSON(_ []string, a slog.Attr) slog.Attr {
	switch a.Value.Kind() {
	case slog.KindDuration:
		a.Value = slog.StringValue(a.Value.Duration().String())
	case slog.KindAny:
		switch v := a.Value.Any().(type) {
		case error, json.Marshaler, encoding.TextMarshaler:
		case fmt.Stringer:
			a.Value = slog.StringValue(v.String())
		}
	}
	return a
}
