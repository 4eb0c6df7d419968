// SPDX-License-Identifier: GPL-2.0
/* tc ingress stamper for the host's uplink (the kernel fast path beside the
 * AF_PACKET shim): for IPv4/UDP player inputs to a known guest, cut the frame to
 * the IP total length, append the trailer carrying skb->tstamp (the kernel's
 * arrival stamp, present because the shim's logger socket asks for stamps) and
 * redirect it to the guest's port. Forwarding would zero skb->tstamp, so the
 * stamp is taken here, at ingress. Other frames pass to the shim unchanged.
 *
 * The guest table is generated per run as guests.h:
 *   #define GB_GAME_PORT 27960
 *   #define GB_GUEST_TABLE X(0xc6120101, 7) X(0xc6120102, 9)   (IPv4 host order, ifindex)
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/udp.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "trailer.h"
#include "guests.h"

#define GB_GAME_MAGIC 0xFB /* fpsmodel/wire.py: magic, version, type, player, ... */
#define GB_MSG_INPUT 1

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
	void *data = (void *)(long)skb->data;
	void *end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);
	struct udphdr *udp;
	struct gb_trailer t;
	__u8 *game;
	__u32 tot, ihl;
	int ifindex;

	if ((void *)(ip + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP))
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
	if ((void *)(game + 3) > end)
		return TC_ACT_OK;
	/* only player inputs carry the host stamp; other game messages (clock sync)
	 * go to the guest as they are, so the guest stamps them with its own clock */
	if (game[0] != GB_GAME_MAGIC || game[2] != GB_MSG_INPUT)
		return bpf_redirect(ifindex, 0);
	t.magic = bpf_htonl(GB_TRAILER_MAGIC);
	t.check = bpf_htonl(gb_trailer_check(tot));
	t.stamp_ns = bpf_cpu_to_be64(skb->tstamp);
	/* one resize to datagram + trailer drops whatever the client appended */
	if (bpf_skb_change_tail(skb, GB_ETH_HLEN + tot + GB_TRAILER_LEN, 0))
		return TC_ACT_SHOT;
	if (bpf_skb_store_bytes(skb, GB_ETH_HLEN + tot, &t, sizeof(t), 0))
		return TC_ACT_SHOT;
	return bpf_redirect(ifindex, 0);
}

char _license[] SEC("license") = "GPL";
