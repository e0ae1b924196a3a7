/* supervisor.c - fork/exec raftkv-node processes, send them faults, reap them,
 * and leave none behind. */

#include "supervisor.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <libgen.h>
#include <math.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <nanomsg/nn.h>
#include <nanomsg/pipeline.h>

#define CONTROL_RESEND_MS 300 /* resend wanted faults this often until they show */
#define TIMEOUT_RETRY_MS 2000 /* keep trying to deliver timeout_now this long */
#define STOP_GRACE_MS 3000    /* SIGTERM, then SIGKILL after this */

/* Children's pids for sup_kill_all_now (signal handlers). */
static volatile pid_t child_pids[CLUSTER_MAX_NODES];

static void set_child_pid(size_t slot, pid_t pid)
{
    child_pids[slot] = pid;
}

void sup_kill_all_now(void)
{
    for (size_t i = 0; i < CLUSTER_MAX_NODES; i++)
        if (child_pids[i] > 0)
            kill(child_pids[i], SIGKILL);
}

static uint32_t bit(uint32_t id)
{
    return 1u << id;
}

static uint32_t all_ids(const struct supervisor *s)
{
    uint32_t mask = 0;
    for (size_t i = 0; i < s->cluster.n; i++)
        mask |= bit(s->cluster.nodes[i].id);
    return mask;
}

struct sup_node *sup_node(struct supervisor *s, uint32_t id)
{
    for (size_t i = 0; i < s->cluster.n; i++)
        if (s->nodes[i].id == id)
            return &s->nodes[i];
    return NULL;
}

static size_t slot_of(const struct supervisor *s, const struct sup_node *n)
{
    return (size_t)(n - s->nodes);
}

/* ------------------------------------------------------------ setup */

static int make_dirs(const char *path, char *err, size_t errlen)
{
    char tmp[PATH_MAX];
    if (snprintf(tmp, sizeof tmp, "%s", path) >= (int)sizeof tmp) {
        snprintf(err, errlen, "path too long: %s", path);
        return -1;
    }
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(tmp, 0755) < 0 && errno != EEXIST) {
            snprintf(err, errlen, "cannot create %s: %s", tmp, strerror(errno));
            return -1;
        }
        *p = '/';
    }
    if (mkdir(tmp, 0755) < 0 && errno != EEXIST) {
        snprintf(err, errlen, "cannot create %s: %s", tmp, strerror(errno));
        return -1;
    }
    return 0;
}

static int default_node_bin(char *out, size_t size, char *err, size_t errlen)
{
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n < 0) {
        snprintf(err, errlen, "cannot find this program's path: %s", strerror(errno));
        return -1;
    }
    self[n] = '\0';
    if (snprintf(out, size, "%s/raftkv-node", dirname(self)) >= (int)size) {
        snprintf(err, errlen, "path too long: %s", self);
        return -1;
    }
    return 0;
}

/* Ask the system for free loopback ports: bind port 0, read it back. All are
 * held open until every port is chosen, so they differ. */
static int free_ports(int *ports, size_t n, char *err, size_t errlen)
{
    int fds[2 * CLUSTER_MAX_NODES + 1];
    int rc = 0;
    size_t opened = 0;
    for (; opened < n; opened++) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        socklen_t len = sizeof a;
        if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) < 0 ||
            getsockname(fd, (struct sockaddr *)&a, &len) < 0) {
            snprintf(err, errlen, "cannot find a free port: %s", strerror(errno));
            if (fd >= 0)
                close(fd);
            rc = -1;
            break;
        }
        fds[opened] = fd;
        ports[opened] = ntohs(a.sin_port);
    }
    for (size_t i = 0; i < opened; i++)
        close(fds[i]);
    return rc;
}

/* Unix socket paths are limited to about 100 bytes (sun_path). */
#define SUP_IPC_PATH_MAX 100

/* url = ipc://DIR/name, a Unix socket in the run's dir; false when that
 * path is too long for a socket (the caller falls back to loopback TCP). */
static bool sup_ipc_url(const struct supervisor *s, const char *name, char *url, size_t len)
{
    int n = snprintf(url, len, "ipc://%s/%s", s->dir, name);
    return n >= 0 && (size_t)n < len && n - (int)strlen("ipc://") < SUP_IPC_PATH_MAX;
}

/* Node id's peer URL in a cluster the cockpit starts: a Unix socket in the
 * run's dir, which on one machine costs a peer message less than loopback
 * TCP (no TCP stack, no ACKs: README, Benchmarks), or a loopback port. */
static void sup_peer_url(const struct supervisor *s, uint32_t id, int port, char *url, size_t len)
{
    char name[32];
    snprintf(name, sizeof name, "peer%u.ipc", id);
    if (!sup_ipc_url(s, name, url, len))
        snprintf(url, len, "tcp://127.0.0.1:%d", port);
}

