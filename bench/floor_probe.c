/* floor_probe.c - how fast clients can be answered on this machine when
 * each write must be synced in two files of three (a leader's and its
 * followers') before the answer, with nothing else in the way: no Raft, no
 * nanomsg, no parsing. Measured next to raftkv by bench/side_by_side.py.
 *
 *   build/floor-probe [--nanomsg] DIR [SECONDS [ROUNDS [CLIENTS]]]
 *
 * Processes: a client, a leader and two followers. The client keeps
 * CLIENTS connections (default 1) to the leader over loopback TCP, as
 * redis-benchmark does, each with one write out at a time (a 256-byte
 * value behind a 16-byte header) and waiting for a one-byte answer. Each
 * turn the leader takes the writes of every connection that sent one as
 * one batch (one write, one fdatasync, one message to each follower: a
 * group commit, as Redis makes one write and fsync a turn of its event
 * loop). Three kinds of write:
 *
 *   one copy               the leader writes the batch into its file,
 *                          fdatasyncs and answers: what redis-server with
 *                          appendfsync always does;
 *   leader and a follower  the leader first sends the batch to both
 *                          followers over Unix sockets (raftkv's nodes on
 *                          one machine talk over ipc://, Unix sockets), then
 *                          writes and fdatasyncs its own copy, and answers
 *                          once one follower said its copy is synced too: a
 *                          majority of three, as a Raft leader waits for;
 *   both followers         the same, but the leader answers once both
 *                          followers have synced, and syncs its own copy
 *                          after the answer (the other way to have two).
 *
 * With --nanomsg the leader and the followers talk as raftkv's nodes do:
 * each binds an NN_PULL socket at ipc://DIR/floor-probe-N.ipc and sends
 * through an NN_PUSH socket connected to the other's, a batch a message and
 * an answer a message (transport.c). The rest is the same, so the two runs'
 * ratios to one copy differ by what nanomsg costs: its worker thread takes
 * every message off the socket and wakes the receiver.
 *
 * Each follower writes, fdatasyncs and says so, for every batch it gets.
 * In a round the kinds take turns, PROBE_BLOCK writes a connection at a
 * time, until each had SECONDS (default 3); ROUNDS rounds (default 3).
 * Every file is filled with zeros and synced first and written over in
 * place from then on, as raftkv's log is (a write that makes a file longer
 * costs a journal commit at every fdatasync). All files are in DIR, on one
 * disk, as the benchmark's nodes are, and are removed at the end.
 *
 * Prints each round's writes a second and the p50 and p99 of a write's
 * wait for each kind, with its ratio to one copy; then the medians, and
 * the "floor": the better of the two ways to have two copies. With one
 * client it is a floor: raftkv does at least that much for a write and
 * Redis about this little, so it is about as high as raftkv's one-client
 * figure against Redis can get on this disk at that moment. With many it
 * is a plain group commit, not a floor: a design that syncs one batch
 * while it takes in the next can do better. A benchmark: it asserts
 * nothing.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <nanomsg/nn.h>
#include <nanomsg/pipeline.h>

#define PROBE_VALUE_BYTES 256
#define PROBE_REQUEST_BYTES (16 + PROBE_VALUE_BYTES)
#define PROBE_FILE_BYTES (16u << 20)
#define PROBE_MAX_ROUNDS 50
#define PROBE_BLOCK 50 /* writes of one kind a client before the next kind's */
#define PROBE_MAX_CLIENTS 64
#define PROBE_HELLO UINT32_MAX /* a batch count that asks a follower only to answer */

/* --nanomsg: the leader and followers talk over nanomsg (see above). */
static bool probe_nanomsg;
static const char *probe_dir;

/* What the leader does with a write before it answers. */
enum probe_kind {
    PROBE_ONE_COPY = 'O',     /* sync its own copy */
    PROBE_TWO_OF_THREE = 'T', /* send to both followers, sync its own, wait for one follower */
    PROBE_FOLLOWERS = 'F',    /* send to both, write its own, wait for both followers; its
                                 own fdatasync comes after the answer */
};

static const struct {
    enum probe_kind kind;
    const char *name;
} probe_kinds[] = {
    {PROBE_ONE_COPY, "one copy"},
    {PROBE_TWO_OF_THREE, "leader and a follower"},
    {PROBE_FOLLOWERS, "both followers"},
};
#define PROBE_N_KINDS (sizeof probe_kinds / sizeof probe_kinds[0])

