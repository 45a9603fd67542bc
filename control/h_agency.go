package control

import (
	"errors"
	"net/http"

	"github.com/cxco/gateway/store"
)

type agencyView struct {
	Name      string         `json:"name"`
	Settings  map[string]any `json:"settings"`
	CreatedAt string         `json:"created_at"`
	UpdatedAt string         `json:"updated_at"`
}

func viewAgency(a *store.Agency) agencyView {
	st := a.Settings
	if st == nil {
		st = map[string]any{}
	}
	return agencyView{Name: a.Name, Settings: st, CreatedAt: rfc3339(a.CreatedAt), UpdatedAt: rfc3339(a.UpdatedAt)}
}

func (s *Server) getAgency(c *call) (result, error) {
	a, err := s.st.GetAgency(c.ctx)
	if err != nil {
		return result{}, err
	}
	return ok(viewAgency(a))
}

func (s *Server) putAgency(c *call) (result, error) {
	f, err := readForm(c.w, c.r, "name", "settings")
	if err != nil {
		return result{}, err
	}
	name, err := f.str("name", false, 1, 200)
	if err != nil {
		return result{}, err
	}
	settings, err := f.object("settings")
	if err != nil {
		return result{}, err
	}
	a, err := s.st.UpdateAgency(c.ctx, name, settings)
	if err != nil {
		return result{}, err
	}
	return ok(viewAgency(a))
}

// companyView is a company as the API shows it.
type companyView struct {
	ID                 int64          `json:"id"`
	Name               string         `json:"name"`
	Status             string         `json:"status"`
	Plan               string         `json:"plan"`
	RateLimitPerMinute int            `json:"rate_limit_per_minute"`
	MetaBusinessID     *string        `json:"meta_business_id"`
	Settings           map[string]any `json:"settings"`
	// OutboundLimits are the company's outbound call limits in force.
	OutboundLimits store.OutboundLimits `json:"outbound_limits"`
	CreatedAt      string               `json:"created_at"`
	UpdatedAt      string               `json:"updated_at"`
	APIKey         string               `json:"api_key,omitempty"`
}

func viewCompany(co *store.Company) *companyView {
	st := co.Settings
	if st == nil {
		st = map[string]any{}
	}
	return &companyView{ID: co.ID, Name: co.Name, Status: co.Status, Plan: co.Plan, RateLimitPerMinute: co.RateLimit(),
		MetaBusinessID: co.MetaBusinessID, Settings: st, OutboundLimits: co.OutboundLimits(), CreatedAt: rfc3339(co.CreatedAt), UpdatedAt: rfc3339(co.UpdatedAt)}
}

func (s *Server) createCompany(c *call) (result, error) {
	f, err := readForm(c.w, c.r, "name", "plan", "settings", "rate_limit_per_minute", "meta_business_id")
	if err != nil {
		return result{}, err
	}
	name, err := f.str("name", true, 1, 200)
	if err != nil {
		return result{}, err
	}
	p, err := readCompanyPatch(f)
	if err != nil {
		return result{}, err
	}
	plan := store.PlanStarter
	if p.Plan != nil {
		plan = *p.Plan
	}
	co, key, err := s.st.CreateCompany(c.ctx, *name, plan, p.Settings, p.RateLimitPerMinute)
	if err != nil {
		return result{}, err
	}
	if p.MetaBusinessID != nil {
		if co, err = s.st.UpdateCompany(c.ctx, co.ID, store.CompanyPatch{MetaBusinessID: p.MetaBusinessID}); err != nil {
			return result{}, err
		}
	}
	v := viewCompany(co)
	v.APIKey = key
	return created(v)
}

// readCompanyPatch reads the fields the agency may set on a company (name excepted).
func readCompanyPatch(f *form) (store.CompanyPatch, error) {
	var p store.CompanyPatch
	var err error
	if p.Settings, err = f.object("settings"); err != nil {
		return p, err
	}
	if p.Plan, err = f.str("plan", false, 1, 20); err != nil {
		return p, err
	}
	if p.Plan != nil {
		if err := oneOf("plan", *p.Plan, store.PlanStarter, store.PlanGrowth, store.PlanEnterprise); err != nil {
			return p, err
		}
	}
	if p.Status, err = f.str("status", false, 1, 20); err != nil {
		return p, err
	}
	if p.Status != nil {
		if err := oneOf("status", *p.Status, store.CompanyActive, store.CompanySuspended); err != nil {
			return p, err
		}
	}
	rl, err := f.integer("rate_limit_per_minute", false)
	if err != nil {
		return p, err
	}
	if rl != nil {
		if *rl < 1 || *rl > 1_000_000 {
			return p, invalid("rate_limit_per_minute: must be between 1 and 1000000")
		}
		n := int(*rl)
		p.RateLimitPerMinute = &n
	}
	if p.MetaBusinessID, err = f.str("meta_business_id", false, 1, 100); err != nil {
		return p, err
	}
	return p, nil
}

