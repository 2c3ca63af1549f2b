/* The kernel/user contract of scanwatch: every map key, value and event layout.
 * scanwatch/contract.py mirrors this file with ctypes; tests/unit/test_contract.py
 * compiles it with the host compiler and checks that every size and offset agrees. */
#ifndef SCANWATCH_H
#define SCANWATCH_H

#include <linux/types.h>

/* Scan kinds, in PortSentry's names: index into hits[] and the packet counters. */
#define SW_KIND_SYN     0   /* "SYN/Normal": SYN alone */
#define SW_KIND_FIN     1   /* "FIN" */
#define SW_KIND_NULL    2   /* "NULL": no flags */
#define SW_KIND_XMAS    3   /* "XMAS": FIN+PSH+URG */
#define SW_KIND_UNKNOWN 4   /* "Unknown Type": any other pattern */
#define SW_KIND_UDP     5
/* Patterns with ACK count only when no socket (listener, connection, timewait) owns the
 * 4-tuple: nmap -sA and -sW send the same packet; -sM is FIN+ACK. */
#define SW_KIND_ACK     6   /* "ACK/Window": ACK alone */
#define SW_KIND_MAIMON  7   /* "Maimon": FIN+ACK */
/* A first fragment too short to hold the TCP flags (RFC 1858): nmap -f. No honest stack
 * sends one, so it is a probe of its own, whatever the later fragments say. */
#define SW_KIND_TINYFRAG 8  /* "Tiny Fragment" */
#define SW_NKINDS       9

#define SW_PROTO_TCP 0
#define SW_PROTO_UDP 1

/* Watched ports: one bit per port, SW_PORT_WORDS u64 words per protocol,
 * TCP in words [0, 1024), UDP in [1024, 2048). */
#define SW_PORT_WORDS 1024

/* Sweep detector: two 512-bit Bloom filters (2 hashes) of (proto, port) per source, for
 * the current and the previous half window, plus the last SW_RECENT distinct ports. */
#define SW_BLOOM_WORDS 16
#define SW_RECENT      32

/* Global per-CPU counters (index into the `counters` array). */
#define SW_CNT_DROPPED   9   /* packets dropped because their source is blocked */
#define SW_CNT_IGNORED   10  /* probes from ignored sources */
#define SW_CNT_LOST      11  /* events lost: ring buffer full */
#define SW_CNT_MALFORMED 12  /* truncated headers */
#define SW_CNT_TRIPWIRE  13  /* probes to a watched port without a listener */
#define SW_CNT_KBLOCKS   14  /* sources the kernel blocked itself */
#define SW_CNT_PACKETS   15  /* every packet the program saw (with SW_CNT_FAST_*) */
#define SW_NCOUNTERS     30  /* issue 13: SW_CNT_BADSUM; kernel cost: SW_CNT_FAST_* */

/* Event reasons. */
#define SW_EV_HIT     1  /* a tripwire port was probed, below the trigger or with blocking off */
#define SW_EV_TRIGGER 2  /* tripwire hits crossed SCAN_TRIGGER for this protocol */
#define SW_EV_SWEEP   3  /* distinct closed ports crossed SWEEP_PORTS within SWEEP_WINDOW */
#define SW_EV_PERSIST 4  /* a blocked source kept probing: persist_probes dropped in this block
			  * (again at each power of two). A spoofed source never sends twice. */

/* Event and source flags. */
#define SW_F_KBLOCKED   0x01  /* the kernel put the source in `blocked` itself */
#define SW_F_IPOPTS     0x02  /* the IPv4 header carried options */
#define SW_F_FLAG_TCP   0x04  /* source: a TCP trigger already fired */
#define SW_F_FLAG_UDP   0x08  /* source: a UDP trigger already fired */
#define SW_F_BLOCKED    0x10  /* source: the kernel blocked it itself, until block_ns */
#define SW_F_FRAG       0x20  /* the probe came as the first fragment of a fragmented packet */
#define SW_F_SLOW       0x40  /* event: a SW_EV_SWEEP of the slow tier (sweep = its count) */

