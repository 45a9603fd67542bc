package main

import (
	"bufio"
	"bytes"
	"debug/elf"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cxco/gateway/cmd/cxco/cxcotest"
)

func deployPath(parts ...string) string {
	return filepath.Join(append([]string{cxcotest.RepoRoot(), "deploy"}, parts...)...)
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// dockerfile is a Dockerfile as instructions (continuation lines joined), by stage.
type dockerfile struct {
	args   map[string]string // ARG defaults before the first FROM
	stages [][]string        // each stage's instructions, FROM first
}

func parseDockerfile(t *testing.T, path string) dockerfile {
	t.Helper()
	d := dockerfile{args: map[string]string{}}
	var cur string
	sc := bufio.NewScanner(strings.NewReader(readFile(t, path)))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if cur == "" && (line == "" || strings.HasPrefix(line, "#")) {
			continue
		}
		if strings.HasSuffix(line, "\\") {
			cur += strings.TrimSuffix(line, "\\") + " "
			continue
		}
		ins := strings.Join(strings.Fields(cur+line), " ")
		cur = ""
		switch {
		case strings.HasPrefix(ins, "FROM "):
			d.stages = append(d.stages, []string{ins})
		case len(d.stages) == 0 && strings.HasPrefix(ins, "ARG "):
			name, val, _ := strings.Cut(strings.TrimPrefix(ins, "ARG "), "=")
			d.args[name] = val
		case len(d.stages) > 0:
			d.stages[len(d.stages)-1] = append(d.stages[len(d.stages)-1], ins)
		}
	}
	return d
}

func instructions(stage []string, kind string) []string {
	var out []string
	for _, ins := range stage {
		if strings.HasPrefix(ins, kind+" ") {
			out = append(out, strings.TrimPrefix(ins, kind+" "))
		}
	}
	return out
}

