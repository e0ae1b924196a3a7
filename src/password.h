/* password.h - the client password file: one line, 1 to PASSWORD_MAX bytes,
 * no NUL; a trailing newline is not part of it. */
#ifndef RAFTKV_PASSWORD_H
#define RAFTKV_PASSWORD_H

#include <stddef.h>

#define PASSWORD_MAX 512

/* Returns 0 with *out malloc'd (the caller frees it), or -1 with err filled
 * ("--requirepass-file FILE: ..."). */
int password_load(const char *path, char **out, char *err, size_t errlen);

#endif
