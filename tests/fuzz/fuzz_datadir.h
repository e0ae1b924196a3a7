/* fuzz_datadir.h - the input of fuzz_datadir.c (its top comment says what
 * each flag does), shared with the smoke driver that makes such inputs. */
#ifndef RAFTKV_FUZZ_DATADIR_H
#define RAFTKV_FUZZ_DATADIR_H

#include <stddef.h>
#include <stdint.h>

#define FLAG_LOG 0x01u
#define FLAG_META 0x02u
#define FLAG_SNAP 0x04u
#define FLAG_FIX_CRC 0x08u
#define FLAG_SHORT_HEADER 0x10u
#define FLAG_OLDER_SNAP 0x20u
#define FLAG_LEFTOVERS 0x40u
#define FLAG_CRASH 0x80u

enum { PART_LOG, PART_META, PART_SNAP, N_PARTS };

#define SHORT_HEADER 128 /* FLAG_SHORT_HEADER: both log header slots */
#define META_SLOT 64     /* DIR/meta's slots (src/wal_meta.c) */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A fresh temporary dir under $TMPDIR (else /tmp), and its removal with
 * everything in it; both stop the program when they fail. */
void fuzz_datadir_make_dir(char *out, size_t outlen);
void fuzz_datadir_remove_dir(const char *dir);

/* Inputs whose dir opened (the smoke run checks that its seeds do). */
extern unsigned long fuzz_datadir_opened;

#endif
