package loadgen

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
)

// maxBulk is the largest batch a bulk request carries (the relay's bulk
// endpoint takes 1..100 messages).
const maxBulk = 100

// batch is one bulk request under construction: parallel slices of topics and
// payloads, and, after publishBatch, which items the server accepted.
type batch struct {
	topics   []string
	payloads [][]byte
	ok       []bool
}

func (b *batch) reset() {
	b.topics, b.payloads, b.ok = b.topics[:0], b.payloads[:0], b.ok[:0]
}

// publishBatch sends b through the relay's POST /api/v1/messages/bulk and
// marks each item accepted or not from the 207 answer's results (in request
// order). A request-level failure returns an error and accepts nothing.
func (d *relayDriver) publishBatch(ctx context.Context, b *batch) error {
	body := []byte(`{"messages":[`)
	for i := range b.topics {
		if i > 0 {
			body = append(body, ',')
		}
		body = d.appendPublishBody(body, b.topics[i], b.payloads[i])
	}
	body = append(body, "]}"...)
	status, ans, err := postJSONFull(ctx, d.pub, d.base+"/api/v1/messages/bulk", body, d.authName, d.authValue)
	b.ok = b.ok[:0]
	for range b.topics {
		b.ok = append(b.ok, false)
	}
	if err != nil {
		return err
	}
	if status != http.StatusMultiStatus {
		return &publishError{Kind: "bulk status " + strconv.Itoa(status), Status: status, Err: fmt.Errorf("POST /api/v1/messages/bulk: %.200s", ans)}
	}
	var res struct {
		Results []struct {
			Status string `json:"status"`
			Error  string `json:"error"`
		} `json:"results"`
	}
	if err := json.Unmarshal(ans, &res); err != nil || len(res.Results) != len(b.topics) {
		return &publishError{Kind: "bulk bad answer", Err: fmt.Errorf("POST /api/v1/messages/bulk: %d results for %d messages (%v): %.200s", len(res.Results), len(b.topics), err, ans)}
	}
	for i, r := range res.Results {
		b.ok[i] = r.Status == "accepted"
	}
	return nil
}

// publishBatch sends b through Centrifugo's POST /api/batch as publish
// commands; each reply is a publish result or an error, in command order.
func (d *centrifugoDriver) publishBatch(ctx context.Context, b *batch) error {
	body := []byte(`{"commands":[`)
	for i := range b.topics {
		if i > 0 {
			body = append(body, ',')
		}
		body = append(body, `{"publish":`...)
		body = d.appendPublishBody(body, b.topics[i], b.payloads[i])
		body = append(body, '}')
	}
	body = append(body, "]}"...)
	status, ans, err := postJSONFull(ctx, d.pub, d.batchURL, body, "X-API-Key", d.apiKey)
	b.ok = b.ok[:0]
	for range b.topics {
		b.ok = append(b.ok, false)
	}
	if err != nil {
		return err
	}
	if status != http.StatusOK {
		return &publishError{Kind: "batch status " + strconv.Itoa(status), Status: status, Err: fmt.Errorf("POST /api/batch: %.200s", ans)}
	}
	var res struct {
		Replies []struct {
			Publish json.RawMessage `json:"publish"`
		} `json:"replies"`
	}
	if err := json.Unmarshal(ans, &res); err != nil || len(res.Replies) != len(b.topics) {
		return &publishError{Kind: "batch bad answer", Err: fmt.Errorf("POST /api/batch: %d replies for %d commands (%v): %.200s", len(res.Replies), len(b.topics), err, ans)}
	}
	for i, r := range res.Replies {
		b.ok[i] = len(r.Publish) > 0 && !bytes.Equal(r.Publish, []byte("null"))
	}
	return nil
}
