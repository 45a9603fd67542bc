package contract

import "testing"

// TestContract: the reference's examples pass; an invented field, a missing
// one or an unknown event fail.
func TestContract(t *testing.T) {
	c, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, msg string
		gateway   bool
		ok        bool
	}{
		{"connected", `{"event":"connected","protocol":"Call","version":"1.0.0"}`, true, true},
		{"start", `{"event":"start","sequenceNumber":"1","streamSid":"MZ1","start":{"streamSid":"MZ1","accountSid":"AC1","callSid":"CA1","tracks":["inbound"],"customParameters":{"a":"b"},"mediaFormat":{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1}}}`, true, true},
		{"media with a number timestamp", `{"event":"media","sequenceNumber":"2","streamSid":"MZ1","media":{"track":"inbound","chunk":"1","timestamp":5,"payload":"AA=="}}`, true, false},
		{"dtmf", `{"event":"dtmf","sequenceNumber":"3","streamSid":"MZ1","dtmf":{"track":"inbound_track","digit":"#"}}`, true, true},
		{"stop", `{"event":"stop","sequenceNumber":"4","streamSid":"MZ1","stop":{"accountSid":"AC1","callSid":"CA1"}}`, true, true},
		{"invented field", `{"event":"stop","sequenceNumber":"4","streamSid":"MZ1","stop":{"accountSid":"AC1","callSid":"CA1"},"reason":"x"}`, true, false},
		{"bot media", `{"event":"media","streamSid":"MZ1","media":{"payload":"AA=="}}`, false, true},
		{"bot clear", `{"event":"clear","streamSid":"MZ1"}`, false, true},
		{"bot mark without name", `{"event":"mark","streamSid":"MZ1","mark":{}}`, false, false},
		{"unknown bot event", `{"event":"hangup","streamSid":"MZ1"}`, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			check := c.Bot
			if tc.gateway {
				check = c.Gateway
			}
			if err := check([]byte(tc.msg)); (err == nil) != tc.ok {
				t.Fatalf("err %v, want ok=%v", err, tc.ok)
			}
		})
	}
}
