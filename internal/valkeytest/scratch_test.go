package valkeytest

import (
	"context"
	"fmt"
	"testing"

	"github.com/valkey-io/valkey-go"
)

func TestScratch(t *testing.T) {
	s := Start(t)
	c, err := valkey.NewClient(valkey.ClientOption{InitAddress: []string{s.Addr()}, DisableCache: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	k := "topic:{a}:stream"
	var last string
	for i := 0; i < 300; i++ {
		last, _ = c.Do(ctx, c.B().Xadd().Key(k).Id("*").FieldValue().FieldValue("a", "b").Build()).ToString()
	}
	r := c.Do(ctx, c.B().Xtrim().Key(k).Minid().Almost().Threshold(last).Build())
	fmt.Println(r.AsInt64())
	r = c.Do(ctx, c.B().Arbitrary("XSETID", k, last, "MAXDELETEDID", "1-1").Build())
	fmt.Println(r.Error())
	r = c.Do(ctx, c.B().Arbitrary("XSETID", k, last, "MAXDELETEDID", last).Build())
	fmt.Println(r.Error())
	sc := valkey.NewLuaScriptReadOnly(`
if redis.call('EXISTS', KEYS[1]) == 0 then return {'0-0', '0-0'} end
local info = redis.call('XINFO', 'STREAM', KEYS[1])
local md, lg
for i = 1, #info, 2 do
  if info[i] == 'max-deleted-entry-id' then md = info[i+1] end
  if info[i] == 'last-generated-id' then lg = info[i+1] end
end
return {md, lg, redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 2)}`)
	res := sc.Exec(ctx, c, []string{k}, nil)
	fmt.Println(res.ToAny())
	res = sc.Exec(ctx, c, []string{"nokey"}, nil)
	fmt.Println(res.ToAny())
	m, _ := c.Do(ctx, c.B().XinfoStream().Key(k).Build()).AsMap()
	for k, v := range m {
		fmt.Println(k, v.String())
	}
}