/* Parameters userspace writes into the one-element `config` array. */
struct sw_config {
	/* Kernel cost (issues 13, 14): which ports have a listener (`listening`) is known as of
	 * generation fast_gen; userspace moves it on when it changes blocks, ignores or this
	 * config, and every second, and empties the verdict cache (`fast`) at the same times.
	 * The hash seed of issue 14 is no field: it is compiled in (-DSW_SEED), drawn at each
	 * load. */
	__u32 fast_gen;
	__u8 watch[2];           /* per protocol: a mode is running */
	__u8 kblock[2];          /* per protocol: the kernel blocks a triggering source itself */
	__u32 sweep_ports;       /* 0: sweep detector off */
	__u32 scan_trigger;      /* react when tripwire hits exceed this (PortSentry SCAN_TRIGGER) */
	__u64 sweep_window_ns;
	__u64 block_timeout_ns;  /* 0: the kernel's own blocks last until userspace lifts them */
	__u32 persist_probes;    /* SW_EV_PERSIST at this many probes dropped in one block; 0 = off */
	__u32 slow_ports;        /* 0: slow tier off */
	__u64 slow_window_ns;    /* second, slower sweep tier (nmap -T2, --scan-delay) */
	__u32 hit_rate;          /* hit events a second from a source already caught (LOG_RATE) */
	/* issue 14: count only packets to an address in `local` (this host's own); off until
	 * userspace has filled it (or when it could not) */
	__u8 local_only;
	/* issue 14: IPv6 sources are counted (and the kernel blocks them) per prefix of this
	 * many bits (V6_PREFIX); 0 or 128 = per address */
	__u8 v6_prefix;
	__u8 pad[2];
};

/* Source addresses are 16 bytes; IPv4 is stored mapped (::ffff:a.b.c.d). */
struct sw_addr {
	__u8 a[16];
};

struct sw_lpm_key {
	__u32 prefixlen;         /* IPv4 prefixes are 96 + n */
	__u8 a[16];
};

/* Value of `blocked`: when the block ends (CLOCK_MONOTONIC ns), 0 = no end. */
struct sw_block {
	__u64 expires_ns;
};

/* Value of the `sources` LRU map. */
struct sw_source {
	__u64 first_ns;
	__u64 last_ns;
	__u64 block_ns;                  /* with SW_F_BLOCKED: end of the block, 0 = none */
	__u64 window_ns;                 /* start of the current sweep window */
	__u64 event_ns;                  /* start of the second its hit events are counted in */
	__u64 bloom[SW_BLOOM_WORDS];
	__u32 hits[SW_NKINDS];           /* tripwire hits by kind */
	__u32 tripwire[2];               /* tripwire hits per protocol (vs SCAN_TRIGGER) */
	__u32 sweep;                     /* distinct closed ports in this window */
	__u32 sweep_open;                /* distinct ports with a listener in this window */
	__u32 distinct;                  /* distinct ports probed, all windows */
	__u32 recent[SW_RECENT];         /* last distinct ports probed, ring: proto << 16 | port */
	__u16 last_port;
	__u8 last_kind;
	__u8 last_tcp_flags;
	__u8 flags;                      /* SW_F_FLAG_*, SW_F_BLOCKED */
	__u8 pad[3];
	__u32 dropped;                   /* probes dropped since the current block began */
	__u64 slow_ns;                   /* start of the current slow-tier window */
	__u64 slow_bloom[SW_BLOOM_WORDS];/* distinct closed ports over slow_window_ns */
	__u32 slow;                      /* distinct closed ports in the slow window */
	__u32 hit_events;                /* hit events sent since event_ns (once caught) */
	/* issue 14: the source's SW_F_FLAG_* and SW_F_BLOCKED bits, changed only by atomic
	 * or/and, so one CPU wins a trigger (`flags` above is no longer written). */
	__u64 state;
	/* issue 14: the sweep window slides in two halves; bloom[0..7], sweep, sweep_open are
	 * the current half, bloom[8..15] and these the half before. */
	__u32 sweep_prev;
	__u32 open_prev;
};

/* issue 13: return-routability challenge and hop counts. */
#define SW_F_SUSPECT    0x80  /* event: hop count differs from the one learned from this
			       * peer's connections; the kernel did not block it */
/* Value of `cookies`: the ack number of the SYN-ACK userspace sent this source. */
struct sw_cookie {
	__u32 cookie;
	__u32 pad;
};
/* A record of the `answers` ring: a RST whose seq echoed the source's cookie. */
struct sw_answer {
	struct sw_addr src;
	__u64 ts_ns;
	__u32 seq;
	__u32 pad;
};

