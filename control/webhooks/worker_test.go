package webhooks_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cxco/gateway/control/webhooks"
	"github.com/cxco/gateway/store"
	"github.com/cxco/gateway/store/redistest"
)

// TestEachEventTypeDelivered records every event type through the store's own
// changes and checks what the receiver gets: body, headers and a valid signature.
func TestEachEventTypeDelivered(t *testing.T) {
	st := openStore(t, "", "")
	ctx := context.Background()
	cid := newCompany(t, st)
	signed := newReceiver(t, "whsec_test_secret_1", nil)
	plain := newReceiver(t, "", nil)
	hs, err := st.CreateWebhook(ctx, cid, signed.URL, store.EventTypes, "whsec_test_secret_1")
	if err != nil {
		t.Fatal(err)
	}
	hp, _ := st.CreateWebhook(ctx, cid, plain.URL, []string{store.EventConversationCompleted}, "")
	startWorker(t, webhooks.Options{Store: st, AllowInsecure: true})

	a := liveAgent(t, st, cid) // agent.status_changed (publish)
	if _, err := st.PauseAgent(ctx, cid, a.ID); err != nil {
		t.Fatal(err)
	}
	conv := func(final store.Final) *store.Conversation {
		c, err := st.CreateConversation(ctx, store.Conversation{AgentID: a.ID, CompanyID: cid, Channel: "voice", Direction: "inbound"})
		if err != nil {
			t.Fatal(err)
		}
		c, err = st.FinishConversation(ctx, cid, c.ID, final)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	done := conv(store.Final{Status: store.ConvCompleted, EndReason: "caller hung up"})
	moved := conv(store.Final{Status: store.ConvTransferred, ReferTo: "+27110000000"})
	if _, err := st.EnableWhatsApp(ctx, cid, *a.PhoneNumberID, time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := st.CompleteWhatsApp(ctx, cid, *a.PhoneNumberID, true, "wa_1"); err != nil {
		t.Fatal(err)
	}
	if _, err := st.QueueDirect(ctx, hs, store.EventWebhookTest, map[string]any{"webhook_id": hs.ID}); err != nil {
		t.Fatal(err)
	}

	got := signed.wait(6, 10*time.Second)
	byType := map[string][]*request{}
	deliveryIDs := map[string]bool{}
	for _, r := range got {
		byType[r.event.Type] = append(byType[r.event.Type], r)
		if r.sigErr != nil {
			t.Errorf("%s: signature: %v (header %q)", r.event.Type, r.sigErr, r.header.Get(webhooks.HeaderSignature))
		}
		for k, want := range map[string]string{"Content-Type": "application/json", "User-Agent": "CXCo-Webhooks/1", webhooks.HeaderEvent: r.event.Type} {
			if r.header.Get(k) != want {
				t.Errorf("%s: header %s = %q, want %q", r.event.Type, k, r.header.Get(k), want)
			}
		}
		did := r.header.Get(webhooks.HeaderDelivery)
		if _, err := strconv.ParseInt(did, 10, 64); err != nil || deliveryIDs[did] {
			t.Errorf("%s: X-CXCO-Delivery %q is not a fresh delivery id", r.event.Type, did)
		}
		deliveryIDs[did] = true
		if !strings.HasPrefix(r.event.ID, "evt_") || r.event.CompanyID != cid || r.event.CreatedAt.IsZero() || len(r.event.Data) == 0 {
			t.Errorf("%s: body %s", r.event.Type, r.body)
		}
	}
	data := func(typ string, i int) map[string]any {
		t.Helper()
		if len(byType[typ]) <= i {
			t.Fatalf("no %s event #%d; got %v", typ, i+1, keys(byType))
		}
		var m map[string]any
		json.Unmarshal(byType[typ][i].event.Data, &m)
		return m
	}
	for _, tc := range []struct {
		name, typ string
		i         int
		field     string
		want      any
	}{
		{"completed", store.EventConversationCompleted, 0, "id", float64(done.ID)},
		{"completed status", store.EventConversationCompleted, 0, "status", "completed"},
		{"transferred", store.EventConversationTransferred, 0, "id", float64(moved.ID)},
		{"transferred to", store.EventConversationTransferred, 0, "sip_refer_destination", "+27110000000"},
		{"whatsapp", store.EventWhatsAppVerified, 0, "whatsapp_status", "active"},
		{"test", store.EventWebhookTest, 0, "webhook_id", float64(hs.ID)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if v := data(tc.typ, tc.i)[tc.field]; v != tc.want {
				t.Fatalf("data.%s = %v, want %v", tc.field, v, tc.want)
			}
		})
	}
	// Publish and pause: two agent events (delivered in either order).
	statuses := []string{data(store.EventAgentStatusChanged, 0)["status"].(string), data(store.EventAgentStatusChanged, 1)["status"].(string)}
	slices.Sort(statuses)
	if !slices.Equal(statuses, []string{store.AgentActive, store.AgentPaused}) {
		t.Errorf("agent events carry statuses %v, want active and paused", statuses)
	}
	// The unsigned webhook got its one subscribed event, without a signature header.
	p := plain.wait(1, 5*time.Second)
	if p[0].event.Type != store.EventConversationCompleted || p[0].header.Get(webhooks.HeaderSignature) != "" {
		t.Fatalf("unsigned webhook got %s with signature %q", p[0].event.Type, p[0].header.Get(webhooks.HeaderSignature))
	}
	d := onlyDelivery(t, st, cid, hp.ID)
	waitDelivery(t, st, cid, hp.ID, d.ID, 5*time.Second, func(d *store.Delivery) bool { return d.Status == store.DeliverySucceeded })
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// TestRetriesFollowSchedule: a receiver that fails twice then succeeds gets the event
// three times, after the scheduled gaps, and the delivery shows three attempts.
func TestRetriesFollowSchedule(t *testing.T) {
	st := openStore(t, "", "")
	ctx := context.Background()
	cid := newCompany(t, st)
	rcv := newReceiver(t, "whsec_retry_secret", func(n int) int {
		if n <= 2 {
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	})
	h, _ := st.CreateWebhook(ctx, cid, rcv.URL, store.EventTypes, "whsec_retry_secret")
	gaps := []time.Duration{200 * time.Millisecond, 400 * time.Millisecond}
	startWorker(t, webhooks.Options{Store: st, AllowInsecure: true, Retries: gaps})
	liveAgent(t, st, cid)

	got := rcv.wait(3, 10*time.Second)
	for i, r := range got {
		if r.sigErr != nil {
			t.Errorf("attempt %d: %v", i+1, r.sigErr)
		}
		if r.event.ID != got[0].event.ID || r.header.Get(webhooks.HeaderDelivery) != got[0].header.Get(webhooks.HeaderDelivery) {
			t.Errorf("attempt %d is of another event or delivery", i+1)
		}
	}
	for i, want := range gaps {
		gap := got[i+1].at.Sub(got[i].at)
		t.Logf("gap %d: %s (scheduled %s)", i+1, gap, want)
		if gap < want || gap > want+time.Second {
			t.Errorf("gap %d is %s, want %s (the schedule, plus at most a second of slack)", i+1, gap, want)
		}
	}
	d := onlyDelivery(t, st, cid, h.ID)
	d = waitDelivery(t, st, cid, h.ID, d.ID, 5*time.Second, func(d *store.Delivery) bool { return d.Status == store.DeliverySucceeded })
	if d.Attempts != 3 || d.LastStatusCode == nil || *d.LastStatusCode != 200 || d.NextAttemptAt != nil {
		t.Fatalf("delivery: %+v", d)
	}
	if n := len(rcv.requests()); n != 3 {
		t.Fatalf("receiver got %d requests, want 3", n)
	}
}

// TestFailureKinds: what counts as a failure and what last_error says.
func TestFailureKinds(t *testing.T) {
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	other := newReceiver(t, "", nil)
	big := strings.Repeat("x", 200<<10)
	for _, tc := range []struct {
		name    string
		handler http.HandlerFunc
		code    int
		errHas  string
	}{
		{"500 with a body", func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(500)
			w.Write([]byte("database on fire\n\n  details follow"))
		}, 500, "HTTP 500: database on fire details follow"},
		{"redirect not followed", func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, other.URL, http.StatusFound)
		}, 302, "redirects are not followed"},
		{"404", func(w http.ResponseWriter, r *http.Request) { http.NotFound(w, r) }, 404, "HTTP 404: 404 page not found"},
		{"huge body", func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(400)
			w.Write([]byte(big))
		}, 400, "HTTP 400: xxx"},
		{"no answer in time", func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body) // the server notices the client leaving only after the body
			select {
			case <-release:
			case <-r.Context().Done():
			}
		}, 0, "no response within 300ms"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := openStore(t, "", "")
			ctx := context.Background()
			cid := newCompany(t, st)
			srv := httptest.NewServer(tc.handler)
			t.Cleanup(srv.Close)
			h, _ := st.CreateWebhook(ctx, cid, srv.URL+"/h", store.EventTypes, "")
			startWorker(t, webhooks.Options{Store: st, AllowInsecure: true, Retries: []time.Duration{}, Timeout: 300 * time.Millisecond, Lease: 3 * time.Second})
			d, _ := st.QueueDirect(ctx, h, store.EventWebhookTest, map[string]any{})
			d = waitDelivery(t, st, cid, h.ID, d.ID, 10*time.Second, func(d *store.Delivery) bool { return d.Status == store.DeliveryFailed })
			code := 0
			if d.LastStatusCode != nil {
				code = *d.LastStatusCode
			}
			if code != tc.code || d.LastError == nil || !strings.Contains(*d.LastError, tc.errHas) || d.Attempts != 1 {
				t.Fatalf("delivery: code %d, error %v, attempts %d; want %d and %q", code, deref(d.LastError), d.Attempts, tc.code, tc.errHas)
			}
			if len(*d.LastError) > 600 {
				t.Fatalf("last_error is %d bytes long", len(*d.LastError))
			}
		})
	}
	if n := len(other.requests()); n != 0 {
		t.Fatalf("the redirect target got %d requests", n)
	}
}

