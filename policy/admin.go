package policy

// Shapes of the admin routes that show and change policies (SPEC "More
// routes"). The gateway serves them; `relay topics` and `relay policies`
// read them. docs/policies.md describes them for users.
//
//	GET /api/v1/admin/policies             -> 200 SetView
//	GET /api/v1/admin/policies?topic=T     -> 200 TopicPolicyView
//	PUT /api/v1/admin/policies  (body: a policy document, Content-Type
//	    application/json or application/yaml) -> 200 SetView of the new set,
//	    or 400 INVALID_REQUEST whose message names the line and field; the
//	    running set stays.
//	GET /api/v1/admin/topics               -> 200 TopicsView

// SetView is the policy set in force.
type SetView struct {
	Source   string `json:"source"`    // the file path, "api", or "" when none was loaded
	LoadedAt string `json:"loaded_at"` // RFC 3339 UTC; "" when none was loaded
	Base     Policy `json:"base"`      // the process-wide values unset fields fall back to
	Policies *Set   `json:"policies"`  // the document: {"version":1,"topics":{...}}
}

// TopicPolicyView is one topic's effective policy.
type TopicPolicyView struct {
	Topic   string   `json:"topic"`
	Matched []string `json:"matched"` // the patterns that apply, most specific first
	Policy  Policy   `json:"policy"`  // every field set
}

// TopicsView lists the active topics of one relay instance.
type TopicsView struct {
	Topics []TopicView `json:"topics"`
}

// TopicView is one active topic.
type TopicView struct {
	Topic string `json:"topic"`
	// Subscribers counts subscribers by transport: "websocket", "sse", "poll".
	Subscribers map[string]int `json:"subscribers"`
	// PublishesPerSec and DeliveriesPerSec average the last minute.
	PublishesPerSec  float64 `json:"publishes_per_sec"`
	DeliveriesPerSec float64 `json:"deliveries_per_sec"`
	LastID           string  `json:"last_id"`  // "" before the first message
	Restarts         int     `json:"restarts"` // supervisor restarts of its actor
	Policy           Policy  `json:"policy"`   // the effective policy the actor runs with
}
