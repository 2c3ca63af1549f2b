/* scanwatch sentry: classify scan probes in XDP, count them per source, drop blocked sources.
 * Compiled by bcc (scanwatch/kernel.py) with -I bpf/ and map sizes as -D flags. */
#include <uapi/linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/in.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include "scanwatch.h"

#define SW_IPPROTO_SCTP 132

#ifndef SW_MAX_SOURCES
#define SW_MAX_SOURCES 65536
#endif
#ifndef SW_MAX_BLOCKED
#define SW_MAX_BLOCKED 65536
#endif
#ifndef SW_MAX_IGNORE
#define SW_MAX_IGNORE 4096
#endif
#ifndef SW_MAX_EXTHDRS
#define SW_MAX_EXTHDRS 8
#endif
#ifndef SW_RINGBUF_PAGES
#define SW_RINGBUF_PAGES 64
#endif
#ifndef SW_UNREPORTED_BLOCK_NS
#define SW_UNREPORTED_BLOCK_NS 5000000000ULL  /* a kernel block whose report was lost */
#endif
#ifndef SW_ALERT_PAGES
#define SW_ALERT_PAGES 8
#endif

#define TH_FIN 0x01
#define TH_SYN 0x02
#define TH_RST 0x04
#define TH_PSH 0x08
#define TH_ACK 0x10
#define TH_URG 0x20

BPF_ARRAY(config, struct sw_config, 1);
BPF_ARRAY(watched, __u64, 2 * SW_PORT_WORDS);
BPF_PERCPU_ARRAY(counters, __u64, SW_NCOUNTERS);
BPF_LPM_TRIE(ignored, struct sw_lpm_key, __u8, SW_MAX_IGNORE);
BPF_TABLE("lru_hash", struct sw_addr, struct sw_source, sources, SW_MAX_SOURCES);
/* Userspace's blocks never evict (a forged flood must not push them out: full = refused,
 * and userspace says so); the kernel's own short blocks live apart, in an LRU. */
BPF_HASH(blocked, struct sw_addr, struct sw_block, SW_MAX_BLOCKED);
BPF_TABLE("lru_hash", struct sw_addr, struct sw_block, kblocked, SW_MAX_BLOCKED);
BPF_RINGBUF_OUTPUT(events, SW_RINGBUF_PAGES);
BPF_ARRAY(blank, struct sw_source, 1);  /* never written: the template of a new source */
/* SW_EV_PERSIST only: a spoofed flood fills `events`, never this one, so a real scanner
 * that keeps probing through the flood is still heard. */
BPF_RINGBUF_OUTPUT(alerts, SW_ALERT_PAGES);
/* issue 13: challenge cookies (source -> expected RST seq, written by userspace), the RSTs
 * that echoed one, and hop counts learned from established connections. */
#ifndef SW_MAX_COOKIES
#define SW_MAX_COOKIES 4096
#endif
#ifndef SW_MAX_HOPS
#define SW_MAX_HOPS 65536
#endif
/* LRU: a spoofed flood's unanswered cookies make room for new ones by themselves. */
BPF_TABLE("lru_hash", struct sw_addr, struct sw_cookie, cookies, SW_MAX_COOKIES);
BPF_RINGBUF_OUTPUT(answers, 4);
/* A peer's hop count and the connection that taught it: the trigger path asks whether that
 * connection still exists, since a scanner that once browsed the site and then scans with
 * nmap's own TTLs is no forged peer. Kernel-only (userspace never reads it). */
struct sw_peer {
	struct bpf_sock_tuple tuple;
	__u32 tuple_len;
	__u8 hops;
};
BPF_TABLE("lru_hash", struct sw_addr, struct sw_peer, hops, SW_MAX_HOPS);

struct vlan_hdr_sw {
	__be16 tci;
	__be16 proto;
};

