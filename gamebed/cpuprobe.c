/* The CPU probe (gamebed/machinewatch.py CpuProbe): a thread above the client's
 * SCHED_FIFO priority wakes every period on CLOCK_MONOTONIC; a wake-up more than
 * `thresh_ns` after its due time is a span when the CPU was held from every task of
 * ours (the hypervisor's preemptions, too short for steal's 10-ms ticks to show, or the
 * kernel's own work).  Each is recorded as (due time on CLOCK_REALTIME, ns late). */
#include <stdint.h>
#include <time.h>

static int64_t ns(clockid_t c)
{
    struct timespec t;
    clock_gettime(c, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

/* The probe must never take the CPU from the client it watches: every 1000 wake-ups it
 * reads its own CPU time, and where that was more than 1/5 of the wall time (a host too
 * slow for its period: under TCG each wake-up costs more than the period) it stops and
 * sets *gave_up. */
int64_t gb_probe(int64_t period_ns, int64_t thresh_ns, int64_t *out, int64_t cap,
                 volatile int32_t *stop, int32_t *gave_up)
{
    int64_t due = ns(CLOCK_MONOTONIC), n = 0, wakes = 0;
    int64_t wall0 = due, cpu0 = ns(CLOCK_THREAD_CPUTIME_ID);
    *gave_up = 0;
    while (!*stop && n < cap) {
        if (++wakes % 1000 == 0) {
            int64_t wall = ns(CLOCK_MONOTONIC), cpu = ns(CLOCK_THREAD_CPUTIME_ID);
            if ((cpu - cpu0) * 5 > wall - wall0) {
                *gave_up = 1;
                return n;
            }
            wall0 = wall;
            cpu0 = cpu;
        }
        due += period_ns;
        struct timespec t = {due / 1000000000, due % 1000000000};
        clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &t, NULL);
        int64_t now = ns(CLOCK_MONOTONIC), late = now - due;
        if (late > thresh_ns) {
            out[2 * n] = ns(CLOCK_REALTIME) - late;
            out[2 * n + 1] = late;
            n++;
            due = now;  /* the periods it missed are one gap, not many */
        }
    }
    return n;
}
