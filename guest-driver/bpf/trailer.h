/* The gamebed timestamp trailer (see ../TRAILER.md). Shared by the BPF programs. */
#ifndef GAMEBED_TRAILER_H
#define GAMEBED_TRAILER_H

#include <linux/types.h>
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define GB_TRAILER_MAGIC 0x47425453u /* "GBTS" */
#define GB_TRAILER_LEN 16
#define GB_ETH_HLEN 14

struct gb_trailer {
	__be32 magic;
	__be32 check;
	__be64 stamp_ns;
} __attribute__((packed));

static __always_inline __u32 gb_trailer_check(__u32 tot_len)
{
	return (tot_len << 16) | (tot_len ^ 0xFFFFu);
}

/* The IPv4 header of the Ethernet frame in skb's linear data, or NULL when the frame
 * is not IPv4 or too short for the header.  A frame that came VLAN-tagged is not
 * IPv4 here although the kernel took its tag off (rx offload) before tc: neither
 * stamper nor decoder may take its bytes for a plain datagram and its trailer. */
static __always_inline struct iphdr *gb_ipv4(struct __sk_buff *skb)
{
	struct ethhdr *eth = (void *)(long)skb->data;
	struct iphdr *ip = (void *)(eth + 1);

	if (skb->vlan_present)
		return NULL;
	if ((void *)(ip + 1) > (void *)(long)skb->data_end || eth->h_proto != bpf_htons(ETH_P_IP))
		return NULL;
	return ip;
}

#endif