struct probe {
	struct sw_addr src;
	struct bpf_sock_tuple tuple;
	__u32 tuple_len;
	__u16 dport;
	__u8 proto;   /* SW_PROTO_* */
	__u8 kind;
	__u8 tcp_flags;
	__u8 flags;   /* SW_F_IPOPTS, SW_F_FRAG */
	__u8 has_src; /* src was parsed: whatever else the frame is, check `blocked` */
	__u8 ttl;     /* issue 13: TTL / hop limit */
	__u8 rst;     /* a RST with a whole TCP header: seq holds its sequence number */
	__u32 seq;
};

static __always_inline void count(__u32 idx)
{
	__u64 *c = counters.lookup(&idx);
	if (c)
		*c += 1;
}

/* PortSentry's classification, plus the ACK family (nmap -sA/-sW/-sM, --scanflags with ACK),
 * which only counts when no socket owns the 4-tuple. -1 for anything with RST: no stack
 * answers a RST (RFC 9293), so it reveals nothing, and counting it would let backscatter
 * from a spoofed flood trip the sentry. */
static __always_inline int tcp_kind(__u8 f)
{
	if (f & TH_RST)
		return -1;
	int ack = f & TH_ACK;
	f &= TH_FIN | TH_SYN | TH_PSH | TH_URG;
	if (ack)
		return f == 0 ? SW_KIND_ACK : f == TH_FIN ? SW_KIND_MAIMON : SW_KIND_UNKNOWN;
	if (f == TH_SYN)
		return SW_KIND_SYN;
	if (f == TH_FIN)
		return SW_KIND_FIN;
	if (f == 0)
		return SW_KIND_NULL;
	if (f == (TH_FIN | TH_PSH | TH_URG))
		return SW_KIND_XMAS;
	return SW_KIND_UNKNOWN;
}

/* Fill p from an L4 header at l4; 0 = a probe, 1 = not a probe, -1 = truncated. */
/* `end` is the frame's end (what the verifier checks against); `ip_end` is where the IP
 * packet says it ends: Ethernet pads short frames, and padding is not a header. */
