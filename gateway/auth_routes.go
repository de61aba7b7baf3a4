package gateway

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/pulsar-relay/relay/auth"
	"github.com/pulsar-relay/relay/messages"
)

// authRoutes adds the login, token and topic-ownership routes (SPEC
// "wave 2"): /auth/login, /auth/token/refresh, /auth/logout, /auth/me,
// /api/v1/topics[/{topic}], /api/v1/topics/{topic}/grants and
// /api/v1/admin/users.
func (s *Server) authRoutes(r chi.Router) {
	if s.cfg.Auth == nil {
		return
	}
	if o, ok := s.cfg.Observer.(AuthObserver); ok {
		o.ObserveAuth(s.cfg.Auth.Sizes)
	}
	r.Post("/auth/login", s.handleLogin)
	r.Post("/auth/token/refresh", s.handleRefresh)
	r.Post("/auth/logout", s.handleLogout)
	r.Get("/auth/me", s.handleMe)
	r.Post("/api/v1/topics", s.handleCreateTopic)
	r.Get("/api/v1/topics", s.handleListTopics)
	r.Get("/api/v1/topics/{topic}", s.handleGetTopic)
	r.Put("/api/v1/topics/{topic}", s.handleUpdateTopic)
	r.Delete("/api/v1/topics/{topic}", s.handleDeleteTopic)
	r.Post("/api/v1/topics/{topic}/grants", s.handleGrant)
	r.Delete("/api/v1/topics/{topic}/grants/{user}", s.handleRevokeGrant)
	r.Post("/api/v1/admin/users", s.handleCreateUser)
}

const authBodyLimit = 64 << 10

// decodeAuthJSON reads a small JSON body into v.
func decodeAuthJSON(w http.ResponseWriter, r *http.Request, v any) error {
	body, err := readJSONBody(w, r, authBodyLimit)
	if err != nil {
		return err
	}
	if len(body) == 0 {
		return fmt.Errorf("%w: a JSON body is required", messages.ErrInvalid)
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("%w: body is not the expected JSON object", messages.ErrInvalid)
	}
	return nil
}

type loginRequest struct {
	Username  string `json:"username"`
	Password  string `json:"password"`
	GrantType string `json:"grant_type"`
}

// handleLogin: POST /auth/login, form (OAuth2 password grant, as
// pulsar-relay-client sends it) or JSON. Rate limited per username and per
// address before the password is checked.
func (s *Server) handleLogin(w http.ResponseWriter, r *http.Request) {
	var req loginRequest
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	switch mt {
	case "application/x-www-form-urlencoded", "multipart/form-data":
		r.Body = http.MaxBytesReader(w, r.Body, authBodyLimit)
		if err := r.ParseMultipartForm(authBodyLimit); err != nil && !errors.Is(err, http.ErrNotMultipart) {
			s.writeError(w, r, fmt.Errorf("%w: bad form body", messages.ErrInvalid))
			return
		}
		req = loginRequest{Username: r.PostFormValue("username"), Password: r.PostFormValue("password"), GrantType: r.PostFormValue("grant_type")}
	default:
		if err := decodeAuthJSON(w, r, &req); err != nil {
			s.writeError(w, r, err)
			return
		}
	}
	if req.GrantType != "" && req.GrantType != "password" {
		s.writeError(w, r, fmt.Errorf("%w: grant_type must be password", messages.ErrInvalid))
		return
	}
	if req.Username == "" || req.Password == "" {
		s.writeError(w, r, fmt.Errorf("%w: username and password are required", messages.ErrInvalid))
		return
	}
	lim := s.cfg.Auth.Limits()
	now := time.Now()
	if !s.rateHeaders(w, r, "/auth/login", lim.LoginAddr.Allow(identityOf(nil, r), now)) ||
		!s.rateHeaders(w, r, "/auth/login", lim.LoginUser.Allow(loginKey(req.Username), now)) {
		return
	}
	// A password check is a bcrypt run (tens of milliseconds of CPU), and
	// the per-address and per-name limits do not bound them all: clients
	// from many addresses could keep every core on them. At most
	// GOMAXPROCS/2 run at once; a login waits for one as a large publish
	// waits for a decode slot.
	if err := s.takeSlot(r.Context(), s.checking, "login_slots", "too many logins being checked at once; retry"); err != nil {
		s.writeError(w, r, err)
		return
	}
	pair, err := func() (auth.TokenPair, error) {
		defer func() { <-s.checking }()
		return s.cfg.Auth.Login(r.Context(), req.Username, req.Password)
	}()
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, pair)
}

// loginKey is the per-username login limiter's key: the name, or for one
// longer than any valid username (64 bytes) its SHA-256, so that a client
// cannot make the limiter hold large keys (a login body may be 64 KiB).
func loginKey(username string) string {
	name := strings.ToLower(username)
	if len(name) <= 64 {
		return "login:" + name
	}
	sum := sha256.Sum256([]byte(name))
	return "login#" + hex.EncodeToString(sum[:])
}

type refreshRequest struct {
	RefreshToken string `json:"refresh_token"`
}

func (s *Server) handleRefresh(w http.ResponseWriter, r *http.Request) {
	var req refreshRequest
	if err := decodeAuthJSON(w, r, &req); err != nil {
		s.writeError(w, r, err)
		return
	}
	pair, err := s.cfg.Auth.Refresh(r.Context(), req.RefreshToken)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, pair)
}

