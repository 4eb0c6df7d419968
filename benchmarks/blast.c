// SPDX-License-Identifier: GPL-2.0
/* Load generator for bench_paths.py's rate ladder, where a Python sender tops out
 * below what the paths carry: sendmmsg/recvmmsg in batches.
 *
 *   blast send DST_IP PORT RATE SECONDS   296-byte datagrams shaped as player inputs
 *                                         (fpsmodel/wire.py's header: magic 0xFB,
 *                                         version 1, type 1 = input, seq, send time)
 *   blast recv IP PORT SECONDS            counts datagrams; prints "ready" first;
 *                                         ends QUIET s after the last datagram (the
 *                                         sender is done, however slowly it offered)
 *                                         or at SECONDS, a cap
 *
 * Both print one JSON line at the end. Built by bench_paths.py with clang. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <endian.h>
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

static int blast_send(const char *ip, int port, double rate, double seconds)
{
	static char buf[BATCH][PAYLOAD];
	struct mmsghdr msgs[BATCH];
	struct iovec iov[BATCH];
	struct sockaddr_in dst = { .sin_family = AF_INET, .sin_port = htons(port) };
	int s = socket(AF_INET, SOCK_DGRAM, 0);
	long n = (long)(rate * seconds), sent = 0;
	int batch = rate / 5000 < 1 ? 1 : (rate / 5000 > BATCH ? BATCH : (int)(rate / 5000));
	double start;

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
	start = now();
	while (sent < n) {
		int k = n - sent < batch ? (int)(n - sent) : batch;
		uint64_t t = htobe64(realtime_ns());

		for (int i = 0; i < k; i++) {
			uint64_t seq = htobe64(sent + i);

			memcpy(buf[i] + 8, &seq, 8);
			memcpy(buf[i] + 16, &t, 8);
		}
		int r = sendmmsg(s, msgs, k, 0);
		if (r > 0)
			sent += r;
		double due = start + sent / rate, left = due - now();
		if (left > 0.0001) {
			struct timespec ts = { (time_t)left, (long)((left - (time_t)left) * 1e9) };
			nanosleep(&ts, NULL);
		}
	}
	printf("{\"sent\": %ld, \"elapsed\": %.6f}\n", sent, now() - start);
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
	if (argc == 5 && !strcmp(argv[1], "recv"))
		return blast_recv(argv[2], atoi(argv[3]), atof(argv[4]));
	fprintf(stderr, "usage: blast send DST_IP PORT RATE SECONDS | recv IP PORT SECONDS\n");
	return 2;
}
