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
/* issue 14: keys the Bloom and verdict-cache hashes; userspace draws it at each load */
#ifndef SW_SEED
#error "SW_SEED (the hash seed) must be given with -D"
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
BPF_PERCPU_ARRAY(counters, struct sw_counters, 1);
BPF_LPM_TRIE(ignored, struct sw_lpm_key, __u8, SW_MAX_IGNORE);
BPF_TABLE("lru_hash", struct sw_addr, struct sw_source, sources, SW_MAX_SOURCES);
/* Userspace's blocks never evict (a forged flood must not push them out: full = refused,
 * and userspace says so); the kernel's own short blocks live apart, in an LRU. */
BPF_HASH(blocked, struct sw_addr, struct sw_block, SW_MAX_BLOCKED);
BPF_TABLE("lru_hash", struct sw_addr, struct sw_block, kblocked, SW_MAX_BLOCKED);
BPF_RINGBUF_OUTPUT(events, SW_RINGBUF_PAGES);
/* A new source's value is built here (per CPU: no other CPU sees it) and inserted whole, so
 * no CPU ever sees an entry without its times. Only the times are written: the rest stays 0. */
BPF_PERCPU_ARRAY(blank, struct sw_source, 1);
/* SW_EV_PERSIST only: a spoofed flood fills `events`, never this one, so a real scanner
 * that keeps probing through the flood is still heard. */
BPF_RINGBUF_OUTPUT(alerts, SW_ALERT_PAGES);
/* issue 14: one CPU wins each trigger. bcc compiles for BPF v1, which has atomic adds but
 * no fetching atomics (no cmpxchg), so the winner is whoever inserts this key first
 * (BPF_NOEXIST is atomic). `born` ties the claim to one life of the source's entry: a
 * source evicted and seen again claims afresh, and old claims age out of the LRU. */
struct sw_claim {
	struct sw_addr src;
	__u64 born;
	__u64 bit;
};
BPF_TABLE("lru_hash", struct sw_claim, __u8, claims, SW_MAX_SOURCES);
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

/* issue 14: this host's own addresses (userspace keeps them current from netlink) and the
 * ports its DNAT/redirect rules forward (one bit per port, per protocol, as `watched`).
 * XDP runs before routing and NAT: on a router, traffic to other hosts found no socket
 * here; on a container host, neither did a connection to a published port. */
#ifndef SW_MAX_LOCAL
#define SW_MAX_LOCAL 1024
#endif
BPF_HASH(local, struct sw_addr, __u8, SW_MAX_LOCAL);
BPF_ARRAY(natted, __u64, 2 * SW_PORT_WORDS);

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
	/* issue 14: the key the source is counted and kernel-blocked under: src, or for IPv6
	 * its V6_PREFIX (agg = 1), so a scanner rotating addresses in its /64 adds up */
	struct sw_addr key;
	__u8 agg;
	__u8 is6;
	__u16 l4_off; /* issue 13 (--badsum): where the L4 header starts in the frame, */
	__u16 l4_len; /* and the L4 length the IP header gives (checksum, rare path only) */
};

