package control

import (
	"math"
	"sort"
	"time"

	"github.com/cxco/gateway/store"
)

type period struct {
	StartDate string `json:"start_date"`
	EndDate   string `json:"end_date"`
}

type voiceUsage struct {
	TotalConversations   int64   `json:"total_conversations"`
	TotalMinutes         float64 `json:"total_minutes"`
	TotalSIPReferMinutes float64 `json:"total_sip_refer_minutes"`
	// The outbound part of the totals (calls the agents placed); inbound is the rest.
	OutboundConversations  int64    `json:"outbound_conversations"`
	OutboundMinutes        float64  `json:"outbound_minutes"`
	AverageDurationSeconds float64  `json:"average_duration_seconds"`
	SuccessRate            *float64 `json:"success_rate"`
}

type whatsappUsage struct {
	TotalConversations int64 `json:"total_conversations"`
	TotalMessages      int64 `json:"total_messages"`
}

type agentBreakdown struct {
	AgentID            int64   `json:"agent_id"`
	AgentName          string  `json:"agent_name"`
	VoiceMinutes       float64 `json:"voice_minutes"`
	SIPReferMinutes    float64 `json:"sip_refer_minutes"`
	OutboundMinutes    float64 `json:"outbound_minutes"`
	TotalConversations int64   `json:"total_conversations"`
}

type usageBody struct {
	Period       period           `json:"period"`
	Voice        voiceUsage       `json:"voice"`
	WhatsApp     whatsappUsage    `json:"whatsapp"`
	AgentsActive int              `json:"agents_active"`
	ByAgent      []agentBreakdown `json:"by_agent"`
}

// minutes turns seconds into minutes with two decimals.
func minutes(secs int64) float64 { return math.Round(float64(secs)/60*100) / 100 }

func round(v float64, places int) float64 {
	p := math.Pow(10, float64(places))
	return math.Round(v*p) / p
}

func voiceOf(u store.Usage) voiceUsage {
	v := voiceUsage{TotalConversations: u.VoiceConversations, TotalMinutes: minutes(u.VoiceSeconds),
		TotalSIPReferMinutes: minutes(u.ReferSeconds), OutboundConversations: u.OutboundConversations, OutboundMinutes: minutes(u.OutboundSeconds)}
	if u.VoiceConversations > 0 {
		// The average call, transfer time included.
		v.AverageDurationSeconds = round(float64(u.VoiceSeconds+u.ReferSeconds)/float64(u.VoiceConversations), 1)
	}
	if u.Analysed > 0 {
		r := round(float64(u.Successful)/float64(u.Analysed), 3)
		v.SuccessRate = &r
	}
	return v
}

// usage builds the company usage body. agents_active counts the agents that had
// conversations in the period.
func (s *Server) usage(c *call, start, end time.Time) (*usageBody, error) {
	rep, err := s.st.UsageRange(c.ctx, c.companyID(), start, end, 0)
	if err != nil {
		return nil, err
	}
	body := &usageBody{Period: period{start.Format(store.DayFormat), end.Format(store.DayFormat)},
		Voice: voiceOf(rep.Total), WhatsApp: whatsappUsage{rep.Total.WAConversations, rep.Total.WAMessages},
		ByAgent: []agentBreakdown{}}
	ids := make([]int64, 0, len(rep.ByAgent))
	for id, u := range rep.ByAgent {
		if u.VoiceConversations > 0 || u.WAConversations > 0 {
			ids = append(ids, id)
		}
	}
	body.AgentsActive = len(ids)
	names := map[int64]string{}
	if agents, err := s.st.GetAgents(c.ctx, c.companyID(), ids); err == nil { // a name is a nicety: the body stands without it
		for _, a := range agents {
			names[a.ID] = a.Name
		}
	}
	for _, id := range ids {
		u := rep.ByAgent[id]
		body.ByAgent = append(body.ByAgent, agentBreakdown{AgentID: id, AgentName: names[id], VoiceMinutes: minutes(u.VoiceSeconds),
			SIPReferMinutes: minutes(u.ReferSeconds), OutboundMinutes: minutes(u.OutboundSeconds), TotalConversations: u.VoiceConversations})
	}
	sort.Slice(body.ByAgent, func(i, j int) bool {
		a, b := body.ByAgent[i], body.ByAgent[j]
		if a.VoiceMinutes != b.VoiceMinutes {
			return a.VoiceMinutes > b.VoiceMinutes
		}
		return a.AgentID < b.AgentID
	})
	return body, nil
}

func (s *Server) companyUsage(c *call) (result, error) {
	if _, err := c.ownCompany(); err != nil {
		return result{}, err
	}
	return s.usageSummary(c)
}

func (s *Server) usageSummary(c *call) (result, error) {
	start, end, err := dateRange(c.r.URL.Query(), time.Now().UTC(), false)
	if err != nil {
		return result{}, err
	}
	body, err := s.usage(c, start, end)
	if err != nil {
		return result{}, err
	}
	return ok(body)
}

func (s *Server) agentUsage(c *call) (result, error) {
	a, err := c.agent()
	if err != nil {
		return result{}, err
	}
	start, end, err := dateRange(c.r.URL.Query(), time.Now().UTC(), false)
	if err != nil {
		return result{}, err
	}
	rep, err := s.st.UsageRange(c.ctx, c.companyID(), start, end, a.ID)
	if err != nil {
		return result{}, err
	}
	return ok(map[string]any{
		"agent_id": a.ID,
		"period":   period{start.Format(store.DayFormat), end.Format(store.DayFormat)},
		"voice":    voiceOf(rep.Total),
		"whatsapp": whatsappUsage{rep.Total.WAConversations, rep.Total.WAMessages},
	})
}

type dailyUsage struct {
	Date     string        `json:"date"`
	Voice    voiceUsage    `json:"voice"`
	WhatsApp whatsappUsage `json:"whatsapp"`
}

func (s *Server) usageDaily(c *call) (result, error) {
	start, end, err := dateRange(c.r.URL.Query(), time.Now().UTC(), true)
	if err != nil {
		return result{}, err
	}
	agentID, err := c.queryID("agent_id")
	if err != nil {
		return result{}, err
	}
	if agentID > 0 {
		if _, err := s.st.GetAgent(c.ctx, c.companyID(), agentID); err != nil {
			return result{}, toAPIError(err, "agent")
		}
	}
	rep, err := s.st.UsageRange(c.ctx, c.companyID(), start, end, agentID)
	if err != nil {
		return result{}, err
	}
	out := make([]dailyUsage, len(rep.Days))
	for i, d := range rep.Days {
		out[i] = dailyUsage{Date: d.Date, Voice: voiceOf(d.Usage), WhatsApp: whatsappUsage{d.WAConversations, d.WAMessages}}
	}
	return ok(out)
}