// TestDockerfile: docker build is not available on these machines (no daemon), so
// this checks deploy/Dockerfile by what it says and by running its build command
// outside Docker: the same `go build` line, flags and environment, into a temp
// dir. The binary must be static (no interpreter, no shared libraries), stripped,
// free of this machine's paths, stamped with the version, and it must serve.
func TestDockerfile(t *testing.T) {
	d := parseDockerfile(t, deployPath("Dockerfile"))
	if len(d.stages) != 2 {
		t.Fatalf("want a build stage and a final stage, got %d stages", len(d.stages))
	}
	build, final := d.stages[0], d.stages[1]

	// The Go toolchain of the build stage is go.mod's.
	goMod := regexp.MustCompile(`(?m)^go (\S+)$`).FindStringSubmatch(readFile(t, filepath.Join(cxcotest.RepoRoot(), "go.mod")))
	if goMod == nil || d.args["GO_VERSION"] != goMod[1] {
		t.Errorf("ARG GO_VERSION=%q, go.mod says go %v", d.args["GO_VERSION"], goMod)
	}
	if !strings.HasPrefix(build[0], "FROM golang:${GO_VERSION}") || !strings.HasSuffix(build[0], " AS build") {
		t.Errorf("build stage: %s", build[0])
	}
	var buildCmd string
	for _, r := range instructions(build, "RUN") {
		if strings.Contains(r, "go build") {
			buildCmd = r
		}
	}
	for _, want := range []string{"CGO_ENABLED=0", "-tags noopus", "-trimpath", `-ldflags "-s -w -X main.version=${VERSION}"`, "-o /out/cxco", "./cmd/cxco"} {
		if !strings.Contains(buildCmd, want) {
			t.Errorf("the build RUN %q lacks %s", buildCmd, want)
		}
	}

	// The final stage: distroless static (or slim), non-root, the ports, no HEALTHCHECK.
	if !regexp.MustCompile(`^FROM (gcr\.io/distroless/static\S*|debian:\S+-slim)$`).MatchString(final[0]) {
		t.Errorf("final stage: %s", final[0])
	}
	users := instructions(final, "USER")
	if len(users) != 1 || users[0] == "0" || strings.HasPrefix(users[0], "0:") || strings.HasPrefix(users[0], "root") {
		t.Errorf("final stage USER %v: want one non-root user", users)
	}
	if c := instructions(final, "COPY"); len(c) != 1 || !strings.HasPrefix(c[0], "--from=build /out/cxco ") {
		t.Errorf("final stage COPY %v", c)
	}
	exposed := map[string]bool{}
	for _, e := range instructions(final, "EXPOSE") {
		for _, p := range strings.Fields(e) {
			exposed[p] = true
		}
	}
	var rtp string
	for _, e := range instructions(final, "ENV") {
		if m := regexp.MustCompile(`CXCO_RTP_PORTS=(\d+-\d+)`).FindStringSubmatch(e); m != nil {
			rtp = m[1]
		}
	}
	for _, p := range []string{"8080/tcp", "5060/udp", "5060/tcp", rtp + "/udp"} {
		if !exposed[p] {
			t.Errorf("EXPOSE lacks %s (has %v)", p, exposed)
		}
	}
	if h := instructions(final, "HEALTHCHECK"); len(h) != 0 {
		t.Errorf("HEALTHCHECK %v: distroless has nothing to run it with", h)
	}
	if e := instructions(final, "ENTRYPOINT"); len(e) != 1 || e[0] != `["/usr/local/bin/cxco"]` {
		t.Errorf("ENTRYPOINT %v", e)
	}

	// The build, as the Dockerfile runs it, outside Docker.
	out := t.TempDir()
	const ver = "v0.0.0-dockerfile-check"
	cmdline := strings.ReplaceAll(buildCmd, "/out/cxco", filepath.Join(out, "cxco"))
	cmd := exec.Command("sh", "-c", cmdline)
	cmd.Dir = cxcotest.RepoRoot()
	cmd.Env = append(os.Environ(), "VERSION="+ver, "TARGETARCH="+runtime.GOARCH)
	started := time.Now()
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", cmdline, err, b)
	}
	bin := filepath.Join(out, "cxco")
	t.Logf("built with the Dockerfile's command in %s: %s", time.Since(started).Round(time.Millisecond), cmdline)

	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Error("the binary has an ELF interpreter: not static")
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) != 0 {
		t.Errorf("the binary needs shared libraries %v", libs)
	}
	if f.Section(".symtab") != nil {
		t.Error("the binary has a symbol table: -s did not apply")
	}
	f.Close()
	raw, _ := os.ReadFile(bin)
	if bytes.Contains(raw, []byte(cxcotest.RepoRoot())) {
		t.Errorf("the binary holds this checkout's path %s: -trimpath did not apply", cxcotest.RepoRoot())
	}
	t.Logf("binary: %d MiB, static, stripped, no local paths", len(raw)>>20)

	if b, err := exec.Command(bin, "version").CombinedOutput(); err != nil || !strings.Contains(string(b), "cxco "+ver) {
		t.Errorf("cxco version: %v %s", err, b)
	}
	if b, err := exec.Command(bin, "serve", "--help").CombinedOutput(); err != nil || !strings.Contains(string(b), "Usage: cxco serve") {
		t.Errorf("cxco serve --help: %v %s", err, b)
	}

	// It serves with the image's environment (addresses moved to loopback).
	httpPort, sipPort := cxcotest.FreePort(t), cxcotest.FreeUDPPort(t)
	p := cxcotest.Start(t, bin, []string{
		fmt.Sprintf("CXCO_HTTP_ADDR=127.0.0.1:%d", httpPort), fmt.Sprintf("CXCO_SIP_ADDR=127.0.0.1:%d", sipPort),
		"CXCO_RTP_PORTS=" + rtp, "CXCO_PUBLIC_IP=127.0.0.1", "CXCO_LOG_FORMAT=json",
		"CXCO_AGENCY_KEY=cxco_agcy_k_DockerfileCheck0123456789abcdef",
	}, "serve")
	p.WaitStdout(t, "API:", 30*time.Second)
	for _, path := range []string{"/healthz", "/readyz"} {
		res, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d%s", httpPort, path))
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != 200 {
			t.Errorf("%s: %d", path, res.StatusCode)
		}
	}
	p.Signal(syscall.SIGTERM)
	if code := p.Wait(15 * time.Second); code != 0 {
		t.Errorf("exit %d after SIGTERM", code)
	}
}