struct sw_event {
	struct sw_addr src;
	__u64 ts_ns;
	__u32 tripwire;                  /* tripwire hits so far for this protocol */
	__u32 sweep;                     /* distinct closed ports in the window */
	__u16 port;
	__u8 proto;
	__u8 kind;
	__u8 tcp_flags;
	__u8 reason;                     /* SW_EV_* */
	__u8 flags;                      /* SW_F_KBLOCKED, SW_F_IPOPTS */
	__u8 pad;
	__u32 distinct;                  /* the source's distinct count: the ring's next slot */
	__u32 recent[SW_RECENT];         /* copy of the source's ring */
	/* issue 13 */
	__u8 ttl;                        /* the probe's TTL / hop limit */
	__u8 peer_hops;                  /* hops learned from an established connection + 1; 0 = none */
	__u8 pad2[6];
};

/* issue 13: kinds past SW_NKINDS have no hits[] slot (they count as "Unknown Type" there)
 * and their packet counters sit after SW_CNT_PACKETS. All count as TCP probes (tripwires,
 * sweep, BLOCK_TCP); none has a socket lookup (no helper finds SCTP or raw sockets). */
#define SW_KIND_SCTP_INIT   9   /* "SCTP INIT": nmap -sY */
#define SW_KIND_SCTP_COOKIE 10  /* "SCTP COOKIE-ECHO": nmap -sZ */
#define SW_KIND_IPPROTO     11  /* "IP Protocol": nmap -sO; the "port" is the protocol number */
#define SW_NALLKINDS        12
#define SW_CNT_SCTP_INIT    16
#define SW_CNT_SCTP_COOKIE  17
#define SW_CNT_IPPROTO      18
/* issue 13 (--badsum): TCP/UDP probes to a port without a socket whose checksum is wrong.
 * The stack drops them unanswered, so they reveal nothing and never count toward a block. */
#define SW_CNT_BADSUM       19
/* Kernel cost: each exit of the verdict cache counts one counter, so a packet it ends
 * touches one line of `counters`; userspace folds them into the named ones (contract.py):
 * a drop into dropped and packets, a pass of a kind-k probe into k and packets, a pass of
 * a packet that is no probe (it carries ACK) into packets. */
#define SW_CNT_FAST_DROPPED 20
#define SW_CNT_FAST_KIND    21  /* + kind, for the kinds 0-7 tcp_kind() and UDP give */
#define SW_FAST_KINDS       8   /* those kinds: 0 to SW_FAST_KINDS - 1 */
#define SW_CNT_FAST_PASSED  29

/* The one per-CPU value of `counters`, SW_CNT_* and the per-kind counts: one value, so a
 * packet's counts share a per-CPU pointer (kernel cost). */
struct sw_counters {
	__u64 c[SW_NCOUNTERS];
};

/* Kernel cost (issues 13, 14): a direct-mapped cache of per-source verdicts in front of the
 * hash maps. A hash lookup costs ~45 ns a packet here (cache and TLB misses between
 * packets), a slot of an array one line. A slot never decides alone: a miss or a spent
 * budget takes the full path, which refills it. Userspace empties every slot (through
 * the array's mmap) whenever a verdict could have changed, and every second: the cache's
 * hits then read nothing but the packet, the slot and their counter. */
#define SW_FAST_DROP    1   /* the source is blocked: drop up to `budget` more packets */
#define SW_FAST_CAUGHT  2   /* the source is caught, not blocked: `meta` holds SW_F_FLAG_TCP
			     * and/or _UDP for each protocol whose probes of untrapped ports are
			     * only counted (watched, and sweep off or already fired) */
#define SW_FAST_CLEAN   3   /* not blocked, and its ACKs to a listening port belong (hop
			     * count + 1 learned from its connection in `meta`, 0 = none) */
struct sw_fast {
	struct sw_addr src;
	/* pass counter << 48 | pass key << 32 | verdict << 24 | verdict flags << 16 | 16 check
	 * bits of the slot hash (0: empty): one 8-byte word, so a reader never mixes a verdict
	 * with another writer's address. SW_FAST_CAUGHT: the pass key is the filling probe's
	 * IP protocol << 8 | TCP flags (SW_FAST_NOPASS: none), the pass counter the SW_CNT_*
	 * its like counts in. A packet with the same pair is a probe the cache passes without
	 * classifying it again: one compare instead of the kind. */
	__u64 meta;
	__u32 budget;                    /* SW_FAST_DROP: packets left before the full path */
	__u32 pad;
};
#define SW_FAST_NOPASS 0xffff  /* never a packet's pair: RSTs and protocol 255 miss the cache */

#endif