func (s *Server) listCompanies(c *call) (result, error) {
	cursor, limit, err := c.paging()
	if err != nil {
		return result{}, err
	}
	page, err := s.st.ListCompanies(c.ctx, cursor, limit)
	if err != nil {
		return result{}, err
	}
	items := make([]*companyView, len(page.Items))
	for i, co := range page.Items {
		items[i] = viewCompany(co)
	}
	return ok(newPage(items, page.HasMore, page.NextCursor))
}

func (s *Server) agencyGetCompany(c *call) (result, error) {
	id, err := c.pathID("company_id")
	if err != nil {
		return result{}, err
	}
	co, err := s.st.GetCompany(c.ctx, id)
	if err != nil {
		return result{}, err
	}
	return ok(viewCompany(co))
}

func (s *Server) agencyPutCompany(c *call) (result, error) {
	id, err := c.pathID("company_id")
	if err != nil {
		return result{}, err
	}
	f, err := readForm(c.w, c.r, "name", "status", "plan", "rate_limit_per_minute", "settings", "meta_business_id", "outbound_limits")
	if err != nil {
		return result{}, err
	}
	p, err := readCompanyPatch(f)
	if err != nil {
		return result{}, err
	}
	if p.Outbound, err = readOutboundLimits(f); err != nil {
		return result{}, err
	}
	if p.Name, err = f.str("name", false, 1, 200); err != nil {
		return result{}, err
	}
	co, err := s.st.UpdateCompany(c.ctx, id, p)
	if err != nil {
		return result{}, err
	}
	return ok(viewCompany(co))
}

func (s *Server) rotateCompanyKey(c *call) (result, error) {
	id, err := c.pathID("company_id")
	if err != nil {
		return result{}, err
	}
	co, key, err := s.st.RotateCompanyKey(c.ctx, id)
	if err != nil {
		return result{}, err
	}
	v := viewCompany(co)
	v.APIKey = key
	return ok(v)
}

func (s *Server) addPoolNumber(c *call) (result, error) {
	f, err := readForm(c.w, c.r, "number", "country_code", "provider_slug", "echo_line", "trunk_id")
	if err != nil {
		return result{}, err
	}
	num, err := f.str("number", true, 1, 32)
	if err != nil {
		return result{}, err
	}
	e, okNum := NormalizeE164(*num)
	if !okNum {
		return result{}, invalid("number: %q is not an E.164 number (like +27211234567)", *num)
	}
	ccRaw, err := f.str("country_code", true, 1, 4)
	if err != nil {
		return result{}, err
	}
	cc, err := countryCode("country_code", *ccRaw)
	if err != nil {
		return result{}, err
	}
	if !store.NumberInCountry(e, cc) {
		return result{}, invalid("country_code: %s numbers start with +%s; %s does not (wrong country_code?)", cc, store.CallingCode(cc), e)
	}
	slug := "sip_trunk"
	if v, err := f.str("provider_slug", false, 1, 50); err != nil {
		return result{}, err
	} else if v != nil {
		slug = *v
	}
	if p, found := store.ProviderBySlug(slug); !found || p.Type != "sip_trunk" {
		return result{}, invalid("provider_slug: %q is not a SIP trunk provider (use sip_trunk)", slug)
	}
	echo, err := f.boolean("echo_line")
	if err != nil {
		return result{}, err
	}
	trunkID, err := numberTrunk(c, f)
	if err != nil {
		return result{}, err
	}
	pn, err := s.st.AddNumber(c.ctx, e, cc, slug, echo != nil && *echo)
	if err != nil {
		return result{}, err
	}
	if trunkID != nil && *trunkID != 0 {
		if pn, err = s.st.SetNumberTrunk(c.ctx, pn.ID, *trunkID); err != nil {
			return result{}, err
		}
	}
	return created(viewNumber(pn))
}

