/* The client's compiled core: the send and receive loop of fpsmodel/client.py.
 *
 * Python keeps the schedule (each input's due time and player, computed before the
 * load from the seed: fpsmodel/timing.py), the sockets' setup, the clock sync and the
 * records; this loop sends each input at its due time and takes every update that
 * comes back, recording both in memory (fpsmodel/fastcore.py writes them afterwards).
 *
 * Per input, as the Python loop does: a plausible input block drawn from the player's
 * own generator, the header stamped with CLOCK_REALTIME just before AES-128-GCM seals
 * it (the header is the additional data; the nonce is type, player, 0, seq), then one
 * send(2).  Per update: its arrival stamp from the kernel (SO_TIMESTAMPNS), the time it
 * was read, and its bytes, kept for Python to open after the load; the tick in its
 * plaintext header becomes the player's last_update_tick at once.  Waiting: until the
 * next due input less the spin in ppoll(2) on the epoll set (ns timeout), then a spin.
 *
 * Built by fpsmodel/fastcore.py: cc -O2 -shared -fPIC fastclient.c -lcrypto.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stddef.h>
#include <poll.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>

#include <openssl/evp.h>

#define HEADER 24
#define TAG 16
#define FIXED 64
#define ENTITY 24
#define MAX_DGRAM 2048
#define BATCH 32

struct gb_player {      /* one player: its socket and its state (fpsmodel/client.py Player) */
    int32_t fd, guest, pid, target;
    uint32_t session;
    int32_t block;      /* the input's encrypted block: the game's input size less 40 */
    uint64_t seq;
    int64_t last_tick;
    uint64_t rng;       /* splitmix64 state, seeded per player by Python */
    float yaw;
    int32_t seen;       /* entities tracked so far */
    unsigned char ents[8 * ENTITY];
};

struct gb_sent { int64_t sched, send, left; int32_t player; int32_t pad; uint64_t seq; };
struct gb_upd { int64_t recv, arrive, off; int32_t player, len; };

struct gb_run {
    int64_t end, stop, spin_ns;       /* load end, return at, spin before each send */
    int64_t n, next;                  /* schedule length, next entry */
    const int64_t *due;
    const int32_t *who;
    struct gb_player *players;
    void *core;                       /* gb_new's */
    int32_t epfd, pad;
    struct gb_sent *sent; int64_t sent_cap, nsent;
    struct gb_upd *upd; int64_t upd_cap, nupd;
    unsigned char *buf; int64_t buf_cap, buf_used;
    int64_t errors;
};

struct gb_core { int ntargets; EVP_CIPHER_CTX **ctx; };

void gb_free(void *p);

void *gb_new(int ntargets, const unsigned char *keys)
{
    struct gb_core *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->ntargets = ntargets;
    c->ctx = calloc(ntargets, sizeof *c->ctx);
    for (int i = 0; c->ctx && i < ntargets; i++) {
        c->ctx[i] = EVP_CIPHER_CTX_new();
        if (!c->ctx[i] || EVP_EncryptInit_ex(c->ctx[i], EVP_aes_128_gcm(), NULL,
                                             keys + 16 * i, NULL) != 1) {
            gb_free(c);  /* what was made so far goes: nothing leaks on a failed start */
            return NULL;
        }
    }
    if (!c->ctx) {
        free(c);
        return NULL;
    }
    return c;
}

/* The records' layout, which fpsmodel/fastcore.py checks before it trusts them: each
 * struct's size, then each field's offset, in the order of fastcore.py's LAYOUT. */
#define OFF(s, f) (int64_t)offsetof(struct s, f)
static const int64_t layout[] = {
    sizeof(struct gb_player), OFF(gb_player, fd), OFF(gb_player, guest),
    OFF(gb_player, pid), OFF(gb_player, target), OFF(gb_player, session),
    OFF(gb_player, block), OFF(gb_player, seq), OFF(gb_player, last_tick),
    OFF(gb_player, rng), OFF(gb_player, yaw), OFF(gb_player, seen), OFF(gb_player, ents),
    sizeof(struct gb_sent), OFF(gb_sent, sched), OFF(gb_sent, send), OFF(gb_sent, left),
    OFF(gb_sent, player), OFF(gb_sent, pad), OFF(gb_sent, seq),
    sizeof(struct gb_upd), OFF(gb_upd, recv), OFF(gb_upd, arrive), OFF(gb_upd, off),
    OFF(gb_upd, player), OFF(gb_upd, len),
    sizeof(struct gb_run), OFF(gb_run, end), OFF(gb_run, stop), OFF(gb_run, spin_ns),
    OFF(gb_run, n), OFF(gb_run, next), OFF(gb_run, due), OFF(gb_run, who),
    OFF(gb_run, players), OFF(gb_run, core), OFF(gb_run, epfd), OFF(gb_run, pad),
    OFF(gb_run, sent), OFF(gb_run, sent_cap), OFF(gb_run, nsent), OFF(gb_run, upd),
    OFF(gb_run, upd_cap), OFF(gb_run, nupd), OFF(gb_run, buf), OFF(gb_run, buf_cap),
    OFF(gb_run, buf_used), OFF(gb_run, errors),
};