static __always_inline void count(__u32 idx)
{
	__u32 zero = 0;
	struct sw_counters *c = counters.lookup(&zero);
	__u64 i = idx;
	asm volatile("" : "+r"(i));  /* bound-check and index the same register */
	if (c && i < SW_NCOUNTERS)
		c->c[i] += 1;
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
		p->l4_off = (l3 + ihl) - data;
		p->l4_len = bpf_ntohs(ip->tot_len) - ihl;
		return parse_l4(l3 + ihl, end, l3 + bpf_ntohs(ip->tot_len), ip->protocol, p);
	}
	if (eproto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = l3;
		if ((void *)(ip6 + 1) > end)
			return -1;
		__builtin_memcpy(p->src.a, &ip6->saddr, 16);
		p->is6 = 1;
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
		p->l4_off = l4 - data;
		p->l4_len = (void *)(ip6 + 1) + bpf_ntohs(ip6->payload_len) - l4;
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

/* issue 13 (--badsum): 1 if a TCP/UDP probe's checksum is wrong. Asked only of a packet
 * already judged a probe (no socket), so the per-packet path pays nothing. A first
 * fragment's checksum covers the whole datagram: not checked. Neither are segments longer
 * than SW_CSUM_MAX (no scanner sends them). A checksum left for offload (CHECKSUM_PARTIAL:
 * the field holds the pseudo-header sum, as a local or veth sender's stack leaves it) is
 * taken as good: such a packet never crossed a wire. */
#ifndef SW_CSUM_MAX
#define SW_CSUM_MAX 1500
#endif
#define SW_CSUM_CHUNK 512  /* bpf_csum_diff sums at most 512 bytes a call */
struct sw_csum_buf {
	__u8 b[SW_CSUM_CHUNK + 4];  /* + the pad word after a full chunk */
};
BPF_PERCPU_ARRAY(csumbuf, struct sw_csum_buf, 1);
/* bcc's helper table predates bpf_xdp_load_bytes (5.18): declared by its number */
static long (*sw_xdp_load_bytes)(void *ctx, __u32 off, void *buf, __u32 len) =
	(void *)BPF_FUNC_xdp_load_bytes;
static __always_inline __u16 sw_csum_fold(__u64 sum)
{
	sum = (sum & 0xffffffff) + (sum >> 32);
	sum = (sum & 0xffffffff) + (sum >> 32);
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return sum;
}

static __always_inline int bad_checksum(struct xdp_md *ctx, struct probe *p)
{
	if ((p->flags & SW_F_FRAG) || p->kind > SW_KIND_MAIMON)
		return 0;
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	__u32 off = p->l4_off, len = p->l4_len;
	if (off > 512 || len > SW_CSUM_MAX || len < 8)
		return 0;
	__u8 *l4 = data + off;
	/* where the checksum field sits: TCP 16, UDP 6 */
	__u32 at = p->proto == SW_PROTO_UDP ? 6 : 16;
	if ((void *)(l4 + at + 2) > end || at + 2 > len)
		return 0;
	__u16 check = *(__u16 *)(l4 + at);
	/* Pseudo header, summed as raw memory like the packet (byte order falls out). */
	__u64 sum = bpf_htons(len) + bpf_htons(p->proto == SW_PROTO_UDP ? IPPROTO_UDP : IPPROTO_TCP);
	if (p->tuple_len == sizeof(p->tuple.ipv4)) {
		if (p->proto == SW_PROTO_UDP && check == 0)
			return 0;  /* IPv4 UDP without a checksum */
		sum += p->tuple.ipv4.saddr;
		sum += p->tuple.ipv4.daddr;
	} else {
#pragma unroll
		for (int i = 0; i < 4; i++)
			sum += (__u64)p->tuple.ipv6.saddr[i] + p->tuple.ipv6.daddr[i];
	}
	if (check == sw_csum_fold(sum))
		return 0;  /* CHECKSUM_PARTIAL: a connect() SYN over veth arrives like this */
	/* The segment is summed by bpf_csum_diff in chunks of its 512-byte limit, copied first to
	 * a per-CPU scratch (bpf_xdp_load_bytes): helper calls keep the verifier's work constant,
	 * where a word loop multiplied it by every path that reaches here (issue 14's checks
	 * beside it went over the budget). The last chunk's pad bytes are zero, as RFC 1071
	 * pads an odd length. */
	__u32 zero = 0;
	struct sw_csum_buf *buf = csumbuf.lookup(&zero);
	if (!buf)
		return 0;
	__u32 done = 0;
#pragma unroll
	for (int c = 0; c < (SW_CSUM_MAX + SW_CSUM_CHUNK - 1) / SW_CSUM_CHUNK; c++) {
		if (done >= len)
			break;
		__u32 n = len - done;
		if (n > SW_CSUM_CHUNK)
			n = SW_CSUM_CHUNK;
		/* the same n (1..512), written so the verifier sees the bound whatever clang keeps */
		n = ((n - 1) & (SW_CSUM_CHUNK - 1)) + 1;
		/* zero the word holding the bytes after the last one (the pad), then load */
		*(__u32 *)(buf->b + (n & ~3U)) = 0;
		__u32 n4 = (n + 3) & ~3U;
		if (sw_xdp_load_bytes(ctx, off + done, buf->b, n))
			return 0;
		long part = bpf_csum_diff(0, 0, (void *)buf->b, n4, 0);
		if (part < 0)
			return 0;
		sum += (__u32)part;
		done += n;
	}
	if (done != len)
		return 0;
	return sw_csum_fold(sum) != 0xffff;
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

/* issue 14: p->key = p->src, or an IPv6 source cut to cfg->v6_prefix bits. */
static __always_inline void source_key(struct probe *p, struct sw_config *cfg)
{
	__builtin_memcpy(&p->key, &p->src, sizeof(p->key));
	__u32 bits = cfg ? cfg->v6_prefix : 0;
	if (!bits || bits >= 128 || !p->is6)
		return;
	p->agg = 1;
	/* Two big-endian halves, masked branch-light (a per-byte loop cost the verifier too
	 * many states beside the rest). */
	__u64 hi, lo;
	__builtin_memcpy(&hi, p->key.a, 8);
	__builtin_memcpy(&lo, &p->key.a[8], 8);
	hi = __builtin_bswap64(hi);
	lo = __builtin_bswap64(lo);
	if (bits <= 64) {
		hi &= ~0ULL << (64 - bits);
		lo = 0;
	} else {
		lo &= ~0ULL << (128 - bits);
	}
	hi = __builtin_bswap64(hi);
	lo = __builtin_bswap64(lo);
	__builtin_memcpy(p->key.a, &hi, 8);
	__builtin_memcpy(&p->key.a[8], &lo, 8);
}

static __always_inline int same_addr(struct sw_addr *a, struct sw_addr *b)
{
	__u64 a0, a1, b0, b1;
	__builtin_memcpy(&a0, a->a, 8);
	__builtin_memcpy(&a1, &a->a[8], 8);
	__builtin_memcpy(&b0, b->a, 8);
	__builtin_memcpy(&b1, &b->a[8], 8);
	return a0 == b0 && a1 == b1;
}

/* The block check for a probe: its address, then its prefix. A prefix block never drops
 * an ignored address (an admin who shares the scanner's /64). */
static __always_inline int blocked_drop_p(struct probe *p)
{
	if (blocked_drop(&p->src) == XDP_DROP)
		/* the prefix's own first address is its key too: ignored, it is spared */
		return p->agg && same_addr(&p->src, &p->key) && is_ignored(&p->src) ? XDP_PASS : XDP_DROP;
	if (!p->agg || blocked_drop(&p->key) != XDP_DROP)
		return XDP_PASS;
	return is_ignored(&p->src) ? XDP_PASS : XDP_DROP;
}

static __always_inline int is_watched(__u8 proto, __u16 port)
{
	__u32 idx = proto * SW_PORT_WORDS + (port >> 6);
	__u64 *w = watched.lookup(&idx);
	return w && (*w >> (port & 63)) & 1;
}

static __always_inline int is_natted(__u8 proto, __u16 port)
{
	__u32 idx = proto * SW_PORT_WORDS + (port >> 6);
	__u64 *w = natted.lookup(&idx);
	return w && (*w >> (port & 63)) & 1;
}

/* Kernel cost (issues 13, 14): the verdict cache (struct sw_fast in scanwatch.h). */
#ifndef SW_FAST_SLOTS
#define SW_FAST_SLOTS 16384  /* 512 KiB; a collision only costs the full path */
#endif
#define SW_FAST_BUDGET 4096  /* a blocked flood takes the full path once in this many */
#ifndef BPF_F_MMAPABLE
#define BPF_F_MMAPABLE (1U << 10)
#endif
/* Mappable: userspace empties it through the mmap (see struct sw_fast). And the values
 * then start on a page, so a 32-byte slot never straddles two cache lines (a plain array's
 * values start where its header ends, not on a line: every other slot cost a second miss). */
BPF_F_TABLE("array", int, struct sw_fast, fast, SW_FAST_SLOTS, BPF_F_MMAPABLE);

/* The slot of an address given as sw_addr's two 64-bit words (from registers: the cache
 * builds no sw_addr on the stack), and in *check 16 other bits of the same keyed hash. */
static __always_inline struct sw_fast *fast_slot_w(__u64 a0, __u64 a1, __u32 *check)
{
	__u32 x = ((__u32)a0 ^ ((__u32)(a0 >> 32) * 0x9e3779b1u) ^ ((__u32)a1 * 0x85ebca6bu) ^
		   (__u32)(a1 >> 32)) + (__u32)SW_SEED;
	x ^= x >> 16;
	x *= 0x7feb352du;
	x ^= x >> 15;
	x *= 0x846ca68bu;
	x ^= x >> 16;
	*check = x >> 16;
	__u32 idx = x & (SW_FAST_SLOTS - 1);
	return fast.lookup(&idx);
}

static __always_inline struct sw_fast *fast_slot(struct sw_addr *a, __u32 *check)
{
	__u64 a0, a1;
	__builtin_memcpy(&a0, a->a, 8);
	__builtin_memcpy(&a1, &a->a[8], 8);
	return fast_slot_w(a0, a1, check);
}

/* What the verdict cache needs, read without the full parse: for a TCP or UDP packet its
 * port, and its protocol and flags as the pair in sw_fast.meta's pass key (0 for any other
 * protocol: never a slot's). */
struct quick {
	__u16 dport;
	__u16 key;   /* IPPROTO_TCP << 8 | TCP flags, IPPROTO_UDP << 8, or 0 */
};

/* The cached verdict of the slot for (a0, a1), with its meta word in *m (sweep flags,
 * pass key and counter), or 0. */
static __always_inline int fast_check(struct sw_fast *f, __u32 check, __u64 a0, __u64 a1,
				      __u64 *m)
{
	if (!f)
		return 0;
	__u64 meta = *(volatile __u64 *)&f->meta;  /* one load: address check and verdict agree */
	__u64 s0, s1;
	__builtin_memcpy(&s0, f->src.a, 8);
	__builtin_memcpy(&s1, &f->src.a[8], 8);
	if ((meta & 0xffff) != check || s0 != a0 || s1 != a1)
		return 0;
	*m = meta;
	return (meta >> 24) & 0xff;
}

/* The source's cached verdict (SW_FAST_*), its slot in *slot and the slot's meta word in
 * *meta, or 0. Only plain frames are looked up: IPv4 without options, IPv6 without
 * extension headers, neither fragmented, and no TCP RST (it may answer a challenge) or
 * malformed TCP header; the full path takes the rest. Few instructions, in one run of
 * code: between two packets of a flood the stack evicts the program from the instruction
 * cache, and each line costs a miss. */
static __always_inline int fast_verdict(struct xdp_md *ctx, struct quick *q,
					struct sw_fast **slot, __u64 *meta)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	__u64 a0 = 0, a1;  /* the source as sw_addr's two words */
	void *l4, *ip_end;
	__u8 proto;
	if ((void *)(eth + 1) > end)
		return 0;
	if (eth->h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = (void *)(eth + 1);
		if ((void *)(ip + 1) > end || *(__u8 *)ip != 0x45 || (ip->frag_off & bpf_htons(0x3fff)))
			return 0;
		a1 = (__u64)ip->saddr << 32 | 0xffff0000;  /* ::ffff:a.b.c.d */
		proto = ip->protocol;
		l4 = ip + 1;
		ip_end = (void *)ip + bpf_ntohs(ip->tot_len);
	} else if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = (void *)(eth + 1);
		if ((void *)(ip6 + 1) > end || ip6->version != 6)
			return 0;
		proto = ip6->nexthdr;
		if (proto == IPPROTO_HOPOPTS || proto == IPPROTO_ROUTING ||
		    proto == IPPROTO_DSTOPTS || proto == IPPROTO_FRAGMENT)
			return 0;
		__builtin_memcpy(&a0, &ip6->saddr, 8);
		__builtin_memcpy(&a1, (void *)&ip6->saddr + 8, 8);
		l4 = ip6 + 1;
		ip_end = l4 + bpf_ntohs(ip6->payload_len);
	} else {
		return 0;
	}
	if (proto == IPPROTO_TCP) {
		struct tcphdr *th = l4;
		if ((void *)(th + 1) > end || (void *)(th + 1) > ip_end)
			return 0;
		__u8 fl = ((__u8 *)th)[13];
		if ((fl & TH_RST) || th->doff < 5)
			return 0;
		q->key = IPPROTO_TCP << 8 | fl;
		q->dport = bpf_ntohs(th->dest);
	} else if (proto == IPPROTO_UDP) {
		struct udphdr *uh = l4;
		if ((void *)(uh + 1) <= end && (void *)(uh + 1) <= ip_end) {
			q->dport = bpf_ntohs(uh->dest);
			q->key = IPPROTO_UDP << 8;
		}
	}
	__u32 check;
	struct sw_fast *f = fast_slot_w(a0, a1, &check);
	*slot = f;
	return fast_check(f, check, a0, a1, meta);
}

