package loadgen

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// Kinds of Centrifugo JSON protocol lines.
const (
	cfOther        = iota
	cfPing         // {}: the server's ping; the client answers {}
	cfReply        // {"id":N,...}: the answer to command N
	cfPub          // {"push":{"channel":C,"pub":{"data":D}}}: a publication
	cfDisconnect   // {"push":{"disconnect":{...}}}
	cfUnsubscribed // {"push":{"channel":C,"unsubscribe":{...}}}
)

// cfLine is the part of one Centrifugo reply line that the load generator uses.
type cfLine struct {
	kind    int
	id      uint64
	err     error  // cfReply: the reply's error, if any (wraps errCentrifugoReply)
	channel []byte // cfPub: aliases the line on the fast path
	p       payload
	text    string // cfDisconnect, cfUnsubscribed: code and reason
}

var (
	cfPushPrefix = []byte(`{"push":{"channel":"`)
	cfKeyChannel = []byte(`"channel":"`)
	cfKeyPub     = []byte(`"pub":{`)
	cfKeyData    = []byte(`"data":{`)
)

// parseCentrifugoLine classifies one line of a frame. Publications take a
// fast path (no JSON decoding) in the compact form Centrifugo writes; anything
// else is decoded in full.
func parseCentrifugoLine(line []byte) (cfLine, error) {
	if bytes.HasPrefix(line, cfPushPrefix) {
		// Scan the payload keys only inside "data": the envelope has its own
		// "pub" key.
		if i := bytes.Index(line, cfKeyPub); i >= 0 {
			if j := bytes.Index(line[i:], cfKeyData); j >= 0 {
				ch, ok1 := scanString(line[:i], cfKeyChannel)
				p, ok2 := scanPayload(line[i+j:])
				if ok1 && ok2 {
					return cfLine{kind: cfPub, channel: ch, p: p}, nil
				}
			}
		}
	}
	if string(line) == "{}" {
		return cfLine{kind: cfPing}, nil
	}
	type cfErr struct {
		Code    uint32 `json:"code"`
		Message string `json:"message"`
		Reason  string `json:"reason"`
	}
	var r struct {
		ID    uint64 `json:"id"`
		Error *cfErr `json:"error"`
		Push  *struct {
			Channel string `json:"channel"`
			Pub     *struct {
				Data json.RawMessage `json:"data"`
			} `json:"pub"`
			Disconnect  *cfErr `json:"disconnect"`
			Unsubscribe *cfErr `json:"unsubscribe"`
		} `json:"push"`
	}
	if err := json.Unmarshal(line, &r); err != nil {
		return cfLine{}, fmt.Errorf("centrifugo line %.100q: %w", line, err)
	}
	switch {
	case r.ID != 0:
		l := cfLine{kind: cfReply, id: r.ID}
		if r.Error != nil {
			l.err = fmt.Errorf("%w %d: %s", errCentrifugoReply, r.Error.Code, r.Error.Message)
		}
		return l, nil
	case r.Push == nil:
		if r.Error != nil {
			return cfLine{kind: cfDisconnect, text: fmt.Sprintf("error %d: %s", r.Error.Code, r.Error.Message)}, nil
		}
		return cfLine{kind: cfOther}, nil
	case r.Push.Pub != nil:
		p, err := decodePayload(r.Push.Pub.Data)
		if err != nil {
			return cfLine{}, fmt.Errorf("centrifugo publication on %q: %w", r.Push.Channel, err)
		}
		return cfLine{kind: cfPub, channel: []byte(r.Push.Channel), p: p}, nil
	case r.Push.Disconnect != nil:
		d := r.Push.Disconnect
		return cfLine{kind: cfDisconnect, text: fmt.Sprintf("%d %s", d.Code, d.Reason)}, nil
	case r.Push.Unsubscribe != nil:
		u := r.Push.Unsubscribe
		return cfLine{kind: cfUnsubscribed, channel: []byte(r.Push.Channel), text: fmt.Sprintf("%d %s", u.Code, u.Reason)}, nil
	}
	return cfLine{kind: cfOther}, nil
}
