package control

import (
	"strconv"
	"time"

	"github.com/cxco/gateway/store"
)

func viewNumber(pn *store.PhoneNumber) *store.PhoneNumber { return pn }

func viewNumbers(pns []*store.PhoneNumber) []*store.PhoneNumber {
	if pns == nil {
		return []*store.PhoneNumber{}
	}
	return pns
}

func (s *Server) availableNumbers(c *call) (result, error) {
	cc := c.query("country_code")
	var err error
	if cc != "" {
		if cc, err = countryCode("country_code", cc); err != nil {
			return result{}, err
		}
	}
	limit := 100
	if v := c.query("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 100 {
			return result{}, invalid("limit: must be an integer between 1 and 100")
		}
		limit = n
	}
	pns, err := s.st.AvailableNumbers(c.ctx, cc, limit)
	if err != nil {
		return result{}, err
	}
	return ok(viewNumbers(pns))
}

func (s *Server) companyNumbers(c *call) (result, error) {
	pns, err := s.st.CompanyNumbers(c.ctx, c.companyID())
	if err != nil {
		return result{}, err
	}
	return ok(viewNumbers(pns))
}

func (c *call) companyNumber() (*store.PhoneNumber, error) {
	id, err := c.pathID("phone_number_id")
	if err != nil {
		return nil, err
	}
	return c.s.st.CompanyNumber(c.ctx, c.companyID(), id)
}

func (s *Server) getCompanyNumber(c *call) (result, error) {
	pn, err := c.companyNumber()
	if err != nil {
		return result{}, err
	}
	return ok(pn)
}

func (s *Server) enableWhatsApp(c *call) (result, error) {
	id, err := c.pathID("phone_number_id")
	if err != nil {
		return result{}, err
	}
	pn, err := s.st.EnableWhatsApp(c.ctx, c.companyID(), id, time.Now().Add(s.opts.WhatsAppVerifyDelay))
	if err != nil {
		return result{}, err
	}
	s.kickWhatsApp()
	return ok(pn)
}

func (s *Server) whatsAppStatus(c *call) (result, error) {
	pn, err := c.companyNumber()
	if err != nil {
		return result{}, err
	}
	return ok(map[string]any{"id": pn.ID, "number": pn.Number, "whatsapp_status": pn.WhatsAppStatus})
}
