// SPDX-License-Identifier: GPL-2.0
/* tc ingress on each guest's host-side port: the reply path in the kernel. A guest's
 * IPv4 frames to the client (to its MAC, untagged) go straight out of the uplink, so
 * no state update wakes the shim; everything else (ARP, IPv6, frames to other MACs)
 * passes on to the shim unchanged, which forwards it as before. The shim's packet
 * sockets on these ports refuse what this program takes, by the same rule
 * (hostside/shim.py reply_filter_program), so nothing is forwarded twice.
 *
 * Per run, as -D defines: GB_UPLINK_IFINDEX, and GB_CLIENT_MAC0..5 (the client's MAC,
 * gamebed/topology.py CLIENT_MAC).
 */
#include <linux/pkt_cls.h>
#include "trailer.h"

SEC("tc")
int gb_reply(struct __sk_buff *skb)
{
	struct ethhdr *eth = (void *)(long)skb->data;

	if (skb->vlan_present || (void *)(eth + 1) > (void *)(long)skb->data_end)
		return TC_ACT_OK;
	if (eth->h_proto != bpf_htons(ETH_P_IP))
		return TC_ACT_OK;
	if (eth->h_dest[0] != GB_CLIENT_MAC0 || eth->h_dest[1] != GB_CLIENT_MAC1 ||
	    eth->h_dest[2] != GB_CLIENT_MAC2 || eth->h_dest[3] != GB_CLIENT_MAC3 ||
	    eth->h_dest[4] != GB_CLIENT_MAC4 || eth->h_dest[5] != GB_CLIENT_MAC5)
		return TC_ACT_OK;
	return bpf_redirect(GB_UPLINK_IFINDEX, 0);
}

char _license[] SEC("license") = "GPL";