int64_t gb_layout(int64_t *out, int64_t cap)
{
    int64_t n = (int64_t)(sizeof layout / sizeof layout[0]);
    for (int64_t i = 0; i < n && i < cap; i++)
        out[i] = layout[i];
    return n;
}

void gb_free(void *p)
{
    struct gb_core *c = p;
    if (!c)
        return;
    for (int i = 0; c->ctx && i < c->ntargets; i++)
        EVP_CIPHER_CTX_free(c->ctx[i]);
    free(c->ctx);
    free(c);
}

static inline int64_t now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (int64_t)t.tv_sec * 1000000000LL + t.tv_nsec;
}

static inline uint64_t next_u64(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static inline double uniform(uint64_t *s, double lo, double hi)
{
    return lo + (hi - lo) * ((next_u64(s) >> 11) * (1.0 / 9007199254740992.0));
}

static inline void be16(unsigned char *p, uint16_t v) { p[0] = v >> 8; p[1] = v; }
static inline void be32(unsigned char *p, uint32_t v)
{
    p[0] = v >> 24; p[1] = v >> 16; p[2] = v >> 8; p[3] = v;
}
static inline void be64(unsigned char *p, uint64_t v)
{
    be32(p, v >> 32); be32(p + 4, (uint32_t)v);
}
static inline void bef(unsigned char *p, float f)
{
    uint32_t v;
    memcpy(&v, &f, 4);
    be32(p, v);
}
static inline uint64_t get64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

static void entity(struct gb_player *p, int i)
{
    unsigned char *e = p->ents + ENTITY * i;
    be16(e, i); be16(e + 2, 1);
    bef(e + 4, uniform(&p->rng, -2e3, 2e3)); bef(e + 8, uniform(&p->rng, -2e3, 2e3));
    bef(e + 12, 0.0f); bef(e + 16, uniform(&p->rng, 0, 360)); bef(e + 20, uniform(&p->rng, 0, 320));
}

/* A plausible input block (wire.PlayerInput.pack's layout): steering that wanders,
 * occasional fire and jump, and some of the entities the player tracks. */
static void input_block(struct gb_player *p, unsigned char *b)
{
    static const float fwd[5] = {1.0f, 1.0f, 0.5f, 0.0f, -1.0f};
    int maxent = (p->block - FIXED) / ENTITY, n;
    if (maxent > 8)
        maxent = 8;
    memset(b, 0, p->block);
    p->yaw += (float)uniform(&p->rng, -8.0, 8.0);
    p->yaw -= 360.0f * (int)(p->yaw / 360.0f);
    if (p->yaw < 0)
        p->yaw += 360.0f;
    while (p->seen < 8)
        entity(p, p->seen++);
    entity(p, next_u64(&p->rng) % 8);
    bef(b, fwd[next_u64(&p->rng) % 5]); bef(b + 4, uniform(&p->rng, -1, 1));
    bef(b + 12, p->yaw); bef(b + 16, uniform(&p->rng, -30, 30));
    uint64_t r = next_u64(&p->rng);
    be32(b + 24, (r % 100 < 20) | ((r / 100 % 100 < 5) << 1));
    b[28] = next_u64(&p->rng) % 8;
    be32(b + 32, p->last_tick > 0 ? (uint32_t)p->last_tick : 0);
    n = next_u64(&p->rng) % (maxent + 1);
    b[60] = n;
    memcpy(b + FIXED, p->ents, (size_t)n * ENTITY);
}

static int send_one(struct gb_run *a, struct gb_core *c, int64_t due)
{
    struct gb_player *p = &a->players[a->who[a->next]];
    unsigned char out[HEADER + 1500 + TAG], block[1500], nonce[12] = {0};
    int len = 0, fin = 0;
    input_block(p, block);
    int64_t now = now_ns();  /* the header's stamp: authenticated, so before sealing */
    out[0] = 0xFB; out[1] = 1; out[2] = 1; out[3] = p->pid;
    be32(out + 4, p->session); be64(out + 8, p->seq); be64(out + 16, (uint64_t)now);
    nonce[0] = 1; nonce[1] = p->pid; be64(nonce + 4, p->seq);
    EVP_CIPHER_CTX *x = c->ctx[p->target];
    if (EVP_EncryptInit_ex(x, NULL, NULL, NULL, nonce) != 1
        || EVP_EncryptUpdate(x, NULL, &len, out, HEADER) != 1
        || EVP_EncryptUpdate(x, out + HEADER, &len, block, p->block) != 1
        || EVP_EncryptFinal_ex(x, out + HEADER + len, &fin) != 1
        || EVP_CIPHER_CTX_ctrl(x, EVP_CTRL_GCM_GET_TAG, TAG, out + HEADER + p->block) != 1)
        return -1;
    int64_t left = now_ns();  /* built, sealed, handed to the kernel next */
    if (send(p->fd, out, HEADER + p->block + TAG, MSG_DONTWAIT) < 0)
        a->errors++;  /* recorded as sent: the server side shows it as lost */
    struct gb_sent *s = &a->sent[a->nsent++];
    s->sched = due; s->send = now; s->left = left; s->player = a->who[a->next]; s->seq = p->seq;
    p->seq++;
    a->next++;
    return 0;
}

/* Every datagram waiting on one player's socket: 1 read, 0 full (return to Python). */
static int drain(struct gb_run *a, int idx)
{
    struct gb_player *p = &a->players[idx];
    struct mmsghdr m[BATCH];
    struct iovec io[BATCH];
    char ctl[BATCH][64];
    for (;;) {
        int k = 0;
        for (; k < BATCH; k++) {
            if (a->buf_used + (k + 1) * MAX_DGRAM > a->buf_cap || a->nupd + k >= a->upd_cap)
                break;
            io[k].iov_base = a->buf + a->buf_used + (int64_t)k * MAX_DGRAM;
            io[k].iov_len = MAX_DGRAM;
            memset(&m[k], 0, sizeof m[k]);
            m[k].msg_hdr.msg_iov = &io[k]; m[k].msg_hdr.msg_iovlen = 1;
            m[k].msg_hdr.msg_control = ctl[k]; m[k].msg_hdr.msg_controllen = sizeof ctl[k];
        }
        if (k == 0)
            return 0;
        int got = recvmmsg(p->fd, m, k, MSG_DONTWAIT, NULL);
        if (got <= 0) {
            if (got < 0 && errno != EAGAIN && errno != EINTR)
                a->errors++;
            return 1;
        }
        int64_t recv = now_ns();
        int64_t base = a->buf_used;
        for (int i = 0; i < got; i++) {
            unsigned char *d = a->buf + base + (int64_t)i * MAX_DGRAM;
            int64_t arrive = 0;
            for (struct cmsghdr *h = CMSG_FIRSTHDR(&m[i].msg_hdr); h;
                 h = CMSG_NXTHDR(&m[i].msg_hdr, h))
                if (h->cmsg_level == SOL_SOCKET && h->cmsg_type == SCM_TIMESTAMPNS) {
                    struct timespec t;
                    memcpy(&t, CMSG_DATA(h), sizeof t);
                    arrive = (int64_t)t.tv_sec * 1000000000LL + t.tv_nsec;
                }
            unsigned len = m[i].msg_len;
            if (len >= HEADER && d[0] == 0xFB && d[2] == 2)  /* an update: its tick */
                p->last_tick = (int64_t)get64(d + 8);
            memmove(a->buf + a->buf_used, d, len);  /* packed, one after another */
            struct gb_upd *u = &a->upd[a->nupd++];
            u->recv = recv; u->arrive = arrive ? arrive : recv; u->off = a->buf_used;
            u->player = idx; u->len = (int32_t)len;
            a->buf_used += len;
        }
        if (got < k)
            return 1;
    }
}

/* Read what is waiting (timeout_ns 0: do not wait; else wait at most that long). */
static int receive(struct gb_run *a, int64_t timeout_ns)
{
    struct epoll_event ev[64];
    if (timeout_ns > 0) {
        struct pollfd pf = {.fd = a->epfd, .events = POLLIN};
        struct timespec t = {timeout_ns / 1000000000LL, timeout_ns % 1000000000LL};
        if (ppoll(&pf, 1, &t, NULL) <= 0)
            return 1;
    }
    int n = epoll_wait(a->epfd, ev, 64, 0);
    for (int i = 0; i < n; i++)
        if (!drain(a, (int)ev[i].data.u32))
            return 0;
    return 1;
}

/* Run until `stop`: 0 at stop, 1 when the update buffers are full (Python empties them
 * and calls again), -1 on an error of the cipher. */
int gb_run(struct gb_run *a)
{
    struct gb_core *c = a->core;
    for (;;) {
        int64_t now = now_ns();
        if (now >= a->stop)
            return 0;
        int sending = a->next < a->n && a->due[a->next] < a->end && a->nsent < a->sent_cap;
        int64_t due = sending ? a->due[a->next] : a->stop;
        if (sending && due <= now) {
            if (send_one(a, c, due) < 0)
                return -1;
            continue;
        }
        if (!receive(a, 0))
            return 1;
        now = now_ns();
        int64_t wait = due - now - (sending ? a->spin_ns : 0);
        if (wait > 20000) {
            if (!receive(a, wait))
                return 1;
            continue;
        }
        while (sending && now_ns() < due)
            ;
    }
}

/* An epoll set over the players' sockets, each event naming its player by index. */
int gb_epoll(const struct gb_player *p, int n)
{
    int fd = epoll_create1(EPOLL_CLOEXEC);
    for (int i = 0; fd >= 0 && i < n; i++) {
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
        if (epoll_ctl(fd, EPOLL_CTL_ADD, p[i].fd, &ev) < 0)
            return -1;
    }
    return fd;
}
