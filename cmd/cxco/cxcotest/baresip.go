package cxcotest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cxco/gateway/media/audiotest"
)

// Baresip is a baresip softphone run by a test: it dials one call from its own
// config dir (written here), plays a WAV file as its microphone and records what
// it hears into another, and quits (hanging up) after a set time.
type Baresip struct {
	cmd  *exec.Cmd
	mu   sync.Mutex
	out  strings.Builder
	done chan struct{}
	Dir  string
}

// BaresipOptions configure a call.
type BaresipOptions struct {
	Dial     string        // the URI to dial, e.g. sip:+15550009@127.0.0.1:5061;transport=tls
	CAFile   string        // the CA that signs the gateway's TLS certificate
	Codecs   string        // the account's audio_codecs, e.g. "PCMU/8000/1" (default)
	Tone     []int16       // 8 kHz mono audio it sends (looped by aufile until it quits)
	Duration time.Duration // it hangs up and quits after this long (-t)
	Extra    []string      // more config lines (modules, media encryption, ...)
}

// StartBaresip writes the config and starts baresip. It fails (never skips) when
// baresip is missing: deploy/test.sh installs it.
func StartBaresip(t testing.TB, o BaresipOptions) *Baresip {
	t.Helper()
	bin, err := exec.LookPath("baresip")
	if err != nil {
		t.Fatalf("baresip not found: install it with `apt-get install -y baresip` (deploy/test.sh does this)")
	}
	dir := t.TempDir()
	b := &Baresip{Dir: dir, done: make(chan struct{})}
	src := filepath.Join(dir, "tone.wav")
	if err := audiotest.WriteWAV(src, 8000, o.Tone); err != nil {
		t.Fatal(err)
	}
	codecs := o.Codecs
	if codecs == "" {
		codecs = "PCMU/8000/1"
	}
	port := FreeUDPPort(t)
	conf := []string{
		"poll_method epoll",
		fmt.Sprintf("sip_listen 127.0.0.1:%d", port),
		// Its SDP names the address its RTP comes from (else baresip advertises the
		// machine's first interface, whose media the gateway refuses unless the trunk
		// latches to the signalling address).
		"net_interface 127.0.0.1",
		// The microphone is a WAV file; the speaker ALSA's null device. The sndfile
		// filter records both directions (dump-*-enc.wav sent, dump-*-dec.wav heard).
		"audio_player alsa,null",
		"audio_alert alsa,null",
		"audio_source aufile," + src,
		"snd_path " + dir,
		"ausrc_srate 8000", "auplay_srate 8000", "ausrc_channels 1", "auplay_channels 1",
		"rtp_ports 30000-39999",
		"module_path /usr/lib/baresip/modules",
		"module g711.so", "module aufile.so", "module alsa.so", "module sndfile.so",
		"module_app account.so", "module_app menu.so",
	}
	if o.CAFile != "" {
		conf = append(conf, "sip_cafile "+o.CAFile)
	}
	conf = append(conf, o.Extra...)
	if err := os.WriteFile(filepath.Join(dir, "config"), []byte(strings.Join(conf, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	account := fmt.Sprintf("<sip:caller@127.0.0.1:%d>;regint=0;audio_codecs=%s\n", port, codecs)
	if err := os.WriteFile(filepath.Join(dir, "accounts"), []byte(account), 0o644); err != nil {
		t.Fatal(err)
	}
	_ = os.WriteFile(filepath.Join(dir, "contacts"), nil, 0o644)
	secs := int(o.Duration / time.Second)
	if secs < 1 {
		secs = 5
	}
	b.cmd = exec.Command(bin, "-f", dir, "-e", "/dial "+o.Dial, "-t", fmt.Sprint(secs))
	b.cmd.Dir = dir
	b.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	w := &lockedWriter{b: b}
	b.cmd.Stdout, b.cmd.Stderr = w, w
	if err := b.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = b.cmd.Wait(); close(b.done) }()
	t.Cleanup(func() {
		select {
		case <-b.done:
		default:
			_ = syscall.Kill(-b.cmd.Process.Pid, syscall.SIGKILL)
			<-b.done
		}
		if t.Failed() {
			t.Logf("baresip output:\n%s", tail(b.Output(), 60))
		}
	})
	return b
}

type lockedWriter struct{ b *Baresip }

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.b.mu.Lock()
	defer w.b.mu.Unlock()
	return w.b.out.Write(p)
}

// Heard is the audio baresip received and decoded (the sndfile filter's dump),
// at the rate of the call's codec.
func (b *Baresip) Heard(t testing.TB) (rate int, pcm []int16) {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(b.Dir, "dump-*-dec.wav"))
	if len(files) != 1 {
		t.Fatalf("baresip recorded %d decoded audio files in %s", len(files), b.Dir)
	}
	rate, pcm, err := audiotest.ReadWAV(files[0])
	if err != nil {
		t.Fatal(err)
	}
	return rate, pcm
}

// Output is what baresip printed so far.
func (b *Baresip) Output() string { b.mu.Lock(); defer b.mu.Unlock(); return b.out.String() }

// Wait waits for baresip to quit, up to d; false on timeout.
func (b *Baresip) Wait(d time.Duration) bool {
	select {
	case <-b.done:
		return true
	case <-time.After(d):
		return false
	}
}