// numberTrunk reads a pool number's trunk_id (nil: not given; 0: none): a
// stored trunk's id.
func numberTrunk(c *call, f *form) (*int64, error) {
	id, err := f.integer("trunk_id", false)
	if err != nil || id == nil {
		return nil, err
	}
	if *id < 0 {
		return nil, invalid("trunk_id: must be a trunk's id (GET /api/agency/trunks), or 0 for none")
	}
	if *id > 0 {
		if _, err := c.s.st.GetTrunk(c.ctx, *id); errors.Is(err, store.ErrNotFound) {
			return nil, invalid("trunk_id: there is no trunk %d (GET /api/agency/trunks)", *id)
		} else if err != nil {
			return nil, err
		}
	}
	return id, nil
}

func (s *Server) listPool(c *call) (result, error) {
	cursor, limit, err := c.paging()
	if err != nil {
		return result{}, err
	}
	status := c.query("status")
	if status != "" {
		if err := oneOf("status", status, store.NumberAvailable, store.NumberAssigned, store.NumberEcho); err != nil {
			return result{}, err
		}
	}
	cc := c.query("country_code")
	if cc != "" {
		if cc, err = countryCode("country_code", cc); err != nil {
			return result{}, err
		}
	}
	page, err := s.st.ListPool(c.ctx, status, cc, cursor, limit)
	if err != nil {
		return result{}, err
	}
	return ok(newPage(viewNumbers(page.Items), page.HasMore, page.NextCursor))
}

func (s *Server) putPoolNumber(c *call) (result, error) {
	id, err := c.pathID("phone_number_id")
	if err != nil {
		return result{}, err
	}
	f, err := readForm(c.w, c.r, "echo_line", "trunk_id")
	if err != nil {
		return result{}, err
	}
	echo, err := f.boolean("echo_line")
	if err != nil {
		return result{}, err
	}
	trunkID, err := numberTrunk(c, f)
	if err != nil {
		return result{}, err
	}
	if trunkID != nil {
		pn, err := s.st.SetNumberTrunk(c.ctx, id, *trunkID)
		if err != nil {
			return result{}, err
		}
		if echo == nil {
			return ok(viewNumber(pn))
		}
	}
	if echo == nil {
		pn, err := s.st.GetNumber(c.ctx, id)
		if err != nil {
			return result{}, err
		}
		return ok(viewNumber(pn))
	}
	pn, err := s.st.SetEchoLine(c.ctx, id, *echo)
	if err != nil {
		return result{}, err
	}
	return ok(viewNumber(pn))
}

func (s *Server) deletePoolNumber(c *call) (result, error) {
	id, err := c.pathID("phone_number_id")
	if err != nil {
		return result{}, err
	}
	if err := s.st.DeleteNumber(c.ctx, id); err != nil {
		return result{}, err
	}
	return noContent()
}

// asCompany runs a company-level handler (users) for the company of the path,
// for the agency key: the agency manages a company's users as its company key
// would.
func (s *Server) asCompany(h func(*call) (result, error)) func(*call) (result, error) {
	return func(c *call) (result, error) {
		cid, err := c.pathID("company_id")
		if err != nil {
			return result{}, err
		}
		co, err := s.st.GetCompany(c.ctx, cid)
		if errors.Is(err, store.ErrNotFound) {
			return result{}, errf(http.StatusNotFound, typeNotFound, "company %d not found", cid)
		}
		if err != nil {
			return result{}, err
		}
		c.p.CompanyID, c.company = cid, co
		return h(c)
	}
}

// agencyUserRoutes let the agency key manage the users of any company.
func (s *Server) agencyUserRoutes() []*route {
	ur := func(method, path, summary string, rl role, status int, body, resp string, query []param, errs []int, h func(*call) (result, error)) *route {
		return &route{method: method, path: path, auth: authAgency, role: rl, tag: "Agency", summary: summary, resource: "user",
			body: body, resp: resp, query: query, status: status, errors: errs, h: s.asCompany(h)}
	}
	const base = "/api/agency/companies/{company_id}/users"
	return []*route{
		ur("GET", base, "List a company's users", roleViewer, 200, "", "UserPage", pageParams(), []int{404, 422}, s.listUsers),
		ur("POST", base, "Create a user of a company (the API key is shown once)", roleOwner, 201, "UserCreate", "UserWithKey", nil, []int{404, 409, 422}, s.createUser),
		ur("PUT", base+"/{user_id}", "Update a company's user (name, role)", roleOwner, 200, "UserUpdate", "User", nil, []int{404, 422}, s.putUser),
		ur("DELETE", base+"/{user_id}", "Delete a company's user and revoke their key", roleOwner, 204, "", "", nil, []int{404, 422}, s.deleteUser),
	}
}
