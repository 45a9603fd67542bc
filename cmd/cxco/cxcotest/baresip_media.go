package cxcotest

import (
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cxco/gateway/media/audiotest"
)

// BaresipCallOptions describe one call placed by baresip (Debian's baresip-core,
// 1.0): a real SIP user agent nobody here wrote, with its own SRTP (SDES), G.722
// (spandsp) and Opus (libopus). Unlike StartBaresip (8 kHz, TLS), it sends
// wideband audio (a 48 kHz source) and records what it decodes at the codec's
// own rate, with no sound device at all.
type BaresipCallOptions struct {
	// Target is the Request-URI, e.g. sip:+15550001@127.0.0.1:5060.
	Target string
	// Codec is the one codec baresip offers (audio_codecs): PCMU, G722, opus.
	Codec string
	// MediaEnc is baresip's media encryption: "" (none), "srtp" (best effort:
	// RTP/AVP with a=crypto) or "srtp-mand" (RTP/SAVP).
	MediaEnc string
	// ToneHz makes the audio source a continuous sine (the ausine module);
	// otherwise Source (48 kHz mono) is played once, then silence.
	ToneHz int
	Source []int16
	// Seconds the call lasts before baresip hangs up (and quits).
	Seconds int
}

// BaresipResult is what baresip did.
type BaresipResult struct {
	Output string // its console output, with the SIP trace (-s)
	// Heard is what baresip decoded from the gateway (its sndfile module's
	// recording, before any playback), at HeardRate; Sent what it encoded.
	Heard, Sent         []int16
	HeardRate, SentRate int
	// RTPPorts is the first and last port baresip's RTP may use (its
	// rtp_ports): a capture tells its call's packets from other tests' by them.
	RTPPorts [2]int
}

// BaresipCall places one call and returns when baresip has hung up and quit. Its
// config lives in a temp dir: SIP and RTP on 127.0.0.1 only, no sound card.
func BaresipCall(t testing.TB, o BaresipCallOptions) BaresipResult {
	t.Helper()
	bin, err := exec.LookPath("baresip")
	if err != nil {
		t.Fatalf("baresip is not installed (apt-get install baresip-core): %v", err)
	}
	dir := t.TempDir()
	snd := filepath.Join(dir, "snd")
	if err := os.Mkdir(snd, 0o755); err != nil {
		t.Fatal(err)
	}
	source := fmt.Sprintf("ausine,%d", o.ToneHz)
	if o.ToneHz == 0 {
		wav := filepath.Join(dir, "source.wav")
		if err := audiotest.WriteWAV(wav, 48000, o.Source); err != nil {
			t.Fatal(err)
		}
		source = "aufile," + wav
	}
	channels := 1
	if o.ToneHz != 0 {
		channels = 2 // ausine makes 48 kHz stereo only
	}
	// baresip filters codecs by name/rate/channels only: "opus" alone would
	// leave every codec in the offer.
	spec := map[string]string{"PCMU": "PCMU/8000/1", "PCMA": "PCMA/8000/1", "G722": "G722/16000/1", "opus": "opus/48000/2"}[o.Codec]
	if spec == "" {
		t.Fatalf("baresip: codec %q", o.Codec)
	}
	account := "<sip:tester@127.0.0.1>;regint=0;audio_codecs=" + spec
	if o.MediaEnc != "" {
		account += ";mediaenc=" + o.MediaEnc
	}
	var (
		out string
		rtp [2]int
	)
	for attempt := 0; ; attempt++ {
		// Free ports are free only until another test takes them: when
		// baresip could not start (no SIP sent at all), again with new ones.
		out, rtp = runBaresip(t, bin, dir, snd, source, channels, account, o)
		if strings.Contains(out, "SIP/2.0") || attempt == 2 {
			break
		}
		t.Logf("baresip did not get going, again: %s", tail(out, 10))
	}
	call := BaresipResult{Output: out, RTPPorts: rtp}
	for _, f := range []struct {
		suffix string
		pcm    *[]int16
		rate   *int
	}{{"-dec.wav", &call.Heard, &call.HeardRate}, {"-enc.wav", &call.Sent, &call.SentRate}} {
		m, _ := filepath.Glob(filepath.Join(snd, "*"+f.suffix))
		if len(m) != 1 {
			continue // no media (a refused call)
		}
		rate, x, err := readWAVChannel0(m[0])
		if err != nil {
			t.Fatalf("baresip's recording %s: %v", m[0], err)
		}
		*f.pcm, *f.rate = x, rate
	}
	return call
}

