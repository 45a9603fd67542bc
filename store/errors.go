package store

import "errors"

// Sentinel errors. Callers test them with errors.Is; control maps them to HTTP.
var (
	// ErrNotFound: no such record (or it belongs to another company).
	ErrNotFound = errors.New("not found")
	// ErrConflict: the change does not fit the record's state or would duplicate one.
	ErrConflict = errors.New("conflict")
	// ErrUnavailable: Redis cannot be reached.
	ErrUnavailable = errors.New("store unavailable")
	// ErrNoNumber: the pool has no available number for the country.
	ErrNoNumber = errors.New("no phone number available")
	// ErrNotJSON: a value cannot be stored as JSON (a NaN or infinite number);
	// nothing was written.
	ErrNotJSON = errors.New("store: value cannot be stored as JSON")
)

// ConflictError is an ErrConflict with a human-readable detail.
type ConflictError struct{ Detail string }

func (e *ConflictError) Error() string { return e.Detail }

// Unwrap makes errors.Is(err, ErrConflict) true.
func (e *ConflictError) Unwrap() error { return ErrConflict }

func conflict(detail string) error { return &ConflictError{Detail: detail} }
