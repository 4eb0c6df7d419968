// SPDX-License-Identifier: GPL-2.0
/* tc ingress decoder for a guest's NIC: moves the host's arrival stamp from the
 * trailer into skb->tstamp and trims the trailer, so an unmodified server's
 * SO_TIMESTAMP/SO_TIMESTAMPNS returns the host stamp. Anything else passes as is.
 *
 * Built with -DGB_PAIRS (the UML guests' decoder), it also records, for every frame
 * whose stamp it replaces, the guest kernel's own receive stamp (the skb->tstamp it
 * overwrites) beside the host's, in the queue map gb_pairs, which a guest program
 * drains after the load (vm/guest/uml_agent.py): both stamps of the same packets.
 * A full queue drops the pair, never the frame, and counts the drop in gb_pair_drops.
 *
 * Built with -DGB_MODE_SWITCH (the UML guests' decoder, attached once per boot), the
 * array map gb_mode chooses what it does: 0 decodes as above (host stamps), 1 passes
 * every frame untouched, as if no decoder were attached (guest stamps: the kernel took
 * its receive stamp before tc ingress, so the pass costs the stamp nothing). */
#include <linux/pkt_cls.h>
#include "trailer.h"

#ifdef GB_PAIRS
struct gb_pair {
	__u64 host_ns;
	__u64 guest_ns;
};

struct {
	__uint(type, BPF_MAP_TYPE_QUEUE);
	__uint(max_entries, 1 << 17);
	__type(value, struct gb_pair);
} gb_pairs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} gb_pair_drops SEC(".maps");

static __always_inline void gb_log_pair(__u64 host_ns, __u64 guest_ns)
{
	struct gb_pair p = { .host_ns = host_ns, .guest_ns = guest_ns };
	__u32 zero = 0;
	__u64 *drops;

	if (bpf_map_push_elem(&gb_pairs, &p, 0)) {
		drops = bpf_map_lookup_elem(&gb_pair_drops, &zero);
		if (drops)
			__sync_fetch_and_add(drops, 1);
	}
}
#endif

#ifdef GB_MODE_SWITCH
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} gb_mode SEC(".maps");
#endif

SEC("tc")
int gb_decode(struct __sk_buff *skb)
{
	struct iphdr *ip;
	struct gb_trailer t;
	__u32 tot;
	__u64 ns;

#ifdef GB_MODE_SWITCH
	__u32 zero = 0;
	__u32 *pass = bpf_map_lookup_elem(&gb_mode, &zero);

	if (pass && *pass)
		return TC_ACT_OK;
#endif
	ip = gb_ipv4(skb);
	if (!ip)
		return TC_ACT_OK;
	tot = bpf_ntohs(ip->tot_len);
	/* exactly one trailer right after the datagram, nothing else */
	if (skb->len != GB_ETH_HLEN + tot + GB_TRAILER_LEN)
		return TC_ACT_OK;
	if (bpf_skb_load_bytes(skb, GB_ETH_HLEN + tot, &t, sizeof(t)))
		return TC_ACT_OK;
	if (t.magic != bpf_htonl(GB_TRAILER_MAGIC) || t.check != bpf_htonl(gb_trailer_check(tot)))
		return TC_ACT_OK;
	ns = bpf_be64_to_cpu(t.stamp_ns);
	if (!ns)
		return TC_ACT_OK;
	if (bpf_skb_change_tail(skb, GB_ETH_HLEN + tot, 0))
		return TC_ACT_OK;
#ifdef GB_PAIRS
	gb_log_pair(ns, skb->tstamp);
#endif
	skb->tstamp = ns;
	return TC_ACT_OK;
}

char _license[] SEC("license") = "GPL";
