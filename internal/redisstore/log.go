package redisstore

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ws2sse/ws2sse/bridge"
)

// readBlock is how long one XREAD waits for records. Read loops over it
// until ctx is done, which it notices between two waits.
const readBlock = time.Second

// streamLog is one channel's keys; it implements bridge.Log.
type streamLog struct {
	s                                     *Store
	stream, lease, state, batch, presence string
	maxLen                                int
	ttl                                   time.Duration
}

// appendScript appends records if the lease is still held (KEYS[2] ==
// ARGV[1]), unless this batch (ARGV[2]) was the last one appended.
// Each entry records the id of the one before it. ARGV[3] is the stream's
// MAXLEN (trimmed with ~), ARGV[4] its expiry in ms (0: none), ARGV[5] the
// number of records; then per record "s", state, or "e", name, data,
// binary.
var appendScript = redis.NewScript(`
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
if redis.call('GET', KEYS[4]) == ARGV[2] then return 1 end
local pttl = redis.call('PTTL', KEYS[2])
local prev = ''
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
if #last > 0 then prev = last[1][1] end
local i = 6
for _ = 1, tonumber(ARGV[5]) do
  if ARGV[i] == 's' then
    prev = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[3], '*', 'p', prev, 's', ARGV[i+1])
    if pttl > 0 then redis.call('SET', KEYS[3], ARGV[i+1], 'PX', pttl) end
    i = i + 2
  else
    prev = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[3], '*', 'p', prev, 'n', ARGV[i+1], 'd', ARGV[i+2], 'b', ARGV[i+3])
    i = i + 4
  end
end
if tonumber(ARGV[4]) > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[4]) end
if pttl > 0 then redis.call('SET', KEYS[4], ARGV[2], 'PX', pttl) end
return 1
`)

func (l *streamLog) Append(ctx context.Context, lease string, batch uint64, recs []bridge.Record) (bool, error) {
	args := make([]any, 0, 5+4*len(recs))
	args = append(args, lease, fmt.Sprintf("%s#%d", lease, batch), l.maxLen, l.ttl.Milliseconds(), len(recs))
	for _, r := range recs {
		if r.State {
			args = append(args, "s", r.Data)
			continue
		}
		bin := "0"
		if r.Binary {
			bin = "1"
		}
		args = append(args, "e", r.Name, r.Data, bin)
	}
	n, err := appendScript.Run(ctx, l.s.rdb, []string{l.stream, l.lease, l.state, l.batch}, args...).Int()
	if err != nil {
		return false, fmt.Errorf("failed to append to %s: %w", l.stream, err)
	}
	return n == 1, nil
}

func (l *streamLog) Read(ctx context.Context, after string, max int) ([]bridge.Record, error) {
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		res, err := l.s.rdb.XRead(ctx, &redis.XReadArgs{
			Streams: []string{l.stream, after},
			Count:   int64(max),
			Block:   readBlock,
		}).Result()
		switch {
		case ctx.Err() != nil:
			return nil, ctx.Err()
		case errNil(err):
			continue // nothing new within readBlock
		case err != nil:
			return nil, fmt.Errorf("failed to read %s: %w", l.stream, err)
		}
		if len(res) == 0 || len(res[0].Messages) == 0 {
			continue
		}
		out := make([]bridge.Record, len(res[0].Messages))
		for i, m := range res[0].Messages {
			out[i] = decode(m)
		}
		return out, nil
	}
}

func (l *streamLog) Last(ctx context.Context, n int) ([]bridge.Record, []byte, error) {
	var msgs *redis.XMessageSliceCmd
	var state *redis.StringCmd
	_, err := l.s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		msgs = p.XRevRangeN(ctx, l.stream, "+", "-", int64(n))
		state = p.Get(ctx, l.state)
		return nil
	})
	if err != nil && !errNil(err) {
		return nil, nil, fmt.Errorf("failed to load %s: %w", l.stream, err)
	}
	out := make([]bridge.Record, 0, len(msgs.Val()))
	for _, m := range msgs.Val() {
		out = append(out, decode(m))
	}
	slices.Reverse(out)
	return out, stateBytes(state), nil
}

