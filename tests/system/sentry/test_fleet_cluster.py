"""The fleet on a three-node Redis Cluster (issue 15): members given one node's address
find the others, a block is shared, a spread-thin scan is caught, and each source's
sightings key sits on the one slot its hash tag names."""
import pytest

from fleetproc import Fleet, all_logs, blocked_everywhere, fresh_scanner, nmap_hosts
from lab import FleetLab
from redisproc import make_cluster


@pytest.fixture(scope="module")
def flab():
    with FleetLab(hosts=3) as lab:
        lab.wait_reachable()
        nodes = make_cluster(lab)
        lab.redis = nodes[0]   # members are given this node only
        try:
            yield lab
        finally:
            for n in nodes:
                n.close()


def test_block_and_sweep_on_a_three_node_cluster(flab):
    info = flab.redis.cli("CLUSTER", "INFO", user="admin").stdout
    assert "cluster_state:ok" in info and "cluster_known_nodes:3" in info, info
    scanner = fresh_scanner(flab)
    with Fleet(flab) as fl:
        for sw in fl.sws:
            assert "Traceback" not in sw.log()
        nmap_hosts(flab, "-sS", "-p", "1-200", hosts=flab.hosts[:1])
        fl.wait(lambda: blocked_everywhere(fl.sws, scanner), 15, "blocked on the cluster fleet")
        for sw in fl.sws[1:]:
            assert f"Host {scanner} has been blocked via fleet (reported by web1)" in sw.log()

        sweeper = fresh_scanner(flab)
        nmap_hosts(flab, "-sS", "-p", "22,80,443,3306,5432")
        fl.wait(lambda: blocked_everywhere(fl.sws, sweeper), 15, "sweep caught on the cluster")
        assert "horizontal scan" in "".join(all_logs(sw) for sw in fl.sws)

        # where the keys live: the sightings of one source on its hash tag's slot, the
        # stream on {blocks}'s; every node holds some of the fleet's keys' slots
        where = flab.redis.py(f"""
from redis.cluster import RedisCluster
rc = RedisCluster(host={flab.redis.host!r}, port={flab.redis.port}, username='admin',
                  password=client().connection_pool.connection_kwargs['password'])
keys = ['scanwatch:sweep:{{{sweeper}}}', 'scanwatch:{{blocks}}:stream']
out = {{}}
for k in keys:
    slot = rc.keyslot(k)
    node = rc.get_node_from_key(k)
    out[k] = [slot, rc.keyslot('{{{sweeper}}}') if 'sweep' in k else rc.keyslot('{{blocks}}'),
              node.port, rc.exists(k)]
print(json.dumps(out))""")
        for key, (slot, tag_slot, _port, exists) in where.items():
            assert slot == tag_slot and exists == 1, (key, where)
