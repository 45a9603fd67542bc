package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// api is the gateway's control plane.
type api struct {
	base string
	hc   *http.Client
}

func (a *api) do(ctx context.Context, method, path, key string, body any, want int) (map[string]any, error) {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, a.base+path, rd)
	if err != nil {
		return nil, err
	}
	req.Header.Set("X-API-Key", key)
	req.Header.Set("Content-Type", "application/json")
	res, err := a.hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	if res.StatusCode != want {
		return nil, fmt.Errorf("%s %s: HTTP %d: %s", method, path, res.StatusCode, bytes.TrimSpace(raw))
	}
	var m map[string]any
	if len(bytes.TrimSpace(raw)) > 0 {
		if err := json.Unmarshal(raw, &m); err != nil {
			return nil, fmt.Errorf("%s %s: %w", method, path, err)
		}
	}
	return m, nil
}

// tenant is what provisioning made: the user's key and the agents' numbers.
type tenant struct {
	companyKey, userKey string
	numbers             []string
}

// provision creates a company, a user, the numbers and the published agents, all
// through the API, as an operator would.
func provision(ctx context.Context, a *api, agencyKey string, c *config) (*tenant, error) {
	co, err := a.do(ctx, "POST", "/api/agency/companies", agencyKey,
		map[string]any{"name": "Load Test Co", "plan": "enterprise", "rate_limit_per_minute": 1000000}, 201)
	if err != nil {
		return nil, err
	}
	t := &tenant{companyKey: co["api_key"].(string)}
	u, err := a.do(ctx, "POST", "/api/users/", t.companyKey, map[string]any{"email": "load@example.com", "name": "Load"}, 201)
	if err != nil {
		return nil, err
	}
	t.userKey = u["api_key"].(string)
	for i := range c.agents {
		num := fmt.Sprintf("+2721555%04d", i+1)
		if _, err := a.do(ctx, "POST", "/api/agency/phone-numbers", agencyKey,
			map[string]any{"number": num, "country_code": "ZA", "echo_line": c.echo}, 201); err != nil {
			return nil, err
		}
		if c.echo {
			t.numbers = append(t.numbers, num)
		}
	}
	if c.echo {
		return t, nil
	}
	for i := range c.agents {
		cfg := map[string]any{"audio_format": c.format, "max_call_duration_seconds": int(c.hold.Seconds()) + 600}
		if c.chunkMS > 0 {
			cfg["user_audio_chunk_ms"] = c.chunkMS
		}
		if c.provider == "mediastream" {
			cfg["bot"] = map[string]any{"url": "ws" + strings.TrimPrefix(c.simURL, "http") + "/bot"}
		}
		ag, err := a.do(ctx, "POST", "/api/agents/", t.userKey, map[string]any{
			"name": fmt.Sprintf("Load %d", i+1), "personality": "You are a load test agent.", "provider": c.provider,
			"opening_line": "Hello, you are through to the load test agent. How can I help?", "voice_id": 1, "config": cfg}, 201)
		if err != nil {
			return nil, err
		}
		id := int64(ag["id"].(float64))
		p, err := a.do(ctx, "POST", fmt.Sprintf("/api/agents/%d/publish", id), t.userKey, map[string]any{"country_code": "ZA"}, 200)
		if err != nil {
			return nil, err
		}
		pn, _ := p["phone_number"].(map[string]any)
		num, _ := pn["number"].(string)
		if num == "" {
			return nil, fmt.Errorf("agent %d published without a number: %v", id, p)
		}
		t.numbers = append(t.numbers, num)
	}
	return t, nil
}

// metrics is one scrape of /metrics: the samples the summary uses, by name and labels.
type metrics map[string]float64

func scrape(ctx context.Context, hc *http.Client, url string) (metrics, error) {
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	res, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	m := metrics{}
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		l := sc.Text()
		if l == "" || l[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(l, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(l[i+1:], 64)
		if err != nil {
			continue
		}
		m[l[:i]] = v
	}
	return m, sc.Err()
}

// sum adds every sample of a metric name (all label sets) whose labels contain want.
func (m metrics) sum(name, want string) float64 {
	t := 0.0
	for k, v := range m {
		if k == name || strings.HasPrefix(k, name+"{") && strings.Contains(k, want) {
			t += v
		}
	}
	return t
}

// labelled lists a metric's label values (of one label) with their values.
func (m metrics) labelled(name, label string) map[string]float64 {
	out := map[string]float64{}
	for k, v := range m {
		if !strings.HasPrefix(k, name+"{") {
			continue
		}
		i := strings.Index(k, label+`="`)
		if i < 0 {
			continue
		}
		rest := k[i+len(label)+2:]
		if j := strings.IndexByte(rest, '"'); j >= 0 {
			out[rest[:j]] += v
		}
	}
	return out
}

// apiProbe is a bounded client: workers GETting a couple of endpoints at a total
// rate until stop, recording each request's latency.
type apiProbe struct {
	mu     sync.Mutex
	lat    []float64 // ms
	errors int
	codes  map[int]int
}

func runAPIProbe(ctx context.Context, a *api, key string, rate float64, workers int, stop <-chan struct{}) *apiProbe {
	p := &apiProbe{codes: map[int]int{}}
	if rate <= 0 {
		return p
	}
	paths := []string{"/api/agents?limit=30", "/api/conversations?limit=30", "/api/usage/summary"}
	tick := time.NewTicker(time.Duration(float64(time.Second) / rate))
	defer tick.Stop()
	jobs := make(chan string)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for path := range jobs {
				req, _ := http.NewRequestWithContext(ctx, "GET", a.base+path, nil)
				req.Header.Set("X-API-Key", key)
				t0 := time.Now()
				res, err := a.hc.Do(req)
				if err == nil {
					_, _ = io.Copy(io.Discard, res.Body)
					res.Body.Close()
				}
				d := time.Since(t0)
				p.mu.Lock()
				if err != nil {
					p.errors++
				} else {
					p.codes[res.StatusCode]++
					p.lat = append(p.lat, float64(d.Microseconds())/1000)
				}
				p.mu.Unlock()
			}
		}()
	}
	for i := 0; ; i++ {
		select {
		case <-stop:
			close(jobs)
			wg.Wait()
			return p
		case <-ctx.Done():
			close(jobs)
			wg.Wait()
			return p
		case <-tick.C:
			select {
			case jobs <- paths[i%len(paths)]:
			default: // every worker busy: the probe does not pile up
			}
		}
	}
}
