package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/pulsar-relay/relay/internal/relaytest"
)

func TestBulkPublish(t *testing.T) {
	r := relaytest.Start(t, relaytest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c := r.Dial(ctx)
	c.Subscribe(ctx, map[string]any{"topics": []string{"a", "b"}})

	items := []string{
		`{"topic":"a","payload":{"n":0}}`,
		`{"topic":"b","payload":{"n":1},"ttl":60,"metadata":{"k":"v"}}`,
		`{"topic":"bad topic","payload":{}}`,
		`{"topic":"a","payload":[1]}`,
		`{"topic":"a","payload":{"n":4}}`,
	}
	status, body := r.Post("/api/v1/messages/bulk", "application/json", []byte(`{"messages":[`+strings.Join(items, ",")+`]}`))
	if status != http.StatusMultiStatus {
		t.Fatalf("status %d body %v", status, body)
	}
	var resp struct {
		Results []struct {
			MessageID            string `json:"message_id"`
			Topic, Status, Error string
		}
		Summary struct{ Total, Accepted, Rejected int }
	}
	b, _ := json.Marshal(body)
	_ = json.Unmarshal(b, &resp)
	if resp.Summary.Total != 5 || resp.Summary.Accepted != 3 || resp.Summary.Rejected != 2 {
		t.Fatalf("summary %+v", resp.Summary)
	}
	wantStatus := []string{"accepted", "accepted", "rejected", "rejected", "accepted"}
	for i, res := range resp.Results {
		if res.Status != wantStatus[i] || (res.Status == "accepted") != (res.MessageID != "") || (res.Status == "rejected") != (res.Error != "") {
			t.Fatalf("result %d: %+v, want %s", i, res, wantStatus[i])
		}
	}
	if a := storedAfter(t, r.Store, "a", ""); fmt.Sprint(a) != fmt.Sprint([]string{resp.Results[0].MessageID, resp.Results[4].MessageID}) {
		t.Fatalf("topic a holds %v, want the accepted items in order", a)
	}
	got := map[string]bool{}
	for range 3 {
		f := c.MustRead(ctx)
		got[f.MessageID] = true
	}
	for _, i := range []int{0, 1, 4} {
		if !got[resp.Results[i].MessageID] {
			t.Fatalf("subscriber did not get accepted item %d", i)
		}
	}

	for _, bad := range []string{`{"messages":[]}`, `{"messages":` + strings.Repeat(`[`, 1) + strings.TrimSuffix(strings.Repeat(`{"topic":"a","payload":{}},`, 101), ",") + `]}`, `{`, `[]`} {
		if status, body := r.Post("/api/v1/messages/bulk", "application/json", []byte(bad)); status != http.StatusBadRequest || body["error"] != "INVALID_REQUEST" {
			t.Errorf("bulk %.40q: %d %v, want 400", bad, status, body)
		}
	}
	if status, _ := r.Post("/api/v1/messages/bulk", "text/plain", []byte(`{"messages":[]}`)); status != http.StatusUnsupportedMediaType {
		t.Errorf("wrong content type: %d", status)
	}
}
