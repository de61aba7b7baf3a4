package messages

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// ErrSubscription marks a subscribe or unsubscribe frame the relay cannot
// honour (no topics, a bad topic, a bad offset); it becomes SUBSCRIPTION_ERROR.
var ErrSubscription = errors.New("subscription error")

// Client frame types.
const (
	TypeSubscribe   = "subscribe"
	TypeUnsubscribe = "unsubscribe"
	TypePing        = "ping"
	TypeAck         = "ack"
	TypeAuth        = "auth" // {"type":"auth","token"}: replaces the connection's token
)

// Offset values of a subscribe frame besides a message id.
const (
	OffsetLast     = "last"
	OffsetEarliest = "earliest"
)

// ClientFrame is one frame from a WebSocket client, decoded and validated by
// DecodeClientFrame.
type ClientFrame struct {
	Type      string            `json:"type"`
	Topics    []string          `json:"topics,omitempty"`
	ClientID  string            `json:"client_id,omitempty"`
	Offset    string            `json:"offset,omitempty"`
	Since     map[string]string `json:"since,omitempty"`
	MessageID string            `json:"message_id,omitempty"`
	Token     string            `json:"token,omitempty"`
}

// Position is where a subscription starts in a topic.
type Position struct {
	// Live: only messages published after the subscribe ("last").
	Live bool
	// After: replay retained messages with ids after this one (exclusive);
	// the zero ID replays everything retained ("earliest").
	After ID
	// Explicit: After came from the client (a message id, not "earliest"),
	// so a point older than what is retained is reported as truncated.
	Explicit bool
}

// DecodeClientFrame parses and validates one client frame. Errors wrap
// ErrInvalid (not a JSON object, no type), ErrUnknownType, or ErrSubscription.
func DecodeClientFrame(data []byte) (ClientFrame, error) {
	var f ClientFrame
	if err := json.Unmarshal(data, &f); err != nil {
		return ClientFrame{}, fmt.Errorf("%w: %s", ErrInvalid, describeJSONError(err))
	}
	switch f.Type {
	case TypeSubscribe, TypeUnsubscribe:
		if len(f.Topics) == 0 {
			return f, fmt.Errorf("%w: %s needs a non-empty \"topics\" list", ErrSubscription, f.Type)
		}
		for _, t := range f.Topics {
			if err := ValidateTopic(t); err != nil {
				return f, fmt.Errorf("%w: %w", ErrSubscription, err)
			}
		}
		if f.Type == TypeSubscribe {
			// offset applies to every topic without a "since": checked
			// whatever "since" holds (Position has no error to give).
			if _, err := f.offsetPosition(); err != nil {
				return f, err
			}
			for t, id := range f.Since {
				if err := ValidateTopic(t); err != nil {
					return f, fmt.Errorf("%w: since: %w", ErrSubscription, err)
				}
				if _, err := ParseID(id); err != nil {
					return f, fmt.Errorf("%w: since %s: %w", ErrSubscription, QuotePrefix(t), err)
				}
			}
		}
	case TypePing, TypeAck:
	case TypeAuth:
		if f.Token == "" {
			return f, fmt.Errorf("%w: auth needs a \"token\"", ErrUnauthorized)
		}
	case "":
		return f, fmt.Errorf("%w: frame needs a \"type\"", ErrInvalid)
	default:
		return f, fmt.Errorf("%w: %s", ErrUnknownType, QuotePrefix(f.Type))
	}
	return f, nil
}

// Position returns where the subscription to topic starts: "since" wins over
// "offset" for its topics. Call only on a frame DecodeClientFrame accepted.
func (f *ClientFrame) Position(topic string) Position {
	p, _ := f.positionOf(topic)
	return p
}

func (f *ClientFrame) positionOf(topic string) (Position, error) {
	if s, ok := f.Since[topic]; ok {
		id, err := ParseID(s)
		if err != nil {
			return Position{}, fmt.Errorf("%w: since %s: %w", ErrSubscription, QuotePrefix(topic), err)
		}
		return Position{After: id, Explicit: true}, nil
	}
	return f.offsetPosition()
}

// offsetPosition is where "offset" starts a topic without a "since".
func (f *ClientFrame) offsetPosition() (Position, error) {
	switch f.Offset {
	case "", OffsetLast:
		return Position{Live: true}, nil
	case OffsetEarliest:
		return Position{}, nil
	}
	id, err := ParseID(f.Offset)
	if err != nil {
		return Position{}, fmt.Errorf("%w: offset must be \"last\", \"earliest\" or a message id", ErrSubscription)
	}
	return Position{After: id, Explicit: true}, nil
}

// Server frame types.
const (
	TypeSubscribed   = "subscribed"
	TypeUnsubscribed = "unsubscribed"
	TypePong         = "pong"
	TypeError        = "error"
	TypeMessage      = "message"
)

// WebSocket error frame codes.
const (
	CodeInvalidMessage     = "INVALID_MESSAGE"
	CodeUnknownMessageType = "UNKNOWN_MESSAGE_TYPE"
	CodeSubscriptionError  = "SUBSCRIPTION_ERROR"
	CodeUnauthorized       = "UNAUTHORIZED"
	CodeForbidden          = "FORBIDDEN"
	CodeRateLimitExceeded  = "RATE_LIMIT_EXCEEDED"
)

// SubscribedFrame answers a subscribe. Truncated lists topics whose requested
// point was older than what is retained.
type SubscribedFrame struct {
	Type      string   `json:"type"`
	Topics    []string `json:"topics"`
	SessionID string   `json:"session_id"`
	Timestamp string   `json:"timestamp"`
	Truncated []string `json:"truncated,omitempty"`
}

// UnsubscribedFrame answers an unsubscribe.
type UnsubscribedFrame struct {
	Type   string   `json:"type"`
	Topics []string `json:"topics"`
}

// PongFrame answers a ping.
type PongFrame struct {
	Type      string `json:"type"`
	Timestamp string `json:"timestamp"`
}

// ErrorFrame reports a problem to a client; the connection stays open.
type ErrorFrame struct {
	Type    string `json:"type"`
	Code    string `json:"code"`
	Message string `json:"message"`
}

// EncodeFrame marshals a server frame. Server frames are plain structs of
// strings, so marshalling cannot fail.
func EncodeFrame(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("messages: encode %T: %v", v, err))
	}
	return b
}

// NewErrorFrame encodes an error frame.
func NewErrorFrame(code, message string) []byte {
	return EncodeFrame(ErrorFrame{Type: TypeError, Code: code, Message: message})
}

// NewPongFrame encodes a pong at now.
func NewPongFrame(now time.Time) []byte {
	return EncodeFrame(PongFrame{Type: TypePong, Timestamp: FormatTime(now)})
}

func asError[T error](err error, target *T) bool { return errors.As(err, target) }
