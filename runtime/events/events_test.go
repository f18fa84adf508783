package events

import (
	"errors"
	"sync"
	"testing"
)

func TestOrderToEverySubscriber(t *testing.T) {
	b := New()
	a, c := b.Subscribe(0), b.Subscribe(0)
	const n = 1000
	var wg sync.WaitGroup
	got := make([][]string, 2)
	for i, s := range []*Subscription{a, c} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for e := range s.C() {
				got[i] = append(got[i], e.ID)
				if len(got[i]) == n {
					return
				}
			}
		}()
	}
	for i := range n {
		b.Publish(Event{Kind: Kind(i % 4), ID: string(rune('a' + i%26))})
	}
	wg.Wait()
	for i := range got {
		if len(got[i]) != n {
			t.Fatalf("subscriber %d got %d events, want %d", i, len(got[i]), n)
		}
		for j := range n {
			if want := string(rune('a' + j%26)); got[i][j] != want {
				t.Fatalf("subscriber %d event %d is %q, want %q", i, j, got[i][j], want)
			}
		}
	}
	a.Close()
	a.Close()
	if b.Subscribers() != 1 {
		t.Fatalf("subscribers after close: %d", b.Subscribers())
	}
}

func TestSlowSubscriberDropped(t *testing.T) {
	b := New()
	slow := b.Subscribe(2)
	fast := b.Subscribe(10)
	for range 5 {
		b.Publish(Event{})
	}
	n := 0
	for range slow.C() {
		n++
	}
	if n != 2 || !errors.Is(slow.Err(), ErrSlow) {
		t.Fatalf("slow subscriber: %d events, err %v; want 2 and ErrSlow", n, slow.Err())
	}
	if len(fast.C()) != 5 || fast.Err() != nil {
		t.Fatalf("fast subscriber: %d queued, err %v", len(fast.C()), fast.Err())
	}
	slow.Close() // already dropped: no double close
}

func TestNilBus(t *testing.T) {
	var b *Bus
	b.Publish(Event{})
	if b.Subscribers() != 0 {
		t.Fatal("nil bus has subscribers")
	}
}
