/*
 * clock.h: the monotonic clock every deadline, rate and measured duration
 * reads (CLOCK_MONOTONIC: never jumps with the wall clock).  Wall-clock
 * times for people (timestamps in the state, logs) are not here.
 */
#ifndef PGRELOCATE_CLOCK_H
#define PGRELOCATE_CLOCK_H

#include <stdint.h>

/* Monotonic milliseconds since an arbitrary point: deadlines, pauses. */
int64_t clock_now_ms(void);

/* Monotonic seconds (with fractions) since the same point: rates, timings. */
double clock_now_s(void);

#endif
