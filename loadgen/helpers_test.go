package loadgen

import (
	"encoding/json"
	"os"
	"time"
)

func timeNow() time.Time { return time.Now() }

func osGetpid() int { return os.Getpid() }

func readReport(path string) (*Report, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r Report
	return &r, json.Unmarshal(b, &r)
}
