package main

import (
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/cxco/gateway/cmd/cxco/cxcotest"
	"github.com/cxco/gateway/store/redistest"
)

// TestBatchNodeKilledOverSIP is issue 16's batch over real SIP: 500 recipients
// at 20 calls a second (20 at once) against SIPp standing in for the callees
// (uas_batch.xml: each answers, stays a second and hangs up; a number ending
// in 7 is busy), two `cxco serve` nodes sharing one redis-server, and the node
// working the batch killed with SIGKILL a third of the way through. The other
// node takes the batch up once the killed node's lease lapses (--node-lease,
// 3 s here) and finishes it. Both nodes use one provider simulator. Checked
// from SIPp's own message log:
//   - every recipient is called exactly as often as its record says: answered
//     ones once, busy ones twice (retry.max_attempts 2), never again after an
//     answer; a call the killed node had under way ends `interrupted` and is
//     not called again (it may have been answered: a person is not rung twice);
//   - one node at a time: every INVITE of the killed node comes before the
//     first of the survivor's;
//   - the limits: never more than 20 calls open at SIPp (INVITE to its end: the
//     486, or the 200 to SIPp's BYE; a dead node's calls end at its death), and
//     no more INVITEs in any second on the wire (captured, kernel times) than
//     the batch's 20 (one more for the jitter between the pacer and the
//     socket), their spacing reported;
//   - progress: the batch completes, its counts are those of its recipients,
//     which are those SIPp saw.
//
// Cost: 50-65 s with -race on a busy machine (25 s of dialling at 20/s, 30-40 s
// with the concurrency limit binding, the takeover, the retries): it runs in
// deploy/test.sh's second go test, beside the rest.
func TestBatchNodeKilledOverSIP(t *testing.T) {
	const (
		recipients = 500
		cps        = 20
		concurrent = 20 // a call is open 1.1-1.5 s: at 20 a second this binds too
		lease      = 3 * time.Second
	)
	r := redistest.StartRedis(t)
	args := func(id string) []string {
		return []string{"--node-id", id, "--node-lease", lease.String(), "--max-calls", "200"}
	}
	sim := cxcotest.StartSim(t) // one provider for both nodes, as its own process
	a := cxcotest.StartGateway(t, cxcotest.GatewayOptions{RedisURL: r.URL, ProviderURL: sim, Args: args("gw-a")})
	tn := a.NewTenant("Batch")
	a.AddNumber("+27215550501", "ZA", false)
	agentID, _ := a.PublishAgent(tn, "Dialler", "ZA", nil)
	// The company's own limits above the batch's, so that the batch's bind.
	a.Must(200, "PUT", fmt.Sprintf("/api/agency/companies/%d", tn.CompanyID), a.AgencyKey,
		map[string]any{"outbound_limits": map[string]any{"max_concurrent_calls": 100, "calls_per_second": 50}})
	sippPort, sipp := cxcotest.ServeSIPpRun(t, "uas_batch.xml", "-m", "100000", "-timeout", "600s")
	// The INVITEs as they crossed the wire, with the kernel's times: SIPp
	// stamps what it reads once per loop of its own, late and bunched when the
	// machine is busy.
	capture := cxcotest.StartCapture(t, fmt.Sprintf("udp dst port %d", sippPort))
	a.Must(201, "POST", "/api/agency/trunks", a.AgencyKey, map[string]any{"name": "carrier", "allow": []string{"127.0.0.1/32"},
		"uri": fmt.Sprintf("sip:127.0.0.1:%d", sippPort)})
	b := cxcotest.StartGateway(t, cxcotest.GatewayOptions{RedisURL: r.URL, ProviderURL: sim, Args: append(args("gw-b"), "--agency-key", a.AgencyKey)})
	nodes := map[string]*cxcotest.Gateway{"gw-a": a, "gw-b": b}

	var list []any
	number := func(i int) string { return fmt.Sprintf("+2721600%04d", i) }
	for i := range recipients {
		list = append(list, map[string]any{"phone_number": number(i), "dynamic_variables": map[string]any{"customer_name": fmt.Sprint("R", i)}})
	}
	created := a.Must(201, "POST", fmt.Sprintf("/api/agents/%d/batches", agentID), tn.UserKey, map[string]any{
		"name": "done-when", "calls_per_second": cps, "max_concurrent_calls": concurrent,
		"retry":      map[string]any{"max_attempts": 2, "delay_seconds": 2, "backoff": 1},
		"recipients": list})
	path := fmt.Sprintf("/api/batches/%d", int64(created["id"].(float64)))

	// Kill the node working the batch once a third of the recipients are done.
	var holder string
	cxcotest.Eventually(t, 90*time.Second, "a third of the batch done", func() bool {
		got := a.Must(200, "GET", path, tn.UserKey, nil)
		counts := got["counts"].(map[string]any)
		done := 0.0
		for _, s := range []string{"answered", "busy", "no_answer", "rejected", "failed"} {
			done += num(counts[s])
		}
		return done >= recipients/3
	})
	for id, g := range nodes {
		if strings.Contains(g.Proc.Stderr(), `"msg":"batch: working"`) {
			holder = id
		}
	}
	if holder == "" {
		t.Fatal("no node logged working the batch")
	}
	survivorID := map[string]string{"gw-a": "gw-b", "gw-b": "gw-a"}[holder]
	survivor := nodes[survivorID]
	nodes[holder].Proc.Kill()
	killed := time.Now()
	t.Logf("killed %s (working the batch) at %s", holder, killed.Format("15:04:05.000"))

	var got map[string]any
	cxcotest.Eventually(t, 120*time.Second, "the batch completed", func() bool {
		got = survivor.Must(200, "GET", path, tn.UserKey, nil)
		return got["status"] == "completed"
	})
	completed := time.Now()
	page := survivor.Must(200, "GET", path+"/recipients?limit=1000", tn.UserKey, nil)
	if page["next_cursor"] != nil || len(page["items"].([]any)) != recipients {
		t.Fatalf("recipients page: %d items, next %v", len(page["items"].([]any)), page["next_cursor"])
	}
	wire := capture.Stop()
	if code, out := sipp.Stop(); code != 0 && !strings.Contains(out, "Dead call") {
		t.Logf("SIPp ended %d (the killed node's calls fail on its side):\n%s", code, cxcotestTail(out, 15))
	}

	// SIPp's view: each INVITE (not a retransmission) with its number, the
	// node that sent it (its Contact's port) and when SIPp was done with it.
	type call struct {
		number, node string
		invite, end  time.Time
		answered     bool
	}
	portNode := map[string]string{fmt.Sprint(a.SIPPort): "gw-a", fmt.Sprint(b.SIPPort): "gw-b"}
	userRE := regexp.MustCompile(`sip:([^@;>]+)@`)
	portRE := regexp.MustCompile(`@[^:>;]+:(\d+)`)
	calls := map[string]*call{}
	var order []*call
	for _, m := range sipp.Messages() {
		c := calls[m.CallID]
		switch {
		case !m.Sent && strings.HasPrefix(m.Line, "INVITE ") && c == nil:
			u, p := userRE.FindStringSubmatch(m.To), portRE.FindStringSubmatch(m.Contact)
			if u == nil || p == nil {
				t.Fatalf("INVITE without a number or contact port: To %q Contact %q", m.To, m.Contact)
			}
			c = &call{number: u[1], node: portNode[p[1]], invite: m.At}
			if c.node == "" {
				t.Fatalf("INVITE from an unknown node: Contact %q", m.Contact)
			}
			calls[m.CallID] = c
			order = append(order, c)
		case c == nil:
		case m.Sent && strings.HasPrefix(m.Line, "SIP/2.0 200") && strings.HasSuffix(m.CSeq, "INVITE"):
			c.answered = true
		case m.Sent && strings.HasPrefix(m.Line, "SIP/2.0 486") && c.end.IsZero():
			c.end = m.At
		case !m.Sent && strings.HasPrefix(m.Line, "SIP/2.0 200") && strings.HasSuffix(m.CSeq, "BYE") && c.end.IsZero():
			c.end = m.At
		}
	}
	sort.SliceStable(order, func(i, j int) bool { return order[i].invite.Before(order[j].invite) })
	byNumber := map[string][]*call{}
	for _, c := range order {
		byNumber[c.number] = append(byNumber[c.number], c)
		if c.end.IsZero() || c.node == holder && c.end.After(killed) {
			if c.node != holder {
				t.Errorf("a call of the surviving node to %s never ended at SIPp", c.number)
			}
			c.end = killed // a dead node's calls end with it
		}
	}

	// One node at a time: the killed node's INVITEs, then the survivor's.
	first := slices.IndexFunc(order, func(c *call) bool { return c.node == survivorID })
	var perNode = map[string]int{}
	for i, c := range order {
		perNode[c.node]++
		if first >= 0 && i > first && c.node == holder {
			t.Errorf("the killed node sent an INVITE (to %s at %s) after the survivor's first", c.number, c.invite.Format("15:04:05.000"))
		}
	}
	if first < 0 || order[first].invite.Before(killed) {
		t.Fatalf("the survivor's first INVITE: index %d (killed at %s)", first, killed.Format("15:04:05.000"))
	}
	takeover := order[first].invite.Sub(killed)

	// Every recipient as its record says.
	counts := map[string]int{}
	interrupted := 0
	for _, it := range page["items"].([]any) {
		rc := it.(map[string]any)
		n, st, attempts := rc["phone_number"].(string), rc["status"].(string), int(num(rc["attempts"]))
		counts[st]++
		cs := byNumber[n]
		busy := strings.HasSuffix(n, "7")
		for i, c := range cs {
			if c.answered && i < len(cs)-1 {
				t.Errorf("%s: called again after an answered call", n)
			}
		}
		switch {
		case st == "interrupted":
			// Claimed on the killed node: called then, or killed before the INVITE went.
			interrupted++
			if len(cs) != attempts && len(cs) != attempts-1 || len(cs) > 0 && cs[len(cs)-1].node != holder {
				t.Errorf("%s interrupted after %d attempts: SIPp saw %d INVITEs", n, attempts, len(cs))
			}
		case busy:
			if st != "busy" || attempts != 2 || len(cs) != 2 || !cs[0].end.IsZero() && cs[1].invite.Sub(cs[0].end) < 2*time.Second {
				t.Errorf("%s (busy line): %s after %d attempts, SIPp saw %d INVITEs", n, st, attempts, len(cs))
			}
		default:
			last, _ := rc["last_attempt"].(map[string]any)
			if st != "answered" || attempts != 1 || len(cs) != 1 || !cs[0].answered || last["conversation_id"] == nil {
				t.Errorf("%s: %s after %d attempts, SIPp saw %d INVITEs; last attempt %v", n, st, attempts, len(cs), last)
			}
		}
		delete(byNumber, n)
	}
	for n := range byNumber {
		t.Errorf("SIPp was called at %s, no recipient of the batch", n)
	}
	// Progress: GET's counts are the recipients'.
	for st, n := range got["counts"].(map[string]any) {
		if int(num(n)) != counts[st] {
			t.Errorf("progress: counts.%s %v; the recipients say %d", st, n, counts[st])
		}
	}
	if got["total"] != float64(recipients) || counts["answered"]+counts["busy"]+interrupted != recipients || interrupted > concurrent {
		t.Errorf("batch %v; recipients %v", got, counts)
	}

	// The limits, from SIPp's timestamps.
	type edge struct {
		at time.Time
		d  int
	}
	var edges []edge
	for _, c := range order {
		edges = append(edges, edge{c.invite, 1}, edge{c.end, -1})
	}
	sort.Slice(edges, func(i, j int) bool {
		if edges[i].at.Equal(edges[j].at) {
			return edges[i].d < edges[j].d // an end before a start at the same instant
		}
		return edges[i].at.Before(edges[j].at)
	})
	open, maxOpen := 0, 0
	for _, e := range edges {
		open += e.d
		maxOpen = max(maxOpen, open)
	}
	// Calls per second: the first INVITE of each call as captured.
	var sent []time.Time
	seen := map[string]bool{}
	for _, p := range wire {
		msg := string(p.Payload)
		if !strings.HasPrefix(msg, "INVITE ") {
			continue
		}
		id := callIDRE.FindStringSubmatch(msg)
		if id == nil || seen[id[1]] {
			continue
		}
		seen[id[1]] = true
		sent = append(sent, p.At)
	}
	// dumpcap may drop a packet on a busy machine; a few missing hide no burst.
	if len(sent) > len(order) || len(sent) < len(order)*99/100 {
		t.Errorf("%d INVITEs captured, %d in SIPp's log", len(sent), len(order))
	}
	slices.SortFunc(sent, func(a, b time.Time) int { return a.Compare(b) })
	maxSecond, j := 0, 0
	var gaps []time.Duration
	for i, at := range sent {
		for sent[j].Add(time.Second).Compare(at) <= 0 {
			j++
		}
		maxSecond = max(maxSecond, i-j+1) // INVITEs in the second ending at this one
		if i > 0 && at.Sub(sent[i-1]) < time.Second {
			gaps = append(gaps, at.Sub(sent[i-1]))
		}
	}
	slices.Sort(gaps)
	span := sent[len(sent)-1].Sub(sent[0])
	t.Logf("%d INVITEs (%s %d, %s %d) over %s, %d recipients: %v; takeover %s after the kill, completed %s after it",
		len(order), holder, perNode[holder], survivorID, perNode[survivorID], span.Round(time.Millisecond), recipients, counts,
		takeover.Round(time.Millisecond), completed.Sub(killed).Round(time.Second))
	t.Logf("limits: at most %d calls open at SIPp (limit %d); on the wire (%d INVITEs captured) at most %d INVITEs in a second (limit %d), spacing min %s, median %s, max %s",
		maxOpen, concurrent, len(sent), maxSecond, cps, gaps[0].Round(time.Millisecond), gaps[len(gaps)/2].Round(time.Millisecond),
		gaps[len(gaps)-1].Round(time.Millisecond))
	if maxOpen > concurrent {
		t.Errorf("%d calls open at once at SIPp; the batch allows %d", maxOpen, concurrent)
	}
	// The worker lets an INVITE go at least 1/cps after the one before (its
	// pacer, right before the INVITE is written); what remains between that
	// and the wire (a few ms, 11 ms seen at load 12 on 2 cores) can shorten
	// one gap and put cps+1 INVITEs within a second of each other, never more.
	if maxSecond > cps+1 {
		t.Errorf("%d INVITEs within a second on the wire; the batch allows %d a second", maxSecond, cps)
	}
}

var callIDRE = regexp.MustCompile(`(?mi)^(?:call-id|i)\s*:\s*(\S+)`)

func cxcotestTail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