static __always_inline void fast_fill(struct probe *p, __u8 verdict, __u8 flags, __u32 budget,
				      __u16 pass_key, __u8 pass_cnt)
{
	__u32 check;
	struct sw_fast *f = fast_slot(&p->src, &check);
	if (!f)
		return;
	/* Address and the rest before the word that makes the slot valid for it. */
	__builtin_memcpy(&f->src, &p->src, sizeof(f->src));
	f->budget = budget;
	asm volatile("" ::: "memory");  /* a torn view fails the check bits, whatever the CPU */
	*(volatile __u64 *)&f->meta = (__u64)pass_cnt << 48 | (__u64)pass_key << 32 |
				      (__u32)verdict << 24 | (__u32)flags << 16 | check;
}

/* The full path changed what the slot would say (a block of the kernel's own). */
static __always_inline void fast_forget(struct probe *p)
{
	__u32 check;
	struct sw_fast *f = fast_slot(&p->src, &check);
	if (f && same_addr(&f->src, &p->src))
		*(volatile __u64 *)&f->meta = 0;
}

/* Which TCP ports have a listener, per verdict generation: gen (31 bits) << 1 | listening.
 * An ACK to a listening port is never a probe (the lookup would fall back to the listener),
 * so a clean source's ACKs to it need no socket lookup: the packets of established
 * connections to this host's services. */
