/* jsonl.h - the flat JSON objects of a recording, one a line: writing
 * them, and reading them back with clear errors. Values are strings,
 * numbers, true, false or null; nothing nests. Base64 for bytes. */
#ifndef RAFTKV_UI_JSONL_H
#define RAFTKV_UI_JSONL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

#define JSONL_MAX_FIELDS 48
#define JSONL_LINE_MAX (4u * 1024u * 1024u) /* a longer line is refused */

/* Writing: append to b. Strings are escaped. */
void jsonl_begin(struct buf *b);
void jsonl_str(struct buf *b, const char *key, const char *value);
void jsonl_u64(struct buf *b, const char *key, uint64_t value);
void jsonl_i64(struct buf *b, const char *key, int64_t value);
void jsonl_num(struct buf *b, const char *key, double value, int decimals);
void jsonl_bool(struct buf *b, const char *key, bool value);
void jsonl_base64(struct buf *b, const char *key, const uint8_t *data, size_t len);
void jsonl_end(struct buf *b); /* "}\n" */

enum jsonl_type { JSONL_STRING, JSONL_NUMBER, JSONL_BOOL, JSONL_NULL };

struct jsonl_field {
    const char *key;
    enum jsonl_type type;
    const char *str; /* JSONL_STRING, unescaped */
    double num;      /* JSONL_NUMBER; JSONL_BOOL: 0 or 1 */
};

struct jsonl_object {
    struct jsonl_field fields[JSONL_MAX_FIELDS];
    size_t n;
};

/* Parse one line in place (line is changed: strings are unescaped into
 * it). Returns 0, or -1 with err saying what and at which column. */
int jsonl_parse(char *line, struct jsonl_object *o, char *err, size_t errlen);
const struct jsonl_field *jsonl_get(const struct jsonl_object *o, const char *key);
/* Typed lookups: false when missing or of another type. */
bool jsonl_get_str(const struct jsonl_object *o, const char *key, const char **out);
bool jsonl_get_num(const struct jsonl_object *o, const char *key, double *out);
bool jsonl_get_u64(const struct jsonl_object *o, const char *key, uint64_t *out);
bool jsonl_get_bool(const struct jsonl_object *o, const char *key, bool *out);
/* Decode base64 into out (room for at least strlen(in) * 3 / 4 bytes).
 * Returns the length, or -1 for bad input. */
long jsonl_base64_decode(const char *in, uint8_t *out);

#endif
