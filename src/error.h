/* error.h - filling the caller's error buffer, the one way every module does. */
#ifndef RAFTKV_ERROR_H
#define RAFTKV_ERROR_H

#include <stddef.h>

/* snprintf into err (nothing when err is NULL or errlen is 0). */
void error_set(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
