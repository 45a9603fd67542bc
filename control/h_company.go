package control

import (
	"time"

	"github.com/cxco/gateway/store"
)

func rfc3339(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// ownCompany reads the company in the path, which must be the caller's (404 otherwise).
func (c *call) ownCompany() (int64, error) {
	id, err := c.pathID("company_id")
	if err != nil {
		return 0, err
	}
	if id != c.companyID() {
		return 0, notFound("company")
	}
	return id, nil
}

func (s *Server) getCompany(c *call) (result, error) {
	if _, err := c.ownCompany(); err != nil {
		return result{}, err
	}
	return ok(viewCompany(c.company))
}

func (s *Server) putCompany(c *call) (result, error) {
	id, err := c.ownCompany()
	if err != nil {
		return result{}, err
	}
	f, err := readForm(c.w, c.r, "name", "settings")
	if err != nil {
		return result{}, err
	}
	var p store.CompanyPatch
	if p.Name, err = f.str("name", false, 1, 200); err != nil {
		return result{}, err
	}
	if p.Settings, err = f.object("settings"); err != nil {
		return result{}, err
	}
	co, err := s.st.UpdateCompany(c.ctx, id, p)
	if err != nil {
		return result{}, err
	}
	return ok(viewCompany(co))
}

type userView struct {
	*store.User
	KeyHash string `json:"key_hash,omitempty"` // shadows the stored hash so it never leaves
	APIKey  string `json:"api_key,omitempty"`
}

func viewUser(u *store.User) *userView { return &userView{User: u} }

func (s *Server) createUser(c *call) (result, error) {
	f, err := readForm(c.w, c.r, "email", "name", "role")
	if err != nil {
		return result{}, err
	}
	em, err := f.str("email", true, 1, 254)
	if err != nil {
		return result{}, err
	}
	addr, err := email("email", *em)
	if err != nil {
		return result{}, err
	}
	name, err := f.str("name", true, 1, 200)
	if err != nil {
		return result{}, err
	}
	role := store.RoleMember
	if v, err := f.str("role", false, 1, 20); err != nil {
		return result{}, err
	} else if v != nil {
		if err := oneOf("role", *v, store.Roles...); err != nil {
			return result{}, err
		}
		role = *v
	}
	u, key, err := s.st.CreateUser(c.ctx, c.companyID(), addr, *name, role)
	if err != nil {
		return result{}, err
	}
	v := viewUser(u)
	v.APIKey = key
	return created(v)
}

func (s *Server) listUsers(c *call) (result, error) {
	cursor, limit, err := c.paging()
	if err != nil {
		return result{}, err
	}
	page, err := s.st.ListUsers(c.ctx, c.companyID(), cursor, limit)
	if err != nil {
		return result{}, err
	}
	items := make([]*userView, len(page.Items))
	for i, u := range page.Items {
		items[i] = viewUser(u)
	}
	return ok(newPage(items, page.HasMore, page.NextCursor))
}

func (s *Server) getMe(c *call) (result, error) {
	u, err := s.st.GetUser(c.ctx, c.companyID(), c.p.UserID)
	if err != nil {
		return result{}, err
	}
	return ok(viewUser(u))
}

func (s *Server) getUser(c *call) (result, error) {
	id, err := c.pathID("user_id")
	if err != nil {
		return result{}, err
	}
	u, err := s.st.GetUser(c.ctx, c.companyID(), id)
	if err != nil {
		return result{}, err
	}
	return ok(viewUser(u))
}

func (s *Server) putUser(c *call) (result, error) {
	id, err := c.pathID("user_id")
	if err != nil {
		return result{}, err
	}
	f, err := readForm(c.w, c.r, "name", "role")
	if err != nil {
		return result{}, err
	}
	name, err := f.str("name", false, 1, 200)
	if err != nil {
		return result{}, err
	}
	role, err := f.str("role", false, 1, 20)
	if err != nil {
		return result{}, err
	}
	if role != nil {
		if err := oneOf("role", *role, store.Roles...); err != nil {
			return result{}, err
		}
	}
	u, err := s.st.UpdateUser(c.ctx, c.companyID(), id, name, role)
	if err != nil {
		return result{}, err
	}
	return ok(viewUser(u))
}

func (s *Server) deleteUser(c *call) (result, error) {
	id, err := c.pathID("user_id")
	if err != nil {
		return result{}, err
	}
	if err := s.st.DeleteUser(c.ctx, c.companyID(), id); err != nil {
		return result{}, err
	}
	return noContent()
}