static int write_cluster_file(struct supervisor *s, const struct sup_options *o, char *err,
                              size_t errlen)
{
    size_t n = o->nodes;
    int ports[2 * CLUSTER_MAX_NODES];
    if (o->port_base > 0) {
        for (size_t i = 0; i < 2 * n; i++)
            ports[i] = o->port_base + (int)i;
    } else if (free_ports(ports, 2 * n, err, errlen) < 0) {
        return -1;
    }
    FILE *f = fopen(s->cluster_path, "w");
    if (!f) {
        snprintf(err, errlen, "cannot write %s: %s", s->cluster_path, strerror(errno));
        return -1;
    }
    fprintf(f, "# raftkv cluster started by the cockpit: one line a node.\n");
    fprintf(f, "# id  peer (nanomsg URL)      client (Redis protocol)\n");
    for (size_t i = 0; i < n; i++) {
        char url[CLUSTER_URL_MAX];
        sup_peer_url(s, (uint32_t)(i + 1), ports[i], url, sizeof url);
        fprintf(f, "%zu     %s     127.0.0.1:%d\n", i + 1, url, ports[n + i]);
    }
    if (fclose(f) != 0) {
        snprintf(err, errlen, "cannot write %s: %s", s->cluster_path, strerror(errno));
        return -1;
    }
    return 0;
}

static int open_status_socket(struct supervisor *s, const struct sup_options *o, char *err,
                              size_t errlen)
{
    s->status_sock = nn_socket(AF_SP, NN_PULL);
    if (s->status_sock < 0) {
        snprintf(err, errlen, "cannot open the status socket: %s", nn_strerror(nn_errno()));
        return -1;
    }
    if (!sup_ipc_url(s, "status.ipc", s->status_url, sizeof s->status_url)) {
        int port;
        if (o->port_base > 0) {
            port = o->port_base + 2 * (int)s->cluster.n; /* just after the clients */
        } else if (free_ports(&port, 1, err, errlen) < 0) {
            return -1;
        }
        snprintf(s->status_url, sizeof s->status_url, "tcp://127.0.0.1:%d", port);
    } else {
        char path[PATH_MAX + 16];
        snprintf(path, sizeof path, "%s/status.ipc", s->dir);
        unlink(path); /* left by an earlier run */
    }
    if (nn_bind(s->status_sock, s->status_url) < 0) {
        snprintf(err, errlen, "cannot bind %s: %s", s->status_url, nn_strerror(nn_errno()));
        return -1;
    }
    int max = -1; /* statuses carry the KV table: no size limit */
    nn_setsockopt(s->status_sock, NN_SOL_SOCKET, NN_RCVMAXSIZE, &max, sizeof max);
    size_t sz = sizeof s->status_fd;
    if (nn_getsockopt(s->status_sock, NN_SOL_SOCKET, NN_RCVFD, &s->status_fd, &sz) < 0) {
        snprintf(err, errlen, "cannot poll the status socket: %s", nn_strerror(nn_errno()));
        return -1;
    }
    return 0;
}

static int open_control_socket(struct supervisor *s, size_t i, char *err, size_t errlen)
{
    {
        struct sup_node *n = &s->nodes[i];
        n->control = nn_socket(AF_SP, NN_PUSH);
        if (n->control < 0) {
            snprintf(err, errlen, "cannot open a control socket: %s", nn_strerror(nn_errno()));
            return -1;
        }
        int linger = 0, reconnect = 50, reconnect_max = 200;
        nn_setsockopt(n->control, NN_SOL_SOCKET, NN_LINGER, &linger, sizeof linger);
        nn_setsockopt(n->control, NN_SOL_SOCKET, NN_RECONNECT_IVL, &reconnect, sizeof reconnect);
        nn_setsockopt(n->control, NN_SOL_SOCKET, NN_RECONNECT_IVL_MAX, &reconnect_max,
                      sizeof reconnect_max);
        if (nn_connect(n->control, s->cluster.nodes[i].peer_url) < 0) {
            snprintf(err, errlen, "cannot connect to %s: %s", s->cluster.nodes[i].peer_url,
                     nn_strerror(nn_errno()));
            return -1;
        }
    }
    return 0;
}

static int open_control_sockets(struct supervisor *s, char *err, size_t errlen)
{
    for (size_t i = 0; i < s->cluster.n; i++)
        if (open_control_socket(s, i, err, errlen) < 0)
            return -1;
    return 0;
}

static int sup_node_paths(struct supervisor *s, struct sup_node *n, char *err, size_t errlen)
{
    if (snprintf(n->data_dir, sizeof n->data_dir, "%s/node%u", s->dir, n->id) >=
            (int)sizeof n->data_dir ||
        snprintf(n->log_path, sizeof n->log_path, "%s/node%u.log", s->dir, n->id) >=
            (int)sizeof n->log_path) {
        snprintf(err, errlen, "data dir path too long");
        return -1;
    }
    return 0;
}