static __always_inline int parse_l4(void *l4, void *end, void *ip_end, __u8 nexthdr,
				    struct probe *p)
{
	if (nexthdr == IPPROTO_TCP) {
		struct tcphdr *th = l4;
		__u8 f = 0;
		int kind = SW_KIND_TINYFRAG;
		if ((void *)(th + 1) <= end && (void *)(th + 1) <= ip_end) {
			if (th->doff < 5)
				return 1;  /* the stack discards it: no probe, nothing answers */
			f = ((__u8 *)th)[13];
			kind = tcp_kind(f);
			if (f & TH_RST) {
				p->rst = 1;
				p->seq = bpf_ntohl(th->seq);
			}
		} else {
			/* A first fragment cut inside the TCP header (nmap -f, --mtu 8/16) is
			 * classified from what it holds: the ports are in any fragment (8 bytes at
			 * least), the flags need 14. No reassembly, so no memory to exhaust; Linux
			 * discards overlapping fragments, so a later one cannot rewrite them. */
			if (!(p->flags & SW_F_FRAG) || (void *)th + 8 > end || (void *)th + 8 > ip_end)
				return -1;
			if ((void *)th + 14 <= end && (void *)th + 14 <= ip_end) {
				if ((((__u8 *)th)[12] >> 4) < 5)
					return 1;
				f = ((__u8 *)th)[13];
				kind = tcp_kind(f);
			}
		}
		if (kind < 0)
			return 1;
		p->proto = SW_PROTO_TCP;
		p->kind = kind;
		p->tcp_flags = f;
		p->dport = bpf_ntohs(th->dest);
		if (p->tuple_len == sizeof(p->tuple.ipv4)) {
			p->tuple.ipv4.sport = th->source;
			p->tuple.ipv4.dport = th->dest;
		} else {
			p->tuple.ipv6.sport = th->source;
			p->tuple.ipv6.dport = th->dest;
		}
		return 0;
	}
	if (nexthdr == IPPROTO_UDP) {
		struct udphdr *uh = l4;
		if ((void *)(uh + 1) > end || (void *)(uh + 1) > ip_end)
			return -1;
		p->proto = SW_PROTO_UDP;
		p->kind = SW_KIND_UDP;
		p->dport = bpf_ntohs(uh->dest);
		if (p->tuple_len == sizeof(p->tuple.ipv4)) {
			p->tuple.ipv4.sport = uh->source;
			p->tuple.ipv4.dport = uh->dest;
		} else {
			p->tuple.ipv6.sport = uh->source;
			p->tuple.ipv6.dport = uh->dest;
		}
		return 0;
	}
	/* issue 13: SCTP INIT (nmap -sY) and COOKIE-ECHO (-sZ) are the SYN of SCTP. */
	if (nexthdr == SW_IPPROTO_SCTP) {
		__u8 *sh = l4;
		if ((void *)(sh + 13) > end || (void *)(sh + 13) > ip_end)
			return -1;
		if (sh[12] != 1 && sh[12] != 10)
			return 1;  /* other chunks belong to an association or answer nothing */
		p->kind = sh[12] == 1 ? SW_KIND_SCTP_INIT : SW_KIND_SCTP_COOKIE;
	} else if (nexthdr == IPPROTO_ICMP || nexthdr == IPPROTO_ICMPV6 || nexthdr == IPPROTO_NONE) {
		return 1;
	} else {
		/* issue 13: any other protocol (nmap -sO): its number stands for the port, so
		 * a sweep of protocols is a sweep. GRE or ESP peers use one or two, never 20. */
		p->proto = SW_PROTO_TCP;
		p->kind = SW_KIND_IPPROTO;
		p->tcp_flags = 0;
		p->dport = nexthdr;
		return 0;
	}
	p->proto = SW_PROTO_TCP;
	p->tcp_flags = 0;
	p->dport = bpf_ntohs(*(__u16 *)(l4 + 2));
	return 0;
}

/* 0 = probe parsed, 1 = pass untouched (src may still be set), -1 = truncated,
 * -2 = an IPv6 header chain longer than we walk (dropped: it would hide a probe). */
static __always_inline int parse(struct xdp_md *ctx, struct probe *p)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > end)
		return -1;
	__u16 eproto = eth->h_proto;
	void *l3 = eth + 1;
	/* Up to two tags (802.1Q, or QinQ: 802.1ad outside 802.1Q). */
