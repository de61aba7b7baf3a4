package sysmon

import (
	"slices"
	"testing"
)

func TestEnvAddsSettingUnlessSchedtraceIsNamed(t *testing.T) {
	for _, tc := range []struct {
		name    string
		env     []string
		want    []string
		changed bool
	}{
		{"no GODEBUG", []string{"PATH=/bin"}, []string{"PATH=/bin", "GODEBUG=" + Setting}, true},
		{"empty GODEBUG", []string{"GODEBUG=", "A=1"}, []string{"GODEBUG=" + Setting, "A=1"}, true},
		{"other settings kept", []string{"GODEBUG=gctrace=1,madvdontneed=1"},
			[]string{"GODEBUG=gctrace=1,madvdontneed=1," + Setting}, true},
		{"a schedtrace of the operator's", []string{"GODEBUG=schedtrace=1000"}, []string{"GODEBUG=schedtrace=1000"}, false},
		{"schedtrace=0 opts out", []string{"GODEBUG=gctrace=1,schedtrace=0"}, []string{"GODEBUG=gctrace=1,schedtrace=0"}, false},
		{"scheddetail is not schedtrace", []string{"GODEBUG=scheddetail=1"}, []string{"GODEBUG=scheddetail=1," + Setting}, true},
		{"the first GODEBUG is the runtime's", []string{"GODEBUG=gctrace=1", "GODEBUG=schedtrace=0"},
			[]string{"GODEBUG=gctrace=1," + Setting, "GODEBUG=schedtrace=0"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := slices.Clone(tc.env)
			got, changed := Env(in)
			if changed != tc.changed || !slices.Equal(got, tc.want) {
				t.Fatalf("Env(%q) = %q, %v; want %q, %v", tc.env, got, changed, tc.want, tc.changed)
			}
			if !slices.Equal(in, tc.env) {
				t.Fatalf("Env modified its argument: %q", in)
			}
		})
	}
}
