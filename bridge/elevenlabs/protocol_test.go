package elevenlabs

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"testing"
)

// TestAudioMessages: user_audio_chunk is built without allocating once its
// buffer has grown, and an audio event's payload and event_id are read without
// decoding the whole event.
func TestAudioMessages(t *testing.T) {
	audio := bytes.Repeat([]byte{0x7f, 0x80}, 80)
	var msg []byte
	if n := testing.AllocsPerRun(100, func() { msg = appendAudioChunk(msg[:0], audio) }); n != 0 {
		t.Errorf("%.1f allocations per chunk, want 0", n)
	}
	var chunk struct {
		UserAudioChunk string `json:"user_audio_chunk"`
	}
	if err := json.Unmarshal(msg, &chunk); err != nil || chunk.UserAudioChunk != base64.StdEncoding.EncodeToString(audio) {
		t.Fatalf("user_audio_chunk: %s (%v)", msg, err)
	}
	ev := []byte(`{"type":"audio","audio_event":{"audio_base_64":"` + base64.StdEncoding.EncodeToString(audio) + `","event_id":42}}`)
	got, id, ok := parseAudio(ev, nil)
	if !ok || id != 42 || !bytes.Equal(got, audio) {
		t.Fatalf("parseAudio: ok %v id %d, %d bytes", ok, id, len(got))
	}
	if _, _, ok := parseAudio([]byte(`{"type":"ping","ping_event":{"event_id":1}}`), nil); ok {
		t.Fatal("a ping read as audio")
	}
}