// TestKamailioDockerfile: the Kamailio image installs Debian's package and runs
// the shipped config in the foreground, from paths the COPYs fill.
func TestKamailioDockerfile(t *testing.T) {
	d := parseDockerfile(t, deployPath("kamailio", "Dockerfile"))
	if len(d.stages) != 1 || !strings.HasPrefix(d.stages[0][0], "FROM debian:") {
		t.Fatalf("stages %v", d.stages)
	}
	st := d.stages[0]
	if r := strings.Join(instructions(st, "RUN"), " "); !strings.Contains(r, "apt-get install") || !strings.Contains(r, "kamailio") {
		t.Errorf("RUN %s: want apt-get install kamailio", r)
	}
	dests := map[string]bool{}
	for _, c := range instructions(st, "COPY") {
		f := strings.Fields(c)
		if _, err := os.Stat(filepath.Join(cxcotest.RepoRoot(), f[0])); err != nil {
			t.Errorf("COPY %s: %v", c, err)
		}
		dests[f[len(f)-1]] = true
	}
	var entry []string
	e := instructions(st, "ENTRYPOINT")
	if len(e) != 1 || json.Unmarshal([]byte(e[0]), &entry) != nil {
		t.Fatalf("ENTRYPOINT %v", e)
	}
	args := strings.Join(entry, " ")
	for _, want := range []string{"-DD", "-E", "-f /etc/kamailio/cxco.cfg", "-Y /run/kamailio"} {
		if !strings.Contains(args, want) {
			t.Errorf("ENTRYPOINT %v lacks %s", entry, want)
		}
	}
	if !dests["/etc/kamailio/cxco.cfg"] {
		t.Errorf("the config is not copied to /etc/kamailio/cxco.cfg: %v", dests)
	}
	if u := instructions(st, "USER"); len(u) != 1 || u[0] == "root" {
		t.Errorf("USER %v", u)
	}
}

// yamlDocs parses a YAML file with PyYAML (python3 -c 'import yaml'), through
// JSON. ok is false when no python3 with PyYAML is on this machine.
func yamlDocs(t *testing.T, path string) (docs []any, ok bool) {
	t.Helper()
	py := pyYAML()
	if py == "" {
		return nil, false
	}
	script := `import json, sys, yaml
print(json.dumps(list(yaml.safe_load_all(open(sys.argv[1]))), default=str))`
	out, err := exec.Command(py, "-c", script, path).Output()
	if err != nil {
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("%s is not valid YAML: %v\n%s", path, err, stderr)
	}
	if err := json.Unmarshal(out, &docs); err != nil {
		t.Fatal(err)
	}
	return docs, true
}

func pyYAML() string {
	for _, c := range []string{"python3", "/usr/bin/python3"} {
		if p, err := exec.LookPath(c); err == nil && exec.Command(p, "-c", "import yaml").Run() == nil {
			return p
		}
	}
	return ""
}