int sup_open(struct supervisor *s, const struct sup_options *o, char *err, size_t errlen)
{
    memset(s, 0, sizeof *s);
    s->status_sock = -1;
    s->status_fd = -1;
    s->speed = o->speed;
    s->wire_on = true;
    s->prevote = true;
    s->check_quorum = true;
    s->lease_reads = o->lease_reads;
    if (o->requirepass_file != NULL && realpath(o->requirepass_file, s->requirepass_file) == NULL) {
        snprintf(err, errlen, "--requirepass-file %s: %s", o->requirepass_file, strerror(errno));
        return -1;
    }
    for (size_t i = 0; i < CLUSTER_MAX_NODES; i++)
        s->nodes[i].control = -1;

    if (o->node_bin) {
        snprintf(s->node_bin, sizeof s->node_bin, "%s", o->node_bin);
    } else if (default_node_bin(s->node_bin, sizeof s->node_bin, err, errlen) < 0) {
        return -1;
    }
    if (access(s->node_bin, X_OK) < 0) {
        snprintf(err, errlen, "cannot run %s: %s", s->node_bin, strerror(errno));
        return -1;
    }

    if (o->data_dir) {
        if (make_dirs(o->data_dir, err, errlen) < 0)
            return -1;
        if (!realpath(o->data_dir, s->dir)) {
            snprintf(err, errlen, "cannot use %s: %s", o->data_dir, strerror(errno));
            return -1;
        }
    } else {
        const char *tmp = getenv("TMPDIR");
        snprintf(s->dir, sizeof s->dir, "%s/raftkv-XXXXXX", tmp && *tmp ? tmp : "/tmp");
        if (!mkdtemp(s->dir)) {
            snprintf(err, errlen, "cannot create a temporary dir: %s", strerror(errno));
            return -1;
        }
        s->remove_dir = true;
    }

    if (o->config_path) {
        if (!realpath(o->config_path, s->cluster_path)) {
            snprintf(err, errlen, "cannot read %s: %s", o->config_path, strerror(errno));
            return -1;
        }
    } else {
        if (snprintf(s->cluster_path, sizeof s->cluster_path, "%s/cluster.conf", s->dir) >=
            (int)sizeof s->cluster_path) {
            snprintf(err, errlen, "data dir path too long");
            return -1;
        }
        /* A data dir from an earlier run keeps its cluster file (and ports). */
        if (access(s->cluster_path, R_OK) < 0 && write_cluster_file(s, o, err, errlen) < 0)
            return -1;
    }
    if (cluster_load(s->cluster_path, &s->cluster, err, errlen) < 0)
        return -1;
    if (snprintf(s->secret_path, sizeof s->secret_path, "%s/secret", s->dir) >=
        (int)sizeof s->secret_path) {
        snprintf(err, errlen, "data dir path too long");
        return -1;
    }
    char warn[PATH_MAX + 128];
    if (wire_secret_create(s->secret_path, err, errlen) < 0 ||
        wire_key_load(s->secret_path, &s->key, warn, sizeof warn, err, errlen) < 0)
        return -1;

    for (size_t i = 0; i < s->cluster.n; i++) {
        struct sup_node *n = &s->nodes[i];
        n->id = s->cluster.nodes[i].id;
        if (sup_node_paths(s, n, err, errlen) < 0)
            return -1;
    }
    if (open_status_socket(s, o, err, errlen) < 0)
        return -1;
    if (open_control_sockets(s, err, errlen) < 0)
        return -1;
    return 0;
}

void sup_attach_model(struct supervisor *s, struct model *m)
{
    s->model = m;
}

/* ------------------------------------------------------------ processes */

/* The last non-empty line of a node's log, to say why it exited. */
static void last_log_line(const char *path, char *out, size_t size)
{
    out[0] = '\0';
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    char buf[512];
    off_t end = lseek(fd, 0, SEEK_END);
    off_t start = end > (off_t)sizeof buf - 1 ? end - (off_t)sizeof buf + 1 : 0;
    ssize_t n = pread(fd, buf, sizeof buf - 1, start);
    close(fd);
    if (n <= 0)
        return;
    buf[n] = '\0';
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
        buf[--n] = '\0';
    char *line = strrchr(buf, '\n');
    if (snprintf(out, size, "%s", line ? line + 1 : buf) >= (int)size && size > 4)
        strcpy(out + size - 4, "...");
}

