// SPDX-License-Identifier: GPL-2.0
/* tc ingress decoder for a guest's NIC: moves the host's arrival stamp from the
 * trailer into skb->tstamp and trims the trailer, so an unmodified server's
 * SO_TIMESTAMP/SO_TIMESTAMPNS returns the host stamp. Anything else passes as is. */
#include <linux/pkt_cls.h>
#include "trailer.h"

SEC("tc")
int gb_decode(struct __sk_buff *skb)
{
	struct iphdr *ip = gb_ipv4(skb);
	struct gb_trailer t;
	__u32 tot;
	__u64 ns;

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
	skb->tstamp = ns;
	return TC_ACT_OK;
}

char _license[] SEC("license") = "GPL";