#pragma unroll
	for (int i = 0; i < 2; i++) {
		if (eproto != bpf_htons(ETH_P_8021Q) && eproto != bpf_htons(ETH_P_8021AD))
			break;
		struct vlan_hdr_sw *vh = l3;
		if ((void *)(vh + 1) > end)
			return -1;
		eproto = vh->proto;
		l3 = vh + 1;
	}
	if (eproto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = l3;
		if ((void *)(ip + 1) > end)
			return -1;
		__builtin_memset(p->src.a, 0, 10);
		p->src.a[10] = 0xff;
		p->src.a[11] = 0xff;
		__builtin_memcpy(&p->src.a[12], &ip->saddr, 4);
		p->has_src = 1;
		p->ttl = ip->ttl;
		if (ip->version != 4)
			return 1;  /* the stack drops a version that contradicts the ethertype */
		__u32 ihl = ip->ihl * 4;
		if (ihl < sizeof(*ip))
			return -1;
		if (ip->frag_off & bpf_htons(0x1fff))
			return 1;  /* a later fragment carries no L4 header to classify */
		if (ip->frag_off & bpf_htons(0x2000))
			p->flags |= SW_F_FRAG;
		if (ihl > sizeof(*ip))
			p->flags |= SW_F_IPOPTS;
		p->tuple_len = sizeof(p->tuple.ipv4);
		p->tuple.ipv4.saddr = ip->saddr;
		p->tuple.ipv4.daddr = ip->daddr;
		return parse_l4(l3 + ihl, end, l3 + bpf_ntohs(ip->tot_len), ip->protocol, p);
	}
	if (eproto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = l3;
		if ((void *)(ip6 + 1) > end)
			return -1;
		__builtin_memcpy(p->src.a, &ip6->saddr, 16);
		p->has_src = 1;
		p->ttl = ip6->hop_limit;
		if (ip6->version != 6)
			return 1;
		p->tuple_len = sizeof(p->tuple.ipv6);
		__builtin_memcpy(p->tuple.ipv6.saddr, &ip6->saddr, 16);
		__builtin_memcpy(p->tuple.ipv6.daddr, &ip6->daddr, 16);
		__u8 nh = ip6->nexthdr;
		void *l4 = ip6 + 1;
		/* Walk a few extension headers so probes hidden behind them are still seen. */
#pragma unroll
		for (int i = 0; i < SW_MAX_EXTHDRS; i++) {
			if (nh != IPPROTO_HOPOPTS && nh != IPPROTO_ROUTING && nh != IPPROTO_DSTOPTS &&
			    nh != IPPROTO_FRAGMENT)
				break;
			__u8 *eh = l4;
			if ((void *)(eh + 8) > end)
				return -1;
			if (nh == IPPROTO_FRAGMENT) {
				if ((((__u16)eh[2] << 8 | eh[3]) & 0xfff8) != 0)
					return 1;
				if (eh[3] & 1)
					p->flags |= SW_F_FRAG;
				l4 = eh + 8;
			} else {
				l4 = eh + (eh[1] + 1) * 8;
			}
			nh = eh[0];
		}
		if (nh == IPPROTO_HOPOPTS || nh == IPPROTO_ROUTING || nh == IPPROTO_DSTOPTS ||
		    nh == IPPROTO_FRAGMENT)
			return -2;  /* more extension headers than any sane packet: drop, not hide */
		return parse_l4(l4, end, (void *)(ip6 + 1) + bpf_ntohs(ip6->payload_len), nh, p);
	}
	return 1;
}

/* Does the probed port have a socket (listener or connection) in this namespace? */
static __always_inline int has_socket(struct xdp_md *ctx, struct probe *p)
{
	struct bpf_sock *sk;
	/* The verifier wants the tuple size as a constant, hence four calls. */
	int v4 = p->tuple_len == sizeof(p->tuple.ipv4);
	if (p->proto == SW_PROTO_TCP) {
		sk = v4 ? bpf_skc_lookup_tcp(ctx, &p->tuple, sizeof(p->tuple.ipv4), BPF_F_CURRENT_NETNS, 0)
			: bpf_skc_lookup_tcp(ctx, &p->tuple, sizeof(p->tuple.ipv6), BPF_F_CURRENT_NETNS, 0);
		if (!sk)
			return 0;
		/* 2 = an established connection: its packets teach the peer's hop count */
		int est = sk->state == BPF_TCP_ESTABLISHED;
		bpf_sk_release(sk);
		return est ? 2 : 1;
	}
	sk = v4 ? bpf_sk_lookup_udp(ctx, &p->tuple, sizeof(p->tuple.ipv4), BPF_F_CURRENT_NETNS, 0)
		: bpf_sk_lookup_udp(ctx, &p->tuple, sizeof(p->tuple.ipv6), BPF_F_CURRENT_NETNS, 0);
	if (!sk)
		return 0;
	bpf_sk_release(sk);
	return 1;
}

/* Hop count from a TTL, assuming the sender started at the next usual initial value. */
static __always_inline __u8 hop_count(__u8 ttl)
{
	__u8 init = ttl <= 32 ? 32 : ttl <= 64 ? 64 : ttl <= 128 ? 128 : 255;
	return init - ttl;
}

/* Learn (or correct) the hop count of a peer we have a connection with; written only when
 * missing or changed, so steady traffic (even over several connections) costs one lookup. */