// minimalYAMLCheck is what is left without a YAML parser: no tabs, every line a
// comment, a document marker, a list item or a key, indented by two.
func minimalYAMLCheck(t *testing.T, path string) {
	t.Helper()
	line := regexp.MustCompile(`^( {2})*(#.*|---|- .*|-|[A-Za-z0-9_.\-/"]+:( .*)?)$`)
	for i, l := range strings.Split(readFile(t, path), "\n") {
		if strings.TrimSpace(l) == "" {
			continue
		}
		if strings.Contains(l, "\t") || (!line.MatchString(l) && !strings.HasPrefix(strings.TrimSpace(l), "#")) {
			// Continuation of a list item or a flow value: indented further than a key.
			if !regexp.MustCompile(`^ +(- |[A-Za-z0-9_."\-]+:|#|\[|\]|[A-Za-z0-9"])`).MatchString(l) || strings.Contains(l, "\t") {
				t.Errorf("%s:%d: %q", path, i+1, l)
			}
		}
	}
}

func yMap(v any) map[string]any { r, _ := v.(map[string]any); return r }
func yList(v any) []any         { r, _ := v.([]any); return r }
func yStr(v any) string         { r, _ := v.(string); return r }

func deployYAMLFiles(t *testing.T) []string {
	files := []string{deployPath("compose.yaml")}
	_ = filepath.Walk(deployPath("k8s"), func(p string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() && strings.HasSuffix(p, ".yaml") {
			files = append(files, p)
		}
		return nil
	})
	sort.Strings(files)
	if len(files) < 5 {
		t.Fatalf("deploy YAML: %v", files)
	}
	return files
}