// readWAVChannel0 reads a 16-bit PCM WAV of one or two channels (baresip records
// Opus at 48 kHz stereo) and returns its first channel.
func readWAVChannel0(path string) (int, []int16, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, nil, err
	}
	if len(b) < 12 || string(b[:4]) != "RIFF" || string(b[8:12]) != "WAVE" {
		return 0, nil, fmt.Errorf("%s: not a WAV file", path)
	}
	var rate, channels, bits int
	for off := 12; off+8 <= len(b); {
		id, n := string(b[off:off+4]), int(binary.LittleEndian.Uint32(b[off+4:]))
		body := b[off+8 : min(off+8+n, len(b))]
		switch id {
		case "fmt ":
			if len(body) < 16 || binary.LittleEndian.Uint16(body) != 1 {
				return 0, nil, fmt.Errorf("%s: not PCM", path)
			}
			channels = int(binary.LittleEndian.Uint16(body[2:]))
			rate = int(binary.LittleEndian.Uint32(body[4:]))
			bits = int(binary.LittleEndian.Uint16(body[14:]))
		case "data":
			if bits != 16 || channels < 1 || channels > 2 {
				return 0, nil, fmt.Errorf("%s: %d bits, %d channels", path, bits, channels)
			}
			x := make([]int16, len(body)/2/channels)
			for i := range x {
				x[i] = int16(binary.LittleEndian.Uint16(body[2*channels*i:]))
			}
			return rate, x, nil
		}
		off += 8 + n + n&1
	}
	return 0, nil, fmt.Errorf("%s: no data chunk", path)
}

// runBaresip writes the config (new ports each time) and runs one call.
func runBaresip(t testing.TB, bin, dir, snd, source string, channels int, account string, o BaresipCallOptions) (string, [2]int) {
	rtp := FreeMediaPort(t, "127.0.0.1") // outside the test gateways' RTP blocks and the ephemeral range
	config := strings.Join([]string{
		"poll_method epoll",
		fmt.Sprintf("sip_listen 127.0.0.1:%d", FreeUDPPort(t)),
		"net_interface 127.0.0.1",
		"sip_trans_def udp",
		fmt.Sprintf("rtp_ports %d-%d", rtp, rtp+20),
		"audio_player sndfile,none", // no sound card: the decoded audio goes to sndfile only
		"audio_source " + source,
		"ausrc_srate 48000",
		fmt.Sprintf("ausrc_channels %d", channels),
		"module_path /usr/lib/baresip/modules",
		"module stdio.so", "module g711.so", "module g722.so", "module opus.so",
		"module ausine.so", "module aufile.so", "module sndfile.so", "module srtp.so",
		"module_app account.so", "module_app menu.so",
		"snd_path " + snd,
		"opus_bitrate 32000",
	}, "\n") + "\n"
	for name, body := range map[string]string{"config": config, "accounts": account + "\n"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	p := Start(t, bin, nil, "-f", dir, "-s", "-e", "/dial "+o.Target, "-t", fmt.Sprint(o.Seconds))
	select { // -t ends it with a signal to itself, so the exit code says nothing
	case <-p.Done():
	case <-time.After(time.Duration(o.Seconds+20) * time.Second):
		p.Kill()
		t.Fatalf("baresip did not quit: %s", tail(p.Stdout(), 20))
	}
	return p.Stdout() + p.Stderr(), [2]int{rtp, rtp + 20}
}