static __always_inline void learn_hops(struct probe *p)
{
	__u8 h = hop_count(p->ttl);
	struct sw_peer *old = hops.lookup(&p->src);
	if (old && old->hops == h)
		return;
	struct sw_peer peer = {.tuple = p->tuple, .tuple_len = p->tuple_len, .hops = h};
	hops.update(&p->src, &peer);
}

/* The hop count learned from a connection that is still established, or -1 (then the entry
 * is dropped: the next packet of another live connection learns it again). Trigger path only. */
static __always_inline int peer_hops_now(struct xdp_md *ctx, struct sw_addr *src)
{
	struct sw_peer *peer = hops.lookup(src);
	if (!peer)
		return -1;
	struct bpf_sock *sk = peer->tuple_len == sizeof(peer->tuple.ipv4)
		? bpf_skc_lookup_tcp(ctx, &peer->tuple, sizeof(peer->tuple.ipv4), BPF_F_CURRENT_NETNS, 0)
		: bpf_skc_lookup_tcp(ctx, &peer->tuple, sizeof(peer->tuple.ipv6), BPF_F_CURRENT_NETNS, 0);
	int est = 0;
	if (sk) {
		est = sk->state == BPF_TCP_ESTABLISHED;
		bpf_sk_release(sk);
	}
	if (!est) {
		hops.delete(src);
		return -1;
	}
	return peer->hops;
}

/* A RST whose seq is the cookie we sent its source: the address has a live stack behind
 * it (a spoofed address with nothing there never answers). Checked before any block. */
static __always_inline void check_answer(struct probe *p)
{
	struct sw_cookie *c = cookies.lookup(&p->src);
	if (!c || c->cookie != p->seq)
		return;
	struct sw_answer *a = answers.ringbuf_reserve(sizeof(*a));
	if (a) {
		__builtin_memcpy(&a->src, &p->src, sizeof(a->src));
		a->ts_ns = bpf_ktime_get_ns();
		a->seq = p->seq;
		a->pad = 0;
		answers.ringbuf_submit(a, 0);
	}
	cookies.delete(&p->src);
}

/* XDP_DROP if the source is in `blocked` or `kblocked` and its block has not ended. */
static __always_inline int blocked_drop(struct sw_addr *src)
{
	struct sw_block *blk = blocked.lookup(src);
	if (!blk)
		blk = kblocked.lookup(src);
	if (!blk)
		return XDP_PASS;
	if (blk->expires_ns == 0 || bpf_ktime_get_ns() < blk->expires_ns) {
		count(SW_CNT_DROPPED);
		return XDP_DROP;
	}
	blocked.delete(src);
	kblocked.delete(src);
	return XDP_PASS;
}

static __always_inline int is_ignored(struct sw_addr *src)
{
	struct sw_lpm_key k = {.prefixlen = 128};
	__builtin_memcpy(k.a, src->a, 16);
	return ignored.lookup(&k) != 0;
}

static __always_inline int is_watched(__u8 proto, __u16 port)
{
	__u32 idx = proto * SW_PORT_WORDS + (port >> 6);
	__u64 *w = watched.lookup(&idx);
	return w && (*w >> (port & 63)) & 1;
}

/* Insert (proto, port) into a source's Bloom filter; 1 if it was not there before. */
static __always_inline int bloom_add(__u64 *bloom, __u8 proto, __u16 port)
{
	__u32 h = ((__u32)proto << 16 | port) * 2654435761u;
	__u32 b1 = h >> 22, b2 = (h >> 12) & 1023;
	__u64 m1 = 1ULL << (b1 & 63), m2 = 1ULL << (b2 & 63);
	__u32 w1 = (b1 >> 6) & (SW_BLOOM_WORDS - 1), w2 = (b2 >> 6) & (SW_BLOOM_WORDS - 1);
	int fresh = !(bloom[w1] & m1) || !(bloom[w2] & m2);
	bloom[w1] |= m1;
	bloom[w2] |= m2;
	return fresh;
}

