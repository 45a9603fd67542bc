package main

import (
	_ "embed"
	"encoding/csv"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/template"
	"time"
)

//go:embed uac_load.xml
var scenarioTemplate string

// caller is one SIPp process: the calls of one codec.
type caller struct {
	codec    string
	pt       uint8
	calls    int
	rate     float64
	limit    int
	dir      string
	sipPort  int
	rtpLo    int // SIPp's RTP ports for this caller's calls
	rtpHi    int
	proc     *proc
	started  time.Time
	exitCode int
	// goCaller: the calls are placed by `loadtest gocaller` (gocaller.go)
	// instead of SIPp, with srtp when set.
	goCaller bool
	srtp     bool
}

// prepare writes the caller's capture, scenario and injection file.
func (s *caller) prepare(c *config, numbers []string) error {
	if err := os.MkdirAll(s.dir, 0o755); err != nil {
		return err
	}
	if s.goCaller {
		return writeNumbers(s.dir, numbers)
	}
	audio := filepath.Join(s.dir, "talker."+strings.ToLower(s.codec))
	if err := writeAudio(audio, s.pt, c.talk, c.gap); err != nil {
		return err
	}
	tmpl, err := template.New("scenario").Parse(scenarioTemplate)
	if err != nil {
		return err
	}
	f, err := os.Create(filepath.Join(s.dir, "uac_load.xml"))
	if err != nil {
		return err
	}
	if err := tmpl.Execute(f, map[string]any{"Codec": s.codec, "PT": s.pt, "Audio": audio}); err != nil {
		f.Close()
		return err
	}
	f.Close()
	return writeNumbers(s.dir, numbers)
}

// writeNumbers writes the numbers to call as a SIPp injection file.
func writeNumbers(dir string, numbers []string) error {
	var b strings.Builder
	b.WriteString("SEQUENTIAL\n")
	for _, n := range numbers {
		b.WriteString(strings.TrimPrefix(n, "+") + "\n")
	}
	return os.WriteFile(filepath.Join(dir, "numbers.csv"), []byte(b.String()), 0o644)
}

// start runs SIPp (or the Go caller) against the gateway.
func (s *caller) start(c *config, gatewaySIP int) error {
	if s.goCaller {
		self, err := os.Executable()
		if err != nil {
			return err
		}
		args := []string{"gocaller", "-target", fmt.Sprintf("127.0.0.1:%d", gatewaySIP), "-numbers", filepath.Join(s.dir, "numbers.csv"),
			"-codec", s.codec, "-srtp=" + strconv.FormatBool(s.srtp), "-calls", strconv.Itoa(s.calls), "-limit", strconv.Itoa(s.limit),
			"-rate", strconv.FormatFloat(s.rate, 'f', -1, 64), "-hold", c.hold.String(), "-talk", c.talk.String(), "-gap", c.gap.String(),
			"-sip-port", strconv.Itoa(s.sipPort), "-rtp-lo", strconv.Itoa(s.rtpLo), "-rtp-hi", strconv.Itoa(s.rtpHi), "-dir", s.dir}
		p, err := startProc(s.dir, "gocaller-"+strings.ToLower(s.codec), nil, self, args...)
		if err != nil {
			return err
		}
		s.proc, s.started = p, time.Now()
		return nil
	}
	timeout := c.hold + time.Duration(float64(s.calls)/s.rate*float64(time.Second)) + 60*time.Second
	args := []string{
		"-sf", filepath.Join(s.dir, "uac_load.xml"), "-inf", filepath.Join(s.dir, "numbers.csv"),
		fmt.Sprintf("127.0.0.1:%d", gatewaySIP),
		"-i", "127.0.0.1", "-p", strconv.Itoa(s.sipPort), "-mi", "127.0.0.1", "-mp", strconv.Itoa(s.rtpLo), "-rtp_threadtasks", "20",
		"-r", strconv.FormatFloat(s.rate, 'f', -1, 64), "-rp", "1000", "-l", strconv.Itoa(s.limit), "-m", strconv.Itoa(s.calls),
		"-d", strconv.FormatInt(c.hold.Milliseconds(), 10),
		"-trace_stat", "-stf", filepath.Join(s.dir, "stat.csv"), "-fd", "1",
		"-trace_rtt", "-rtt_freq", "1", "-trace_err",
		"-recv_timeout", "30000", "-timeout", fmt.Sprintf("%ds", int(timeout.Seconds())), "-timeout_error",
		"-max_socket", "5000", "-nostdin",
	}
	p, err := startProc(s.dir, "sipp-"+strings.ToLower(s.codec), nil, "sipp", args...)
	if err != nil {
		return err
	}
	s.proc, s.started = p, time.Now()
	return nil
}

// sippStats is SIPp's cumulative count of calls.
type sippStats struct {
	Created, Successful, Failed int
	FailedBy                    map[string]int
	Retransmissions             int
	RTDms                       []float64 // INVITE -> 200, per call
}

// results reads SIPp's stat file (its last line: cumulative counters) and its
// response-time trace.
func (s *caller) results() (*sippStats, error) {
	st := &sippStats{FailedBy: map[string]int{}}
	f, err := os.Open(filepath.Join(s.dir, "stat.csv"))
	if err != nil {
		return st, err
	}
	r := csv.NewReader(f)
	r.Comma = ';'
	r.FieldsPerRecord = -1
	rows, err := r.ReadAll()
	f.Close()
	if err != nil {
		return st, fmt.Errorf("SIPp stat file: %w", err)
	}
	if len(rows) < 2 {
		return st, fmt.Errorf("SIPp stat file has no data")
	}
	head, last := rows[0], rows[len(rows)-1]
	get := func(name string) int {
		for i, h := range head {
			if h == name && i < len(last) {
				v, _ := strconv.Atoi(strings.TrimSpace(last[i]))
				return v
			}
		}
		return 0
	}
	st.Created = get("TotalCallCreated")
	st.Successful = get("SuccessfulCall(C)")
	st.Failed = get("FailedCall(C)")
	st.Retransmissions = get("Retransmissions(C)")
	for i, h := range head {
		if strings.HasPrefix(h, "Failed") && strings.HasSuffix(h, "(C)") && h != "FailedCall(C)" && i < len(last) {
			if v, _ := strconv.Atoi(strings.TrimSpace(last[i])); v > 0 {
				st.FailedBy[strings.TrimSuffix(strings.TrimPrefix(h, "Failed"), "(C)")] = v
			}
		}
	}
	files, _ := filepath.Glob(filepath.Join(s.dir, "*_rtt.csv"))
	for _, fn := range files {
		b, err := os.ReadFile(fn)
		if err != nil {
			continue
		}
		for _, l := range strings.Split(string(b), "\n") {
			p := strings.Split(strings.TrimSpace(l), ";")
			if len(p) < 3 || p[2] != "1" {
				continue
			}
			if v, err := strconv.ParseFloat(p[1], 64); err == nil {
				st.RTDms = append(st.RTDms, v)
			}
		}
	}
	return st, nil
}
