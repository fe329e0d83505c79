package cache

import (
	"context"
	"fmt"
	"strings"

	"github.com/redis/go-redis/v9"
)

// scanBatch is how many keys one SCAN step asks for: large enough that a
// purge of a big cache is a few hundred round trips per node, small enough
// that no single step blocks Redis noticeably.
const scanBatch = 1000

// InvalidateAll drops every user's entries. It walks every node that holds
// data (each master of a Cluster, each shard of a Ring) with SCAN — never
// KEYS — bumping each generation key it finds, exactly as Invalidate does, and
// unlinking entry keys to free their memory at once.
//
// A fill that was in progress for a user with no generation key yet (its
// first entry) is not fenced by this pass: the proxy runs InvalidateAll again
// once every such fill has finished (see proxy's purge handler).
func (r *Redis) InvalidateAll(ctx context.Context) error {
	var err error
	switch c := r.client.(type) {
	case *redis.ClusterClient:
		err = c.ForEachMaster(ctx, r.invalidateNode)
	case *redis.Ring:
		err = c.ForEachShard(ctx, r.invalidateNode)
	case *redis.Client:
		err = r.invalidateNode(ctx, c)
	default:
		err = fmt.Errorf("unsupported client type %T", r.client)
	}
	if err != nil {
		return fmt.Errorf("invalidating every cached user: %w", err)
	}
	return nil
}

// invalidateNode purges the keys of one node.
func (r *Redis) invalidateNode(ctx context.Context, c *redis.Client) error {
	// Pipelined EVALSHA cannot fall back to EVAL, so make sure this node
	// has the script first.
	if err := r.invalidate.Load(ctx, c).Err(); err != nil {
		return err
	}
	genTTL := r.genTTL.Milliseconds()
	suffix := ":" + genSuffix
	var cursor uint64
	for {
		keys, next, err := c.Scan(ctx, cursor, r.prefix+":{*}:*", scanBatch).Result()
		if err != nil {
			return err
		}
		if len(keys) > 0 {
			_, err = c.Pipelined(ctx, func(p redis.Pipeliner) error {
				for _, k := range keys {
					if strings.HasSuffix(k, suffix) {
						r.invalidate.EvalSha(ctx, p, []string{k}, genTTL)
					} else {
						p.Unlink(ctx, k)
					}
				}
				return nil
			})
			if err != nil {
				return err
			}
		}
		if next == 0 {
			return nil
		}
		cursor = next
	}
}
