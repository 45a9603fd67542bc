package main

import (
	"testing"

	"github.com/cxco/gateway/cmd/cxco/cxcotest"
)

// TestCarrierNationalNumbers: a carrier added through the agency API (its own
// source address, country ZA) sends the dialled number in national format,
// 0211234567, as many do. The gateway routes it as +27211234567 to the agent
// and keeps the raw dialled string in the conversation's metadata. Before trunks
// had a number rule this call got 404 (it looked for +0211234567).
func TestCarrierNationalNumbers(t *testing.T) {
	g := cxcotest.StartGateway(t, cxcotest.GatewayOptions{})
	tn := g.NewTenant("National")
	g.AddNumber("+27211234567", "ZA", false)
	_, number := g.PublishAgent(tn, "National", "ZA", nil)
	if number != "+27211234567" {
		t.Fatalf("published on %s", number)
	}
	tr := g.Must(201, "POST", "/api/agency/trunks", g.AgencyKey, map[string]any{
		"name": "za-carrier", "allow": []string{"127.0.0.2/32"}, "numbers": map[string]any{"country": "ZA"}})
	// SIPp sends from 127.0.0.2: the za-carrier trunk, more specific than the
	// default trunk's 127.0.0.0/8.
	sipp(t, g, "uac_agent.xml", "0211234567", "-i", "127.0.0.2", "-mi", "127.0.0.2")
	c := lastConversation(t, g, tn)
	meta, _ := c["metadata_"].(map[string]any)
	sipMeta, _ := meta["sip"].(map[string]any)
	if c["called_number"] != "+27211234567" || c["status"] != "completed" || sipMeta["dialled"] != "0211234567" ||
		sipMeta["trunk"] != "za-carrier" || sipMeta["trunk_id"] != tr["id"] {
		t.Fatalf("conversation: called %v status %v metadata %v", c["called_number"], c["status"], meta)
	}
	// From the default trunk's addresses (no country) the same string is no number of ours.
	sipp(t, g, "uac_404.xml", "0211234567")
}
