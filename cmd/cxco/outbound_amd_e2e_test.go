package main

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cxco/gateway/cmd/cxco/cxcotest"
	"github.com/cxco/gateway/media/audiotest"
	"github.com/cxco/gateway/media/g711"
	"github.com/cxco/gateway/store/redistest"
)

// TestOutboundMachineDetection: machine_detection on outbound calls, against a
// SIPp callee playing what a test made with espeak-ng and sox. A voicemail
// greeting with its beep is found to be a machine and, with hangup, the call
// ends machine_detected before the agent says a word; a person's "Hello?" is
// found to be human and, with detect, the agent's opening line follows the
// verdict. The verdict is in metadata_.machine_detection.
func TestOutboundMachineDetection(t *testing.T) {
	r := redistest.StartRedis(t)
	g := cxcotest.StartGateway(t, cxcotest.GatewayOptions{RedisURL: r.URL, Args: []string{
		"--webhook-allow-insecure", "--webhook-retry", "200ms,400ms"}})
	tn := g.NewTenant("AMD")
	hooks := cxcotest.NewHooks(t)
	g.Subscribe(tn, hooks)
	g.AddNumber("+27215550300", "ZA", false)
	agentID, _ := g.PublishAgent(tn, "Dialler", "ZA", nil)
	calls := fmt.Sprintf("/api/agents/%d/calls", agentID)
	tr := g.Must(201, "POST", "/api/agency/trunks", g.AgencyKey, map[string]any{"name": "carrier", "allow": []string{"127.0.0.1/32"},
		"uri": "sip:127.0.0.1:9"})
	trunk := fmt.Sprintf("/api/agency/trunks/%d", int64(tr["id"].(float64)))
	dir := t.TempDir()
	call := func(t *testing.T, audio []byte, body map[string]any) (map[string]any, func() (int, string)) {
		port, done := cxcotest.ServeSIPpFiles(t, "uas_play.xml", map[string][]byte{"callee.pcap": rtpPcap(audio)})
		g.Must(200, "PUT", trunk, g.AgencyKey, map[string]any{"uri": fmt.Sprintf("sip:127.0.0.1:%d", port)})
		c := g.Must(201, "POST", calls, tn.UserKey, body)
		return c, done
	}
	get := func(id float64) map[string]any {
		return g.Must(200, "GET", fmt.Sprintf("/api/conversations/%d", int64(id)), tn.UserKey, nil)
	}
	verdict := func(c map[string]any) map[string]any {
		md, _ := c["metadata_"].(map[string]any)
		v, _ := md["machine_detection"].(map[string]any)
		return v
	}

	greeting := speakALaw(t, dir, "vm", "Hi, you have reached the voicemail of Sam Jones. I cannot take your call right now. Please leave a message after the tone.")
	voicemail := append(append(append(greeting, alawSilence(300)...), alawTone(t, dir, 1000, 500)...), alawSilence(8000)...)
	t.Run("voicemail with a beep, hangup: machine, the agent never plays", func(t *testing.T) {
		c, done := call(t, voicemail, map[string]any{"to": "+27215550301", "machine_detection": "hangup"})
		var conv map[string]any
		cxcotest.Eventually(t, 30*time.Second, "the call ended", func() bool {
			conv = get(c["id"].(float64))
			return conv["status"] == "completed"
		})
		if code, out := done(); code != 0 {
			t.Fatalf("callee's SIPp: %d\n%s", code, out)
		}
		// Nothing of the agent reached the line (the provider wrote its opening
		// line when the session opened, while the phone rang; none of it played).
		v := verdict(conv)
		rtp, _ := conv["metadata_"].(map[string]any)["rtp"].(map[string]any)
		if conv["end_reason"] != "machine_detected" || v["result"] != "machine" || v["mode"] != "hangup" || rtp["played_frames"] != 0.0 {
			t.Fatalf("conversation: %v", conv)
		}
		// ... and so its opening line is not in the transcript: the provider
		// said it while the phone rang, into a session never started.
		if tr, _ := conv["transcript"].([]any); len(tr) != 0 {
			t.Fatalf("transcript of a call the agent never spoke on: %v", tr)
		}
		t.Logf("verdict: %v", v)
	})

	t.Run("voicemail with a beep, leave_message: the message after the beep, then hang up", func(t *testing.T) {
		greeting := speakALaw(t, dir, "vm2", "Hello, you have reached Thandi. I am not available right now. Please leave your name and number after the tone.")
		pre := append(greeting, alawSilence(300)...)
		tone := alawTone(t, dir, 1000, 500)
		audio := append(append(append([]byte(nil), pre...), tone...), alawSilence(12000)...)
		// The beep's last packet, by its RTP sequence number in the pcap.
		beepLast := uint16((len(pre)+len(tone))/160 - 1)
		mp := cxcotest.FreeMediaPort(t, "127.0.0.1")
		port, done := cxcotest.ServeSIPpFiles(t, "uas_play.xml", map[string][]byte{"callee.pcap": rtpPcap(audio)}, "-mp", fmt.Sprint(mp))
		g.Must(200, "PUT", trunk, g.AgencyKey, map[string]any{"uri": fmt.Sprintf("sip:127.0.0.1:%d", port)})
		capture := cxcotest.StartCapture(t, fmt.Sprintf("udp port %d", mp)) // both ways: SIPp's pcap and the gateway's RTP
		usage := func() map[string]any {
			return g.Must(200, "GET", "/api/usage/summary", tn.UserKey, nil)["voice"].(map[string]any)
		}
		before := usage()
		const message = "Hi {{customer_name}}, this is Dialler from CXCo about your delivery. Please call us back on {{caller_number}}."
		c := g.Must(201, "POST", calls, tn.UserKey, map[string]any{"to": "+27215550303", "machine_detection": "leave_message",
			"voicemail_message": message, "dynamic_variables": map[string]any{"customer_name": "Thandi"}})
		id := c["id"].(float64)
		if !hooks.Wait(60*time.Second, func(evs []map[string]any) bool {
			for _, ev := range evs {
				if d, _ := ev["data"].(map[string]any); ev["type"] == "conversation.completed" && d["id"] == id {
					return d["end_reason"] == "voicemail_left"
				}
			}
			return false
		}) {
			t.Fatalf("no conversation.completed with voicemail_left: %v", get(id))
		}
		pkts := capture.Stop()
		if code, out := done(); code != 0 { // SIPp's scenario ends with our BYE
			t.Fatalf("callee's SIPp: %d\n%s", code, out)
		}
		conv := get(id)
		v := verdict(conv)
		vm, _ := v["voicemail"].(map[string]any)
		if conv["status"] != "completed" || conv["end_reason"] != "voicemail_left" || conv["answered_at"] == nil ||
			v["result"] != "machine" || v["mode"] != "leave_message" || vm["left"] != true || vm["cue"] != "beep" ||
			math.Abs(vm["beep_hz"].(float64)-1000) > 20 || vm["played_ms"].(float64) < 3000 {
			t.Fatalf("conversation: %v", conv)
		}
		// The transcript is the message, its variables filled, and not the
		// opening line the first session said while the phone rang.
		tr, _ := conv["transcript"].([]any)
		if len(tr) != 1 || !hasEntry(conv, "agent", "Hi Thandi, this is Dialler from CXCo about your delivery. Please call us back on +27215550300.") {
			t.Fatalf("transcript: %v", tr)
		}
		// Usage: one more answered outbound call, with its minutes.
		after := usage()
		if after["outbound_conversations"].(float64)-before["outbound_conversations"].(float64) != 1 ||
			after["outbound_minutes"].(float64) <= before["outbound_minutes"].(float64) {
			t.Fatalf("usage before %v, after %v", before, after)
		}
		// What the box recorded: the gateway's RTP to SIPp, decoded; the beep's
		// end is when its last packet went by on the wire.
		var beepEnd, firstLoud, lastLoud time.Time
		loud, early := 0, 0
		pcm := make([]int16, 160)
		for _, p := range pkts {
			if len(p.Payload) != 12+160 {
				continue
			}
			if binary.BigEndian.Uint32(p.Payload[8:]) == 0x5eed1234 { // the callee's (the pcap's SSRC)
				if binary.BigEndian.Uint16(p.Payload[2:]) == beepLast {
					beepEnd = p.At
				}
				continue
			}
			g711.ALawToPCM(pcm, p.Payload[12:])
			if audiotest.RMSDBFS(pcm) <= -40 {
				continue
			}
			if beepEnd.IsZero() {
				early++
				continue
			}
			if firstLoud.IsZero() {
				firstLoud = p.At
			}
			lastLoud = p.At
			loud++
		}
		if beepEnd.IsZero() || early != 0 || loud < 150 {
			t.Fatalf("beep's end seen: %v; loud frames before it %d, after it %d (%d packets captured)", !beepEnd.IsZero(), early, loud, len(pkts))
		}
		t.Logf("verdict %v; the message started %v after the beep's end on the wire and played %v (%d loud frames)",
			v, firstLoud.Sub(beepEnd).Round(time.Millisecond), lastLoud.Sub(firstLoud).Round(time.Millisecond), loud)
	})

	t.Run("a person says hello, detect: human, then the opening line", func(t *testing.T) {
		audio := append(speakALaw(t, dir, "hello", "Hello?"), alawSilence(8000)...)
		c, done := call(t, audio, map[string]any{"to": "+27215550302", "machine_detection": "detect"})
		var conv map[string]any
		cxcotest.Eventually(t, 30*time.Second, "the verdict and the opening line", func() bool {
			conv = get(c["id"].(float64))
			return verdict(conv) != nil && hasEntry(conv, "agent", "Hello, this is Dialler")
		})
		if v := verdict(conv); v["result"] != "human" || v["after_ms"].(float64) < 500 {
			t.Fatalf("verdict: %v", v)
		}
		g.Must(204, "DELETE", fmt.Sprintf("/api/conversations/%d", int64(c["id"].(float64))), tn.UserKey, nil)
		if code, out := done(); code != 0 {
			t.Fatalf("callee's SIPp: %d\n%s", code, out)
		}
		t.Logf("verdict: %v", verdict(conv))
	})

	// A batch's own machine_detection and ring_timeout_seconds reach its calls;
	// the verdict is the recipient's; the batch is listed.
	t.Run("a batch with hangup reaches a voicemail: answered, machine", func(t *testing.T) {
		port, done := cxcotest.ServeSIPpFiles(t, "uas_play.xml", map[string][]byte{"callee.pcap": rtpPcap(voicemail)})
		g.Must(200, "PUT", trunk, g.AgencyKey, map[string]any{"uri": fmt.Sprintf("sip:127.0.0.1:%d", port)})
		for body, want := range map[string]string{
			`{"name": "x", "ring_timeout_seconds": 3, "recipients": [{"phone_number": "+27215550303"}]}`:            "ring_timeout_seconds:",
			`{"name": "x", "machine_detection": "maybe", "recipients": [{"phone_number": "+27215550303"}]}`:         "machine_detection:",
			`{"name": "x", "machine_detection": "leave_message", "recipients": [{"phone_number": "+27215550303"}]}`: "machine_detection:",
		} {
			code, v := g.Do("POST", fmt.Sprintf("/api/agents/%d/batches", agentID), tn.UserKey, rawJSON(body))
			if m, _ := v.(map[string]any); code != 422 || !strings.Contains(fmt.Sprint(m["detail"]), want) {
				t.Errorf("%s: %d %v", body, code, v)
			}
		}
		b := g.Must(201, "POST", fmt.Sprintf("/api/agents/%d/batches", agentID), tn.UserKey, map[string]any{
			"name": "vm", "machine_detection": "hangup", "ring_timeout_seconds": 20, "retry": map[string]any{"max_attempts": 1},
			"recipients": []any{map[string]any{"phone_number": "+27215550303"}}})
		if b["machine_detection"] != "hangup" || b["ring_timeout_seconds"] != 20.0 {
			t.Fatalf("batch: %v", b)
		}
		path := fmt.Sprintf("/api/batches/%d", int64(b["id"].(float64)))
		cxcotest.Eventually(t, 30*time.Second, "the batch completed", func() bool {
			return g.Must(200, "GET", path, tn.UserKey, nil)["status"] == "completed"
		})
		if code, out := done(); code != 0 {
			t.Fatalf("callee's SIPp: %d\n%s", code, out)
		}
		r := g.Must(200, "GET", path+"/recipients", tn.UserKey, nil)["items"].([]any)[0].(map[string]any)
		last := r["last_attempt"].(map[string]any)
		if r["status"] != "answered" || last["machine_detection"] != "machine" {
			t.Fatalf("recipient: %v", r)
		}
		conv := get(last["conversation_id"].(float64))
		if conv["end_reason"] != "machine_detected" || verdict(conv)["mode"] != "hangup" {
			t.Fatalf("conversation: %v", conv)
		}
		// Listed: the agent's batches and the company's, by status.
		for _, list := range []string{fmt.Sprintf("/api/agents/%d/batches", agentID), "/api/batches/?status=completed&agent_id=" + fmt.Sprint(agentID)} {
			items := g.Must(200, "GET", list, tn.UserKey, nil)["items"].([]any)
			if len(items) != 1 || items[0].(map[string]any)["id"] != b["id"] {
				t.Errorf("%s: %v", list, items)
			}
		}
		if items := g.Must(200, "GET", "/api/batches/?status=running", tn.UserKey, nil)["items"].([]any); len(items) != 0 {
			t.Errorf("running batches: %v", items)
		}
		if code, _ := g.Do("GET", "/api/batches/?status=paused", tn.UserKey, nil); code != 422 {
			t.Errorf("status=paused: %d", code)
		}
	})
}