static __always_inline void fill(struct sw_event *ev, struct probe *p, struct sw_source *s,
				 __u8 reason, __u8 flags, __u64 now)
{
	__builtin_memcpy(&ev->src, &p->src, sizeof(ev->src));
	ev->ts_ns = now;
	ev->tripwire = s->tripwire[p->proto & 1];
	ev->sweep = (flags & SW_F_SLOW) ? s->slow : s->sweep;
	ev->port = p->dport;
	ev->proto = p->proto;
	ev->kind = p->kind;
	ev->tcp_flags = p->tcp_flags;
	ev->reason = reason;
	ev->flags = flags | p->flags;
	ev->pad = 0;
	ev->distinct = s->distinct;
	__builtin_memcpy(ev->recent, s->recent, sizeof(ev->recent));
	ev->ttl = p->ttl;
	ev->peer_hops = 0;
	__builtin_memset(ev->pad2, 0, sizeof(ev->pad2));
}

static __always_inline void emit_persist(struct probe *p, struct sw_source *s, __u64 now)
{
	struct sw_event *ev = alerts.ringbuf_reserve(sizeof(*ev));
	if (!ev) {
		count(SW_CNT_LOST);
		return;
	}
	fill(ev, p, s, SW_EV_PERSIST, SW_F_KBLOCKED, now);
	alerts.ringbuf_submit(ev, 0);
}

