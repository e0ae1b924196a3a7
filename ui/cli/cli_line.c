/* cli_line.c - the word splitter for typed commands. */
#include "cli_line.h"

#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char unescape(char c)
{
    switch (c) {
    case 'n':
        return '\n';
    case 't':
        return '\t';
    case 'r':
        return '\r';
    default:
        return c;
    }
}

int cli_split_line(const char *line, struct cli_words *w, char *err, size_t errlen)
{
    memset(w, 0, sizeof *w);
    w->text = malloc(strlen(line) + 1);
    if (w->text == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    const char *p = line;
    char *out = w->text;
    for (;;) {
        while (isspace((unsigned char)*p))
            p++;
        if (*p == '\0')
            break;
        if (w->argc == CLI_LINE_MAX_WORDS) {
            snprintf(err, errlen, "too many words (at most %d)", CLI_LINE_MAX_WORDS);
            goto err_after_alloc;
        }
        w->argv[w->argc++] = out;
        char quote = 0; /* the quote we are inside, or 0 */
        while (*p != '\0' && (quote != 0 || !isspace((unsigned char)*p))) {
            char ch = *p++;
            if (quote == 0 && (ch == '"' || ch == '\'')) {
                quote = ch;
            } else if (quote != 0 && ch == quote) {
                quote = 0;
            } else if (quote == '"' && ch == '\\' && *p != '\0') {
                *out++ = unescape(*p++);
            } else if (quote == '\'' && ch == '\\' && *p == '\'') {
                *out++ = *p++;
            } else {
                *out++ = ch;
            }
        }
        if (quote != 0) {
            snprintf(err, errlen, "unbalanced quotes");
            goto err_after_alloc;
        }
        *out++ = '\0';
    }
    w->argv[w->argc] = NULL;
    return 0;

err_after_alloc:
    cli_words_free(w);
    return -1;
}

void cli_words_free(struct cli_words *w)
{
    free(w->text);
    memset(w, 0, sizeof *w);
}
