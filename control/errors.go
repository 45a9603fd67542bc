package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/cxco/gateway/store"
)

// Error types of the {detail, error_type} body.
const (
	typeValidation  = "validation_error"
	typeAuth        = "authentication_error"
	typePermission  = "permission_denied"
	typeNotFound    = "not_found"
	typeMethod      = "method_not_allowed"
	typeConflict    = "conflict"
	typeRateLimited = "rate_limited"
	typeUnavailable = "unavailable"
	typeInternal    = "internal_error"
	typeTooLarge    = "validation_error"
	typeTimeout     = "request_timeout" // 408: the body did not arrive in time
	// typeClientClosed is recorded (metrics, logs) for a request whose client went
	// away before the answer: status 499, as nginx names it; nothing is sent.
	typeClientClosed   = "client_closed"
	statusClientClosed = 499
	maxBodyBytes       = 1 << 20
	defaultPageLimit   = 30
	maxPageLimit       = 100
)

// apiError is an error with its HTTP status and body.
type apiError struct {
	Status int
	Type   string
	Detail string
}

func (e *apiError) Error() string { return e.Detail }

func errf(status int, typ, format string, args ...any) *apiError {
	return &apiError{Status: status, Type: typ, Detail: fmt.Sprintf(format, args...)}
}

func invalid(format string, args ...any) *apiError {
	return errf(http.StatusUnprocessableEntity, typeValidation, format, args...)
}

func notFound(what string) *apiError {
	return errf(http.StatusNotFound, typeNotFound, "%s not found", what)
}

// toAPIError is the one place domain errors become HTTP errors.
func toAPIError(err error, what string) *apiError {
	var ae *apiError
	var ce *store.ConflictError
	switch {
	case errors.As(err, &ae):
		return ae
	case errors.Is(err, store.ErrNotFound):
		return notFound(what)
	case errors.As(err, &ce):
		return errf(http.StatusConflict, typeConflict, "%s", ce.Detail)
	case errors.Is(err, store.ErrConflict):
		return errf(http.StatusConflict, typeConflict, "%s", err.Error())
	case errors.Is(err, store.ErrUnavailable):
		return errf(http.StatusServiceUnavailable, typeUnavailable, "the data store is unavailable; try again shortly")
	case refused(err) != "": // the voice-AI provider refused what we sent (a 4xx): the customer can fix it
		return errf(http.StatusUnprocessableEntity, typeValidation, "the voice-AI provider refused the agent: %s", refused(err))
	case isUnavailable(err): // the voice-AI provider (bridge.ErrProvider says so)
		return errf(http.StatusServiceUnavailable, typeUnavailable, "the voice-AI provider failed: %s", err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		return errf(http.StatusServiceUnavailable, typeUnavailable, "the request timed out; try again shortly")
	}
	return errf(http.StatusInternalServerError, typeInternal, "internal error")
}

// refused is the message of a dependency that refused a request (it says so with
// a Refused method, as bridge.StatusError does for a provider 4xx); "" if none did.
func refused(err error) string {
	var r interface{ Refused() string }
	if errors.As(err, &r) {
		return r.Refused()
	}
	return ""
}

// isUnavailable: a dependency outside the store is down; such errors say so with
// an Unavailable method.
func isUnavailable(err error) bool {
	var u interface{ Unavailable() bool }
	return errors.As(err, &u) && u.Unavailable()
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	if v == nil {
		return
	}
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, e *apiError) {
	writeJSON(w, e.Status, map[string]string{"detail": e.Detail, "error_type": e.Type})
}
