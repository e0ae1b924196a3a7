/* cli_line.h - split a typed line into words: spaces separate them, "double
 * quotes" (with \" \\ \n \t \r escapes) and 'single quotes' keep spaces in one. */
#ifndef RAFTKV_CLI_LINE_H
#define RAFTKV_CLI_LINE_H

#include <stddef.h>

#define CLI_LINE_MAX_WORDS 64

struct cli_words {
    char *text; /* the words, NUL-separated */
    int argc;
    char *argv[CLI_LINE_MAX_WORDS + 1]; /* NULL-terminated */
};

/* Returns 0, or -1 with err filled ("unbalanced quotes", "too many words", ...).
 * On 0, free with cli_words_free. */
int cli_split_line(const char *line, struct cli_words *w, char *err, size_t errlen);
void cli_words_free(struct cli_words *w);

#endif