int xdp_sentry(struct xdp_md *ctx)
{
	struct probe p = {};
	__u32 zero = 0;
	__u64 now;
	count(SW_CNT_PACKETS);
	int rc = parse(ctx, &p);
	if (rc < 0)
		count(SW_CNT_MALFORMED);
	if (rc == -2)
		return XDP_DROP;
	if (!p.has_src)
		return XDP_PASS;  /* neither IPv4 nor IPv6 */
	if (rc < 0 || p.tuple_len == 0)
		return blocked_drop(&p.src);  /* truncated, a later fragment, a bad version */

	/* Non-probes (RST, later fragments, other protocols) only need the block check; a RST
	 * may first answer a challenge (the source is usually blocked by then). */
	if (rc > 0) {
		if (p.rst)
			check_answer(&p);
		return blocked_drop(&p.src);
	}

	struct sw_config *cfg = config.lookup(&zero);
	if (!cfg || !cfg->watch[p.proto & 1])
		return blocked_drop(&p.src);

	/* A packet with ACK is a probe only if no socket owns it. The full-tuple lookup finds
	 * connections, request and timewait sockets, and falls back to a listener, so a late
	 * or SYN-cookie ACK to a listening port belongs too. */
	int acked = p.tcp_flags & TH_ACK;
	if (acked) {
		int sock = has_socket(ctx, &p);
		if (sock == 2)
			learn_hops(&p);
		if (sock)
			return blocked_drop(&p.src);
	}

	/* Probes look up their source first: for a known source that one hash lookup also
	 * answers "blocked?" (SW_F_BLOCKED), since userspace deletes the source entry of any
	 * address it blocks itself, and an address without an entry checks `blocked`. */
	struct sw_source *s = sources.lookup(&p.src);
	if (s && (s->flags & SW_F_BLOCKED)) {
		if (s->block_ns == 0 || bpf_ktime_get_ns() < s->block_ns) {
			count(SW_CNT_DROPPED);
			/* Userspace learns that this source is real (it matters when a spoofed
			 * flood used up the block rate and it was not reported): at persist_probes
			 * drops, then at each power of two, in case a flood filled the ring. */
			__u32 d = ++s->dropped, at = cfg->persist_probes;
			if (at && (d == at || (d > at && !(d & (d - 1)))))
				emit_persist(&p, s, bpf_ktime_get_ns());
			return XDP_DROP;
		}
		s->flags &= ~SW_F_BLOCKED;
		blocked.delete(&p.src);
		kblocked.delete(&p.src);
	} else if (!s && blocked_drop(&p.src) == XDP_DROP) {
		return XDP_DROP;
	}
	count(p.kind < SW_NKINDS ? p.kind : SW_CNT_SCTP_INIT + p.kind - SW_NKINDS);
	__u8 proto = p.proto & 1;
	__u8 flagbit = proto ? SW_F_FLAG_UDP : SW_F_FLAG_TCP;
	int watched_port = p.kind != SW_KIND_IPPROTO && is_watched(proto, p.dport);
	/* A source already caught needs no sweep bookkeeping: unless the port is a tripwire
	 * it costs no clock read, no socket lookup and no write. This keeps a flood with
	 * blocking off cheap (a clock read alone is ~30 ns in a VM). */
	if (s && !watched_port && (!cfg->sweep_ports || (s->flags & flagbit)))
		return XDP_PASS;
	now = bpf_ktime_get_ns();
	if (!s) {
		/* Ignored sources get no entry, so only new sources (and triggers) pay for the trie. */
		if (is_ignored(&p.src)) {
			count(SW_CNT_IGNORED);
			return XDP_PASS;
		}
		/* New entries are copied from an all-zero map value: a 360-byte struct on the
		 * stack would not fit beside the rest in the 512-byte BPF stack. */
		struct sw_source *zeroed = blank.lookup(&zero);
		if (!zeroed)
			return XDP_PASS;
		sources.update(&p.src, zeroed);
		s = sources.lookup(&p.src);
		if (!s)
			return XDP_PASS;
		s->first_ns = now;
		s->window_ns = now;
		s->slow_ns = now;
	}
	int need_sweep = cfg->sweep_ports && !(s->flags & flagbit);
	s->last_ns = now;
	if (!watched_port && !need_sweep)
		return XDP_PASS;
	/* PortSentry's smart verify: a port in use is no trap. */
	int open = acked || p.kind >= SW_NKINDS ? 0 : has_socket(ctx, &p);
	if (open && !need_sweep)
		return XDP_PASS;
	if (need_sweep) {
		if (now - s->window_ns > cfg->sweep_window_ns) {
			s->window_ns = now;
			s->sweep = 0;
			s->sweep_open = 0;
			__builtin_memset(s->bloom, 0, sizeof(s->bloom));
		}
		if (bloom_add(s->bloom, p.kind == SW_KIND_IPPROTO ? 2 : proto, p.dport)) {
			s->recent[s->distinct & (SW_RECENT - 1)] = (__u32)proto << 16 | p.dport;
			s->distinct++;
			if (open)
				s->sweep_open++;
			else
				s->sweep++;
		}
	}
	/* Open ports count toward a sweep only once half the threshold is closed ports, so a
	 * client of many services never trips it, while a scanner that finds listeners early
	 * is still cut off before it has seen SWEEP_PORTS ports in all. */
	int swept = need_sweep && (s->sweep >= cfg->sweep_ports ||
				   (s->sweep * 2 >= cfg->sweep_ports &&
				    s->sweep + s->sweep_open >= cfg->sweep_ports));
	/* The slow tier: distinct closed ports over a long window, for scans paced below
	 * SWEEP_PORTS per SWEEP_WINDOW. Same 128 bytes a source, so memory stays bounded. */
	__u8 slowflag = 0;
	if (need_sweep && !open && cfg->slow_ports) {
		if (now - s->slow_ns > cfg->slow_window_ns) {
			s->slow_ns = now;
			s->slow = 0;
			__builtin_memset(s->slow_bloom, 0, sizeof(s->slow_bloom));
		}
		if (bloom_add(s->slow_bloom, p.kind == SW_KIND_IPPROTO ? 2 : proto, p.dport))
			s->slow++;
		if (!swept && s->slow >= cfg->slow_ports) {
			swept = 1;
			slowflag = SW_F_SLOW;
		}
	}
	if (open && !swept)
		return XDP_PASS;

	s->last_port = p.dport;
	s->last_kind = p.kind;
	s->last_tcp_flags = p.tcp_flags;
	__u8 reason = 0;
	if (watched_port && !open) {
		count(SW_CNT_TRIPWIRE);
		s->hits[p.kind < SW_NKINDS ? p.kind : SW_KIND_UNKNOWN] += 1;
		s->tripwire[proto] += 1;
		reason = SW_EV_HIT;
		if (!(s->flags & flagbit) && s->tripwire[proto] > cfg->scan_trigger)
			reason = SW_EV_TRIGGER;
	}
	if (reason != SW_EV_TRIGGER && swept)
		reason = SW_EV_SWEEP;
	if (!reason)
		return XDP_PASS;
	/* The entry may predate the address's protection (an admin's first SSH SYN before the
	 * SSH-peer check, an ignore file reloaded later): never judge an ignored source. */
	if (reason != SW_EV_HIT && is_ignored(&p.src)) {
		count(SW_CNT_IGNORED);
		return XDP_PASS;
	}
	/* A source already caught (blocking off, or not yet dropped) is reported probe by
	 * probe, as PortSentry logs each one, but at most hit_rate (LOG_RATE) events a second:
	 * userspace would hold back more anyway, and the counters keep counting every probe. */
	if (reason == SW_EV_HIT && (s->flags & flagbit)) {
		if (now - s->event_ns >= 1000000000ULL) {
			s->event_ns = now;
			s->hit_events = 0;
		}
		if (s->hit_events >= cfg->hit_rate)
			return XDP_PASS;
		s->hit_events++;
	}

	/* The record first. With the ring full (a flood, a stalled daemon) nobody would hear
	 * of the block: it lasts SW_UNREPORTED_BLOCK_NS only and the source stays unflagged,
	 * so it is judged again after; meanwhile its dropped probes reach userspace on the
	 * alerts ring (EV_PERSIST), which a flood cannot fill. */
	struct sw_event *ev = events.ringbuf_reserve(sizeof(*ev));
	if (!ev) {
		count(SW_CNT_LOST);
		if (reason == SW_EV_HIT || !cfg->kblock[proto])
			return XDP_PASS;
	}
	__u8 evflags = reason == SW_EV_SWEEP ? slowflag : 0;
	int drop = 0;
	/* Hop-count filtering (issue 13): a probe claiming a peer we hold a connection with,
	 * over a path of another length, is forged; blocking it would cut off the real peer. */
	__u8 peer_hops = 0;
	if (reason != SW_EV_HIT) {
		int known = peer_hops_now(ctx, &p.src);
		if (known >= 0) {
			peer_hops = known + 1;
			if (known != hop_count(p.ttl))
				evflags |= SW_F_SUSPECT;
		}
	}
	if (reason != SW_EV_HIT) {
		if (ev)
			s->flags |= flagbit;
		if (cfg->kblock[proto] && !(evflags & SW_F_SUSPECT)) {
			__u64 t = cfg->block_timeout_ns;
			if (!ev && (!t || t > SW_UNREPORTED_BLOCK_NS))
				t = SW_UNREPORTED_BLOCK_NS;
			struct sw_block b = {.expires_ns = t ? now + t : 0};
			kblocked.update(&p.src, &b);
			s->flags |= SW_F_BLOCKED;
			s->block_ns = b.expires_ns;
			s->dropped = 0;
			count(SW_CNT_KBLOCKS);
			evflags |= SW_F_KBLOCKED;
			drop = 1;  /* the triggering probe itself gets no answer */
		}
	}
	if (ev) {
		fill(ev, &p, s, reason, evflags, now);
		ev->peer_hops = peer_hops;
		events.ringbuf_submit(ev, 0);
	}
	return drop ? XDP_DROP : XDP_PASS;
}
