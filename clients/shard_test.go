package clients

import (
	"fmt"
	"sort"
	"testing"
	"time"
)

func TestParseShard(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Shard
		err  string
	}{
		{"1/3", Shard{1, 3}, ""},
		{" 3 / 3 ", Shard{3, 3}, ""},
		{"1/1", Shard{1, 1}, ""},
		{"0/3", Shard{}, `invalid shard "0/3": shards are numbered from 1 (a Kubernetes completion index is the shard minus one)`},
		{"4/3", Shard{}, `invalid shard "4/3": i must be between 1 and 3`},
		{"2", Shard{}, `invalid shard "2" (use i/n, e.g. 2/3 for the second of three parts)`},
		{"a/b", Shard{}, `invalid shard "a/b" (use i/n, e.g. 2/3 for the second of three parts)`},
		{"1/0", Shard{}, `invalid shard "1/0" (use i/n, e.g. 2/3 for the second of three parts)`},
	} {
		got, err := ParseShard(tc.in)
		msg := ""
		if err != nil {
			msg = err.Error()
		}
		if got != tc.want || msg != tc.err {
			t.Errorf("ParseShard(%q) = %v, %q; want %v, %q", tc.in, got, msg, tc.want, tc.err)
		}
		if tc.err == "" && got.String() != fmt.Sprintf("%d/%d", tc.want.Index, tc.want.Count) {
			t.Errorf("String() = %q", got.String())
		}
	}
}

// TestShardUnionIsWholePlan: for every scenario's kind of plan, the n
// shards together hold exactly the whole plan's actions (same times,
// connections, opens and closes), each shard only its own connections,
// and each shard's ramp is the whole ramp's 1/n.
func TestShardUnionIsWholePlan(t *testing.T) {
	horizon := 30 * time.Minute
	for _, tc := range []struct {
		name string
		plan Plan
	}{
		{"flood", Plan{Connections: 20, Ramp: Rate{1, 5}, Seed: 1}},
		{"all at once", Plan{Connections: 7, Seed: 3}},
		{"churn", Plan{Connections: 10, Ramp: Rate{5, 5}, Churn: time.Minute, Seed: 1}},
		{"mixed", Plan{Connections: 15, Ramp: Rate{1, 5}, Churn: time.Minute, VariableMin: 5, VariableMax: 10, Seed: 9}},
	} {
		for _, n := range []int{1, 2, 3, 7} {
			t.Run(fmt.Sprintf("%s/%d", tc.name, n), func(t *testing.T) {
				whole := tc.plan.Actions(horizon)
				var union []Action
				for i := 1; i <= n; i++ {
					p := tc.plan
					p.Shard = Shard{i, n}
					if err := p.Check(); err != nil {
						t.Fatal(err)
					}
					acts := p.Actions(horizon)
					opens := 0
					for _, a := range acts {
						if a.Conn%n != i-1 {
							t.Fatalf("shard %d/%d has connection %d", i, n, a.Conn)
						}
						if a.Open {
							opens++
						}
					}
					if opens == 0 {
						t.Fatalf("shard %d/%d opens nothing", i, n)
					}
					union = append(union, acts...)
				}
				key := func(a Action) string { return fmt.Sprintf("%020d %v %06d", a.At, a.Open, a.Conn) }
				sort.Slice(union, func(i, j int) bool { return key(union[i]) < key(union[j]) })
				sorted := append([]Action(nil), whole...)
				sort.Slice(sorted, func(i, j int) bool { return key(sorted[i]) < key(sorted[j]) })
				if len(union) != len(sorted) {
					t.Fatalf("shards hold %d actions, the whole plan %d", len(union), len(sorted))
				}
				for i := range union {
					if union[i] != sorted[i] {
						t.Fatalf("action %d: shards %+v, whole %+v", i, union[i], sorted[i])
					}
				}
			})
		}
	}
}

// TestShardCheck: more shards than connections is refused (a shard would
// open none), and so is a shard outside its count.
func TestShardCheck(t *testing.T) {
	p := Plan{Connections: 2, Ramp: Rate{5, 5}, Seed: 1, Shard: Shard{1, 3}}
	if err := p.Check(); err == nil || err.Error() != "3 shards need at least 3 connections, got 2 (shard 3/3 would open none)" {
		t.Errorf("Check = %v", err)
	}
	p = Plan{Connections: 5, Seed: 1, Shard: Shard{4, 3}}
	if err := p.Check(); err == nil {
		t.Error("shard 4/3 accepted")
	}
	if got := (Plan{Connections: 10, VariableMax: 5, Shard: Shard{1, 3}}).Concurrent(); got != 4+2 {
		t.Errorf("Concurrent = %d, want 6", got)
	}
	if got := (Plan{Connections: 10, VariableMax: 5}).Concurrent(); got != 15 {
		t.Errorf("Concurrent = %d, want 15", got)
	}
}

// TestScheduleFixedVariableSetEnds: a variable set of fixed size is opened
// once; the schedule then has no more actions (it used to look for one
// forever).
func TestScheduleFixedVariableSetEnds(t *testing.T) {
	p := Plan{Connections: 2, Ramp: Rate{10, 10}, Churn: time.Second, VariableMin: 3, VariableMax: 3, Seed: 1}
	done := make(chan []Action, 1)
	go func() { done <- p.Actions(time.Hour) }()
	select {
	case acts := <-done:
		if len(acts) != 5 {
			t.Fatalf("%d actions, want 2 ramp opens and 3 variable opens: %+v", len(acts), acts)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Actions did not return")
	}
	s := p.Schedule()
	for range 5 {
		s.Next()
	}
	if a, ok := s.Peek(); ok {
		t.Fatalf("an action after the fixed set opened: %+v", a)
	}
}
