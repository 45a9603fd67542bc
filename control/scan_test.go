package control_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestRedisHoldsNoSecrets: after exercising keys, credentials and webhooks, every key
// of every type in Redis is read back in full, and no API key (agency, company or
// user, current or rotated away), provider credential or webhook secret is in it in
// plain text.
func TestRedisHoldsNoSecrets(t *testing.T) {
	e := newEnv(t, envOpts{verifyDelay: time.Millisecond})
	secrets := map[string]string{"agency key": e.agency}
	var tenants []tenant
	for i := 0; i < 3; i++ {
		tn := e.bigTenant(p("Secretive %d", i))
		tenants = append(tenants, tn)
		secrets[p("company %d key", i)] = tn.compKey
		secrets[p("company %d user key", i)] = tn.userKey
		u := e.must(201, "POST", "/api/users/", tn.compKey, map[string]any{"email": p("second%d@secret.example", i), "name": "Second"}).json(t)
		secrets[p("company %d second user key", i)] = u["api_key"].(string)
	}
	tn := tenants[0]
	// A rotated company key: neither the old nor the new one may be stored.
	rot := e.must(200, "POST", p("/api/agency/companies/%d/rotate-key", tenants[1].id), e.agency, nil).json(t)
	secrets["rotated company key"] = rot["api_key"].(string)
	// A deleted user's key.
	gone := e.must(201, "POST", "/api/users/", tn.compKey, map[string]any{"email": "gone@secret.example", "name": "Gone"}).json(t)
	secrets["deleted user key"] = gone["api_key"].(string)
	e.must(204, "DELETE", p("/api/users/%d", num(gone["id"])), tn.compKey, nil)

	// Provider credentials, several fields and providers.
	creds := map[string]map[string]string{
		"elevenlabs":    {"api_key": "sk-elevenlabs-ZEBRA-quokka-7731-do-not-store"},
		"sip_trunk":     {"username": "trunk-user-PELICAN-4410", "password": "trunk-pass-MARMOT-9925"},
		"meta_whatsapp": {"access_token": "EAAG-walrus-ACCESS-3301", "business_account_id": "waba-OTTER-5520"},
	}
	for slug, c := range creds {
		e.must(201, "POST", "/api/providers/"+slug+"/credentials", tn.compKey, map[string]any{"company_id": tn.id, "credentials": c})
		for k, v := range c {
			secrets[slug+" "+k] = v
		}
	}
	// Replaced credentials.
	e.must(204, "DELETE", "/api/providers/elevenlabs/credentials", tn.compKey, nil)
	e.must(201, "POST", "/api/providers/elevenlabs/credentials", tn.compKey, map[string]any{"company_id": tn.id,
		"credentials": map[string]any{"api_key": "sk-elevenlabs-second-GIRAFFE-1188"}})
	secrets["replacement elevenlabs key"] = "sk-elevenlabs-second-GIRAFFE-1188"

	// Webhook secrets: on create, rotated by PUT.
	w := e.must(201, "POST", "/api/webhooks/", tn.compKey, map[string]any{"url": "https://hooks.example.com/s",
		"events": []string{"agent.status_changed", "phone_number.whatsapp_verified"}, "secret": "whsec_FLAMINGO-first-6620"}).json(t)
	secrets["webhook secret"] = "whsec_FLAMINGO-first-6620"
	e.must(200, "PUT", p("/api/webhooks/%d", num(w["id"])), tn.compKey, map[string]any{"secret": "whsec_HERON-rotated-7731"})
	secrets["rotated webhook secret"] = "whsec_HERON-rotated-7731"
	e.must(201, "POST", "/api/webhooks/", tenants[2].compKey, map[string]any{"url": "https://hooks.example.com/t",
		"events": []string{"conversation.completed"}, "secret": "whsec_IBIS-other-company-1144"})
	secrets["other company's webhook secret"] = "whsec_IBIS-other-company-1144"

	// Everything else that writes to Redis: agents, numbers, events, WhatsApp,
	// conversations, transcripts, contacts, usage, rate-limit counters.
	e.addNumbers("ZA", 3)
	a := e.newAgent(tn, "Keeper")
	pn := num(e.publish(tn, a)["phone_number"].(map[string]any)["id"])
	e.must(200, "POST", p("/api/agents/%d/pause", a), tn.userKey, nil)
	e.must(200, "POST", p("/api/agents/%d/resume", a), tn.userKey, nil)
	e.must(200, "POST", p("/api/phone-numbers/%d/enable-whatsapp", pn), tn.userKey, nil)
	waitFor(t, 10*time.Second, "WhatsApp verification", func() bool {
		return e.must(200, "GET", p("/api/phone-numbers/%d/whatsapp-status", pn), tn.userKey, nil).json(t)["whatsapp_status"] == "active"
	})
	e.makeConv(tn.id, convSpec{agent: a, caller: "+27821234567", started: time.Now().UTC(), answered: true, dur: 30, status: "completed",
		success: bptr(true), transcript: sampleTranscript, metadata: map[string]any{"llm_tokens": 12}})
	e.must(200, "PUT", p("/api/agents/%d", a), tn.userKey, map[string]any{"name": "Keeper II"})
	e.must(200, "DELETE", p("/api/agents/%d", e.newAgent(tn, "Temp")), tn.userKey, nil)

	// Dump every key, of every type, in full.
	ctx := context.Background()
	rdb := e.st.Redis()
	var dump strings.Builder
	types := map[string]int{}
	var cursor uint64
	for {
		keys, next, err := rdb.Scan(ctx, cursor, "*", 500).Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range keys {
			typ, err := rdb.Type(ctx, k).Result()
			if err != nil {
				t.Fatal(err)
			}
			types[typ]++
			fmt.Fprintf(&dump, "%s %s\n", typ, k)
			var v any
			switch typ {
			case "string":
				v, err = rdb.Get(ctx, k).Result()
			case "hash":
				v, err = rdb.HGetAll(ctx, k).Result()
			case "list":
				v, err = rdb.LRange(ctx, k, 0, -1).Result()
			case "set":
				v, err = rdb.SMembers(ctx, k).Result()
			case "zset":
				v, err = rdb.ZRangeWithScores(ctx, k, 0, -1).Result()
			case "stream":
				v, err = rdb.XRange(ctx, k, "-", "+").Result()
			case "none": // expired between SCAN and TYPE
				continue
			default:
				t.Fatalf("key %s has type %s, which this test cannot read: extend it", k, typ)
			}
			if err != nil {
				t.Fatalf("read %s %s: %v", typ, k, err)
			}
			fmt.Fprintf(&dump, "%v\n", v)
		}
		cursor = next
		if cursor == 0 {
			break
		}
	}
	for _, typ := range []string{"string", "hash", "list", "set", "zset", "stream"} {
		if types[typ] == 0 {
			t.Errorf("no %s key was found: the scan did not see the whole store (%v)", typ, types)
		}
	}
	all := dump.String()
	for _, sanity := range []string{"Secretive 0", "Keeper II", "agent.status_changed", "+27821234567", "Great question!"} {
		if !strings.Contains(all, sanity) {
			t.Fatalf("the dump lacks %q: it did not read the values", sanity)
		}
	}
	for what, secret := range secrets {
		needles := []string{secret}
		for _, prefix := range []string{"cxco_agcy_k_", "cxco_comp_k_", "cxco_user_k_"} {
			if rest, ok := strings.CutPrefix(secret, prefix); ok {
				needles = append(needles, rest) // the random part alone
			}
		}
		for _, n := range needles {
			if i := strings.Index(all, n); i >= 0 {
				start := max(0, i-200)
				t.Errorf("%s is in Redis in plain text: …%s…", what, all[start:min(len(all), i+len(n)+50)])
			}
		}
	}
	t.Logf("scanned %d keys: %v", strings.Count(all, "\n")/2, types)
}