// TestDeployYAML parses deploy/compose.yaml and deploy/k8s with PyYAML when a
// python3 with it is on the machine (else a minimal line check, said in the log)
// and checks what the files decide: drain grace periods longer than the drain
// timeout, probes on /readyz and /healthz, the public IP from the node, secrets
// from a Secret, the nodes Kamailio dispatches to are the nodes compose runs,
// every file a kustomization names exists.
func TestDeployYAML(t *testing.T) {
	files := deployYAMLFiles(t)
	if pyYAML() == "" {
		t.Log("no python3 with PyYAML on this machine: minimal line check only")
		for _, f := range files {
			minimalYAMLCheck(t, f)
		}
		return
	}
	t.Logf("parsing %d files with PyYAML (%s)", len(files), pyYAML())
	docs := map[string][]any{}
	for _, f := range files {
		d, _ := yamlDocs(t, f)
		rel, _ := filepath.Rel(deployPath(), f)
		docs[rel] = d
	}

	t.Run("compose", func(t *testing.T) {
		c := yMap(docs["compose.yaml"][0])
		svcs := yMap(c["services"])
		for _, name := range []string{"redis", "providersim", "gw1", "gw2", "kamailio"} {
			if svcs[name] == nil {
				t.Errorf("no service %s", name)
			}
		}
		var nodes []string
		var ranges [][2]int
		for _, name := range []string{"gw1", "gw2"} {
			g := yMap(svcs[name])
			env := yMap(g["environment"])
			grace, err1 := time.ParseDuration(yStr(g["stop_grace_period"]))
			drain, err2 := time.ParseDuration(yStr(env["CXCO_DRAIN_TIMEOUT"]))
			if err1 != nil || err2 != nil || grace <= drain {
				t.Errorf("%s: stop_grace_period %v must be longer than CXCO_DRAIN_TIMEOUT %v", name, g["stop_grace_period"], env["CXCO_DRAIN_TIMEOUT"])
			}
			if yStr(g["network_mode"]) != "host" {
				t.Errorf("%s: network_mode %v", name, g["network_mode"])
			}
			if b := yMap(g["build"]); b != nil {
				if _, err := os.Stat(filepath.Join(deployPath(), yStr(b["context"]), yStr(b["dockerfile"]))); err != nil {
					t.Errorf("%s: build %v: %v", name, b, err)
				}
			}
			nodes = append(nodes, "sip:"+yStr(env["CXCO_SIP_ADDR"]))
			lo, hi, _ := strings.Cut(yStr(env["CXCO_RTP_PORTS"]), "-")
			a, _ := strconv.Atoi(lo)
			b, _ := strconv.Atoi(hi)
			ranges = append(ranges, [2]int{a, b})
			if !strings.Contains(yStr(env["CXCO_TRUNK_ALLOW"]), "127.0.0.1") {
				t.Errorf("%s: CXCO_TRUNK_ALLOW %v must hold Kamailio's INTERNAL_IP 127.0.0.1", name, env["CXCO_TRUNK_ALLOW"])
			}
			for _, k := range []string{"CXCO_AGENCY_KEY", "CXCO_SECRET_KEY", "CXCO_PUBLIC_IP"} {
				if !strings.HasPrefix(yStr(env[k]), "${"+k+":?") {
					t.Errorf("%s: %s=%v: want it required from the environment", name, k, env[k])
				}
			}
		}
		if ranges[0][1] >= ranges[1][0] && ranges[1][1] >= ranges[0][0] {
			t.Errorf("the nodes' RTP ranges overlap: %v", ranges)
		}
		// Kamailio dispatches to exactly these nodes.
		k := yMap(svcs["kamailio"])
		var listFile string
		for _, v := range yList(k["volumes"]) {
			src, dst, _ := strings.Cut(yStr(v), ":")
			if strings.HasPrefix(dst, "/etc/kamailio/dispatcher.list") {
				listFile = filepath.Join(deployPath(), src)
			}
		}
		var listed []string
		for _, line := range strings.Split(readFile(t, listFile), "\n") {
			if f := strings.Fields(line); len(f) >= 2 && !strings.HasPrefix(f[0], "#") {
				listed = append(listed, f[1])
			}
		}
		if strings.Join(listed, " ") != strings.Join(nodes, " ") {
			t.Errorf("dispatcher list %v, compose nodes %v", listed, nodes)
		}
		// And its command is a valid config: kamailio -c with the example values.
		env := map[string]string{}
		for _, line := range strings.Split(readFile(t, deployPath("compose.env.example")), "\n") {
			if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
				env[k] = v
			}
		}
		subst := regexp.MustCompile(`\$\{([A-Z_]+)(:[?-][^}]*)?\}`)
		args := []string{"-c", "-f", kamailioConfig()}
		for _, a := range yList(k["command"]) {
			args = append(args, subst.ReplaceAllStringFunc(yStr(a), func(x string) string { return env[subst.FindStringSubmatch(x)[1]] }))
		}
		if out, err := exec.Command(kamailioBinary(t), args...).CombinedOutput(); err != nil {
			t.Errorf("kamailio %v: %v\n%s", args, err, lastLines(string(out), 10))
		}
	})

	t.Run("k8s", func(t *testing.T) {
		var dep, svc, secret map[string]any
		for rel, ds := range docs {
			if !strings.HasPrefix(rel, "k8s/") {
				continue
			}
			for _, d := range ds {
				o := yMap(d)
				if strings.HasSuffix(rel, "kustomization.yaml") {
					for _, r := range yList(o["resources"]) {
						if _, err := os.Stat(filepath.Join(deployPath(), filepath.Dir(rel), yStr(r))); err != nil {
							t.Errorf("%s: resource %v: %v", rel, r, err)
						}
					}
					continue
				}
				if yStr(o["apiVersion"]) == "" || yStr(o["kind"]) == "" || yStr(yMap(o["metadata"])["name"]) == "" {
					t.Errorf("%s: a document without apiVersion, kind or metadata.name: %v", rel, o)
				}
				switch {
				case o["kind"] == "Deployment" && yMap(o["metadata"])["name"] == "cxco-gateway":
					dep = o
				case o["kind"] == "Service" && yMap(o["metadata"])["name"] == "cxco-gateway":
					svc = o
				case o["kind"] == "Secret":
					secret = o
				}
			}
		}
		if dep == nil || svc == nil || secret == nil {
			t.Fatalf("deployment %v, service %v, secret example %v", dep != nil, svc != nil, secret != nil)
		}
		pod := yMap(yMap(yMap(dep["spec"])["template"])["spec"])
		ctr := yMap(yList(pod["containers"])[0])
		env := map[string]map[string]any{}
		for _, e := range yList(ctr["env"]) {
			env[yStr(yMap(e)["name"])] = yMap(e)
		}
		drain, err := time.ParseDuration(yStr(env["CXCO_DRAIN_TIMEOUT"]["value"]))
		if err != nil {
			t.Fatalf("CXCO_DRAIN_TIMEOUT: %v", err)
		}
		pre := yMap(yMap(yMap(ctr["lifecycle"])["preStop"])["sleep"])["seconds"]
		preSecs, _ := pre.(float64)
		grace, _ := pod["terminationGracePeriodSeconds"].(float64)
		if preSecs <= 0 {
			t.Errorf("no preStop sleep: %v", ctr["lifecycle"])
		}
		if grace < drain.Seconds()+preSecs {
			t.Errorf("terminationGracePeriodSeconds %v < drain %v + preStop %vs: pods would be killed mid-drain", grace, drain, preSecs)
		}
		if p := yStr(yMap(yMap(ctr["readinessProbe"])["httpGet"])["path"]); p != "/readyz" {
			t.Errorf("readiness probe %q", p)
		}
		if p := yStr(yMap(yMap(ctr["livenessProbe"])["httpGet"])["path"]); p != "/healthz" {
			t.Errorf("liveness probe %q", p)
		}
		if pod["hostNetwork"] != true || pod["dnsPolicy"] != "ClusterFirstWithHostNet" {
			t.Errorf("hostNetwork %v, dnsPolicy %v", pod["hostNetwork"], pod["dnsPolicy"])
		}
		if f := yStr(yMap(yMap(env["CXCO_PUBLIC_IP"]["valueFrom"])["fieldRef"])["fieldPath"]); f != "status.hostIP" {
			t.Errorf("CXCO_PUBLIC_IP from %q, want status.hostIP", f)
		}
		if yMap(pod["securityContext"])["runAsNonRoot"] != true {
			t.Errorf("securityContext %v", pod["securityContext"])
		}
		keys := yMap(secret["stringData"])
		for _, k := range []string{"CXCO_AGENCY_KEY", "CXCO_SECRET_KEY", "CXCO_PROVIDER_API_KEY", "CXCO_REDIS_URL"} {
			ref := yMap(yMap(env[k]["valueFrom"])["secretKeyRef"])
			if yStr(ref["name"]) != yStr(yMap(secret["metadata"])["name"]) || yStr(ref["key"]) != k || keys[k] == nil {
				t.Errorf("%s: from %v, want the Secret %v key %s", k, ref, yMap(secret["metadata"])["name"], k)
			}
		}
		ports := map[string]bool{}
		for _, p := range yList(ctr["ports"]) {
			ports[yStr(yMap(p)["name"])] = true
		}
		for _, p := range yList(yMap(svc["spec"])["ports"]) {
			if !ports[yStr(yMap(p)["targetPort"])] {
				t.Errorf("service port %v targets no container port (%v)", p, ports)
			}
		}
	})
}

// TestDispatcherListExample: the shipped dispatcher.list lines have the format the
// dispatcher module reads (setid, SIP URI, flags, priority, attributes). The file
// is only parsed here, never loaded: its addresses are examples.
func TestDispatcherListExample(t *testing.T) {
	re := regexp.MustCompile(`^\d+ sip:[0-9a-zA-Z.\-\[\]:]+(;\S+)? \d+ \d+( \S+)?$`)
	for _, name := range []string{"dispatcher.list", "dispatcher.compose.list"} {
		n := 0
		for i, line := range strings.Split(readFile(t, deployPath("kamailio", name)), "\n") {
			if line = strings.TrimSpace(line); line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			n++
			if !re.MatchString(line) {
				t.Errorf("%s:%d: %q", name, i+1, line)
			}
		}
		if n < 2 {
			t.Errorf("%s: %d nodes", name, n)
		}
	}
}
