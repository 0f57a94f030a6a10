/*
 * sweeper.h: a thread that runs a pass over a service's database every
 * interval until it is stopped: the order service's sweep (expired orders,
 * abandoned placements, refunds due) and the payment service's (payments
 * left confirming).  The pass gets the thread's own connection, opened at
 * start and closed at stop; it runs once at start, then every interval_ms
 * after the end of the previous pass.  Stopping wakes the wait at once; a
 * long pass asks mall_sweeper_stopping between its items.
 */
#ifndef MALL_SWEEPER_H
#define MALL_SWEEPER_H

#include <stdbool.h>
#include <stdint.h>

#include "db.h"
#include "status.h"

typedef struct mall_sweeper mall_sweeper;

/* A pass: returns how many things it handled (logged when more than 0). */
typedef int (*mall_sweep_pass)(mall_db_conn *db, void *arg);

/* mall_sweeper_start: name ("order") names the thread in the log; conninfo
 * and name are copied.  The caller owns the sweeper. */
mall_code mall_sweeper_start(mall_sweeper **out, const char *name, const char *conninfo,
                             int64_t interval_ms, mall_sweep_pass pass, void *arg,
                             mall_status *st);
/* mall_sweeper_stopping: whether s was told to stop (a pass in progress
 * should end after the item at hand).  NULL: false. */
bool mall_sweeper_stopping(mall_sweeper *s);
/* mall_sweeper_stop: stops the thread (after its pass) and frees s.  NULL is
 * ok. */
void mall_sweeper_stop(mall_sweeper *s);

#endif
