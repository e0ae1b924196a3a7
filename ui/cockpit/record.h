/* record.h - `raftkv --record FILE`: everything the cockpit takes in and
 * does, as JSON lines with times (README: Record and replay).
 *
 * The recorder listens to the model (struct model_observer): statuses,
 * wire records, events and process changes, and the supervisor's user
 * commands. To keep a long session small, a status is written in full only
 * when something a card shows changed (else a short "seen" line at most
 * every second), and heartbeats at most once a second a link (with a count).
 */
#ifndef RAFTKV_UI_RECORD_H
#define RAFTKV_UI_RECORD_H

#include <stddef.h>
#include <stdint.h>

#include "cluster.h"
#include "model.h"

#define RECORD_FORMAT 1

struct recorder;

/* Create FILE (replacing it) and write the "start" line. NULL with err. */
struct recorder *record_open(const char *path, const struct cluster *c, const char *cluster_path,
                             double speed, uint64_t now_ms, uint64_t wall_ms, char *err,
                             size_t errlen);
/* Hear everything m takes in from now on. */
void record_attach(struct recorder *r, struct model *m);
/* A command the user (or the script) gave. */
void record_command(struct recorder *r, uint64_t now_ms, const char *line);
/* Write what is buffered (once a second is plenty). */
void record_flush(struct recorder *r);
/* Finish the file. 0, or -1 with err (a write failed at some point). */
int record_close(struct recorder *r, char *err, size_t errlen);

#endif
