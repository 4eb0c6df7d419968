// SPDX-License-Identifier: GPL-2.0
/* Load generator for bench_paths.py's rate ladder, where a Python sender tops out
 * below what the paths carry: sendmmsg/recvmmsg in batches.
 *
 *   blast send DST_IP PORT RATE SECONDS   296-byte datagrams shaped as player inputs
 *                                         (fpsmodel/wire.py's header: magic 0xFB,
 *                                         version 1, type 1 = input, seq, send time)
 *   blast raw IFNAME SRCMAC DSTMAC SRCIP DSTIP PORT RATE SECONDS
 *                                         the same datagrams as whole frames from an
 *                                         AF_PACKET socket that bypasses the qdisc (no
 *                                         UDP/IP stack, routing or neighbour work: about
 *                                         half the sender's cost per frame); UDP
 *                                         checksum 0 (none), as IPv4 allows
 *   blast sink IP PORT SECONDS            binds and never reads: counts the datagrams
 *                                         that reached this namespace's UDP layer
 *                                         (/proc/net/snmp InDatagrams + InErrors: its
 *                                         smallest queue's drops, and the few queued,
 *                                         read at the end), so the path is
 *                                         measured to the guest's kernel and the sender
 *                                         has its CPU to itself; ends as recv does
 *   blast recv IP PORT SECONDS            counts datagrams; prints "ready" first;
 *                                         ends QUIET s after the last datagram (the
 *                                         sender is done, however slowly it offered)
 *                                         or at SECONDS, a cap
 *
 * Both print one JSON line at the end. Built by bench_paths.py with clang. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <endian.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#define PAYLOAD 296
#define BATCH 64
#define QUIET 0.5

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static uint64_t realtime_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

/* Sends n messages (batches of `batch`, each message's game header at `hdr` within
 * its buffer of `stride` bytes from `base`) paced to `rate`; prints the JSON line.
 * ENOBUFS (no room on the way out) counts the message as offered and lost. */
static int send_paced(int s, struct mmsghdr *msgs, uint8_t *base, size_t stride,
		      size_t hdr, long n, int batch, double rate)
{
	long sent = 0, refused = 0;
	double start = now();

	while (sent < n) {
		int k = n - sent < batch ? (int)(n - sent) : batch;
		uint64_t t = htobe64(realtime_ns());

		for (int i = 0; i < k; i++) {
			uint64_t seq = htobe64(sent + i);

			memcpy(base + i * stride + hdr + 8, &seq, 8);
			memcpy(base + i * stride + hdr + 16, &t, 8);
		}
		int r = sendmmsg(s, msgs, k, 0);
		if (r > 0)
			sent += r;
		else if (errno == ENOBUFS)
			sent++, refused++;
		double due = start + sent / rate, left = due - now();
		if (left > 0.0001) {
			struct timespec ts = { (time_t)left, (long)((left - (time_t)left) * 1e9) };
			nanosleep(&ts, NULL);
		}
	}
	printf("{\"sent\": %ld, \"refused\": %ld, \"elapsed\": %.6f}\n", sent, refused,
	       now() - start);
	return 0;
}

static int blast_send(const char *ip, int port, double rate, double seconds)
{
	static char buf[BATCH][PAYLOAD];
	struct mmsghdr msgs[BATCH];
	struct iovec iov[BATCH];
	struct sockaddr_in dst = { .sin_family = AF_INET, .sin_port = htons(port) };
	int s = socket(AF_INET, SOCK_DGRAM, 0);
	long n = (long)(rate * seconds);
	int batch = rate / 5000 < 1 ? 1 : (rate / 5000 > BATCH ? BATCH : (int)(rate / 5000));

	inet_pton(AF_INET, ip, &dst.sin_addr);
	if (s < 0 || connect(s, (struct sockaddr *)&dst, sizeof(dst)))
		return perror("socket/connect"), 1;
	memset(msgs, 0, sizeof(msgs));
	for (int i = 0; i < BATCH; i++) {
		buf[i][0] = (char)0xFB; buf[i][1] = 1; buf[i][2] = 1;
		iov[i].iov_base = buf[i];
		iov[i].iov_len = PAYLOAD;
		msgs[i].msg_hdr.msg_iov = &iov[i];
		msgs[i].msg_hdr.msg_iovlen = 1;
	}
	return send_paced(s, msgs, (uint8_t *)buf, PAYLOAD, 0, n, batch, rate);
}