BPF_ARRAY(listening, __u32, 65536);

static __always_inline int listening_now(__u16 port, struct sw_config *cfg)
{
	__u32 k = port;
	__u32 *v = listening.lookup(&k);
	return v && *v == ((cfg->fast_gen << 1) | 1);
}

/* Asked once a generation a port: the lookup of a tuple no connection has falls back to
 * the port's listener, if there is one. */
static __always_inline int listening_learn(struct xdp_md *ctx, struct probe *p,
					   struct sw_config *cfg)
{
	__u32 k = p->dport;
	__u32 *v = listening.lookup(&k);
	if (!v)
		return 0;
	__u32 gen2 = cfg->fast_gen << 1;
	if ((*v & ~1U) == gen2)
		return *v & 1;
	struct bpf_sock_tuple t = {};
	struct bpf_sock *sk;
	if (p->tuple_len == sizeof(p->tuple.ipv4)) {
		t.ipv4.daddr = p->tuple.ipv4.daddr;
		t.ipv4.dport = p->tuple.ipv4.dport;
		sk = bpf_skc_lookup_tcp(ctx, &t, sizeof(t.ipv4), BPF_F_CURRENT_NETNS, 0);
	} else {
		__builtin_memcpy(t.ipv6.daddr, p->tuple.ipv6.daddr, 16);
		t.ipv6.dport = p->tuple.ipv6.dport;
		sk = bpf_skc_lookup_tcp(ctx, &t, sizeof(t.ipv6), BPF_F_CURRENT_NETNS, 0);
	}
	int on = 0;
	if (sk) {
		on = sk->state == BPF_TCP_LISTEN;
		bpf_sk_release(sk);
	}
	*v = gen2 | on;
	return on;
}

/* blocked_drop_p, remembering a drop in the source's slot. */
static __always_inline int blocked_drop_fill(struct probe *p)
{
	if (blocked_drop_p(p) != XDP_DROP)
		return XDP_PASS;
	fast_fill(p, SW_FAST_DROP, 0, SW_FAST_BUDGET, SW_FAST_NOPASS, 0);
	return XDP_DROP;
}

/* 1 if the packet is addressed to this host (or its destination was not parsed). */
static __always_inline int to_this_host(struct probe *p)
{
	struct sw_addr d = {};
	if (p->tuple_len == sizeof(p->tuple.ipv4)) {
		d.a[10] = 0xff;
		d.a[11] = 0xff;
		__builtin_memcpy(&d.a[12], &p->tuple.ipv4.daddr, 4);
	} else if (p->tuple_len == sizeof(p->tuple.ipv6)) {
		__builtin_memcpy(d.a, p->tuple.ipv6.daddr, 16);
	} else {
		return 1;
	}
	return local.lookup(&d) != 0;
}

/* Hash of (proto, port) keyed by a seed drawn at load (issue 14): with a fixed public
 * multiplier a scanner could order its ports to land on bits already set and go uncounted.
 * A murmur3-style finalizer with the seed mixed in before and between the rounds. */
static __always_inline __u32 bloom_hash(__u64 seed, __u8 proto, __u16 port)
{
	__u32 x = ((__u32)proto << 16 | port) ^ (__u32)seed;
	x ^= x >> 16;
	x *= 0x85ebca6bu;
	x ^= (__u32)(seed >> 32);
	x ^= x >> 13;
	x *= 0xc2b2ae35u;
	x ^= x >> 16;
	return x;
}