func deref(s *string) string {
	if s == nil {
		return "<nil>"
	}
	return *s
}

// TestSSRFRefusedAtDelivery: targets that are (or resolve, at delivery time, to)
// loopback or metadata addresses are refused without --webhook-allow-insecure; the
// same targets are delivered to when it is given.
func TestSSRFRefusedAtDelivery(t *testing.T) {
	rcv := newReceiver(t, "", nil)
	tlsRcv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { t.Error("the TLS receiver on 127.0.0.1 was reached") }))
	t.Cleanup(tlsRcv.Close)
	p := port(rcv.srv)
	resolver := fakeResolver{
		// A name that was public at registration and resolves to 127.0.0.1 now.
		"rebind.example.com": {netip.MustParseAddr("127.0.0.1")},
		"mixed.example.com":  {netip.MustParseAddr("93.184.216.34"), netip.MustParseAddr("127.0.0.1")},
	}
	for _, tc := range []struct {
		name, url, errHas string
	}{
		{"name rebinding to 127.0.0.1", "https://rebind.example.com:" + port(tlsRcv) + "/h", "resolves to 127.0.0.1"},
		{"one of the addresses is loopback", "https://mixed.example.com:" + port(tlsRcv) + "/h", "resolves to 127.0.0.1"},
		{"loopback literal over https", "https://127.0.0.1:" + port(tlsRcv) + "/h", "loopback"},
		{"localhost", "https://localhost:" + port(tlsRcv) + "/h", "not a public host"},
		{"metadata", "https://169.254.169.254/latest/meta-data", "metadata"},
		{"plain http", rcv.URL, "must use https"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := openStore(t, "", "")
			ctx := context.Background()
			cid := newCompany(t, st)
			// Stored directly: the API refuses most of these at registration already.
			h, _ := st.CreateWebhook(ctx, cid, tc.url, store.EventTypes, "")
			startWorker(t, webhooks.Options{Store: st, Retries: []time.Duration{}, Resolver: resolver})
			d, _ := st.QueueDirect(ctx, h, store.EventWebhookTest, map[string]any{})
			d = waitDelivery(t, st, cid, h.ID, d.ID, 10*time.Second, func(d *store.Delivery) bool { return d.Status == store.DeliveryFailed })
			if d.LastError == nil || !strings.Contains(*d.LastError, "refused") || !strings.Contains(*d.LastError, tc.errHas) {
				t.Fatalf("last_error %q, want a refusal mentioning %q", deref(d.LastError), tc.errHas)
			}
		})
	}
	if n := len(rcv.requests()); n != 0 {
		t.Fatalf("the receiver got %d requests", n)
	}
	t.Run("allowed when insecure", func(t *testing.T) {
		st := openStore(t, "", "")
		ctx := context.Background()
		cid := newCompany(t, st)
		h, _ := st.CreateWebhook(ctx, cid, "http://rebind.example.com:"+p+"/h", store.EventTypes, "")
		startWorker(t, webhooks.Options{Store: st, AllowInsecure: true, Resolver: resolver})
		st.QueueDirect(ctx, h, store.EventWebhookTest, map[string]any{})
		rcv.wait(1, 10*time.Second)
	})
}