static int start_node(struct supervisor *s, struct sup_node *n, uint64_t now_ms, char *err,
                      size_t errlen)
{
    char id[16], speed[32];
    snprintf(id, sizeof id, "%u", n->id);
    snprintf(speed, sizeof speed, "%g", s->speed);
    char *argv[] = {s->node_bin,    "--config", s->cluster_path,
                    "--id",         id,         "--data",
                    n->data_dir,    "--status", s->status_url,
                    "--speed",      speed,      "--secret-file",
                    s->secret_path, NULL,       NULL,
                    NULL,           NULL,       NULL,
                    NULL,           NULL,       NULL,
                    NULL,           NULL};
    int argc = 13;
    if (s->requirepass_file[0] != '\0') {
        argv[argc++] = "--requirepass-file";
        argv[argc++] = s->requirepass_file;
    }
    if (s->lease_reads) {
        argv[argc++] = "--lease-reads";
        argv[argc++] = "on";
    }
    const struct cluster_node *self = cluster_find(&s->cluster, n->id);
    if (n->joined && self != NULL) {
        argv[argc++] = "--join";
        argv[argc++] = "--peer";
        argv[argc++] = (char *)self->peer_url;
        argv[argc++] = "--client";
        argv[argc++] = (char *)self->client_addr;
    }
    char exec_failed[PATH_MAX + 64];
    int msg_len = snprintf(exec_failed, sizeof exec_failed, "raftkv: cannot run %s\n", s->node_bin);
    if (msg_len >= (int)sizeof exec_failed)
        msg_len = (int)sizeof exec_failed - 1;
    pid_t parent = getpid();

    /* No handler of ours may run in the child between fork and exec. */
    sigset_t all, old;
    sigfillset(&all);
    sigprocmask(SIG_BLOCK, &all, &old);
    pid_t pid = fork();
    if (pid == 0) {
        /* Only async-signal-safe calls here: nanomsg has threads. */
        struct sigaction dfl = {.sa_handler = SIG_DFL};
        for (int sig = 1; sig < NSIG; sig++)
            sigaction(sig, &dfl, NULL);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(1);
        setpgid(0, 0); /* keys typed at the terminal are not for the nodes */
        int in = open("/dev/null", O_RDONLY);
        int log = open(n->log_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (in < 0 || log < 0 || dup2(in, 0) < 0 || dup2(log, 1) < 0 || dup2(log, 2) < 0)
            _exit(126);
        closefrom(3);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        execv(s->node_bin, argv);
        ssize_t w = write(2, exec_failed, (size_t)msg_len);
        (void)w;
        _exit(127);
    }
    int fork_errno = errno;
    sigprocmask(SIG_SETMASK, &old, NULL);
    if (pid < 0) {
        snprintf(err, errlen, "cannot start node %u: %s", n->id, strerror(fork_errno));
        return -1;
    }
    n->pid = pid;
    n->stopped = false;
    n->killed = false;
    n->resume_at_ms = 0;
    n->last_control_ms = 0;
    set_child_pid(slot_of(s, n), pid);
    if (s->model)
        model_set_process(s->model, n->id, PROC_RUNNING, pid, 0);
    (void)now_ms;
    return 0;
}

void sup_start_all(struct supervisor *s, uint64_t now_ms)
{
    char err[256];
    for (size_t i = 0; i < s->cluster.n; i++) {
        if (start_node(s, &s->nodes[i], now_ms, err, sizeof err) < 0 && s->model)
            model_event(s->model, EV_NODE, "%s", err);
    }
    if (s->model)
        model_event(s->model, EV_INFO,
                    "started %zu nodes at speed %g; cluster file %s; node logs in %s", s->cluster.n,
                    s->speed, s->cluster_path, s->dir);
}

static void reap(struct supervisor *s, uint64_t now_ms)
{
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        struct sup_node *n = NULL;
        for (size_t i = 0; i < s->cluster.n; i++)
            if (s->nodes[i].pid == pid)
                n = &s->nodes[i];
        if (!n)
            continue;
        set_child_pid(slot_of(s, n), 0);
        int code = WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
        bool killed_by_us = n->killed;
        n->pid = 0;
        n->stopped = false;
        n->killed = false;
        if (s->model) {
            model_set_process(s->model, n->id, PROC_EXITED, 0, code);
            if (killed_by_us) {
                model_event(s->model, EV_FAULT, "node %u is down: its process was killed", n->id);
            } else if (code < 0) {
                model_event(s->model, EV_NODE, "node %u died from signal %d (%s)", n->id, -code,
                            strsignal(-code));
            } else {
                char line[160];
                last_log_line(n->log_path, line, sizeof line);
                model_event(s->model, EV_NODE, "node %u exited with status %d%s%s", n->id, code,
                            line[0] ? ": " : "", line);
            }
        }
        if (n->restart_pending) {
            n->restart_pending = false;
            char err[256];
            if (start_node(s, n, now_ms, err, sizeof err) < 0 && s->model)
                model_event(s->model, EV_NODE, "%s", err);
            else if (s->model)
                model_event(s->model, EV_FAULT,
                            "node %u restarted from its data dir (its log and term are on disk)",
                            n->id);
        }
    }
}

static int need_running(struct sup_node *n, uint32_t id, const struct supervisor *s, char *err,
                        size_t errlen)
{
    if (!n) {
        snprintf(err, errlen, "node %u does not exist (this cluster has %zu nodes)", id,
                 s->cluster.n);
        return -1;
    }
    if (n->pid == 0 || n->killed) {
        snprintf(err, errlen, "node %u is down (restart %u starts it)", id, id);
        return -1;
    }
    return 0;
}

int sup_suspend(struct supervisor *s, uint32_t id, double seconds, uint64_t now_ms, char *err,
                size_t errlen)
{
    struct sup_node *n = sup_node(s, id);
    if (need_running(n, id, s, err, errlen) < 0)
        return -1;
    if (n->stopped) {
        snprintf(err, errlen, "node %u is already suspended (resume %u)", id, id);
        return -1;
    }
    if (kill(n->pid, SIGSTOP) < 0) {
        snprintf(err, errlen, "cannot suspend node %u: %s", id, strerror(errno));
        return -1;
    }
    n->stopped = true;
    n->resume_at_ms = seconds > 0 ? now_ms + (uint64_t)(seconds * 1000.0) : 0;
    model_set_process(s->model, id, PROC_STOPPED, n->pid, 0);
    if (seconds > 0)
        model_event(s->model, EV_FAULT,
                    "suspended node %u for %g s (SIGSTOP): it answers no one until resumed", id,
                    seconds);
    else
        model_event(s->model, EV_FAULT,
                    "suspended node %u (SIGSTOP): it answers no one until resumed", id);
    return 0;
}

int sup_resume(struct supervisor *s, uint32_t id, char *err, size_t errlen)
{
    struct sup_node *n = sup_node(s, id);
    if (need_running(n, id, s, err, errlen) < 0)
        return -1;
    if (!n->stopped) {
        snprintf(err, errlen, "node %u is not suspended", id);
        return -1;
    }
    if (kill(n->pid, SIGCONT) < 0) {
        snprintf(err, errlen, "cannot resume node %u: %s", id, strerror(errno));
        return -1;
    }
    n->stopped = false;
    n->resume_at_ms = 0;
    model_set_process(s->model, id, PROC_RUNNING, n->pid, 0);
    model_event(s->model, EV_FAULT, "resumed node %u (SIGCONT)", id);
    return 0;
}

