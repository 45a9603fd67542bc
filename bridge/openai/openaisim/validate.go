package openaisim

import (
	"encoding/json"
	"strings"

	"github.com/cxco/gateway/bridge/openai/contract"
	"github.com/cxco/gateway/media/g711"
)

type problem struct{ code, msg string }

// checkClientEvent holds a client event to the published schemas: an unknown
// event type is invalid_value, a field the event does not have is
// unknown_parameter, anything else wrong invalid_value (the codes the
// reference's error event shows).
func checkClientEvent(ev map[string]any) *problem {
	typ, _ := ev["type"].(string)
	switch typ {
	case "\x00bad_json":
		return &problem{"invalid_json", "We could not parse the JSON body of your request."}
	case "\x00bad_audio":
		return &problem{"invalid_value", "Invalid 'audio'. Expected base64-encoded audio bytes."}
	}
	c, err := contract.Load()
	if err != nil {
		return &problem{"server_error", err.Error()}
	}
	if !c.Known(typ) {
		return &problem{"invalid_value", "Invalid value: '" + typ + "'. Supported values are the client event types."}
	}
	raw, _ := json.Marshal(ev)
	if err := c.Client(raw); err != nil {
		code := "invalid_value"
		if strings.Contains(err.Error(), "additional propert") {
			code = "unknown_parameter"
		}
		return &problem{code, err.Error()}
	}
	return nil
}

// decodeALaw reads G.711 A-law.
func decodeALaw(dst []int16, src []byte) []int16 {
	if cap(dst) < len(src) {
		dst = make([]int16, len(src))
	}
	dst = dst[:len(src)]
	g711.ALawToPCM(dst, src)
	return dst
}
