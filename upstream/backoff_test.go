package upstream

import (
	"context"
	"errors"
	"math"
	"net/http"
	"slices"
	"testing"
	"testing/synctest"
	"time"
)

func constRand(v float64) func() float64 { return func() float64 { return v } }

func nextN(b *Backoff, n int) []time.Duration {
	var out []time.Duration
	for range n {
		out = append(out, b.Next())
	}
	return out
}

func TestBackoff(t *testing.T) {
	const ms = time.Millisecond
	tests := []struct {
		name string
		b    Backoff
		want []time.Duration
	}{
		{
			name: "rand 1 walks the caps",
			b:    Backoff{Min: 100 * ms, Max: time.Second, Rand: constRand(1)},
			want: []time.Duration{100 * ms, 200 * ms, 400 * ms, 800 * ms, time.Second, time.Second, time.Second},
		},
		{
			name: "rand 0 stays at Min",
			b:    Backoff{Min: 100 * ms, Max: time.Second, Rand: constRand(0)},
			want: slices.Repeat([]time.Duration{100 * ms}, 7),
		},
		{
			name: "rand 0.5 is halfway between Min and the cap",
			b:    Backoff{Min: 100 * ms, Max: time.Second, Rand: constRand(0.5)},
			want: []time.Duration{100 * ms, 150 * ms, 250 * ms, 450 * ms, 550 * ms, 550 * ms},
		},
		{
			name: "zero means 250ms to 30s",
			b:    Backoff{Rand: constRand(1)},
			want: []time.Duration{250 * ms, 500 * ms, time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 16 * time.Second, 30 * time.Second, 30 * time.Second},
		},
		{
			name: "Max below Min means Min",
			b:    Backoff{Min: time.Second, Max: 100 * ms, Rand: constRand(1)},
			want: []time.Duration{time.Second, time.Second, time.Second},
		},
		{
			name: "rand out of range is clamped",
			b:    Backoff{Min: 100 * ms, Max: time.Second, Rand: func() func() float64 { v := []float64{-1, 5}; i := 0; return func() float64 { i++; return v[i%2] } }()},
			want: []time.Duration{100 * ms, 100 * ms, 400 * ms, 100 * ms},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := nextN(&tt.b, len(tt.want)); !slices.Equal(got, tt.want) {
				t.Errorf("Next() = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestBackoffReset(t *testing.T) {
	b := Backoff{Min: 10 * time.Millisecond, Max: time.Second, Rand: constRand(1)}
	nextN(&b, 5)
	b.Reset()
	if got, want := nextN(&b, 3), []time.Duration{10 * time.Millisecond, 20 * time.Millisecond, 40 * time.Millisecond}; !slices.Equal(got, want) {
		t.Errorf("after Reset, Next() = %v, want %v", got, want)
	}
}

func TestBackoffBounds(t *testing.T) {
	// Huge bounds and many attempts: no overflow, always within [Min, Max].
	for _, b := range []Backoff{
		{Min: 1, Max: math.MaxInt64},
		{Min: time.Millisecond, Max: time.Minute},
		{Min: 3, Max: 1000},
	} {
		for i := range 200 {
			if d := b.Next(); d < b.Min || d > b.Max {
				t.Fatalf("%+v: attempt %d: Next() = %v, want within [Min, Max]", b, i, d)
			}
		}
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// TestRunBacksOff runs the reconnect loop against a dial that always fails,
// on a fake clock.
func TestRunBacksOff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		type event struct {
			at time.Time
			st Status
		}
		var events []event
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		dials := 0
		err := Run(ctx, Options{
			URL: "ws://feed.example/x",
			HTTPClient: &http.Client{Transport: roundTripFunc(func(*http.Request) (*http.Response, error) {
				dials++
				return nil, errors.New("connection refused")
			})},
			BackoffMin: 100 * time.Millisecond,
			BackoffMax: time.Second,
			Rand:       constRand(1),
			Logger:     testLogger(t, nil),
			OnState: func(st Status) {
				events = append(events, event{time.Now(), st})
				if len(events) == 14 {
					cancel()
				}
			},
		})
		if err != nil {
			t.Fatalf("Run = %v, want nil", err)
		}
		if dials != 7 {
			t.Errorf("%d dials, want 7", dials)
		}

		var retries []time.Duration
		for i, e := range events {
			want := StateConnecting
			if i%2 == 1 {
				want = StateDown
			}
			if e.st.State != want {
				t.Fatalf("event %d: state %v, want %v", i, e.st.State, want)
			}
			if want == StateConnecting {
				if i > 0 {
					if waited := e.at.Sub(events[i-1].at); waited != events[i-1].st.RetryIn {
						t.Errorf("event %d: waited %v, want the announced %v", i, waited, events[i-1].st.RetryIn)
					}
				}
				continue
			}
			if e.st.Err == nil {
				t.Errorf("event %d: down without an error", i)
			}
			retries = append(retries, e.st.RetryIn)
		}
		want := []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond, 800 * time.Millisecond, time.Second, time.Second, time.Second}
		if !slices.Equal(retries, want) {
			t.Errorf("RetryIn = %v, want %v", retries, want)
		}
	})
}