static uint16_t ip_checksum(const uint8_t *h)
{
	uint32_t sum = 0;

	for (int i = 0; i < 20; i += 2)
		sum += (uint32_t)h[i] << 8 | h[i + 1];
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)~sum;
}

#define FRAME (14 + 20 + 8 + PAYLOAD)

static int blast_raw(char **a)
{
	static uint8_t buf[BATCH][FRAME];
	struct mmsghdr msgs[BATCH];
	struct iovec iov[BATCH];
	struct sockaddr_ll to = { .sll_family = AF_PACKET, .sll_halen = 6 };
	uint8_t hdr[14 + 20 + 8] = { 0 }, src[4], dst[4];
	int s = socket(AF_PACKET, SOCK_RAW, 0), one = 1, big = 1 << 26, port = atoi(a[6]);
	double rate = atof(a[7]), seconds = atof(a[8]);
	long n = (long)(rate * seconds);
	int batch = rate / 5000 < 1 ? 1 : (rate / 5000 > BATCH ? BATCH : (int)(rate / 5000));

	to.sll_ifindex = if_nametoindex(a[1]);
	if (s < 0 || !to.sll_ifindex || inet_pton(AF_INET, a[4], src) != 1 ||
	    inet_pton(AF_INET, a[5], dst) != 1 ||
	    sscanf(a[3], "%hhx:%hhx:%hhx:%hhx:%hhx:%hhx", &hdr[0], &hdr[1], &hdr[2], &hdr[3],
		   &hdr[4], &hdr[5]) != 6 ||
	    sscanf(a[2], "%hhx:%hhx:%hhx:%hhx:%hhx:%hhx", &hdr[6], &hdr[7], &hdr[8], &hdr[9],
		   &hdr[10], &hdr[11]) != 6)
		return fprintf(stderr, "blast raw: bad interface, MAC or address\n"), 2;
	setsockopt(s, SOL_PACKET, PACKET_QDISC_BYPASS, &one, sizeof(one));
	/* players' frames come from far away, whatever the host's backlog: no send buffer
	 * to hold the sender back, a frame the uplink has no room for is lost (ENOBUFS) */
	setsockopt(s, SOL_SOCKET, SO_SNDBUFFORCE, &big, sizeof(big));
	memcpy(to.sll_addr, hdr, 6);
	hdr[12] = 0x08; /* IPv4 */
	uint8_t *ip = hdr + 14, *udp = ip + 20;
	ip[0] = 0x45; ip[2] = (20 + 8 + PAYLOAD) >> 8; ip[3] = (20 + 8 + PAYLOAD) & 0xff;
	ip[6] = 0x40; ip[8] = 64; ip[9] = 17; /* DF, TTL, UDP */
	memcpy(ip + 12, src, 4);
	memcpy(ip + 16, dst, 4);
	uint16_t c = ip_checksum(ip);
	ip[10] = c >> 8; ip[11] = c & 0xff;
	udp[0] = 40000 >> 8; udp[1] = 40000 & 0xff; udp[2] = port >> 8; udp[3] = port & 0xff;
	udp[4] = (8 + PAYLOAD) >> 8; udp[5] = (8 + PAYLOAD) & 0xff;
	memset(msgs, 0, sizeof(msgs));
	for (int i = 0; i < BATCH; i++) {
		memcpy(buf[i], hdr, sizeof(hdr));
		buf[i][42] = (char)0xFB; buf[i][43] = 1; buf[i][44] = 1;
		iov[i].iov_base = buf[i];
		iov[i].iov_len = FRAME;
		msgs[i].msg_hdr.msg_iov = &iov[i];
		msgs[i].msg_hdr.msg_iovlen = 1;
		msgs[i].msg_hdr.msg_name = &to;
		msgs[i].msg_hdr.msg_namelen = sizeof(to);
	}
	return send_paced(s, msgs, &buf[0][0], FRAME, 42, n, batch, rate);
}