/* Insert hash h into a Bloom filter of `words` (a power of two, at most 16) u64 words,
 * three bit positions of 10 bits each; 1 if it was not there before. Three, not two: in a
 * 512-bit half window two positions missed a distinct port in ~8% of 25-port sweeps (a
 * false positive delays the trigger by a port); three make it ~2%. */
static __always_inline int bloom_add(__u64 *bloom, __u32 h, __u32 words)
{
	__u32 b1 = h, b2 = h >> 11, b3 = h >> 22;
	__u64 m1 = 1ULL << (b1 & 63), m2 = 1ULL << (b2 & 63), m3 = 1ULL << (b3 & 63);
	__u32 w1 = (b1 >> 6) & (words - 1), w2 = (b2 >> 6) & (words - 1);
	__u32 w3 = (b3 >> 6) & (words - 1);
	int fresh = !(bloom[w1] & m1) || !(bloom[w2] & m2) || !(bloom[w3] & m3);
	bloom[w1] |= m1;
	bloom[w2] |= m2;
	bloom[w3] |= m3;
	return fresh;
}

static __always_inline int bloom_has(__u64 *bloom, __u32 h, __u32 words)
{
	__u32 b1 = h, b2 = h >> 11, b3 = h >> 22;
	__u32 w1 = (b1 >> 6) & (words - 1), w2 = (b2 >> 6) & (words - 1);
	__u32 w3 = (b3 >> 6) & (words - 1);
	return (bloom[w1] >> (b1 & 63)) & (bloom[w2] >> (b2 & 63)) & (bloom[w3] >> (b3 & 63)) & 1;
}

/* 1 if this CPU is the one to act on (src, bit) for this life of the entry. */
static __always_inline int claim(struct probe *p, struct sw_source *s, __u64 bit)
{
	struct sw_claim k = {.born = s->first_ns, .bit = bit};
	__u8 one = 1;
	__builtin_memcpy(&k.src, &p->key, sizeof(k.src));
	return claims.insert(&k, &one) == 0;
}

static __always_inline void unclaim(struct probe *p, struct sw_source *s, __u64 bit)
{
	struct sw_claim k = {.born = s->first_ns, .bit = bit};
	__builtin_memcpy(&k.src, &p->key, sizeof(k.src));
	claims.delete(&k);
}

