package loadgen

import (
	"os"
	"time"
)

func timeNow() time.Time { return time.Now() }

func osGetpid() int { return os.Getpid() }

func readReport(path string) (*Report, error) {
	reps, err := readReports([]string{path})
	if err != nil {
		return nil, err
	}
	return reps[0], nil
}
