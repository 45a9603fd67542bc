package control

import "github.com/cxco/gateway/store"

// convSummary is a conversation in a list: no transcript, no metadata_.
func convSummary(cv *store.Conversation) *store.Conversation {
	cp := *cv
	cp.Metadata = nil
	return &cp
}

type convDetail struct {
	*store.Conversation
	Transcript []store.TranscriptEntry `json:"transcript"`
	Metadata   map[string]any          `json:"metadata_"`
}

func (c *call) channelFilter() (string, error) {
	ch := c.query("channel")
	if ch != "" {
		if err := oneOf("channel", ch, "voice", "whatsapp"); err != nil {
			return "", err
		}
	}
	return ch, nil
}

func (s *Server) conversationPage(c *call, agentID int64) (result, error) {
	cursor, limit, err := c.paging()
	if err != nil {
		return result{}, err
	}
	ch, err := c.channelFilter()
	if err != nil {
		return result{}, err
	}
	page, err := s.st.ListConversations(c.ctx, c.companyID(), agentID, ch, cursor, limit)
	if err != nil {
		return result{}, err
	}
	items := make([]*store.Conversation, len(page.Items))
	for i, cv := range page.Items {
		items[i] = convSummary(cv)
	}
	return ok(newPage(items, page.HasMore, page.NextCursor))
}

func (s *Server) listConversations(c *call) (result, error) {
	agentID, err := c.queryID("agent_id")
	if err != nil {
		return result{}, err
	}
	return s.conversationPage(c, agentID)
}

func (s *Server) agentConversations(c *call) (result, error) {
	a, err := c.agent()
	if err != nil {
		return result{}, err
	}
	return s.conversationPage(c, a.ID)
}

func (s *Server) getConversation(c *call) (result, error) {
	id, err := c.pathID("conversation_id")
	if err != nil {
		return result{}, err
	}
	d, err := s.st.GetConversationDetail(c.ctx, c.companyID(), id)
	if err != nil {
		return result{}, err
	}
	md := d.Metadata
	if md == nil {
		md = map[string]any{}
	}
	cv := *d.Conversation
	cv.Metadata = nil
	return ok(convDetail{Conversation: &cv, Transcript: d.Transcript, Metadata: md})
}

func (s *Server) listContacts(c *call) (result, error) {
	cursor, limit, err := c.paging()
	if err != nil {
		return result{}, err
	}
	page, err := s.st.ListContacts(c.ctx, c.companyID(), c.query("search"), cursor, limit)
	if err != nil {
		return result{}, err
	}
	return ok(newPage(page.Items, page.HasMore, page.NextCursor))
}

func (s *Server) getContact(c *call) (result, error) {
	id, err := c.pathID("contact_id")
	if err != nil {
		return result{}, err
	}
	ct, err := s.st.GetContact(c.ctx, c.companyID(), id)
	if err != nil {
		return result{}, err
	}
	convs, err := s.st.ContactConversations(c.ctx, c.companyID(), id, 10)
	if err != nil {
		return result{}, err
	}
	recent := make([]*store.Conversation, len(convs))
	for i, cv := range convs {
		recent[i] = convSummary(cv)
	}
	return ok(struct {
		*store.Contact
		RecentConversations []*store.Conversation `json:"recent_conversations"`
	}{ct, recent})
}

func (s *Server) putContact(c *call) (result, error) {
	id, err := c.pathID("contact_id")
	if err != nil {
		return result{}, err
	}
	f, err := readForm(c.w, c.r, "name", "email", "notes", "tags")
	if err != nil {
		return result{}, err
	}
	var p store.ContactPatch
	if p.Name, err = f.str("name", false, 0, 200); err != nil {
		return result{}, err
	}
	if p.Email, err = f.str("email", false, 0, 254); err != nil {
		return result{}, err
	}
	if p.Email != nil && *p.Email != "" {
		if _, err := email("email", *p.Email); err != nil {
			return result{}, err
		}
	}
	if p.Notes, err = f.str("notes", false, 0, 10000); err != nil {
		return result{}, err
	}
	if p.Tags, err = f.strings("tags", false); err != nil {
		return result{}, err
	}
	if len(p.Tags) > 50 {
		return result{}, invalid("tags: at most 50")
	}
	for i, t := range p.Tags {
		if t == "" || len(t) > 50 {
			return result{}, invalid("tags[%d]: must be 1 to 50 characters", i)
		}
	}
	ct, err := s.st.UpdateContact(c.ctx, c.companyID(), id, p)
	if err != nil {
		return result{}, err
	}
	return ok(ct)
}

// sipTraceView is a conversation's SIP ladder: every SIP message of the call
// (and of its bridged transfer leg), in order, secrets redacted, kept for a
// while after the call (--sip-trace-keep).
type sipTraceView struct {
	ConversationID int64              `json:"conversation_id"`
	SIPCallID      string             `json:"sip_call_id"`
	KeptUntil      *string            `json:"kept_until"`
	Items          []store.SIPMessage `json:"items"`
}

func (s *Server) conversationSIPTrace(c *call) (result, error) {
	id, err := c.pathID("conversation_id")
	if err != nil {
		return result{}, err
	}
	cv, err := s.st.GetConversation(c.ctx, c.companyID(), id)
	if err != nil {
		return result{}, err
	}
	msgs, until, err := s.st.SIPTrace(c.ctx, c.companyID(), id)
	if err != nil {
		return result{}, err
	}
	v := sipTraceView{ConversationID: id, SIPCallID: cv.SIPCallID, Items: msgs}
	if !until.IsZero() {
		u := rfc3339(until)
		v.KeptUntil = &u
	}
	return ok(v)
}