// TestSecretRotationKeepsQueue: a delivery queued under one secret is signed with the
// secret the webhook has when the attempt is made.
func TestSecretRotationKeepsQueue(t *testing.T) {
	st := openStore(t, "", "")
	ctx := context.Background()
	cid := newCompany(t, st)
	rcv := newReceiver(t, "whsec_new_secret", func(n int) int {
		if n == 1 {
			return 500
		}
		return 200
	})
	h, _ := st.CreateWebhook(ctx, cid, rcv.URL, store.EventTypes, "whsec_old_secret")
	startWorker(t, webhooks.Options{Store: st, AllowInsecure: true, Retries: []time.Duration{time.Second}})
	st.QueueDirect(ctx, h, store.EventWebhookTest, map[string]any{})
	first := rcv.wait(1, 10*time.Second)[0]
	if err := webhooks.VerifySignature("whsec_old_secret", first.header.Get(webhooks.HeaderSignature), first.body, time.Now(), 5*time.Minute); err != nil {
		t.Fatalf("first attempt not signed with the old secret: %v", err)
	}
	if _, err := st.UpdateWebhook(ctx, cid, h.ID, func(w *store.Webhook) error { st.SealWebhookSecret(w, "whsec_new_secret"); return nil }); err != nil {
		t.Fatal(err)
	}
	second := rcv.wait(2, 10*time.Second)[1]
	if second.sigErr != nil {
		t.Fatalf("the retry after rotation is not signed with the new secret: %v", second.sigErr)
	}
	d := onlyDelivery(t, st, cid, h.ID)
	waitDelivery(t, st, cid, h.ID, d.ID, 5*time.Second, func(d *store.Delivery) bool { return d.Status == store.DeliverySucceeded && d.Attempts == 2 })
}

