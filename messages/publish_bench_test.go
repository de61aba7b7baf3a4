package messages

import (
	"strings"
	"testing"
)

// Bodies of the publish decoder benchmark: a typical small message and a
// 64 KiB one with nested objects, numbers and non-ASCII text.
var (
	// benchLoadgen is what `relay bench` and scripts/wrk-publish.lua send;
	// benchEscaped takes encoding/json's path (an escaped topic).
	benchLoadgen = []byte(`{"topic":"bench-0","payload":{"seq":1,"sent_ns":1732679000000000000,"pub":0,"pad":"0123456789abcdef0123456789abcdef"}}`)
	benchEscaped = []byte(`{"topic":"bench\u002d0","payload":{"seq":1,"sent_ns":1732679000000000000,"pub":0,"pad":"0123456789abcdef0123456789abcdef"}}`)
	benchSmall   = []byte(`{"topic":"notifications","payload":{"user_id":123,"message":"Hello","tags":["a","b"],"score":1.5e3},"ttl":60,"metadata":{"source":"billing"}}`)
	benchLarge   = func() []byte {
		var b strings.Builder
		b.WriteString(`{"topic":"bulk.data","payload":{"items":[`)
		for i := 0; b.Len() < 64<<10; i++ {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(`{"id":12345,"name":"caf\u00e9 Straße 東京","nested":{"a":[1,2,3,{"b":-0.25e-7}]},"ok":true}`)
		}
		b.WriteString(`]},"metadata":{"k":"v"}}`)
		return []byte(b.String())
	}()
)

func BenchmarkDecodePublish(b *testing.B) {
	for _, bc := range []struct {
		name string
		body []byte
	}{{"small", benchSmall}, {"64KiB", benchLarge}, {"bench", benchLoadgen}, {"escaped", benchEscaped}} {
		b.Run(bc.name, func(b *testing.B) {
			b.SetBytes(int64(len(bc.body)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := DecodePublish(bc.body); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkCheckJSON is the cost of the limits and syntax scan alone (one
// pass, no allocation), to set against BenchmarkDecodePublish.
func BenchmarkCheckJSON(b *testing.B) {
	for _, bc := range []struct {
		name string
		body []byte
	}{{"small", benchSmall}, {"64KiB", benchLarge}} {
		b.Run(bc.name, func(b *testing.B) {
			b.SetBytes(int64(len(bc.body)))
			b.ReportAllocs()
			for b.Loop() {
				if err := CheckJSON(bc.body, MaxJSONDepth+1); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
