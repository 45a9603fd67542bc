package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cxco/gateway/cmd/cxco/cxcotest"
)

// TestSecretFilesParsed: each secret flag has a -file twin (flag or environment)
// whose trimmed content becomes the secret; both at once, an empty file or a
// missing one is an error naming the flag.
func TestSecretFilesParsed(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	secret, agency, password, provider := write("secret", testSecret+"\n"), write("agency", " "+testAgencyKey+"\n"),
		write("password", "pa ss\n"), write("provider", "xi-file-key")
	c, err := parseServe([]string{"--secret-key-file", secret, "--agency-key-file", agency, "--trunk-user", "carrier",
		"--trunk-password-file", password}, map[string]string{"CXCO_PROVIDER_API_KEY_FILE": provider})
	if err != nil {
		t.Fatal(err)
	}
	if c.SecretKey != testSecret || c.AgencyKey != testAgencyKey || c.TrunkPassword != "pa ss" || c.ProviderAPIKey != "xi-file-key" {
		t.Fatalf("secrets from files: secret %q agency %q trunk %q provider %q", c.SecretKey, c.AgencyKey, c.TrunkPassword, c.ProviderAPIKey)
	}
	for _, bad := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"--secret-key", testSecret, "--secret-key-file", secret}, nil, "--secret-key and --secret-key-file are both given"},
		{[]string{"--agency-key-file", agency}, map[string]string{"CXCO_AGENCY_KEY": testAgencyKey}, "--agency-key and --agency-key-file are both given"},
		{[]string{"--secret-key-file", write("empty", "\n")}, nil, "--secret-key-file " + filepath.Join(dir, "empty") + " is empty"},
		{[]string{"--provider-api-key-file", filepath.Join(dir, "missing")}, nil, "--provider-api-key-file: open"},
	} {
		_, err := parseServe(bad.args, bad.env)
		if err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%v %v: %v, want an error with %q", bad.args, bad.env, err, bad.want)
		}
	}
}

// TestSecretsOnTheCommandLineWarned: serve warns (level WARN) for each secret
// given as a flag, which every user of the machine can read in
// /proc/<pid>/cmdline, and names the way out; and for --webhook-allow-insecure.
// Given in files, the secrets work (the agency key opens the agency API), stay
// out of the command line, and nothing is warned.
func TestSecretsOnTheCommandLineWarned(t *testing.T) {
	bin := cxcotest.Binary(t)
	start := func(t *testing.T, env []string, extra ...string) (*cxcotest.Process, string) {
		httpPort, sipPort := cxcotest.FreePort(t), cxcotest.FreeUDPPort(t)
		args := append([]string{"serve", "--http", fmt.Sprintf("127.0.0.1:%d", httpPort), "--sip", fmt.Sprintf("127.0.0.1:%d", sipPort),
			"--public-ip", "127.0.0.1", "--log-format", "json"}, extra...)
		p := cxcotest.Start(t, bin, env, args...)
		p.WaitStdout(t, "API:", 60*time.Second)
		return p, fmt.Sprintf("http://127.0.0.1:%d", httpPort)
	}
	t.Run("flags", func(t *testing.T) {
		p, _ := start(t, nil, "--secret-key", testSecret, "--agency-key", testAgencyKey, "--trunk-user", "carrier",
			"--trunk-password", "hunter2-pw", "--webhook-allow-insecure")
		for _, flag := range []string{"--secret-key", "--agency-key", "--trunk-password"} {
			env := map[string]string{"--secret-key": "CXCO_SECRET_KEY", "--agency-key": "CXCO_AGENCY_KEY", "--trunk-password": "CXCO_TRUNK_PASSWORD"}[flag]
			p.WaitStderr(t, fmt.Sprintf(`"level":"WARN","msg":"%s was given on the command line, where any user of this machine can read it (/proc/<pid>/cmdline, ps): pass it in %s or %s-file instead"`, flag, env, flag), 10*time.Second)
		}
		p.WaitStderr(t, `"level":"WARN","msg":"--webhook-allow-insecure is on`, 10*time.Second)
		if log := p.Stderr(); strings.Contains(log, "hunter2-pw") || strings.Contains(log, testSecret) || strings.Contains(log, testAgencyKey) {
			t.Fatal("a secret is in the log")
		}
	})
	t.Run("files", func(t *testing.T) {
		dir := t.TempDir()
		secretFile, agencyFile := filepath.Join(dir, "secret"), filepath.Join(dir, "agency")
		for f, v := range map[string]string{secretFile: testSecret + "\n", agencyFile: testAgencyKey + "\n"} {
			if err := os.WriteFile(f, []byte(v), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		p, base := start(t, []string{"CXCO_TRUNK_PASSWORD=hunter2-pw"}, "--secret-key-file", secretFile, "--agency-key-file", agencyFile,
			"--trunk-user", "carrier")
		a := gwClient{t: t, base: base}
		a.must(200, "GET", "/api/agency/companies", testAgencyKey, nil)
		cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", p.Cmd.Process.Pid))
		if err != nil {
			t.Fatal(err)
		}
		if s := string(cmdline); strings.Contains(s, testSecret) || strings.Contains(s, testAgencyKey) || strings.Contains(s, "hunter2-pw") {
			t.Fatalf("a secret is on the command line: %q", s)
		}
		// The warnings come before this line, which serve logs after them at start-up.
		p.WaitStderr(t, `"msg":"descriptor limit"`, 10*time.Second)
		if log := p.Stderr(); strings.Contains(log, "on the command line") || strings.Contains(log, "allow-insecure") {
			t.Fatalf("warned with the secrets in files and the environment:\n%s", log)
		}
	})
}