// TestDisableAndResume: a webhook failing for DisableAfter is disabled with a reason;
// its queued deliveries wait, new events skip it, and PUT status active resumes them.
func TestDisableAndResume(t *testing.T) {
	st := openStore(t, "", "")
	ctx := context.Background()
	cid := newCompany(t, st)
	healthy := make(chan struct{})
	rcv := newReceiver(t, "", func(n int) int {
		select {
		case <-healthy:
			return 200
		default:
			return 503
		}
	})
	witness := newReceiver(t, "", nil) // a second webhook that always answers
	h, _ := st.CreateWebhook(ctx, cid, rcv.URL, store.EventTypes, "")
	st.CreateWebhook(ctx, cid, witness.URL, store.EventTypes, "")
	retries := make([]time.Duration, 20)
	for i := range retries {
		retries[i] = 100 * time.Millisecond
	}
	startWorker(t, webhooks.Options{Store: st, AllowInsecure: true, Retries: retries, DisableAfter: 500 * time.Millisecond})
	a := liveAgent(t, st, cid)

	var w *store.Webhook
	eventually(t, 15*time.Second, "the failing webhook is disabled", func() bool {
		w, _ = st.GetWebhook(ctx, cid, h.ID)
		return w.Status == store.WebhookDisabled
	})
	if w.DisableReason == nil || !strings.Contains(*w.DisableReason, "HTTP 503") || w.DisabledAt == nil {
		t.Fatalf("disabled without a reason: %+v", w)
	}
	t.Logf("disabled_reason: %s", *w.DisableReason)
	d := onlyDelivery(t, st, cid, h.ID)
	d = waitDelivery(t, st, cid, h.ID, d.ID, 5*time.Second, func(d *store.Delivery) bool { return d.Parked })
	if d.Status != store.DeliveryPending || d.NextAttemptAt != nil {
		t.Fatalf("parked delivery: %+v", d)
	}
	// An event while disabled is not queued for the webhook (the witness getting it
	// shows it has been fanned out).
	before := len(rcv.requests())
	st.PauseAgent(ctx, cid, a.ID)
	witness.wait(2, 10*time.Second)
	// Re-enable as PUT {"status": "active"} does, with a healthy receiver.
	close(healthy)
	if _, err := st.UpdateWebhook(ctx, cid, h.ID, func(w *store.Webhook) error {
		w.Status, w.FailingSince, w.DisabledAt, w.DisableReason = store.WebhookActive, nil, nil, nil
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	got := rcv.wait(before+1, 10*time.Second)
	var data struct{ Status string }
	json.Unmarshal(got[before].event.Data, &data)
	if got[before].event.Type != store.EventAgentStatusChanged || data.Status != store.AgentActive {
		t.Fatalf("resumed %s with agent status %s; want the parked publish event", got[before].event.Type, data.Status)
	}
	waitDelivery(t, st, cid, h.ID, d.ID, 5*time.Second, func(d *store.Delivery) bool { return d.Status == store.DeliverySucceeded })
	if p, _ := st.ListDeliveries(ctx, cid, h.ID, 0, 100); len(p.Items) != 1 {
		t.Fatalf("%d deliveries: the pause while disabled was queued for the webhook", len(p.Items))
	}
}

// TestDeleteStopsDeliveries: deleting a webhook ends its retries.
func TestDeleteStopsDeliveries(t *testing.T) {
	st := openStore(t, "", "")
	ctx := context.Background()
	cid := newCompany(t, st)
	rcv := newReceiver(t, "", func(int) int { return 500 })
	h, _ := st.CreateWebhook(ctx, cid, rcv.URL, store.EventTypes, "")
	w := startWorker(t, webhooks.Options{Store: st, AllowInsecure: true, Retries: []time.Duration{150 * time.Millisecond, 150 * time.Millisecond, 150 * time.Millisecond}})
	d, _ := st.QueueDirect(ctx, h, store.EventWebhookTest, map[string]any{})
	rcv.wait(1, 10*time.Second)
	if err := st.DeleteWebhook(ctx, cid, h.ID); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the delivery of the deleted webhook is dropped", func() bool {
		_, err := st.GetDelivery(ctx, cid, h.ID, d.ID)
		return err != nil
	})
	n := len(rcv.requests())
	if n > 2 {
		t.Fatalf("%d attempts; at most one after the delete (one may have been under way)", n)
	}
	t.Logf("attempts: %d, worker stats %+v", n, w.Stats())
}

