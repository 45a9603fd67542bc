package bridge_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/cxco/gateway/callpath"
	"github.com/cxco/gateway/media"
	"github.com/cxco/gateway/store"
)

// TestUnstartedSessionRecordsNoTranscript: a session opened while the phone
// rings hears the provider say its opening line (ElevenLabs sends it at once);
// a call never answered — or hung up on a machine — closes the session
// unstarted, and since nothing of that line was played it is not the call's
// transcript. A started session writes what was said before the answer.
func TestUnstartedSessionRecordsNoTranscript(t *testing.T) {
	r := newRig(t, rigOpts{opening: "Hello, this is the opening line."})
	peer, err := r.conn.Connect(context.Background(), r.info())
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the provider's opening line", 5*time.Second, func() bool {
		c := r.sim.Conversations()
		return len(c) == 1 && len(c[0].Transcript) == 1
	})
	peer.Close(callpath.NoAnswer)
	r.rec.Ended(callpath.End{Reason: callpath.NoAnswer, Outcome: callpath.OutcomeNoAnswer, EndedAt: time.Now()}, media.Stats{})
	if tr := r.transcript(); len(tr) != 0 {
		t.Fatalf("transcript of a session never started: %+v", tr)
	}

	// Started: the line said while the phone rang is written at the answer.
	r2 := newRig(t, rigOpts{opening: "Hello, this is the opening line."})
	r2.connect("PCMU")
	waitFor(t, "the opening line in the transcript", 5*time.Second, func() bool {
		tr := r2.transcript()
		return len(tr) == 1 && tr[0].Message == "Hello, this is the opening line."
	})
}

// TestVoicemailMessageSession: a leave_message session says the message, its
// {{variables}} filled, instead of the opening line: ElevenLabs through the
// first_message override of conversation_initiation_client_data (allowed by
// the agent's platform_settings.overrides, as we provision it), OpenAI through
// a response.create whose instructions quote the text; a Media Streams bot
// cannot be told what to say and is refused.
func TestVoicemailMessageSession(t *testing.T) {
	const msg = "Hi {{customer_name}}, please call {{caller_number}} back."
	const said = "Hi Ann, please call +27820000002 back."
	for _, provider := range []string{store.ProviderElevenLabs, store.ProviderOpenAI} {
		t.Run(provider, func(t *testing.T) {
			r := newRig(t, rigOpts{provider: provider, opening: "Hello, this is the opening line."})
			r.message, r.vars = msg, map[string]any{"customer_name": "Ann"}
			r.connect("PCMU")
			waitFor(t, "the message in the transcript", 10*time.Second, func() bool {
				tr := r.transcript()
				return len(tr) == 1 && tr[0].Role == "agent" && tr[0].Message == said
			})
			switch provider {
			case store.ProviderElevenLabs:
				c := r.sim.Conversations()[0]
				if ini := c.Initiation; ini == nil || ini.FirstMessage == nil || *ini.FirstMessage != said || c.Transcript[0].Message != said {
					t.Fatalf("initiation %+v, provider transcript %+v", ini, c.Transcript)
				}
			case store.ProviderOpenAI:
				s := r.oai.Sessions()[0]
				if s.Responses != 1 || len(s.Errors) != 0 || len(s.Transcript) != 1 || !strings.Contains(s.Transcript[0].Text, said) {
					t.Fatalf("session %+v", s)
				}
			}
			// The message was played: 60 ms a character, at least 2 s of the
			// simulator's voice reach the phone.
			start := time.Now().Add(-10 * time.Second)
			waitFor(t, "the message on the RTP", 10*time.Second, func() bool { return len(loud(r.phone.audioSince(start))) >= 16000 })
		})
	}
	t.Run(store.ProviderMediaStream, func(t *testing.T) {
		r := newRig(t, rigOpts{provider: store.ProviderMediaStream})
		r.message = msg
		_, err := r.conn.Connect(context.Background(), r.info())
		var ref *callpath.Refusal
		if err == nil || !errors.As(err, &ref) || ref.Reason != callpath.VoicemailFailed {
			t.Fatalf("a bot session with a message: %v", err)
		}
	})
}