int sup_kill(struct supervisor *s, uint32_t id, char *err, size_t errlen)
{
    struct sup_node *n = sup_node(s, id);
    if (need_running(n, id, s, err, errlen) < 0)
        return -1;
    if (kill(n->pid, SIGKILL) < 0) {
        snprintf(err, errlen, "cannot kill node %u: %s", id, strerror(errno));
        return -1;
    }
    n->killed = true;
    model_set_process(s->model, id, PROC_EXITED, 0, -SIGKILL); /* gone now, reaped soon */
    model_event(s->model, EV_FAULT,
                "killed node %u (SIGKILL): the process is gone, its data dir stays", id);
    return 0;
}

int sup_restart(struct supervisor *s, uint32_t id, uint64_t now_ms, char *err, size_t errlen)
{
    struct sup_node *n = sup_node(s, id);
    if (!n) {
        snprintf(err, errlen, "node %u does not exist (this cluster has %zu nodes)", id,
                 s->cluster.n);
        return -1;
    }
    if (n->pid != 0) {
        /* Kill it first; it starts again once reaped (its data dir is locked until then). */
        if (!n->killed && kill(n->pid, SIGKILL) < 0) {
            snprintf(err, errlen, "cannot kill node %u: %s", id, strerror(errno));
            return -1;
        }
        n->killed = true;
        n->restart_pending = true;
        model_set_process(s->model, id, PROC_EXITED, 0, -SIGKILL);
        model_event(s->model, EV_FAULT, "killed node %u (SIGKILL) to restart it", id);
        return 0;
    }
    if (start_node(s, n, now_ms, err, errlen) < 0)
        return -1;
    model_event(s->model, EV_FAULT,
                "node %u restarted from its data dir (its log and term are on disk)", id);
    return 0;
}

/* ------------------------------------------------------------ control messages */

