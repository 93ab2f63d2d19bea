package main

import (
	"context"
	"fmt"
	"time"

	"github.com/rs/zerolog"

	"github.com/ws2sse/ws2sse/bridge"
	"github.com/ws2sse/ws2sse/internal/config"
	"github.com/ws2sse/ws2sse/internal/redisstore"
)

// The [cluster] section at work: the channels are shared with the other
// ws2sse processes through Redis (SPEC section 11, bridge.Store).

// cluster is the process's part in a cluster. A nil *cluster is a process
// that serves alone; every method accepts it.
type cluster struct {
	store *redisstore.Store
	lease time.Duration
}

// startCluster connects to the cluster's Redis when cfg has a [cluster], and
// returns nil otherwise. Redis need not answer yet: channels wait for it
// while clients are served. Close it after the hub.
func startCluster(cfg *config.Config, log zerolog.Logger) (*cluster, error) {
	cc := cfg.Cluster
	if cc == nil {
		return nil, nil
	}
	redisstore.RouteLibraryLogs(log)
	store, err := redisstore.New(redisstore.Options{
		URL:    cc.Redis,
		Node:   cc.Node,
		Prefix: cc.Prefix,
		Logger: log,
	})
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	ev := log.Info()
	if err := store.Ping(ctx); err != nil {
		ev = log.Warn().AnErr("redis_error", err)
	}
	ev.Str("node", store.Node()).Str("redis", store.Addr()).Dur("lease", cc.Lease).Str("prefix", cc.Prefix).
		Msg("cluster mode: channels are shared with the other ws2sse processes through Redis")
	return &cluster{store: store, lease: cc.Lease}, nil
}

// close disconnects from Redis.
func (cl *cluster) close() {
	if cl != nil {
		_ = cl.store.Close()
	}
}

// channelOptions makes a channel's options shared through the cluster.
func (cl *cluster) channelOptions(opts *bridge.Options) {
	if cl != nil {
		opts.Store = cl.store
		opts.Lease = cl.lease
	}
}

// notReady returns, for /readyz, why the process is not ready as a member
// of the cluster: one line while Redis does not answer; none otherwise.
func (cl *cluster) notReady() []string {
	if cl == nil {
		return nil
	}
	since, err := cl.store.Unreachable()
	if err == nil {
		return nil
	}
	return []string{fmt.Sprintf("cluster: redis %s unreachable for %s: %v",
		cl.store.Addr(), time.Since(since).Round(time.Second), err)}
}
