/* The gamebed timestamp trailer (see ../TRAILER.md). Shared by the BPF programs. */
#ifndef GAMEBED_TRAILER_H
#define GAMEBED_TRAILER_H

#include <linux/types.h>

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

#endif