static int send_control(struct supervisor *s, struct sup_node *n, const Raftkv__Control *c)
{
    /* Each control a new seq: the wall clock in microseconds, or one more
     * than the last if the clock is behind. A node takes only new ones. */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t now_us = (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
    s->control_seq = now_us > s->control_seq ? now_us : s->control_seq + 1;
    Raftkv__Control copy = *c;
    copy.seq = s->control_seq;
    Raftkv__Envelope env = RAFTKV__ENVELOPE__INIT;
    env.cluster_id = s->cluster.cluster_id;
    env.from = 0;
    env.body_case = RAFTKV__ENVELOPE__BODY_CONTROL;
    env.control = &copy;
    if (wire_seal(&s->key, &env, &s->pack) < 0)
        return -1;
    return nn_send(n->control, s->pack.data, s->pack.len, NN_DONTWAIT) < 0 ? -1 : 0;
}

/* Send every fault we want this node to have. */
static void send_faults(struct supervisor *s, struct sup_node *n, uint64_t now_ms)
{
    uint32_t blocked[CLUSTER_MAX_NODES];
    size_t n_blocked = 0;
    for (uint32_t id = 1; id <= CLUSTER_MAX_NODES; id++)
        if (n->want_blocked & bit(id))
            blocked[n_blocked++] = id;
    Raftkv__Control c = RAFTKV__CONTROL__INIT;
    c.set_blocked = 1;
    c.n_blocked = n_blocked;
    c.blocked = blocked;
    c.set_drop = 1;
    c.drop_percent = s->drop_percent;
    c.set_delay = 1;
    c.delay_ms = s->delay_ms;
    c.set_speed = 1;
    c.speed = s->speed;
    c.set_frozen = 1;
    c.frozen = s->frozen;
    c.set_wire = 1;
    c.wire = s->wire_on;
    c.set_prevote = 1;
    c.prevote = s->prevote;
    c.set_check_quorum = 1;
    c.check_quorum = s->check_quorum;
    c.status_now = 1;
    n->last_control_ms = now_ms;
    send_control(s, n, &c);
}

static void send_faults_to_all(struct supervisor *s, uint64_t now_ms)
{
    for (size_t i = 0; i < s->cluster.n; i++)
        if (s->nodes[i].pid && !s->nodes[i].stopped)
            send_faults(s, &s->nodes[i], now_ms);
}

/* Does the node's last status show the faults we want? */
static bool faults_shown(const struct supervisor *s, const struct sup_node *n)
{
    const struct model_node *mn = model_node_const(s->model, n->id);
    if (!mn || !mn->have_status)
        return true; /* nothing to compare yet; sent when it reports */
    return mn->blocked_mask == n->want_blocked && mn->drop_percent == s->drop_percent &&
           mn->delay_ms == s->delay_ms && fabs(mn->speed - s->speed) < 1e-9 &&
           mn->frozen == s->frozen && mn->wire == s->wire_on && mn->prevote == s->prevote &&
           mn->check_quorum == s->check_quorum;
}

bool sup_faults_settled(const struct supervisor *s)
{
    for (size_t i = 0; i < s->cluster.n; i++) {
        const struct sup_node *n = &s->nodes[i];
        if (n->pid && !n->stopped && !n->killed && !faults_shown(s, n))
            return false;
    }
    return true;
}

int sup_isolate(struct supervisor *s, uint32_t id, uint64_t now_ms, char *err, size_t errlen)
{
    struct sup_node *n = sup_node(s, id);
    if (!n) {
        snprintf(err, errlen, "node %u does not exist (this cluster has %zu nodes)", id,
                 s->cluster.n);
        return -1;
    }
    for (size_t i = 0; i < s->cluster.n; i++) {
        struct sup_node *o = &s->nodes[i];
        o->want_blocked = o == n ? all_ids(s) & ~bit(id) : o->want_blocked | bit(id);
    }
    send_faults_to_all(s, now_ms);
    model_event(s->model, EV_FAULT, "isolated node %u: it can neither reach nor hear the others",
                id);
    return 0;
}

int sup_partition(struct supervisor *s, const uint32_t *groups, size_t n_groups, uint64_t now_ms,
                  char *err, size_t errlen)
{
    uint32_t all = all_ids(s), seen = 0;
    uint32_t g[CLUSTER_MAX_NODES + 1];
    size_t ng = 0;
    for (size_t i = 0; i < n_groups; i++) {
        if (groups[i] & ~all) {
            snprintf(err, errlen, "partition: no such node in group %zu", i + 1);
            return -1;
        }
        if (groups[i] & seen) {
            snprintf(err, errlen, "partition: a node is in two groups");
            return -1;
        }
        seen |= groups[i];
        g[ng++] = groups[i];
    }
    if (all & ~seen)
        g[ng++] = all & ~seen; /* everyone else */
    char text[128] = "";
    size_t used = 0;
    for (size_t i = 0; i < ng; i++) {
        char one[40];
        cluster_ids_text(g[i], one, sizeof one);
        used += (size_t)snprintf(text + used, sizeof text - used, "%s{%s}", i ? " | " : "", one);
        for (size_t k = 0; k < s->cluster.n; k++)
            if (g[i] & bit(s->nodes[k].id))
                s->nodes[k].want_blocked = all & ~g[i];
    }
    send_faults_to_all(s, now_ms);
    model_event(s->model, EV_FAULT, "partitioned the network: %s; messages between groups are lost",
                text);
    return 0;
}

void sup_heal(struct supervisor *s, uint64_t now_ms)
{
    for (size_t i = 0; i < s->cluster.n; i++)
        s->nodes[i].want_blocked = 0;
    s->drop_percent = 0;
    s->delay_ms = 0;
    send_faults_to_all(s, now_ms);
    model_event(s->model, EV_FAULT, "healed the network: no partitions, no losses, no delays");
}

int sup_drop(struct supervisor *s, uint32_t percent, uint64_t now_ms, char *err, size_t errlen)
{
    if (percent > 100) {
        snprintf(err, errlen, "drop: percent must be 0-100, got %u", percent);
        return -1;
    }
    s->drop_percent = percent;
    send_faults_to_all(s, now_ms);
    model_event(s->model, EV_FAULT, "every node now loses %u%% of the messages it sends", percent);
    return 0;
}

int sup_delay(struct supervisor *s, uint32_t ms, uint64_t now_ms, char *err, size_t errlen)
{
    if (ms > 60000) {
        snprintf(err, errlen, "delay: at most 60000 ms, got %u", ms);
        return -1;
    }
    s->delay_ms = ms;
    send_faults_to_all(s, now_ms);
    model_event(s->model, EV_FAULT, "every node now holds each message it sends for %u ms", ms);
    return 0;
}

int sup_speed(struct supervisor *s, double speed, uint64_t now_ms, char *err, size_t errlen)
{
    if (!(speed >= 0.01 && speed <= 10.0)) {
        snprintf(err, errlen, "speed: must be between 0.01 and 10, got %g", speed);
        return -1;
    }
    s->speed = speed;
    send_faults_to_all(s, now_ms);
    model_event(s->model, EV_FAULT, "speed %g: node timers now run %s", speed,
                speed < 1   ? "slower than real time"
                : speed > 1 ? "faster than real time"
                            : "in real time");
    return 0;
}

int sup_add_node(struct supervisor *s, uint64_t now_ms, uint32_t *id, char *err, size_t errlen)
{
    uint32_t free_id = 0;
    for (uint32_t i = 1; i <= CLUSTER_MAX_NODES && free_id == 0; i++)
        if (cluster_find(&s->cluster, i) == NULL)
            free_id = i;
    if (free_id == 0) {
        snprintf(err, errlen, "add: there are already %d nodes, the most a cluster has",
                 CLUSTER_MAX_NODES);
        return -1;
    }
    int ports[2];
    if (free_ports(ports, 2, err, errlen) < 0)
        return -1;
    char peer[CLUSTER_URL_MAX], client[64];
    sup_peer_url(s, free_id, ports[0], peer, sizeof peer);
    snprintf(client, sizeof client, "127.0.0.1:%d", ports[1]);
    if (cluster_add(&s->cluster, free_id, peer, client, err, errlen) < 0)
        return -1;
    size_t i = s->cluster.n - 1;
    struct sup_node *n = &s->nodes[i];
    memset(n, 0, sizeof *n);
    n->id = free_id;
    n->control = -1;
    n->joined = true;
    if (sup_node_paths(s, n, err, errlen) < 0 || open_control_socket(s, i, err, errlen) < 0 ||
        model_add_node(s->model, free_id, client) == NULL ||
        start_node(s, n, now_ms, err, errlen) < 0) {
        s->cluster.n--; /* as if it never was */
        return -1;
    }
    model_event(s->model, EV_FAULT,
                "started node %u (%s) with --join: it waits, granting no votes, until the leader "
                "adds it",
                free_id, client);
    *id = free_id;
    return 0;
}

int sup_remove_node(struct supervisor *s, uint32_t id, char *err, size_t errlen)
{
    struct sup_node *n = sup_node(s, id);
    if (!n) {
        snprintf(err, errlen, "node %u does not exist", id);
        return -1;
    }
    n->removing = true;
    return 0;
}

/* A node being removed whose removal is in force: stop it, drop its card. */
static void sup_finish_removals(struct supervisor *s)
{
    bool any = false;
    for (size_t i = 0; i < s->cluster.n; i++)
        any |= s->nodes[i].removing;
    if (!any)
        return;
    struct model_view v;
    model_get_view(s->model, &v);
    if (v.voters_mask == 0)
        return;
    for (size_t i = 0; i < s->cluster.n; i++) {
        struct sup_node *n = &s->nodes[i];
        if (!n->removing || ((v.voters_mask | v.learners_mask) & (1u << n->id)))
            continue;
        n->removing = false;
        if (n->pid != 0 && !n->killed)
            kill(n->pid, n->stopped ? SIGKILL : SIGTERM);
        model_event(s->model, EV_FAULT, "node %u left the configuration: its process is stopped",
                    n->id);
        model_remove_node(s->model, n->id);
    }
}

int sup_raft_options(struct supervisor *s, int prevote, int check_quorum, uint64_t now_ms,
                     char *err, size_t errlen)
{
    (void)err;
    (void)errlen;
    if (prevote >= 0)
        s->prevote = prevote != 0;
    if (check_quorum >= 0)
        s->check_quorum = check_quorum != 0;
    send_faults_to_all(s, now_ms);
    if (prevote >= 0)
        model_event(s->model, EV_FAULT, "pre-vote %s: %s", s->prevote ? "on" : "off",
                    s->prevote ? "a node that times out asks first whether it could win"
                               : "a node that times out raises its term at once");
    if (check_quorum >= 0)
        model_event(s->model, EV_FAULT, "check-quorum %s: %s", s->check_quorum ? "on" : "off",
                    s->check_quorum
                        ? "a leader without a majority steps down; followers stick to a live leader"
                        : "a leader cut off from the majority keeps believing it leads");
    return 0;
}

int sup_timeout(struct supervisor *s, uint32_t id, uint64_t now_ms, char *err, size_t errlen)
{
    struct sup_node *n = sup_node(s, id);
    if (need_running(n, id, s, err, errlen) < 0)
        return -1;
    if (n->stopped) {
        snprintf(err, errlen, "node %u is suspended", id);
        return -1;
    }
    Raftkv__Control c = RAFTKV__CONTROL__INIT;
    c.timeout_now = 1;
    c.status_now = 1;
    model_note_forced_timeout(s->model, id);
    if (send_control(s, n, &c) < 0)
        n->timeout_until_ms = now_ms + TIMEOUT_RETRY_MS; /* not connected yet: retry */
    model_event(s->model, EV_FAULT, "told node %u to time out now", id);
    return 0;
}

void sup_freeze(struct supervisor *s, bool frozen, uint64_t now_ms)
{
    s->frozen = frozen;
    send_faults_to_all(s, now_ms);
    if (frozen)
        model_event(s->model, EV_FAULT,
                    "froze the cluster: every node's clock stops and every peer message is held "
                    "(n delivers the oldest, x drops it, :thaw lets time run)");
    else
        model_event(s->model, EV_FAULT,
                    "thawed the cluster: held messages are delivered and time runs again");
}

int sup_release(struct supervisor *s, uint32_t to, uint32_t from, uint64_t id, bool deliver,
                char *err, size_t errlen)
{
    struct sup_node *n = sup_node(s, to);
    if (need_running(n, to, s, err, errlen) < 0)
        return -1;
    Raftkv__HeldRef ref = RAFTKV__HELD_REF__INIT;
    Raftkv__HeldRef *refs[1] = {&ref};
    ref.from = from;
    ref.id = id;
    Raftkv__Control c = RAFTKV__CONTROL__INIT;
    if (deliver) {
        c.n_deliver = 1;
        c.deliver = refs;
    } else {
        c.n_discard = 1;
        c.discard = refs;
    }
    c.status_now = 1;
    if (send_control(s, n, &c) < 0) {
        snprintf(err, errlen, "cannot reach node %u: %s", to, nn_strerror(nn_errno()));
        return -1;
    }
    return 0;
}

int sup_tick_node(struct supervisor *s, uint32_t id, uint32_t ms, char *err, size_t errlen)
{
    struct sup_node *n = sup_node(s, id);
    if (need_running(n, id, s, err, errlen) < 0)
        return -1;
    Raftkv__Control c = RAFTKV__CONTROL__INIT;
    c.tick_ms = ms;
    c.status_now = 1;
    if (send_control(s, n, &c) < 0) {
        snprintf(err, errlen, "cannot reach node %u: %s", id, nn_strerror(nn_errno()));
        return -1;
    }
    return 0;
}

void sup_wire(struct supervisor *s, bool on, uint64_t now_ms)
{
    s->wire_on = on;
    send_faults_to_all(s, now_ms);
}

/* ------------------------------------------------------------ loop */

void sup_tick(struct supervisor *s, uint64_t now_ms)
{
    reap(s, now_ms);
    sup_finish_removals(s);
    for (size_t i = 0; i < s->cluster.n; i++) {
        struct sup_node *n = &s->nodes[i];
        if (!n->pid || n->killed)
            continue;
        if (n->stopped && n->resume_at_ms && now_ms >= n->resume_at_ms) {
            char err[128];
            sup_resume(s, n->id, err, sizeof err);
        }
        if (n->stopped)
            continue;
        if (n->timeout_until_ms) {
            Raftkv__Control c = RAFTKV__CONTROL__INIT;
            c.timeout_now = 1;
            if (send_control(s, n, &c) == 0 || now_ms >= n->timeout_until_ms)
                n->timeout_until_ms = 0;
        }
        if (!faults_shown(s, n) && now_ms - n->last_control_ms >= CONTROL_RESEND_MS)
            send_faults(s, n, now_ms);
    }
}

/* A node's WireReport into the model, record by record. */
static void apply_wire_report(struct supervisor *s, uint32_t node, const Raftkv__WireReport *rep)
{
    s->model->wire.unreported += rep->unreported;
    for (size_t i = 0; i < rep->n_records; i++) {
        const Raftkv__WireRecord *w = rep->records[i];
        struct wire_rec r = {
            .node = node,
            .event = w->event,
            .lost = w->lost,
            .type = w->type,
            .from = w->from,
            .to = w->to,
            .id = w->id,
            .term = w->term,
            .last_log_index = w->last_log_index,
            .last_log_term = w->last_log_term,
            .granted = w->granted,
            .leader_hint = w->leader_hint,
            .leader_ago_ms = w->leader_ago_ms,
            .prev_index = w->prev_index,
            .prev_term = w->prev_term,
            .commit = w->commit,
            .n_entries = w->n_entries,
            .success = w->success,
            .match_index = w->match_index,
            .rejected_index = w->rejected_index,
            .hint_index = w->hint_index,
            .hint_term = w->hint_term,
            .snapshot_index = w->snapshot_index,
            .snapshot_term = w->snapshot_term,
            .offset = w->offset,
            .next_offset = w->next_offset,
            .done = w->done,
            .heartbeat = w->heartbeat,
            .count = w->count,
        };
        /* A node speaks only for the messages it sent or received. */
        if (r.from != node && r.to != node)
            continue;
        model_apply_wire(s->model, &r);
    }
}

void sup_receive(struct supervisor *s)
{
    for (int i = 0; i < 1000; i++) {
        void *msg = NULL;
        int len = nn_recv(s->status_sock, &msg, NN_MSG, NN_DONTWAIT);
        if (len < 0)
            break;
        Raftkv__Envelope *env = NULL;
        enum wire_verdict v = wire_open(&s->key, s->cluster.cluster_id, msg, (size_t)len, &env);
        nn_freemsg(msg);
        if (v != WIRE_OK) {
            s->bad_statuses++;
            if (v == WIRE_BAD_MAC)
                s->auth_failures++;
            continue;
        }
        if (env->body_case == RAFTKV__ENVELOPE__BODY_STATUS && env->status) {
            s->statuses++;
            model_apply_status(s->model, env->status);
        } else if (env->body_case == RAFTKV__ENVELOPE__BODY_WIRE && env->wire &&
                   sup_node(s, env->from) != NULL) {
            apply_wire_report(s, env->from, env->wire);
        } else {
            s->bad_statuses++;
        }
        raftkv__envelope__free_unpacked(env, NULL);
    }
}

/* ------------------------------------------------------------ shutdown */

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static bool any_running(const struct supervisor *s)
{
    for (size_t i = 0; i < s->cluster.n; i++)
        if (s->nodes[i].pid)
            return true;
    return false;
}

void sup_close(struct supervisor *s)
{
    for (size_t i = 0; i < s->cluster.n; i++) {
        struct sup_node *n = &s->nodes[i];
        n->restart_pending = false;
        if (n->pid) {
            kill(n->pid, SIGTERM);
            kill(n->pid, SIGCONT); /* a stopped process must run to exit */
        }
    }
    for (int waited = 0; any_running(s) && waited < STOP_GRACE_MS; waited += 10) {
        reap(s, 0);
        if (any_running(s))
            sleep_ms(10);
    }
    for (size_t i = 0; i < s->cluster.n; i++)
        if (s->nodes[i].pid)
            kill(s->nodes[i].pid, SIGKILL);
    while (any_running(s)) {
        reap(s, 0);
        if (any_running(s))
            sleep_ms(10);
    }
    for (size_t i = 0; i < s->cluster.n; i++)
        if (s->nodes[i].control >= 0)
            nn_close(s->nodes[i].control);
    if (s->status_sock >= 0)
        nn_close(s->status_sock);
    s->status_sock = -1;
    buf_free(&s->pack);
    if (s->remove_dir && s->dir[0])
        nftw(s->dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}