static __always_inline void fill(struct sw_event *ev, struct probe *p, struct sw_source *s,
				 __u8 reason, __u8 flags, __u64 now)
{
	__builtin_memcpy(&ev->src, &p->src, sizeof(ev->src));
	ev->ts_ns = now;
	ev->tripwire = s->tripwire[p->proto & 1];
	ev->sweep = (flags & SW_F_SLOW) ? s->slow : s->sweep + s->sweep_prev;
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

/* The verdict cache's exits: XDP_DROP or XDP_PASS when the packet ends here, else -1. */
static __always_inline int cache_exit(struct xdp_md *ctx, struct sw_counters *cnt)
{
	struct sw_fast *f = 0;
	__u64 meta = 0;
	struct quick q = {};
	int verdict = fast_verdict(ctx, &q, &f, &meta);
	if (verdict == SW_FAST_DROP && f) {
		/* Racy on purpose (it only spaces out full-path visits), but read once: a
		 * decrement of a value another CPU just zeroed would wrap to 4 billion. */
		__u32 left = *(volatile __u32 *)&f->budget;
		if (__builtin_expect(left != 0, 1)) {
			f->budget = left - 1;
			cnt->c[SW_CNT_FAST_DROPPED] += 1;
			return XDP_DROP;
		}
	}
	/* A caught source's probe of an untrapped port, like the one that filled the slot (same
	 * protocol and flags): counted where that one said, passed. */
	if (verdict == SW_FAST_CAUGHT && q.key == (__u16)(meta >> 32) &&
	    !is_watched(q.key >> 8 == IPPROTO_UDP, q.dport)) {
		__u32 i = (meta >> 48) & 0xff;
		if (i < SW_NCOUNTERS) {  /* for the verifier */
			cnt->c[i] += 1;
			return XDP_PASS;
		}
	}
	return -1;
}

/* xdp_full, which xdp_sentry tail-calls for every packet the cache does not end. Held
 * by the daemon's fd to this array: if the daemon dies, the array empties and the
 * program left attached passes what its cache does not end, until a new daemon takes
 * the interface over. */
BPF_PROG_ARRAY(full_path, 1);

/* The program attached: the verdict cache alone, a few dozen instructions in one run of
 * code. A program of its own because bcc has no calls between functions: inlined into
 * the full path, its code lay strewn across the program, and between two packets of a
 * flood the stack evicts the program from the instruction cache: each line it runs
 * through costs a miss (README, "Kernel cost per packet"). */
int xdp_sentry(struct xdp_md *ctx)
{
	__u32 zero = 0;
	struct sw_counters *cnt = counters.lookup(&zero);
	if (cnt) {
		int action = cache_exit(ctx, cnt);
		if (action >= 0)
			return action;
	}
	full_path.call(ctx, 0);
	return XDP_PASS;  /* no full path (see full_path) */
}

/* The full path: parse, classify, count, block; it fills the verdict cache. */
int xdp_full(struct xdp_md *ctx)
{
	__u32 zero = 0;
	__u64 now;
	struct sw_counters *cnt = counters.lookup(&zero);
	if (!cnt)
		return XDP_PASS;
	/* The cache's verdict again (a tail call carries nothing over): a caught or clean
	 * source's packets the cache did not end still skip work below. */
	__u8 fflags;  /* the slot's verdict flags */
	int verdict;
	{
		struct sw_fast *f = 0;
		struct quick q = {};
		__u64 meta = 0;
		verdict = fast_verdict(ctx, &q, &f, &meta);
		fflags = meta >> 16;
	}
	struct sw_config *cfg = config.lookup(&zero);
	if (!cfg)
		return XDP_PASS;
	cnt->c[SW_CNT_PACKETS] += 1;  /* the cache's exits count theirs in SW_CNT_FAST_* */
	struct probe p = {};
	int rc = parse(ctx, &p);
	if (rc < 0)
		count(SW_CNT_MALFORMED);
	if (rc == -2)
		return XDP_DROP;
	if (!p.has_src)
		return XDP_PASS;  /* neither IPv4 nor IPv6 */
	if (verdict == SW_FAST_CAUGHT) {
		if (rc != 0 || p.tuple_len == 0)
			return XDP_PASS;  /* not a probe, and not blocked as of this generation */
		__u8 fproto = p.proto & 1;
		if ((fflags & (fproto ? SW_F_FLAG_UDP : SW_F_FLAG_TCP)) &&
		    (p.kind == SW_KIND_IPPROTO || !is_watched(fproto, p.dport))) {
			/* ACK-carrying packets may belong to a connection: not counted as probes */
			if (!(p.tcp_flags & TH_ACK))
				count(p.kind < SW_NKINDS ? p.kind : SW_CNT_SCTP_INIT + p.kind - SW_NKINDS);
			return XDP_PASS;
		}
	}
	if (verdict == SW_FAST_CLEAN) {
		if (rc != 0 || p.tuple_len == 0)
			return XDP_PASS;  /* not a probe, and not blocked as of this generation */
		if ((p.tcp_flags & TH_ACK) && p.proto == SW_PROTO_TCP && p.kind < SW_NKINDS &&
		    (!fflags || fflags == hop_count(p.ttl) + 1) && listening_now(p.dport, cfg))
			return XDP_PASS;
	}
	source_key(&p, cfg);
	if (rc < 0 || p.tuple_len == 0)
		goto block_check;  /* truncated, a later fragment, a bad version */

	/* Non-probes (RST, later fragments, other protocols) only need the block check; a RST
	 * may first answer a challenge (the source is usually blocked by then). */
	if (rc > 0) {
		if (p.rst)
			check_answer(&p);
		goto block_check;
	}

	if (!cfg->watch[p.proto & 1])
		goto block_check;

	/* A packet with ACK is a probe only if no socket owns it. The full-tuple lookup finds
	 * connections, request and timewait sockets, and falls back to a listener, so a late
	 * or SYN-cookie ACK to a listening port belongs too. */
	int acked = p.tcp_flags & TH_ACK;
	if (acked) {
		/* A port DNAT forwards has no socket here, but its connections' ACKs are no
		 * probes (with SLOW_PORTS 25, a client of 25 published ports tripped the slow tier) */
		int sock = is_natted(p.proto & 1, p.dport) ? 1 : has_socket(ctx, &p);
		if (sock == 2)
			learn_hops(&p);
		if (sock) {
			if (blocked_drop_fill(&p) == XDP_DROP)
				return XDP_DROP;
			/* The source's next ACKs to this listening port skip all of the above. */
			if (p.proto == SW_PROTO_TCP && listening_learn(ctx, &p, cfg))
				fast_fill(&p, SW_FAST_CLEAN, sock == 2 ? hop_count(p.ttl) + 1 : 0, 0,
					  SW_FAST_NOPASS, 0);
			return XDP_PASS;
		}
	}

	/* Probes look up their source first: for a known source that one hash lookup also
	 * answers "blocked?" (SW_F_BLOCKED), since userspace deletes the source entry of any
	 * address it blocks itself, and an address without an entry checks `blocked`. */
	struct sw_source *s = sources.lookup(&p.key);
	if (s && (s->state & SW_F_BLOCKED)) {
		__u64 end = s->block_ns;
		/* Signed: another CPU may have stored a later end than our clock reading. */
		if (end == 0 || (__s64)(end - bpf_ktime_get_ns()) > 0) {
			count(SW_CNT_DROPPED);
			/* Userspace learns that this source is real (it matters when a spoofed
			 * flood used up the block rate and it was not reported): at persist_probes
			 * drops, then at each power of two, in case a flood filled the ring. */
			/* v1 atomics return nothing: read back (another CPU may add meanwhile,
			 * so an alert can repeat or skip a step; it is a hint, not a count). */
			__sync_fetch_and_add(&s->dropped, 1);
			__u32 d = s->dropped, at = cfg->persist_probes;
			if (at && (d == at || (d > at && !(d & (d - 1)))))
				emit_persist(&p, s, bpf_ktime_get_ns());
			/* The drops until the next of those steps need no count of their own: the
			 * verdict cache takes them, credited here in advance. */
			__u32 next = d + SW_FAST_BUDGET;
			if (at && d < at) {
				next = at;
			} else if (at) {
				next = d;
				next |= next >> 1;
				next |= next >> 2;
				next |= next >> 4;
				next |= next >> 8;
				next |= next >> 16;
				next += 1;
			}
			__u32 budget = next - d - 1;
			if (budget > SW_FAST_BUDGET)
				budget = SW_FAST_BUDGET;
			if (budget) {
				__sync_fetch_and_add(&s->dropped, budget);
				fast_fill(&p, SW_FAST_DROP, 0, budget, SW_FAST_NOPASS, 0);
			}
			return XDP_DROP;
		}
		/* The kernel's own block ended; userspace's (in `blocked`) may last longer. */
		__sync_fetch_and_and(&s->state, ~(__u64)SW_F_BLOCKED);
		kblocked.delete(&p.key);
		if (blocked_drop_fill(&p) == XDP_DROP)
			return XDP_DROP;
	} else if (!s && blocked_drop_fill(&p) == XDP_DROP) {
		return XDP_DROP;
	}
	__u32 kind_cnt = p.kind < SW_NKINDS ? p.kind : SW_CNT_SCTP_INIT + p.kind - SW_NKINDS;
	__u8 proto = p.proto & 1;
	__u8 flagbit = proto ? SW_F_FLAG_UDP : SW_F_FLAG_TCP;
	int watched_port = p.kind != SW_KIND_IPPROTO && is_watched(proto, p.dport);
	/* A source already caught needs no sweep bookkeeping: unless the port is a tripwire
	 * it costs no clock read, no socket lookup and no write. This keeps a flood with
	 * blocking off cheap (a clock read alone is ~30 ns in a VM). */
	if (s && !watched_port && (!cfg->sweep_ports || (s->state & flagbit))) {
		count(kind_cnt);
		/* Which protocols' probes of untrapped ports the cache may pass, counted:
		 * decided here once, so that its hits read no config beyond the generation. */
		__u8 caught = 0;
		if (cfg->watch[0] && (!cfg->sweep_ports || (s->state & SW_F_FLAG_TCP)))
			caught |= SW_F_FLAG_TCP;
		if (cfg->watch[1] && (!cfg->sweep_ports || (s->state & SW_F_FLAG_UDP)))
			caught |= SW_F_FLAG_UDP;
		/* Its like (same protocol and flags) the cache then passes, counted where the
		 * cache counts it: one that carries ACK may belong to a connection there. */
		__u16 key = SW_FAST_NOPASS;
		if (p.kind < SW_FAST_KINDS && (caught & flagbit))
			key = (proto ? IPPROTO_UDP : IPPROTO_TCP) << 8 | p.tcp_flags;
		fast_fill(&p, SW_FAST_CAUGHT, caught, 0, key,
			  p.tcp_flags & TH_ACK ? SW_CNT_FAST_PASSED : SW_CNT_FAST_KIND + (p.kind & 7));
		return XDP_PASS;
	}
	/* issue 14: forwarded traffic (a router's) is no probe of this host. Checked after the
	 * caught-source shortcut: that source has an entry because it probed this host, and a
	 * flood from it then costs no extra lookup. */
	if (cfg->local_only && !to_this_host(&p))
		return XDP_PASS;
	count(kind_cnt);
	now = bpf_ktime_get_ns();
	if (!s) {
		/* Ignored sources get no entry, so only new sources (and triggers) pay for the trie. */
		if (is_ignored(&p.src)) {
			count(SW_CNT_IGNORED);
			return XDP_PASS;
		}
		/* New entries are built in a per-CPU map value: a 520-byte struct on the
		 * stack would not fit beside the rest in the 512-byte BPF stack. */
		struct sw_source *zeroed = blank.lookup(&zero);
		if (!zeroed)
			return XDP_PASS;
		zeroed->first_ns = now;
		zeroed->window_ns = now;
		zeroed->slow_ns = now;
		/* NOEXIST: another CPU may have created it meanwhile, and with BPF_ANY a loser
		 * would overwrite that entry (or, in an LRU, one recycled for another source).
		 * Whoever created it, look it up again and use what is there. */
		sources.insert(&p.key, zeroed);  /* BPF_NOEXIST */
		s = sources.lookup(&p.key);
		if (!s)
			return XDP_PASS;
	}
	int need_sweep = cfg->sweep_ports && !(s->state & flagbit);
	s->last_ns = now;
	if (!watched_port && !need_sweep)
		return XDP_PASS;
	/* PortSentry's smart verify: a port in use is no trap. */
	/* A port DNAT or redirect forwards (issue 14) is served behind NAT: open. */
	int open = acked || p.kind >= SW_NKINDS ? 0 :
		   is_natted(proto, p.dport) || has_socket(ctx, &p);
	if (open && !need_sweep)
		return XDP_PASS;
	/* issue 13 (--badsum): the stack drops a bad checksum unanswered, so the probe reveals
	 * nothing; counting it would let anyone trip a block without a single valid packet. */
	if (!open && bad_checksum(ctx, &p)) {
		count(SW_CNT_BADSUM);
		return XDP_PASS;
	}
	if (need_sweep) {
		/* A sliding window in two halves (issue 14): bloom[0..7] and the counts are
		 * this half window, bloom[8..15] and the *_prev counts the one before, and both
		 * count. A fixed window let a burst straddling its reset through nearly twice. */
		__s64 half = cfg->sweep_window_ns / 2;
		__s64 age = now - s->window_ns;
		if (age >= half) {
			if (age >= 2 * half) {
				__builtin_memset(&s->bloom[SW_BLOOM_WORDS / 2], 0, sizeof(s->bloom) / 2);
				s->sweep_prev = 0;
				s->open_prev = 0;
				s->window_ns = now;
			} else {
				__builtin_memcpy(&s->bloom[SW_BLOOM_WORDS / 2], s->bloom, sizeof(s->bloom) / 2);
				s->sweep_prev = s->sweep;
				s->open_prev = s->sweep_open;
				s->window_ns += half;
			}
			__builtin_memset(s->bloom, 0, sizeof(s->bloom) / 2);
			s->sweep = 0;
			s->sweep_open = 0;
		}
		/* IP protocol scans (-sO) have their own namespace, 2 (issue 13) */
		__u32 h = bloom_hash(SW_SEED, p.kind == SW_KIND_IPPROTO ? 2 : proto, p.dport);
		if (bloom_add(s->bloom, h, SW_BLOOM_WORDS / 2) &&
		    !bloom_has(&s->bloom[SW_BLOOM_WORDS / 2], h, SW_BLOOM_WORDS / 2)) {
			__sync_fetch_and_add(&s->distinct, 1);
			s->recent[(s->distinct - 1) & (SW_RECENT - 1)] = (__u32)proto << 16 | p.dport;
			if (open)
				__sync_fetch_and_add(&s->sweep_open, 1);
			else
				__sync_fetch_and_add(&s->sweep, 1);
		}
	}
	/* Open ports count toward a sweep only once half the threshold is closed ports, so a
	 * client of many services never trips it, while a scanner that finds listeners early
	 * is still cut off before it has seen SWEEP_PORTS ports in all. */
	__u32 closed = s->sweep + s->sweep_prev, opened = s->sweep_open + s->open_prev;
	int swept = need_sweep && (closed >= cfg->sweep_ports ||
				   (closed * 2 >= cfg->sweep_ports &&
				    closed + opened >= cfg->sweep_ports));
	/* The slow tier: distinct closed ports over a long window, for scans paced below
	 * SWEEP_PORTS per SWEEP_WINDOW. Same 128 bytes a source, so memory stays bounded. */
	__u8 slowflag = 0;
	if (need_sweep && !open && cfg->slow_ports) {
		if ((__s64)(now - s->slow_ns) > (__s64)cfg->slow_window_ns) {
			s->slow_ns = now;
			s->slow = 0;
			__builtin_memset(s->slow_bloom, 0, sizeof(s->slow_bloom));
		}
		if (bloom_add(s->slow_bloom,
			      bloom_hash(SW_SEED, p.kind == SW_KIND_IPPROTO ? 2 : proto, p.dport),
			      SW_BLOOM_WORDS))
			__sync_fetch_and_add(&s->slow, 1);
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
		__sync_fetch_and_add(&s->hits[p.kind < SW_NKINDS ? p.kind : SW_KIND_UNKNOWN], 1);
		__sync_fetch_and_add(&s->tripwire[proto], 1);
		__u32 trip = s->tripwire[proto];  /* at least ours; the claim below is what is unique */
		reason = SW_EV_HIT;
		if (!(s->state & flagbit) && trip > cfg->scan_trigger)
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
	/* One CPU wins a trigger or sweep: RSS spreads a scanner over queues, and each CPU
	 * may have seen the threshold crossed. The loser reports a plain hit (or nothing).
	 * The winner sets the flag once its report is on its way. */
	if (reason != SW_EV_HIT && !claim(&p, s, flagbit)) {
		if (reason != SW_EV_TRIGGER)
			return XDP_PASS;
		reason = SW_EV_HIT;
	}
	/* A source already caught (blocking off, or not yet dropped) is reported probe by
	 * probe, as PortSentry logs each one, but at most hit_rate (LOG_RATE) events a second:
	 * userspace would hold back more anyway, and the counters keep counting every probe. */
	if (reason == SW_EV_HIT && (s->state & flagbit)) {
		if ((__s64)(now - s->event_ns) >= 1000000000LL) {
			s->event_ns = now;
			s->hit_events = 0;
		}
		if (s->hit_events >= cfg->hit_rate)
			return XDP_PASS;
		__sync_fetch_and_add(&s->hit_events, 1);
	}

	/* The record first. With the ring full (a flood, a stalled daemon) nobody would hear
	 * of the block: it lasts SW_UNREPORTED_BLOCK_NS only and the source stays unflagged,
	 * so it is judged again after; meanwhile its dropped probes reach userspace on the
	 * alerts ring (EV_PERSIST), which a flood cannot fill. */
	struct sw_event *ev = events.ringbuf_reserve(sizeof(*ev));
	if (!ev) {
		count(SW_CNT_LOST);
		if (reason != SW_EV_HIT && !cfg->kblock[proto])  /* unreported: judged again */
			unclaim(&p, s, flagbit);
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
			__sync_fetch_and_or(&s->state, flagbit);
		else  /* unreported: judged again after, so give the claim back */
			unclaim(&p, s, flagbit);
		if (cfg->kblock[proto] && !(evflags & SW_F_SUSPECT)) {
			__u64 t = cfg->block_timeout_ns;
			if (!ev && (!t || t > SW_UNREPORTED_BLOCK_NS))
				t = SW_UNREPORTED_BLOCK_NS;
			struct sw_block b = {.expires_ns = t ? now + t : 0};
			kblocked.update(&p.key, &b);
			fast_forget(&p);  /* it may say "caught" for the other protocol */
			s->block_ns = b.expires_ns;
			s->dropped = 0;
			__sync_fetch_and_or(&s->state, SW_F_BLOCKED);
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
	/* One copy of the block check for every early exit keeps the program small enough for
	 * the verifier (issue 14). */
block_check:
	return blocked_drop_fill(&p);
}
