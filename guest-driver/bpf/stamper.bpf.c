// SPDX-License-Identifier: GPL-2.0
/* tc ingress stamper for the host's uplink (the kernel fast path beside the
 * AF_PACKET shim): for IPv4/UDP player inputs to a known guest, cut the frame to
 * the IP total length, append the trailer carrying skb->tstamp (the kernel's
 * arrival stamp, present because the shim's logger socket asks for stamps) and
 * redirect it to the guest's port. Forwarding would zero skb->tstamp, so the
 * stamp is taken here, at ingress. Other frames pass to the shim unchanged.
 *
 * Ground truth without a copy per frame: each stamped input's (guest address,
 * player, seq, stamp) goes into the ring buffer gb_truth, which the host side
 * drains in batches (hostside/ringbuf.py) into shim_inputs.csv; no wake-up per
 * record (BPF_RB_NO_WAKEUP). gb_stats counts inputs stamped, inputs whose
 * skb->tstamp was 0 (no socket held receive stamps on: host mode would silently
 * become guest mode) and records dropped (of them, those a full ring dropped).
 *
 * The guest table is generated per run as guests.h:
 *   #define GB_GAME_PORT <the spec's game_port>
 *   #define GB_GUEST_TABLE X(0xc6120101, 7) X(0xc6120102, 9)   (IPv4 host order, ifindex)
 */
#include <linux/in.h>
#include <linux/udp.h>
#include <linux/pkt_cls.h>
#include "trailer.h"
#include "guests.h"

/* The game header's owner is fpsmodel/wire.py (MAGIC, MSG_INPUT, HEADER_OFFSETS);
 * tests/unit/test_formats.py checks these values against it. */
#define GB_GAME_MAGIC 0xFB
#define GB_MSG_INPUT 1
#define GB_HDR_MAGIC_OFF 0
#define GB_HDR_TYPE_OFF 2

#define GB_HDR_PLAYER_OFF 3
#define GB_HDR_SEQ_OFF 8

struct gb_truth_rec {
	__u64 stamp_ns;
	__u64 seq;
	__u32 daddr; /* network order, as on the wire */
	__u8 player;
	__u8 pad[3];
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	/* 64 MiB: 2M records (32 bytes with the header), over 3 s at 600 kpps, for
	 * a drainer that gets little CPU beside the forwarding softirq (bench_paths
	 * prints the peak fill: about 2% at 700 kpps) */
	__uint(max_entries, 1 << 26);
} gb_truth SEC(".maps");

/* hostside/ringbuf.py STATS names these, in this order */
enum { GB_STAT_INPUTS, GB_STAT_ZERO_STAMP, GB_STAT_RING_DROPS, GB_STAT_RING_DROPS_FULL,
       GB_STAT_N };

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, GB_STAT_N);
	__type(key, __u32);
	__type(value, __u64);
} gb_stats SEC(".maps");

static __always_inline void gb_count(__u32 key)
{
	__u64 *v = bpf_map_lookup_elem(&gb_stats, &key);

	if (v)
		__sync_fetch_and_add(v, 1);
}

static __always_inline int guest_ifindex(__u32 daddr)
{
#define X(ip, ifindex) if (daddr == (ip)) return (ifindex);
	GB_GUEST_TABLE
#undef X
	return 0;
}

SEC("tc")
int gb_stamp(struct __sk_buff *skb)
{
	void *end = (void *)(long)skb->data_end;
	struct iphdr *ip = gb_ipv4(skb);
	struct udphdr *udp;
	struct gb_trailer t;
	struct gb_truth_rec rec = {};
	__u8 *game;
	__u32 tot, ihl;
	int ifindex;

	if (!ip)
		return TC_ACT_OK;
	if (ip->protocol != IPPROTO_UDP || (ip->frag_off & bpf_htons(0x3FFF)))
		return TC_ACT_OK;
	ihl = ip->ihl * 4;
	if (ihl != sizeof(*ip))
		return TC_ACT_OK; /* options: leave it to the shim */
	udp = (void *)ip + sizeof(*ip);
	if ((void *)(udp + 1) > end || udp->dest != bpf_htons(GB_GAME_PORT))
		return TC_ACT_OK;
	ifindex = guest_ifindex(bpf_ntohl(ip->daddr));
	if (!ifindex)
		return TC_ACT_OK;
	tot = bpf_ntohs(ip->tot_len);
	if (tot < sizeof(*ip) + sizeof(*udp) || GB_ETH_HLEN + tot > skb->len)
		return TC_ACT_OK;
	game = (void *)(udp + 1);
	if ((void *)(game + GB_HDR_TYPE_OFF + 1) > end)
		return TC_ACT_OK;
	/* only player inputs carry the host stamp; other game messages (clock sync)
	 * go to the guest without one, so the guest stamps them with its own clock, and
	 * cut to the datagram, so no trailer a client appended can set that stamp */
	if (game[GB_HDR_MAGIC_OFF] != GB_GAME_MAGIC || game[GB_HDR_TYPE_OFF] != GB_MSG_INPUT ||
	    (void *)(game + GB_HDR_SEQ_OFF + 8) > end) { /* too short for an input's header */
		if (skb->len > GB_ETH_HLEN + tot && bpf_skb_change_tail(skb, GB_ETH_HLEN + tot, 0))
			return TC_ACT_SHOT;
		return bpf_redirect(ifindex, 0);
	}
	/* the record's fields, read before the resize invalidates packet pointers */
	rec.player = game[GB_HDR_PLAYER_OFF];
	rec.seq = bpf_be64_to_cpu(*(__u64 *)(game + GB_HDR_SEQ_OFF));
	rec.daddr = ip->daddr;
	rec.stamp_ns = skb->tstamp;
	t.magic = bpf_htonl(GB_TRAILER_MAGIC);
	t.check = bpf_htonl(gb_trailer_check(tot));
	t.stamp_ns = bpf_cpu_to_be64(rec.stamp_ns);
	/* one resize to datagram + trailer drops whatever the client appended */
	if (bpf_skb_change_tail(skb, GB_ETH_HLEN + tot + GB_TRAILER_LEN, 0))
		return TC_ACT_SHOT;
	if (bpf_skb_store_bytes(skb, GB_ETH_HLEN + tot, &t, sizeof(t), 0))
		return TC_ACT_SHOT;
	gb_count(GB_STAT_INPUTS);
	if (!rec.stamp_ns)
		gb_count(GB_STAT_ZERO_STAMP);
	if (bpf_ringbuf_output(&gb_truth, &rec, sizeof(rec), BPF_RB_NO_WAKEUP)) {
		/* a reserve fails on a ring that looks full (unread data leaves no room:
		 * the drainer is behind, or its consumer position reads wrong) and, on
		 * kernels whose ring lock can give up (rqspinlock), without the lock */
		gb_count(GB_STAT_RING_DROPS);
		if (bpf_ringbuf_query(&gb_truth, BPF_RB_AVAIL_DATA) + 8 + sizeof(rec) >
		    bpf_ringbuf_query(&gb_truth, BPF_RB_RING_SIZE))
			gb_count(GB_STAT_RING_DROPS_FULL);
	}
	return bpf_redirect(ifindex, 0);
}

char _license[] SEC("license") = "GPL";
