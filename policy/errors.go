package policy

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/pulsar-relay/relay/messages"
)

// maxErrors bounds how many problems one refused document reports.
const maxErrors = 20

// FieldError is one problem in a policy document. Line is 1-based (0 when
// unknown); Pattern is the rule's topic pattern ("" outside a rule); Field is
// the policy key ("" when the problem is the pattern or the document). It
// wraps messages.ErrInvalid, so an admin PUT answers 400.
type FieldError struct {
	Line    int
	Pattern string
	Field   string
	Msg     string
}

func (e *FieldError) Error() string {
	where := "policies"
	if e.Pattern != "" {
		where = "topics." + strconv.Quote(e.Pattern)
	}
	if e.Field != "" {
		where += "." + e.Field
	}
	if e.Line > 0 {
		return fmt.Sprintf("line %d: %s: %s", e.Line, where, e.Msg)
	}
	return where + ": " + e.Msg
}

// Unwrap makes every FieldError an ErrInvalid.
func (e *FieldError) Unwrap() error { return messages.ErrInvalid }

// joinErrors joins up to maxErrors problems, in document order; errors.As
// finds the first *FieldError.
func joinErrors(errs []*FieldError) error {
	if len(errs) == 0 {
		return nil
	}
	more := 0
	if len(errs) > maxErrors {
		more, errs = len(errs)-maxErrors, errs[:maxErrors]
	}
	out := make([]error, 0, len(errs)+1)
	for _, e := range errs {
		out = append(out, e)
	}
	if more > 0 {
		out = append(out, fmt.Errorf("%w: and %d more problems", messages.ErrInvalid, more))
	}
	return errors.Join(out...)
}