// TestTakeoverAfterCrash: deliveries leased by a node that died, and outbox entries it
// read but never fanned out, are delivered by another node once the lease runs out.
func TestTakeoverAfterCrash(t *testing.T) {
	st := openStore(t, "", "")
	ctx := context.Background()
	cid := newCompany(t, st)
	rcv := newReceiver(t, "", nil)
	h, _ := st.CreateWebhook(ctx, cid, rcv.URL, store.EventTypes, "")
	// The dead node leased a delivery...
	d, _ := st.QueueDirect(ctx, h, store.EventWebhookTest, map[string]any{})
	if got, _, _, err := st.ClaimDeliveries(ctx, cid, 10, 2*time.Second, "dead"); err != nil || len(got) != 1 {
		t.Fatalf("dead node's claim: %v %v", got, err)
	}
	// ...and read an event from the outbox without fanning it out.
	st.ReadOutbox(ctx, "dead", []int64{cid}, 10, nil)
	liveAgent(t, st, cid)
	if es, err := st.ReadOutbox(ctx, "dead", []int64{cid}, 10, nil); err != nil || len(es[cid]) != 1 {
		t.Fatalf("dead node's read: %v %v", es, err)
	}
	start := time.Now()
	startWorker(t, webhooks.Options{Store: st, AllowInsecure: true, NodeID: "alive", Timeout: 500 * time.Millisecond, Lease: time.Second})
	got := rcv.wait(2, 20*time.Second)
	t.Logf("taken over after %s", time.Since(start))
	types := map[string]bool{}
	for _, r := range got {
		types[r.event.Type] = true
	}
	if !types[store.EventWebhookTest] || !types[store.EventAgentStatusChanged] {
		t.Fatalf("got %v", types)
	}
	waitDelivery(t, st, cid, h.ID, d.ID, 5*time.Second, func(d *store.Delivery) bool { return d.Status == store.DeliverySucceeded })
}