func (l *streamLog) State(ctx context.Context) ([]byte, error) {
	state := l.s.rdb.Get(ctx, l.state)
	if err := state.Err(); err != nil && !errNil(err) {
		return nil, fmt.Errorf("failed to read %s: %w", l.state, err)
	}
	return stateBytes(state), nil
}

func stateBytes(c *redis.StringCmd) []byte {
	if c.Err() != nil {
		return nil
	}
	return []byte(c.Val())
}

// decode turns a stream entry into a record.
func decode(m redis.XMessage) bridge.Record {
	field := func(k string) string {
		s, _ := m.Values[k].(string)
		return s
	}
	r := bridge.Record{ID: m.ID, Prev: field("p")}
	if s, ok := m.Values["s"].(string); ok {
		r.State, r.Data = true, []byte(s)
		return r
	}
	r.Name, r.Data, r.Binary = field("n"), []byte(field("d")), field("b") == "1"
	return r
}

// acquireScript takes the lease (SET NX PX) and answers {1, 0}, or answers
// {0, the holder's PTTL}. A new holder starts with no state.
var acquireScript = redis.NewScript(`
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  redis.call('DEL', KEYS[2], KEYS[3])
  return {1, 0}
end
return {0, redis.call('PTTL', KEYS[1])}
`)

func (l *streamLog) Acquire(ctx context.Context, lease string, ttl time.Duration) (bool, time.Duration, error) {
	res, err := acquireScript.Run(ctx, l.s.rdb, []string{l.lease, l.state, l.batch}, lease, ttl.Milliseconds()).Int64Slice()
	if err != nil {
		return false, 0, fmt.Errorf("failed to take %s: %w", l.lease, err)
	}
	if len(res) != 2 {
		return false, 0, fmt.Errorf("failed to take %s: unexpected reply %v", l.lease, res)
	}
	return res[0] == 1, time.Duration(max(res[1], 0)) * time.Millisecond, nil
}

// renewScript extends the lease, the state and the batch tag if the lease
// is still held with ARGV[1].
var renewScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
redis.call('PEXPIRE', KEYS[3], ARGV[2])
return 1
`)

func (l *streamLog) Renew(ctx context.Context, lease string, ttl time.Duration) (bool, error) {
	n, err := renewScript.Run(ctx, l.s.rdb, []string{l.lease, l.state, l.batch}, lease, ttl.Milliseconds()).Int()
	if err != nil {
		return false, fmt.Errorf("failed to renew %s: %w", l.lease, err)
	}
	return n == 1, nil
}

// releaseScript deletes the lease, the state and the batch tag if the lease
// is still held with ARGV[1].
var releaseScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
return 1
`)

func (l *streamLog) Release(ctx context.Context, lease string) error {
	if err := releaseScript.Run(ctx, l.s.rdb, []string{l.lease, l.state, l.batch}, lease).Err(); err != nil {
		return fmt.Errorf("failed to release %s: %w", l.lease, err)
	}
	return nil
}

// presentScript marks ARGV[1] present until Redis's now plus ARGV[2] ms;
// the set itself expires when nobody refreshes it.
var presentScript = redis.NewScript(`
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], 2 * tonumber(ARGV[2]))
return 1
`)

func (l *streamLog) Present(ctx context.Context, node string, ttl time.Duration) error {
	var err error
	if ttl <= 0 {
		err = l.s.rdb.ZRem(ctx, l.presence, node).Err()
	} else {
		err = presentScript.Run(ctx, l.s.rdb, []string{l.presence}, node, ttl.Milliseconds()).Err()
	}
	if err != nil {
		return fmt.Errorf("failed to update %s: %w", l.presence, err)
	}
	return nil
}

// presenceScript drops the nodes whose presence ran out and counts the
// others.
var presenceScript = redis.NewScript(`
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
return redis.call('ZCARD', KEYS[1])
`)

func (l *streamLog) Presence(ctx context.Context) (int, error) {
	n, err := presenceScript.Run(ctx, l.s.rdb, []string{l.presence}).Int()
	if err != nil {
		return 0, fmt.Errorf("failed to read %s: %w", l.presence, err)
	}
	return n, nil
}