func (s *Server) handleLogout(w http.ResponseWriter, r *http.Request) {
	var req refreshRequest
	if err := decodeAuthJSON(w, r, &req); err != nil {
		s.writeError(w, r, err)
		return
	}
	if err := s.cfg.Auth.Logout(r.Context(), req.RefreshToken); err != nil {
		s.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// requirePrincipal returns the caller, or answers 401 when auth is on and
// there is none. With auth off the caller is nil: it may do anything an
// admin may.
func (s *Server) requirePrincipal(w http.ResponseWriter, r *http.Request) (*auth.Principal, bool) {
	p := principalOf(r.Context())
	if p == nil && s.authOn() {
		s.writeError(w, r, fmt.Errorf("%w: credential required", messages.ErrUnauthorized))
		return nil, false
	}
	return p, true
}

// requireManager is requirePrincipal for the routes that change topics
// (create, update, delete and their grants): with auth off only local
// clients may (localClient), as for the admin routes, since a nil caller
// has an admin's rights and DELETE wipes a topic's stored messages.
func (s *Server) requireManager(w http.ResponseWriter, r *http.Request) (*auth.Principal, bool) {
	p, ok := s.requirePrincipal(w, r)
	if ok && p == nil && !localClient(r) {
		s.writeError(w, r, fmt.Errorf("%w: the topic routes that change topics answer only loopback clients, addressing the relay by a loopback name and sent from no other site, while auth is off", messages.ErrForbidden))
		return nil, false
	}
	return p, ok
}

func (s *Server) handleMe(w http.ResponseWriter, r *http.Request) {
	p := principalOf(r.Context())
	if p == nil {
		s.writeError(w, r, fmt.Errorf("%w: authentication is off", messages.ErrNotFound))
		return
	}
	me, err := s.cfg.Auth.WhoAmI(r.Context(), p)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, me)
}

type createTopicRequest struct {
	TopicName   string `json:"topic_name"`
	Description string `json:"description"`
}

func (s *Server) handleCreateTopic(w http.ResponseWriter, r *http.Request) {
	p, ok := s.requireManager(w, r)
	if !ok {
		return
	}
	var req createTopicRequest
	if err := decodeAuthJSON(w, r, &req); err != nil {
		s.writeError(w, r, err)
		return
	}
	t, err := s.cfg.Auth.CreateTopic(r.Context(), p, req.TopicName, req.Description)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, t)
}

func (s *Server) handleListTopics(w http.ResponseWriter, r *http.Request) {
	p, ok := s.requirePrincipal(w, r)
	if !ok {
		return
	}
	ts, err := s.cfg.Auth.ListTopics(r.Context(), p)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, ts)
}

func (s *Server) handleGetTopic(w http.ResponseWriter, r *http.Request) {
	p, ok := s.requirePrincipal(w, r)
	if !ok {
		return
	}
	t, err := s.cfg.Auth.GetTopic(r.Context(), p, chi.URLParam(r, "topic"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, t)
}

func (s *Server) handleUpdateTopic(w http.ResponseWriter, r *http.Request) {
	p, ok := s.requireManager(w, r)
	if !ok {
		return
	}
	var req auth.TopicUpdate
	if err := decodeAuthJSON(w, r, &req); err != nil {
		s.writeError(w, r, err)
		return
	}
	t, err := s.cfg.Auth.UpdateTopic(r.Context(), p, chi.URLParam(r, "topic"), req)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, t)
}

func (s *Server) handleDeleteTopic(w http.ResponseWriter, r *http.Request) {
	p, ok := s.requireManager(w, r)
	if !ok {
		return
	}
	if err := s.cfg.Auth.DeleteTopic(r.Context(), p, chi.URLParam(r, "topic")); err != nil {
		s.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

type grantRequest struct {
	UserID     string `json:"user_id"`
	Username   string `json:"username"`
	Permission string `json:"permission"`
}

// handleGrant: POST /api/v1/topics/{topic}/grants {"username" or
// "user_id", "permission": "read"|"write"|"none"} (owner or admin).
func (s *Server) handleGrant(w http.ResponseWriter, r *http.Request) {
	p, ok := s.requireManager(w, r)
	if !ok {
		return
	}
	var req grantRequest
	if err := decodeAuthJSON(w, r, &req); err != nil {
		s.writeError(w, r, err)
		return
	}
	user := req.UserID
	if user == "" && req.Username != "" {
		id, err := s.cfg.Auth.ResolveUser(r.Context(), req.Username)
		if err != nil {
			s.writeError(w, r, fmt.Errorf("%w: unknown user %q", messages.ErrInvalid, req.Username))
			return
		}
		user = id
	}
	t, err := s.cfg.Auth.Grant(r.Context(), p, chi.URLParam(r, "topic"), user, req.Permission)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, t)
}

func (s *Server) handleRevokeGrant(w http.ResponseWriter, r *http.Request) {
	p, ok := s.requireManager(w, r)
	if !ok {
		return
	}
	if _, err := s.cfg.Auth.Grant(r.Context(), p, chi.URLParam(r, "topic"), chi.URLParam(r, "user"), "none"); err != nil {
		s.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// handleCreateUser: POST /api/v1/admin/users {"username","password",
// "permissions"?,"topics"?} (admin) -> 201 {"user_id","username","permissions"}.
func (s *Server) handleCreateUser(w http.ResponseWriter, r *http.Request) {
	p := principalOf(r.Context())
	if p == nil {
		s.writeError(w, r, fmt.Errorf("%w: authentication is off", messages.ErrNotFound))
		return
	}
	var req auth.NewUser
	if err := decodeAuthJSON(w, r, &req); err != nil {
		s.writeError(w, r, err)
		return
	}
	u, err := s.cfg.Auth.CreateUser(r.Context(), p, req)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, u)
}