// TestTwoWorkersDeliverOnce: two nodes on one Redis deliver each event to each webhook
// exactly once.
func TestTwoWorkersDeliverOnce(t *testing.T) {
	st := openStore(t, "", "")
	ctx := context.Background()
	cid := newCompany(t, st)
	r1, r2 := newReceiver(t, "", nil), newReceiver(t, "", nil)
	st.CreateWebhook(ctx, cid, r1.URL, store.EventTypes, "")
	st.CreateWebhook(ctx, cid, r2.URL, []string{store.EventAgentStatusChanged}, "")
	w1 := startWorker(t, webhooks.Options{Store: st, AllowInsecure: true, NodeID: "n1", Workers: 4})
	w2 := startWorker(t, webhooks.Options{Store: st, AllowInsecure: true, NodeID: "n2", Workers: 4})
	a := liveAgent(t, st, cid)
	const flips = 300
	if err := flipAgent(ctx, st, cid, a.ID, flips); err != nil {
		t.Fatal(err)
	}
	for _, r := range []*receiver{r1, r2} {
		got := r.wait(flips+1, 30*time.Second)
		seen := map[string]int{}
		for _, q := range got {
			seen[q.event.ID]++
		}
		for id, n := range seen {
			if n != 1 {
				t.Errorf("event %s delivered %d times", id, n)
			}
		}
		if len(seen) != flips+1 {
			t.Errorf("%d distinct events, want %d", len(seen), flips+1)
		}
	}
	// The counters follow the receivers by the attempts still being recorded.
	eventually(t, 10*time.Second, "the nodes count every success", func() bool {
		return w1.Stats().Succeeded+w2.Stats().Succeeded >= 2*(flips+1)
	})
	s1, s2 := w1.Stats(), w2.Stats()
	t.Logf("node 1 %+v, node 2 %+v", s1, s2)
	if s1.Attempts+s2.Attempts != 2*(flips+1) {
		t.Fatalf("%d attempts, want %d", s1.Attempts+s2.Attempts, 2*(flips+1))
	}
}

// TestEmbeddedStore: the worker runs on the embedded (miniredis) store too.
func TestEmbeddedStore(t *testing.T) {
	sealer, _ := store.NewSealer(store.GenerateSecretKey())
	st, err := store.Open(context.Background(), store.Options{Sealer: sealer, Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ctx := context.Background()
	cid := newCompany(t, st)
	rcv := newReceiver(t, "whsec_embedded", func(n int) int {
		if n == 1 {
			return 500
		}
		return 200
	})
	st.CreateWebhook(ctx, cid, rcv.URL, store.EventTypes, "whsec_embedded")
	startWorker(t, webhooks.Options{Store: st, AllowInsecure: true, Retries: []time.Duration{100 * time.Millisecond}})
	liveAgent(t, st, cid)
	got := rcv.wait(2, 10*time.Second)
	if got[1].sigErr != nil || got[1].event.Type != store.EventAgentStatusChanged {
		t.Fatalf("%s: %v", got[1].event.Type, got[1].sigErr)
	}
}

func TestNewRejectsBadOptions(t *testing.T) {
	st := openStore(t, "", "")
	for _, tc := range []struct {
		name string
		o    webhooks.Options
	}{
		{"no store", webhooks.Options{}},
		{"lease shorter than the timeout", webhooks.Options{Store: st, Timeout: 10 * time.Second, Lease: 5 * time.Second}},
		{"negative retry", webhooks.Options{Store: st, Retries: []time.Duration{time.Second, -time.Second}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := webhooks.New(tc.o); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

// TestSurvivesRedisOutage: the worker keeps running through a Redis outage (and the
// restart that flushes its scripts) and delivers again afterwards.
func TestSurvivesRedisOutage(t *testing.T) {
	r := redistest.StartRedis(t)
	st := openStore(t, r.URL, "")
	ctx := context.Background()
	startWorker(t, webhooks.Options{Store: st, AllowInsecure: true})
	cid := newCompany(t, st)
	rcv := newReceiver(t, "", nil)
	h, _ := st.CreateWebhook(ctx, cid, rcv.URL, store.EventTypes, "")
	st.QueueDirect(ctx, h, store.EventWebhookTest, map[string]any{})
	rcv.wait(1, 10*time.Second)

	r.Stop()
	eventually(t, 10*time.Second, "the store notices the outage", func() bool { return st.Ping(ctx) != nil })
	r.Restart(t) // empty: no persistence in tests
	eventually(t, 10*time.Second, "the store answers again", func() bool { return st.Ping(ctx) == nil })

	cid = newCompany(t, st)
	h, _ = st.CreateWebhook(ctx, cid, rcv.URL, store.EventTypes, "")
	liveAgent(t, st, cid)
	got := rcv.wait(2, 20*time.Second)
	if got[1].event.Type != store.EventAgentStatusChanged {
		t.Fatalf("after the outage: %s", got[1].event.Type)
	}
}
