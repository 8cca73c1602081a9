"""More than one replica: shards shared through leases in a JetStream key-value bucket.

- `keys`: shard and member names as key-value keys, reversibly;
- `plan`: who should hold what (rendezvous hashing), pure;
- `bucket`: the leases bucket, created or checked, read;
- `leases`: compare-and-set leases with a fence, and this member's heartbeat;
- `coordinator`: the rounds (renew, look, decide, act) and a clean leave;
- `checks`: surroundings cluster mode cannot work in (no JetStream, one replica on a
  cluster, a short duplicate window, a bucket with another TTL).

docs/cluster.md explains the design and its guarantees.
"""

from watcher.cluster.bucket import Bucket, Entry, open_bucket
from watcher.cluster.checks import Finding
from watcher.cluster.coordinator import Coordinator, ShardHandler, View, read_view
from watcher.cluster.keys import shard_name
from watcher.cluster.leases import Claim, Leases
from watcher.cluster.plan import Plan, Situation, plan, preferred, ranking

__all__ = [
    "Bucket",
    "Claim",
    "Coordinator",
    "Entry",
    "Finding",
    "Leases",
    "Plan",
    "ShardHandler",
    "Situation",
    "View",
    "open_bucket",
    "plan",
    "preferred",
    "ranking",
    "read_view",
    "shard_name",
]