struct probe_file {
    int fd;
    off_t at; /* where the next write goes */
};

struct probe_result {
    double per_second, p50_ms, p99_ms;
};

static void die(const char *what)
{
    fprintf(stderr, "floor-probe: %s: %s\n", what, strerror(errno));
    exit(1);
}

static double now_ms(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0)
        die("clock_gettime");
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* 0: read len bytes; 1: the other side closed before the first byte. */
static int read_full(int fd, void *buf, size_t len)
{
    size_t got = 0;
    while (got < len) {
        ssize_t n = read(fd, (uint8_t *)buf + got, len - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            die("read");
        if (n == 0) {
            if (got == 0)
                return 1;
            errno = EPIPE;
            die("read (cut short)");
        }
        got += (size_t)n;
    }
    return 0;
}

static void write_full(int fd, const void *buf, size_t len)
{
    size_t put = 0;
    while (put < len) {
        ssize_t n = write(fd, (const uint8_t *)buf + put, len - put);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            die("write");
        put += (size_t)n;
    }
}

static void probe_path(char *out, size_t outlen, const char *dir, const char *name)
{
    if (snprintf(out, outlen, "%s/%s", dir, name) >= (int)outlen) {
        errno = ENAMETOOLONG;
        die(dir);
    }
}

/* A file of zeros, synced, to be written over in place. */
static void probe_file_open(struct probe_file *f, const char *dir, const char *name)
{
    static const uint8_t zeros[64 * 1024];
    char path[4096];
    probe_path(path, sizeof path, dir, name);
    f->fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (f->fd < 0)
        die(path);
    for (off_t at = 0; at < (off_t)PROBE_FILE_BYTES; at += (off_t)sizeof zeros)
        if (pwrite(f->fd, zeros, sizeof zeros, at) != (ssize_t)sizeof zeros)
            die("pwrite (zeros)");
    if (fsync(f->fd) != 0)
        die("fsync");
    f->at = 0;
}

/* One write of a batch of requests, where the last one ended (from the
 * start again once the file is full). */
static void probe_file_write(struct probe_file *f, const uint8_t *batch, size_t len)
{
    if (f->at + (off_t)len > (off_t)PROBE_FILE_BYTES)
        f->at = 0;
    if (pwrite(f->fd, batch, len, f->at) != (ssize_t)len)
        die("pwrite");
    f->at += (off_t)len;
}

static void probe_file_sync(struct probe_file *f)
{
    if (fdatasync(f->fd) != 0)
        die("fdatasync");
}

static void die_nn(const char *what, const char *url)
{
    fprintf(stderr, "floor-probe: %s %s: %s\n", what, url, nn_strerror(nn_errno()));
    exit(1);
}

/* --nanomsg: where process `who` (0 the leader, 1 and 2 the followers)
 * takes its messages in. */
static void probe_nn_url(char *out, size_t outlen, int who)
{
    if (snprintf(out, outlen, "ipc://%s/floor-probe-%d.ipc", probe_dir, who) >= (int)outlen) {
        errno = ENAMETOOLONG;
        die(probe_dir);
    }
}

/* --nanomsg: this process's NN_PULL socket (`push` false), or an NN_PUSH
 * socket connected to process `who`'s. */
static int probe_nn_socket(int who, bool push)
{
    char url[4200];
    probe_nn_url(url, sizeof url, who);
    int s = nn_socket(AF_SP, push ? NN_PUSH : NN_PULL);
    if (s < 0)
        die_nn("cannot open a socket for", url);
    if ((push ? nn_connect(s, url) : nn_bind(s, url)) < 0)
        die_nn(push ? "cannot connect to" : "cannot listen on", url);
    return s;
}

/* What a follower does with one batch: its count (4 bytes) and requests.
 * A hello (PROBE_HELLO) is only answered. */
static void follower_take(struct probe_file *file, const uint8_t *message, size_t len)
{
    uint32_t count;
    if (len < sizeof count) {
        errno = EPROTO;
        die("a batch from the leader");
    }
    memcpy(&count, message, sizeof count);
    if (count == PROBE_HELLO)
        return;
    if (count == 0 || count > PROBE_MAX_CLIENTS ||
        len != sizeof count + count * PROBE_REQUEST_BYTES) {
        errno = EPROTO;
        die("a batch from the leader");
    }
    probe_file_write(file, message + sizeof count, count * PROBE_REQUEST_BYTES);
    probe_file_sync(file);
}

/* Follower `who` (1 or 2): write, fdatasync and answer a byte (its number),
 * for every batch, in order, until the leader closes its end (Unix
 * sockets) or main stops it (nanomsg). */
static void follower_main(int leader, int who, const char *dir, const char *name)
{
    struct probe_file file;
    probe_file_open(&file, dir, name);
    uint8_t answer = (uint8_t)who;
    if (probe_nanomsg) {
        close(leader);
        int in = probe_nn_socket(who, false), out = probe_nn_socket(0, true);
        for (;;) {
            void *message;
            int len = nn_recv(in, &message, NN_MSG, 0);
            if (len < 0 && nn_errno() == EINTR)
                continue;
            if (len < 0)
                die_nn("cannot receive", "from the leader");
            follower_take(&file, message, (size_t)len);
            nn_freemsg(message);
            if (nn_send(out, &answer, 1, 0) != 1)
                die_nn("cannot send", "to the leader");
        }
    }
    static uint8_t message[sizeof(uint32_t) + PROBE_MAX_CLIENTS * PROBE_REQUEST_BYTES];
    uint32_t count;
    while (read_full(leader, &count, sizeof count) == 0) {
        size_t requests = count == PROBE_HELLO ? 0 : count * PROBE_REQUEST_BYTES;
        if (count == 0 || (count > PROBE_MAX_CLIENTS && count != PROBE_HELLO)) {
            errno = EPROTO;
            die("a batch from the leader");
        }
        memcpy(message, &count, sizeof count);
        if (read_full(leader, message + sizeof count, requests) != 0) {
            errno = EPIPE;
            die("the leader closed inside a batch");
        }
        follower_take(&file, message, sizeof count + requests);
        /* The leader may be gone already when the client has finished. */
        if (send(leader, &answer, 1, MSG_NOSIGNAL) != 1)
            break;
    }
    exit(0);
}

/* The leader's side of the link: the Unix sockets to the followers, or
 * with --nanomsg its NN_PULL socket and an NN_PUSH socket to each. */
struct probe_link {
    int followers[2];
    int nn_in, nn_out[2];
};

static void link_send(const struct probe_link *l, const uint8_t *message, size_t len)
{
    for (int i = 0; i < 2; i++) {
        if (!probe_nanomsg)
            write_full(l->followers[i], message, len);
        else if (nn_send(l->nn_out[i], message, len, 0) != (int)len)
            die_nn("cannot send", "to a follower");
    }
}

/* Read whatever answers the followers sent until `want` of them (1 or 2)
 * have synced `seq` batches (each answers its batches in order, a byte
 * each: its number). */
static void wait_for_followers(const struct probe_link *l, uint64_t synced[2], uint64_t seq,
                               int want)
{
    while ((synced[0] >= seq) + (synced[1] >= seq) < want) {
        if (probe_nanomsg) {
            uint8_t answer;
            int n = nn_recv(l->nn_in, &answer, 1, 0);
            if (n < 0 && nn_errno() == EINTR)
                continue;
            if (n != 1 || answer < 1 || answer > 2)
                die_nn("cannot receive", "from a follower");
            synced[answer - 1]++;
            continue;
        }
        struct pollfd p[2] = {{l->followers[0], POLLIN, 0}, {l->followers[1], POLLIN, 0}};
        if (poll(p, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            die("poll");
        }
        for (int i = 0; i < 2; i++) {
            if (!(p[i].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            uint8_t answers[64];
            ssize_t n = read(l->followers[i], answers, sizeof answers);
            if (n <= 0)
                die("read (a follower's answer)");
            synced[i] += (uint64_t)n;
        }
    }
}

static const char *const probe_file_names[3] = {"floor-probe-leader", "floor-probe-follower-1",
                                                "floor-probe-follower-2"};

/* Each turn the leader takes the requests of every client that sent one
 * (each client has at most one out) as one batch: one write and one
 * fdatasync of its own, one message to each follower (group commit, as
 * Redis's one write and fsync a turn of its event loop). */
static void leader_main(int listener, const int followers[2], const char *dir, int n_clients)
{
    struct probe_file file;
    probe_file_open(&file, dir, probe_file_names[0]);
    struct probe_link link = {{followers[0], followers[1]}, -1, {-1, -1}};
    uint64_t sent = 0, synced[2] = {0, 0};
    static uint8_t message[sizeof(uint32_t) + PROBE_MAX_CLIENTS * PROBE_REQUEST_BYTES];
    if (probe_nanomsg) {
        link.nn_in = probe_nn_socket(0, false);
        link.nn_out[0] = probe_nn_socket(1, true);
        link.nn_out[1] = probe_nn_socket(2, true);
    }
    /* Both followers answer a hello once their files are ready (and, over
     * nanomsg, the sockets connected), and then each client hears a byte:
     * the clock starts with every process ready. */
    uint32_t hello = PROBE_HELLO;
    link_send(&link, (const uint8_t *)&hello, sizeof hello);
    wait_for_followers(&link, synced, 1, 2);
    synced[0] = synced[1] = 0;
    struct pollfd clients[PROBE_MAX_CLIENTS];
    for (int i = 0; i < n_clients; i++) {
        int fd = accept(listener, NULL, NULL);
        if (fd < 0)
            die("accept");
        int one = 1;
        if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) != 0)
            die("setsockopt");
        clients[i] = (struct pollfd){fd, POLLIN, 0};
    }
    for (int i = 0; i < n_clients; i++)
        write_full(clients[i].fd, "r", 1);
    uint8_t *batch = message + sizeof(uint32_t);
    int from[PROBE_MAX_CLIENTS];
    int open_clients = n_clients;
    while (open_clients > 0) {
        if (poll(clients, (nfds_t)n_clients, -1) < 0) {
            if (errno == EINTR)
                continue;
            die("poll");
        }
        uint32_t count = 0;
        for (int i = 0; i < n_clients; i++) {
            if (clients[i].fd < 0 || !(clients[i].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            if (read_full(clients[i].fd, batch + count * PROBE_REQUEST_BYTES,
                          PROBE_REQUEST_BYTES) != 0) {
                close(clients[i].fd);
                clients[i].fd = -1; /* poll passes over it */
                open_clients--;
                continue;
            }
            from[count++] = i;
        }
        if (count == 0)
            continue;
        /* The client changes kinds only when none of its requests is out. */
        enum probe_kind kind = batch[0];
        size_t len = count * PROBE_REQUEST_BYTES;
        if (kind != PROBE_ONE_COPY) {
            /* The copies leave before the leader's own write, as a Raft
             * leader's AppendEntries do. */
            memcpy(message, &count, sizeof count);
            link_send(&link, message, sizeof count + len);
            sent++;
        }
        probe_file_write(&file, batch, len);
        if (kind != PROBE_FOLLOWERS)
            probe_file_sync(&file);
        if (kind != PROBE_ONE_COPY)
            wait_for_followers(&link, synced, sent, kind == PROBE_FOLLOWERS ? 2 : 1);
        for (uint32_t k = 0; k < count; k++)
            write_full(clients[from[k]].fd, "k", 1);
        if (kind == PROBE_FOLLOWERS)
            probe_file_sync(&file);
    }
    exit(0);
}

static int compare_doubles(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* The client's waits for one kind of write. */
struct probe_waits {
    double *ms;
    size_t n, cap;
    double spent_ms; /* from the first request to the last answer, blocks added up */
};

static void probe_waits_add(struct probe_waits *w, double ms)
{
    if (w->n == w->cap) {
        size_t cap = w->cap ? 2 * w->cap : 4096;
        double *more = realloc(w->ms, cap * sizeof *more);
        if (more == NULL)
            die("realloc");
        w->ms = more;
        w->cap = cap;
    }
    w->ms[w->n++] = ms;
}

/* The client's connections to the leader, each with at most one request
 * out at a time (as redis-benchmark's clients without pipelining). */
struct probe_client {
    struct pollfd conns[PROBE_MAX_CLIENTS];
    double sent_at[PROBE_MAX_CLIENTS];
    int n;
};

static void send_request(struct probe_client *c, int i, enum probe_kind kind)
{
    uint8_t request[PROBE_REQUEST_BYTES];
    memset(request, 'v', sizeof request);
    request[0] = (uint8_t)kind;
    c->sent_at[i] = now_ms();
    write_full(c->conns[i].fd, request, sizeof request);
}

/* A block of PROBE_BLOCK writes a connection, all of one kind; it ends
 * when every answer is in, so that the next kind starts on its own. */
static void run_block(struct probe_client *c, enum probe_kind kind, struct probe_waits *w)
{
    int total = PROBE_BLOCK * c->n, sent = 0, out = 0;
    double started = now_ms();
    for (int i = 0; i < c->n; i++, sent++, out++)
        send_request(c, i, kind);
    while (out > 0) {
        if (poll(c->conns, (nfds_t)c->n, -1) < 0) {
            if (errno == EINTR)
                continue;
            die("poll");
        }
        for (int i = 0; i < c->n; i++) {
            if (!(c->conns[i].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            uint8_t answer;
            if (read_full(c->conns[i].fd, &answer, 1) != 0) {
                errno = EPIPE;
                die("the leader closed");
            }
            probe_waits_add(w, now_ms() - c->sent_at[i]);
            out--;
            if (sent < total) {
                send_request(c, i, kind);
                sent++;
                out++;
            }
        }
    }
    w->spent_ms += now_ms() - started;
}

/* One round: every kind in turn, a block at a time, for `seconds` each, so
 * that the disk's good and bad moments fall on all kinds alike. */
static void run_round(struct probe_client *c, double seconds,
                      struct probe_result out[PROBE_N_KINDS])
{
    struct probe_waits w[PROBE_N_KINDS] = {0};
    double end = now_ms() + seconds * 1e3 * (double)PROBE_N_KINDS;
    while (now_ms() < end)
        for (size_t k = 0; k < PROBE_N_KINDS; k++)
            run_block(c, probe_kinds[k].kind, &w[k]);
    for (size_t k = 0; k < PROBE_N_KINDS; k++) {
        qsort(w[k].ms, w[k].n, sizeof *w[k].ms, compare_doubles);
        out[k].per_second = (double)w[k].n / (w[k].spent_ms / 1e3);
        out[k].p50_ms = w[k].ms[w[k].n / 2];
        out[k].p99_ms = w[k].ms[w[k].n * 99 / 100];
        free(w[k].ms);
    }
}

/* Waits up to `ms` for a child to end, then kills it, and says so unless
 * `stop` (it is expected to wait for ever). */
static void wait_child(pid_t pid, double ms, bool stop, const char *who)
{
    double deadline = now_ms() + ms;
    bool killed = false;
    for (;;) {
        int status;
        pid_t got = waitpid(pid, &status, killed ? 0 : WNOHANG);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0)
            die("waitpid");
        if (got == pid) {
            if (!killed && (!WIFEXITED(status) || WEXITSTATUS(status) != 0))
                fprintf(stderr, "floor-probe: a %s ended badly (status %d)\n", who, status);
            return;
        }
        if (now_ms() >= deadline) {
            if (!stop)
                fprintf(stderr, "floor-probe: a %s did not end; stopped\n", who);
            kill(pid, SIGKILL);
            killed = true;
            continue;
        }
        struct timespec pause = {0, 10 * 1000 * 1000};
        nanosleep(&pause, NULL);
    }
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, compare_doubles);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--nanomsg") == 0) {
        probe_nanomsg = true;
        argv++;
        argc--;
    }
    if (argc < 2 || argc > 5 || argv[1][0] == '-') {
        fprintf(stderr, "usage: floor-probe [--nanomsg] DIR [SECONDS [ROUNDS [CLIENTS]]]\n");
        return 2;
    }
    const char *dir = argv[1];
    probe_dir = dir;
    double seconds = argc > 2 ? atof(argv[2]) : 3.0;
    int rounds = argc > 3 ? atoi(argv[3]) : 3;
    int n_clients = argc > 4 ? atoi(argv[4]) : 1;
    if (!(seconds > 0 && seconds <= 600) || rounds < 1 || rounds > PROBE_MAX_ROUNDS ||
        n_clients < 1 || n_clients > PROBE_MAX_CLIENTS) {
        fprintf(stderr,
                "floor-probe: SECONDS must be in (0, 600], ROUNDS in 1..%d, CLIENTS in 1..%d\n",
                PROBE_MAX_ROUNDS, PROBE_MAX_CLIENTS);
        return 2;
    }

    int listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (listener < 0)
        die("socket");
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = 0};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t addr_len = sizeof addr;
    if (bind(listener, (struct sockaddr *)&addr, sizeof addr) != 0 ||
        listen(listener, PROBE_MAX_CLIENTS) != 0 ||
        getsockname(listener, (struct sockaddr *)&addr, &addr_len) != 0)
        die("listen on loopback");

    int pairs[2][2];
    for (int i = 0; i < 2; i++)
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pairs[i]) != 0)
            die("socketpair");
    pid_t children[3];
    for (int i = 0; i < 2; i++) {
        children[i] = fork();
        if (children[i] < 0)
            die("fork");
        if (children[i] == 0) {
            /* Only its own end: a follower holding the leader's end of the
             * other pair would keep that follower from seeing the end. */
            close(listener);
            for (int j = 0; j <= i; j++)
                close(pairs[j][0]);
            follower_main(pairs[i][1], i + 1, dir, probe_file_names[i + 1]);
        }
        close(pairs[i][1]);
    }
    children[2] = fork();
    if (children[2] < 0)
        die("fork");
    if (children[2] == 0) {
        int followers[2] = {pairs[0][0], pairs[1][0]};
        leader_main(listener, followers, dir, n_clients);
    }
    close(listener);
    close(pairs[0][0]);
    close(pairs[1][0]);

    struct probe_client client = {.n = n_clients};
    for (int i = 0; i < n_clients; i++) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0)
            die("connect to the leader");
        int one = 1;
        if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) != 0)
            die("setsockopt");
        client.conns[i] = (struct pollfd){fd, POLLIN, 0};
    }
    for (int i = 0; i < n_clients; i++) {
        uint8_t ready;
        if (read_full(client.conns[i].fd, &ready, 1) != 0) {
            errno = EPIPE;
            die("the leader closed before it was ready");
        }
    }

    printf("floor probe: %d client%s, %d-byte values, %.1f s a kind, %d rounds, files in %s%s\n",
           n_clients, n_clients == 1 ? "" : "s", PROBE_VALUE_BYTES, seconds, rounds, dir,
           probe_nanomsg ? ", followers over nanomsg" : "");
    double rate[PROBE_N_KINDS][PROBE_MAX_ROUNDS], p50[PROBE_N_KINDS][PROBE_MAX_ROUNDS];
    double ratio[PROBE_N_KINDS][PROBE_MAX_ROUNDS];
    for (int r = 0; r < rounds; r++) {
        printf("  round %d:", r + 1);
        struct probe_result results[PROBE_N_KINDS];
        run_round(&client, seconds, results);
        for (size_t k = 0; k < PROBE_N_KINDS; k++) {
            struct probe_result got = results[k];
            rate[k][r] = got.per_second;
            p50[k][r] = got.p50_ms;
            ratio[k][r] = got.per_second / rate[0][r];
            printf("%s %s %.0f writes/s (p50 %.3f ms, p99 %.3f ms)", k > 0 ? ";" : "",
                   probe_kinds[k].name, got.per_second, got.p50_ms, got.p99_ms);
            if (k > 0)
                printf(" %.2fx", ratio[k][r]);
        }
        printf("\n");
        fflush(stdout);
    }
    for (int i = 0; i < n_clients; i++)
        close(client.conns[i].fd);
    /* The leader first. Over Unix sockets the followers see it close and
     * end; nanomsg has no end of stream, so there they are stopped. */
    wait_child(children[2], 3000.0, false, "leader");
    for (int i = 0; i < 2; i++)
        wait_child(children[i], probe_nanomsg ? 0.0 : 3000.0, probe_nanomsg, "follower");
    for (int i = 0; i < 3; i++) {
        char path[4096];
        probe_path(path, sizeof path, dir, probe_file_names[i]);
        if (unlink(path) != 0 && errno != ENOENT)
            fprintf(stderr, "floor-probe: cannot remove %s: %s\n", path, strerror(errno));
        if (probe_nanomsg) {
            char url[4200];
            probe_nn_url(url, sizeof url, i);
            if (unlink(url + strlen("ipc://")) != 0 && errno != ENOENT)
                fprintf(stderr, "floor-probe: cannot remove %s: %s\n", url, strerror(errno));
        }
    }
    /* The floor line: the faster of the two ways to have two copies. */
    size_t best = 1;
    double best_ratio = 0;
    for (size_t k = 0; k < PROBE_N_KINDS; k++) {
        double m_rate = median(rate[k], rounds), m_p50 = median(p50[k], rounds);
        double m_ratio = median(ratio[k], rounds);
        printf("  %s: %.0f writes/s, p50 %.3f ms", probe_kinds[k].name, m_rate, m_p50);
        if (k > 0)
            printf(", %.2fx one copy", m_ratio);
        printf(" (medians of the rounds)\n");
        if (k > 0 && m_ratio > best_ratio) {
            best = k;
            best_ratio = m_ratio;
        }
    }
    printf("floor: %.2fx one copy (%s)\n", best_ratio, probe_kinds[best].name);
    return 0;
}
