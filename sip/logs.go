package sip

import (
	"context"
	"log/slog"

	gsip "github.com/emiago/sipgo/sip"
)

// quietLogger is the logger sipgo gets: only its errors, tagged, so a flood of bad
// packets or harmless shutdown warnings does not drown the call logs.
func quietLogger(base *slog.Logger) *slog.Logger {
	return slog.New(minLevel{h: base.Handler(), min: slog.LevelError}).With("component", "sipgo")
}

func transportLogger(base *slog.Logger) gsip.TransportLayerOption {
	return gsip.WithTransportLayerLogger(quietLogger(base))
}

type minLevel struct {
	h   slog.Handler
	min slog.Level
}

func (m minLevel) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= m.min && m.h.Enabled(ctx, l)
}
func (m minLevel) Handle(ctx context.Context, r slog.Record) error { return m.h.Handle(ctx, r) }
func (m minLevel) WithAttrs(a []slog.Attr) slog.Handler            { return minLevel{m.h.WithAttrs(a), m.min} }
func (m minLevel) WithGroup(n string) slog.Handler                 { return minLevel{m.h.WithGroup(n), m.min} }
