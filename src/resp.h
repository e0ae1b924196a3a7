/* resp.h - the Redis protocol (RESP2): request parsing for servers, reply
 * writing, command writing and reply parsing for clients.
 *
 * Parsers are bounded and resumable: they look at the bytes received so far
 * and answer "complete", "need more" or "protocol error", never reading past
 * len and capping every count before allocating for it.
 */
#ifndef RAFTKV_RESP_H
#define RAFTKV_RESP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

#define RESP_MAX_ARGS (1024 * 1024)        /* elements in one multibulk request */
#define RESP_MAX_BULK (8u * 1024u * 1024u) /* bytes in one bulk string */
#define RESP_MAX_INLINE (64u * 1024u)      /* bytes in one inline command line */
#define RESP_MAX_DEPTH 8                   /* nesting of reply arrays */

/* Redis's limits for a client that has not authenticated yet, where a
 * password is asked (resp_parser.unauthenticated). */
#define RESP_UNAUTH_MAX_ARGS 10
#define RESP_UNAUTH_MAX_BULK 16384u

enum resp_parse_result {
    RESP_PARSE_ERROR = -1, /* protocol error; message in err */
    RESP_PARSE_MORE = 0,   /* incomplete; call again with more bytes */
    RESP_PARSE_DONE = 1,   /* one whole request/reply; *consumed bytes used */
};

/* A request: argv[i] points into the caller's input buffer (not copied), so it
 * is valid until those bytes are consumed. Inline arguments are unescaped into
 * scratch instead, valid until the next parse. Arrays are grown as needed. */
struct resp_request {
    size_t argc;
    const uint8_t **argv;
    size_t *argl;
    size_t cap;
    struct buf scratch;
};

/* Parse one request: a multibulk array of bulk strings ("*2\r\n$3\r\nGET\r\n$1\r\nk\r\n")
 * or an inline command ("GET k\r\n", with "double" and 'single' quotes). Empty inline
 * lines are skipped (consumed, argc == 0). Errors use Redis's wording, e.g.
 * "Protocol error: invalid multibulk length". Starts from byte 0 each call:
 * a server reading a request in pieces should use resp_parse_request_next. */
int resp_parse_request(const uint8_t *in, size_t len, struct resp_request *req, size_t *consumed,
                       char *err, size_t errlen);

/* How far an unfinished request has been checked, so that the next call goes
 * on from there: however a request is cut into reads, each byte is looked at
 * a bounded number of times (a number line that arrives cut is read again from
 * its start, at most 21 bytes; a whole request is walked once more to point
 * argv at its arguments). A zeroed parser is at the start of a request. */
struct resp_parser {
    size_t checked;    /* bytes of the request checked so far */
    bool multibulk;    /* the "*<count>" header was read */
    size_t count;      /* elements it announced */
    size_t done;       /* elements checked whole */
    bool in_bulk;      /* the "$<len>" header of the next element was read */
    size_t bulk_len;   /* its length */
    uint64_t examined; /* bytes looked at over the parser's life: for tests */
    /* Set by the caller, kept from request to request: a multibulk request
     * may have at most RESP_UNAUTH_MAX_ARGS elements of RESP_UNAUTH_MAX_BULK
     * bytes ("Protocol error: unauthenticated multibulk length", "...bulk
     * length"), so that a client that has not given the password cannot
     * make the server take in megabytes for it. */
    bool unauthenticated;
};

/* resp_parse_request, going on from where the previous call on this parser
 * stopped. in is the request's first byte; the bytes given before must be
 * given again unchanged (they may have moved). After DONE or ERROR the parser
 * is ready for the next request. Results, errors and argv are those of
 * resp_parse_request on the same bytes (unless the parser is unauthenticated). */
int resp_parse_request_next(struct resp_parser *ps, const uint8_t *in, size_t len,
                            struct resp_request *req, size_t *consumed, char *err, size_t errlen);
void resp_request_free(struct resp_request *req);

/* Reply writers (server side). All return 0, or -1 when memory runs out. */
int resp_write_simple(struct buf *out, const char *s);         /* +OK */
int resp_write_error(struct buf *out, const char *msg);        /* -ERR ..., msg given whole */
int resp_write_int(struct buf *out, int64_t v);                /* :42 */
int resp_write_bulk(struct buf *out, const void *p, size_t n); /* $3\r\nabc */
int resp_write_nil(struct buf *out);                           /* $-1 */
int resp_write_array(struct buf *out, size_t n);               /* *n header */

/* Command writer (client side): a multibulk array of bulk strings. */
int resp_write_command(struct buf *out, size_t argc, const uint8_t *const *argv,
                       const size_t *argl);

/* Reply parsing (client side). */
enum resp_type { RESP_SIMPLE, RESP_ERROR, RESP_INT, RESP_BULK, RESP_NIL, RESP_ARRAY };

struct resp_value {
    enum resp_type type;
    int64_t integer;          /* RESP_INT */
    char *str;                /* SIMPLE, ERROR, BULK: NUL-terminated copy */
    size_t len;               /* its length (bulk strings may hold NULs) */
    struct resp_value *elems; /* RESP_ARRAY */
    size_t n;
};

/* Parse one reply; on DONE *out owns allocated memory: free with resp_value_free. */
int resp_parse_reply(const uint8_t *in, size_t len, struct resp_value *out, size_t *consumed,
                     char *err, size_t errlen);
void resp_value_free(struct resp_value *v);

#endif
