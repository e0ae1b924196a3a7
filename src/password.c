/* password.c - the client password file (--requirepass-file), read the
 * same way by the node and by the cockpit's own client. */
#include "password.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int password_load(const char *path, char **out, char *err, size_t errlen)
{
    *out = NULL;
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        snprintf(err, errlen, "--requirepass-file %s: %s", path, strerror(errno));
        return -1;
    }
    char text[PASSWORD_MAX + 2];
    size_t len = fread(text, 1, sizeof(text), f);
    bool failed = ferror(f) != 0;
    fclose(f);
    if (failed) {
        snprintf(err, errlen, "--requirepass-file %s: cannot read it", path);
        return -1;
    }
    while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == '\r'))
        len--;
    if (len == 0 || len > PASSWORD_MAX) {
        snprintf(err, errlen, "--requirepass-file %s: the password must be 1 to %d bytes", path,
                 PASSWORD_MAX);
        return -1;
    }
    if (memchr(text, '\0', len) != NULL || memchr(text, '\n', len) != NULL) {
        snprintf(err, errlen, "--requirepass-file %s: the password is one line without NUL", path);
        return -1;
    }
    *out = malloc(len + 1);
    if (*out == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    memcpy(*out, text, len);
    (*out)[len] = '\0';
    return 0;
}
