/* replay.h - `raftkv --replay FILE [--headless]` (replay.c). */
#ifndef RAFTKV_UI_REPLAY_H
#define RAFTKV_UI_REPLAY_H

#include "cockpit.h"

struct replay;

/* Read and check a whole recording. NULL with err ("FILE:LINE: what"). */
struct replay *replay_load(const char *path, char *err, size_t errlen);
/* The cockpit's header, cluster and model as the recording starts. */
void replay_setup(struct cockpit *ck, struct replay *rp);
/* Headless: run the whole recording through the model (its events). */
void replay_print_all(struct cockpit *ck, struct replay *rp);
/* On screen, until q. */
void replay_run(struct cockpit *ck, struct replay *rp);
void replay_close(struct replay *rp);
/* "83", "83.5", "1:23", "1:23.5" -> ms; -1 if not a time. */
long long replay_parse_time(const char *s);

#endif