static long udp_arrived(void)
{
	char names[512], vals[512];
	long in = -1, err = -1;
	FILE *f = fopen("/proc/net/snmp", "r");

	while (f && fgets(names, sizeof(names), f)) {
		if (strncmp(names, "Udp: ", 5) || !fgets(vals, sizeof(vals), f))
			continue;
		char *np = names + 5, *vp = vals + 5, *nt, *vt;
		for (char *n = strtok_r(np, " \n", &nt), *v = strtok_r(vp, " \n", &vt); n && v;
		     n = strtok_r(NULL, " \n", &nt), v = strtok_r(NULL, " \n", &vt)) {
			if (!strcmp(n, "InDatagrams"))
				in = atol(v);
			else if (!strcmp(n, "InErrors"))
				err = atol(v);
		}
		break;
	}
	if (f)
		fclose(f);
	return in < 0 || err < 0 ? -1 : in + err;
}

static int blast_sink(const char *ip, int port, double seconds)
{
	struct sockaddr_in me = { .sin_family = AF_INET, .sin_port = htons(port) };
	struct timespec tick = { 0, 50000000 };
	int s = socket(AF_INET, SOCK_DGRAM, 0), tiny = 1;
	long base = udp_arrived(), seen = base, now_n;
	double end, last = 0;
	static char drain_buf[2048];

	inet_pton(AF_INET, ip, &me.sin_addr);
	/* the smallest queue: nearly every datagram is a counted drop, so the count moves */
	setsockopt(s, SOL_SOCKET, SO_RCVBUF, &tiny, sizeof(tiny));
	if (base < 0 || bind(s, (struct sockaddr *)&me, sizeof(me)))
		return perror("sink: /proc/net/snmp or bind"), 1;
	printf("ready\n");
	fflush(stdout);
	end = now() + seconds;
	while (now() < end && !(seen != base && now() - last > QUIET)) {
		nanosleep(&tick, NULL);
		if ((now_n = udp_arrived()) != seen) {
			seen = now_n;
			last = now();
		}
	}
	/* InDatagrams counts a datagram when it is read: read what the queue holds */
	while (recv(s, drain_buf, sizeof(drain_buf), MSG_DONTWAIT) >= 0)
		;
	printf("{\"received\": %ld}\n", udp_arrived() - base);
	return 0;
}

static int blast_recv(const char *ip, int port, double seconds)
{
	static char buf[BATCH][2048];
	struct mmsghdr msgs[BATCH];
	struct iovec iov[BATCH];
	struct sockaddr_in me = { .sin_family = AF_INET, .sin_port = htons(port) };
	struct timeval tv = { 0, 100000 };
	int s = socket(AF_INET, SOCK_DGRAM, 0), big = 1 << 24;
	long got = 0;
	double end, last = 0;

	inet_pton(AF_INET, ip, &me.sin_addr);
	setsockopt(s, SOL_SOCKET, SO_RCVBUF, &big, sizeof(big));
	setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (bind(s, (struct sockaddr *)&me, sizeof(me)))
		return perror("bind"), 1;
	memset(msgs, 0, sizeof(msgs));
	for (int i = 0; i < BATCH; i++) {
		iov[i].iov_base = buf[i];
		iov[i].iov_len = sizeof(buf[i]);
		msgs[i].msg_hdr.msg_iov = &iov[i];
		msgs[i].msg_hdr.msg_iovlen = 1;
	}
	printf("ready\n");
	fflush(stdout);
	end = now() + seconds;
	while (now() < end && !(got && now() - last > QUIET)) {
		int r = recvmmsg(s, msgs, BATCH, MSG_WAITFORONE, NULL);
		if (r > 0) {
			got += r;
			last = now();
		}
	}
	printf("{\"received\": %ld}\n", got);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 6 && !strcmp(argv[1], "send"))
		return blast_send(argv[2], atoi(argv[3]), atof(argv[4]), atof(argv[5]));
	if (argc == 10 && !strcmp(argv[1], "raw"))
		return blast_raw(argv + 1);
	if (argc == 5 && !strcmp(argv[1], "sink"))
		return blast_sink(argv[2], atoi(argv[3]), atof(argv[4]));
	if (argc == 5 && !strcmp(argv[1], "recv"))
		return blast_recv(argv[2], atoi(argv[3]), atof(argv[4]));
	fprintf(stderr, "usage: blast send DST_IP PORT RATE SECONDS | recv|sink IP PORT SECONDS |\n"
			"       raw IFNAME SRCMAC DSTMAC SRCIP DSTIP PORT RATE SECONDS\n");
	return 2;
}