// speakALaw is text spoken by espeak-ng, as 8 kHz A-law.
func speakALaw(t *testing.T, dir, name, text string) []byte {
	t.Helper()
	wav := filepath.Join(dir, name+".wav")
	raw := filepath.Join(dir, name+".al")
	if out, err := exec.Command("espeak-ng", "-v", "en-us", "-w", wav, text).CombinedOutput(); err != nil {
		t.Fatalf("espeak-ng (apt-get install espeak-ng): %v %s", err, out)
	}
	if out, err := exec.Command("sox", wav, "-r", "8000", "-c", "1", "-e", "a-law", "-t", "raw", raw).CombinedOutput(); err != nil {
		t.Fatalf("sox: %v %s", err, out)
	}
	b, err := os.ReadFile(raw)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// alawTone is a sine at hz for ms milliseconds, −10 dBFS, as 8 kHz A-law (sox).
func alawTone(t *testing.T, dir string, hz, ms int) []byte {
	t.Helper()
	raw := filepath.Join(dir, fmt.Sprintf("tone%d.al", hz))
	if out, err := exec.Command("sox", "-n", "-r", "8000", "-c", "1", "-e", "a-law", "-t", "raw", raw,
		"synth", fmt.Sprintf("%.3f", float64(ms)/1000), "sine", fmt.Sprint(hz), "vol", "-10dB").CombinedOutput(); err != nil {
		t.Fatalf("sox: %v %s", err, out)
	}
	b, err := os.ReadFile(raw)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// alawSilence is ms milliseconds of A-law silence.
func alawSilence(ms int) []byte { return bytes.Repeat([]byte{0xd5}, 8*ms) }

// rtpPcap packs 8 kHz A-law audio into RTP packets of 20 ms (payload type 8)
// in a pcap file SIPp's play_pcap_audio plays at the pace of its timestamps
// (Ethernet, IPv4, UDP; SIPp sends the RTP to the negotiated address).
func rtpPcap(audio []byte) []byte {
	var b bytes.Buffer
	le := binary.LittleEndian
	hdr := make([]byte, 24)
	le.PutUint32(hdr[0:], 0xa1b2c3d4)
	le.PutUint16(hdr[4:], 2)
	le.PutUint16(hdr[6:], 4)
	le.PutUint32(hdr[16:], 65535)
	le.PutUint32(hdr[20:], 1) // Ethernet
	b.Write(hdr)
	for i, seq := 0, 0; i+160 <= len(audio); i, seq = i+160, seq+1 {
		rtp := make([]byte, 12+160)
		rtp[0], rtp[1] = 0x80, 8
		binary.BigEndian.PutUint16(rtp[2:], uint16(seq))
		binary.BigEndian.PutUint32(rtp[4:], uint32(seq*160))
		binary.BigEndian.PutUint32(rtp[8:], 0x5eed1234)
		copy(rtp[12:], audio[i:i+160])
		udp := make([]byte, 8, 8+len(rtp))
		binary.BigEndian.PutUint16(udp[0:], 40000)
		binary.BigEndian.PutUint16(udp[2:], 40002)
		binary.BigEndian.PutUint16(udp[4:], uint16(8+len(rtp)))
		udp = append(udp, rtp...)
		ip := make([]byte, 20, 20+len(udp))
		ip[0], ip[8], ip[9] = 0x45, 64, 17
		binary.BigEndian.PutUint16(ip[2:], uint16(20+len(udp)))
		copy(ip[12:], []byte{127, 0, 0, 1})
		copy(ip[16:], []byte{127, 0, 0, 1})
		var sum uint32
		for j := 0; j < 20; j += 2 {
			sum += uint32(binary.BigEndian.Uint16(ip[j:]))
		}
		for sum > 0xffff {
			sum = sum&0xffff + sum>>16
		}
		binary.BigEndian.PutUint16(ip[10:], ^uint16(sum))
		ip = append(ip, udp...)
		frame := append(make([]byte, 12), 0x08, 0x00) // MACs zero, IPv4
		frame = append(frame, ip...)
		rec := make([]byte, 16)
		us := seq * 20000
		le.PutUint32(rec[0:], uint32(us/1e6))
		le.PutUint32(rec[4:], uint32(us%1e6))
		le.PutUint32(rec[8:], uint32(len(frame)))
		le.PutUint32(rec[12:], uint32(len(frame)))
		b.Write(rec)
		b.Write(frame)
	}
	return b.Bytes()
}
