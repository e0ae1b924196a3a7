/* cockpit_main.c - raftkv: launch a cluster of raftkv-node processes, show
 * every node live and break it from the keyboard (or from a script).
 *
 * One thread, one poll() loop: the status socket, the keyboard and the
 * client's socket, with a timeout of at most 50 ms, so nothing ever waits on
 * a node. */

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <locale.h>
#include <ncurses.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "cockpit.h"
#include "password.h"
#include "record.h"
#include "replay.h"

#define POLL_MS 50
#define DRAW_MS 80
#define RECORD_FLUSH_MS 1000

static volatile sig_atomic_t quit_signal;
static struct termios saved_termios;
static volatile sig_atomic_t termios_saved;

void cockpit_format_time(uint64_t wall_ms, char *out, size_t size, bool millis)
{
    time_t t = (time_t)(wall_ms / 1000);
    struct tm tm;
    localtime_r(&t, &tm);
    char hms[16];
    strftime(hms, sizeof hms, "%H:%M:%S", &tm);
    if (millis)
        snprintf(out, size, "%s.%03u", hms, (unsigned)(wall_ms % 1000));
    else
        snprintf(out, size, "%s.%u", hms, (unsigned)(wall_ms % 1000) / 100);
}

void cockpit_message(struct cockpit *ck, bool error, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ck->ui.message, sizeof ck->ui.message, fmt, ap);
    va_end(ap);
    ck->ui.message_error = error;
    ck->ui.message_ms = ck->now_ms;
    ck->ui.dirty = true;
    if (!ck->ui.active && error) {
        printf("error: %s\n", ck->ui.message);
        fflush(stdout);
    }
}

void cockpit_hints(const struct cockpit *ck, struct client_hints *h)
{
    struct model_view v;
    model_get_view(&ck->model, &v);
    h->leader = v.leader;
    h->live_mask = 0;
    for (size_t i = 0; i < ck->model.n; i++)
        if (model_node_live(&ck->model, &ck->model.nodes[i]))
            h->live_mask |= 1u << ck->model.nodes[i].id;
    h->speed = ck->sup.speed;
}

/* ------------------------------------------------------------ signals */

int cockpit_quit_signal(void)
{
    return (int)quit_signal;
}

static void on_quit_signal(int sig)
{
    quit_signal = sig;
}

/* A crash: take the nodes down, give the terminal back, die as asked. */
static void on_fatal_signal(int sig)
{
    sup_kill_all_now();
    if (termios_saved) {
        static const char reset[] = "\033[0m\033[?1049l\033[?25h\r\n";
        tcsetattr(STDIN_FILENO, TCSANOW, &saved_termios);
        ssize_t w = write(STDOUT_FILENO, reset, sizeof reset - 1);
        (void)w;
    }
    signal(sig, SIG_DFL);
    raise(sig);
}

static void install_signals(void)
{
    struct sigaction sa = {.sa_handler = on_quit_signal};
    sigemptyset(&sa.sa_mask);
    int quits[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT};
    for (size_t i = 0; i < sizeof quits / sizeof quits[0]; i++)
        sigaction(quits[i], &sa, NULL);
    struct sigaction fatal = {.sa_handler = on_fatal_signal, .sa_flags = SA_RESETHAND};
    sigemptyset(&fatal.sa_mask);
    int fatals[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT};
    for (size_t i = 0; i < sizeof fatals / sizeof fatals[0]; i++)
        sigaction(fatals[i], &fatal, NULL);
    signal(SIGPIPE, SIG_IGN);
}

/* ------------------------------------------------------------ options */

static void usage(FILE *f)
{
    fprintf(f, "usage: raftkv [--nodes N] [--data DIR] [--config FILE] [--speed X]\n"
               "              [--headless] [--script FILE] [--node-bin PATH] [--port-base P]\n"
               "              [--requirepass-file FILE] [--record FILE] [--lease-reads]\n"
               "       raftkv --replay FILE [--headless]\n"
               "\n"
               "Starts N raftkv-node processes (default 3, at most 9) on loopback ports and\n"
               "shows every node live; keys and ':' commands break and heal the cluster.\n"
               "\n"
               "  --nodes N       cluster size (ignored with --config)\n"
               "  --data DIR      keep cluster.conf, node<N>/ data and node<N>.log here\n"
               "                  (default: a temporary dir, removed on quit); a\n"
               "                  cluster.conf already in DIR is used again\n"
               "  --config FILE   launch the cluster this file describes\n"
               "  --speed X       node timers run at factor X (default 0.1 on screen, so\n"
               "                  heartbeats can be watched; 1 with --headless)\n"
               "  --headless      no screen: print events as lines\n"
               "  --script FILE   run cockpit commands from FILE, one a line; with\n"
               "                  --headless, exit 0 when every expectation held\n"
               "  --node-bin PATH the raftkv-node program (default: next to raftkv)\n"
               "  --port-base P   use ports P.. (clients P+N..P+2N-1; peers talk over Unix\n"
               "                  sockets in the data dir, or P..P+N-1 if its path is long)\n"
               "  --requirepass-file FILE  every node asks clients for this password (AUTH);\n"
               "                  the cockpit's own client sends it\n"
               "  --record FILE   write everything seen and done to FILE (JSON lines)\n"
               "  --lease-reads   nodes serve reads on leader leases (raftkv-node\n"
               "                  --lease-reads on; README, \"Lease reads\")\n"
               "  --replay FILE   show a recording again, starting no node; with\n"
               "                  --headless, print its event lines\n"
               "\n"
               "Script lines: wait 2s | wait 500ms, wait-leader, wait-client, echo TEXT,\n"
               "  expect leader N|none, expect role N ROLE, expect getval KEY VALUE|None,\n"
               "  expect kv N|all KEY VALUE|None,\n"
               "  expect log N|all committed|uncommitted|absent TEXT,\n"
               "  expect event TEXT (an event since the last command), expect held N\n"
               "  (frozen: N messages held), expect wire TEXT (a message on the wire\n"
               "  since the last command reads TEXT), and every command below; a client\n"
               "  command ending in ' &' does not wait for its answer (frozen, client\n"
               "  commands wait for :thaw).\n"
               "  Expectations are checked again and again until a deadline (10 s at\n"
               "  speed 1, longer when slower). '#' starts a comment.\n"
               "\n"
               "Commands (':' on screen):\n");
    const char *lines[64];
    size_t n = command_help_lines(lines, 64);
    for (size_t i = 0; i < n; i++)
        fprintf(f, "%s\n", lines[i]);
    fprintf(f, "\nKeys:\n");
    n = keys_help_lines(lines, 64);
    for (size_t i = 0; i < n; i++)
        fprintf(f, "%s\n", lines[i]);
}

static int parse_options(int argc, char **argv, struct cockpit_options *o)
{
    static const struct option longopts[] = {
        {"nodes", required_argument, NULL, 'n'},
        {"data", required_argument, NULL, 'd'},
        {"config", required_argument, NULL, 'c'},
        {"speed", required_argument, NULL, 's'},
        {"headless", no_argument, NULL, 'H'},
        {"script", required_argument, NULL, 'S'},
        {"node-bin", required_argument, NULL, 'b'},
        {"port-base", required_argument, NULL, 'p'},
        {"requirepass-file", required_argument, NULL, 'P'},
        {"record", required_argument, NULL, 'R'},
        {"lease-reads", no_argument, NULL, 'L'},
        {"replay", required_argument, NULL, 'Y'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    memset(o, 0, sizeof *o);
    o->nodes = 3;
    int c;
    char *end;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {
        case 'n': {
            long n = strtol(optarg, &end, 10);
            if (*end || n < 1 || n > CLUSTER_MAX_NODES) {
                fprintf(stderr, "raftkv: --nodes must be 1-%d, got '%s'\n", CLUSTER_MAX_NODES,
                        optarg);
                return -1;
            }
            o->nodes = (size_t)n;
            break;
        }
        case 'd':
            o->data_dir = optarg;
            break;
        case 'c':
            o->config_path = optarg;
            break;
        case 's':
            o->speed = strtod(optarg, &end);
            if (*end || !(o->speed >= 0.01 && o->speed <= 10)) {
                fprintf(stderr, "raftkv: --speed must be between 0.01 and 10, got '%s'\n", optarg);
                return -1;
            }
            o->speed_given = true;
            break;
        case 'H':
            o->headless = true;
            break;
        case 'S':
            o->script_path = optarg;
            break;
        case 'b':
            o->node_bin = optarg;
            break;
        case 'p': {
            long p = strtol(optarg, &end, 10);
            if (*end || p < 1024 || p > 65000) {
                fprintf(stderr, "raftkv: --port-base must be 1024-65000, got '%s'\n", optarg);
                return -1;
            }
            o->port_base = (int)p;
            break;
        }
        case 'P':
            o->requirepass_file = optarg;
            break;
        case 'R':
            o->record_path = optarg;
            break;
        case 'L':
            o->lease_reads = true;
            break;
        case 'Y':
            o->replay_path = optarg;
            break;
        case 'h':
            usage(stdout);
            exit(0);
        default: /* one line, not the whole help: the error stays in sight */
            if (optopt != 0)
                fprintf(stderr, "raftkv: option %s needs a value (try --help)\n", argv[optind - 1]);
            else
                fprintf(stderr, "raftkv: unknown option '%s' (try --help)\n", argv[optind - 1]);
            return -1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "raftkv: unexpected argument '%s'\n", argv[optind]);
        return -1;
    }
    if (!o->speed_given)
        o->speed = o->headless ? 1.0 : 0.1;
    if (o->replay_path && (o->record_path || o->script_path || o->config_path || o->data_dir)) {
        fprintf(stderr, "raftkv: --replay starts no node: it takes only --headless\n");
        return -1;
    }
    return 0;
}

static uint64_t random_client_id(void)
{
    uint64_t id = 0;
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        if (read(fd, &id, sizeof id) != (ssize_t)sizeof id)
            id = 0;
        close(fd);
    }
    if (!id)
        id = clock_wall_ms() ^ ((uint64_t)getpid() << 32);
    return id ? id : 1;
}

/* ------------------------------------------------------------ the loop */

void cockpit_print_events(struct cockpit *ck)
{
    const struct model *m = &ck->model;
    uint64_t seq = ck->printed_events;
    if (seq < model_first_event(m))
        seq = model_first_event(m);
    for (; seq < m->n_events; seq++) {
        const struct model_event *e = model_event_at(m, seq);
        char when[32];
        cockpit_format_time(e->wall_ms, when, sizeof when, true);
        printf("%s  %s%s\n", when, e->kind == EV_VIOLATION ? "!! " : "", e->text);
    }
    ck->printed_events = m->n_events;
    fflush(stdout);
}

static void take_client_results(struct cockpit *ck)
{
    struct client_result r;
    while (client_take_result(&ck->client, &r)) {
        if (script_on_client_result(ck, &r))
            continue; /* an expectation's own check */
        if (r.ok)
            model_event(&ck->model, EV_CLIENT,
                        "client: %s -> %s (node %u answered in %" PRIu64 " ms)", r.command, r.text,
                        r.node, r.ms);
        else
            model_event(&ck->model, EV_CLIENT, "client: %s -> %s", r.command, r.text);
        cockpit_message(ck, !r.ok, "%s -> %s", r.command, r.text);
    }
}

static void update_frozen(struct cockpit *ck)
{
    if (ck->ui.paused && !ck->frozen) {
        ck->frozen = malloc(sizeof *ck->frozen);
        if (ck->frozen)
            *ck->frozen = ck->model;
    } else if (!ck->ui.paused && ck->frozen) {
        free(ck->frozen);
        ck->frozen = NULL;
    }
}

static void read_keys(struct cockpit *ck)
{
    int key;
    while (!ck->quit && (key = getch()) != ERR) {
        int flags = keys_handle(ck, key);
        if (flags & KEY_REDRAW)
            ck->ui.dirty = true;
        if (flags & KEY_QUIT)
            ck->quit = true;
    }
}

static void run_loop(struct cockpit *ck)
{
    uint64_t last_flush = 0;
    while (!ck->quit && !quit_signal) {
        struct pollfd fds[3];
        nfds_t n = 0;
        fds[n++] = (struct pollfd){.fd = ck->sup.status_fd, .events = POLLIN};
        if (ck->ui.active)
            fds[n++] = (struct pollfd){.fd = STDIN_FILENO, .events = POLLIN};
        short events;
        int cfd = client_poll_fd(&ck->client, &events);
        if (cfd >= 0)
            fds[n++] = (struct pollfd){.fd = cfd, .events = events};
        if (poll(fds, n, POLL_MS) < 0 && errno != EINTR)
            break;

        ck->now_ms = clock_monotonic_ms();
        model_set_time(&ck->model, ck->now_ms, clock_wall_ms());
        sup_receive(&ck->sup);
        sup_tick(&ck->sup, ck->now_ms);
        model_tick(&ck->model);
        take_client_results(ck);
        script_tick(ck);
        struct client_hints h; /* after the script, so its commands leave at once */
        cockpit_hints(ck, &h);
        if (!ck->sup.frozen) /* frozen: client commands wait */
            client_tick(&ck->client, ck->now_ms, &h);
        take_client_results(ck);

        if (ck->recorder && ck->now_ms - last_flush >= RECORD_FLUSH_MS) {
            record_flush(ck->recorder);
            last_flush = ck->now_ms;
        }
        if (!ck->ui.active) {
            cockpit_print_events(ck);
            continue;
        }
        read_keys(ck);
        update_frozen(ck);
        bool due = !ck->ui.paused && ck->now_ms - ck->ui.last_draw_ms >= DRAW_MS;
        if ((due || ck->ui.dirty) && !ck->quit) {
            draw_screen(ck);
            ck->ui.dirty = false;
            ck->ui.last_draw_ms = ck->now_ms;
        }
    }
}

static void start_screen(struct cockpit *ck)
{
    if (tcgetattr(STDIN_FILENO, &saved_termios) == 0)
        termios_saved = 1;
    initscr();
    cbreak();
    noecho();
    nonl();
    keypad(stdscr, TRUE);
    nodelay(stdscr, TRUE);
    set_escdelay(25);
    curs_set(0);
    draw_init(ck);
    ck->ui.active = true;
    ck->ui.dirty = true;
}

static void stop_screen(struct cockpit *ck)
{
    if (!ck->ui.active)
        return;
    endwin();
    ck->ui.active = false;
}

/* raftkv --replay FILE: no supervisor, no node. */
static int replay_main(struct cockpit *ck)
{
    char err[512];
    struct replay *rp = replay_load(ck->opt.replay_path, err, sizeof err);
    if (rp == NULL) {
        fprintf(stderr, "raftkv: %s\n", err);
        return 2;
    }
    install_signals();
    replay_setup(ck, rp);
    if (ck->opt.headless) {
        replay_print_all(ck, rp);
    } else {
        start_screen(ck);
        replay_run(ck, rp);
        stop_screen(ck);
    }
    replay_close(rp);
    model_free(&ck->model);
    return 0;
}

int main(int argc, char **argv)
{
    static struct cockpit cockpit; /* large: the model keeps its event log */
    struct cockpit *ck = &cockpit;
    char err[512];
    setlocale(LC_ALL, "");
    if (parse_options(argc, argv, &ck->opt) < 0)
        return 2;
    if (!ck->opt.headless && (!isatty(STDIN_FILENO) || !isatty(STDOUT_FILENO))) {
        fprintf(stderr, "raftkv: the cockpit needs a terminal (or use --headless)\n");
        return 2;
    }
    if (ck->opt.replay_path)
        return replay_main(ck);
    if (ck->opt.script_path && !(ck->script = script_load(ck->opt.script_path, err, sizeof err))) {
        fprintf(stderr, "raftkv: %s\n", err);
        return 2;
    }
    install_signals();

    struct sup_options so = {
        .nodes = ck->opt.nodes,
        .data_dir = ck->opt.data_dir,
        .config_path = ck->opt.config_path,
        .node_bin = ck->opt.node_bin,
        .port_base = ck->opt.port_base,
        .speed = ck->opt.speed,
        .requirepass_file = ck->opt.requirepass_file,
        .lease_reads = ck->opt.lease_reads,
    };
    if (ck->opt.requirepass_file != NULL &&
        password_load(ck->opt.requirepass_file, &ck->password, err, sizeof err) < 0) {
        fprintf(stderr, "raftkv: %s\n", err);
        script_free(ck->script);
        return 2;
    }
    if (sup_open(&ck->sup, &so, err, sizeof err) < 0) {
        fprintf(stderr, "raftkv: %s\n", err);
        sup_close(&ck->sup);
        script_free(ck->script);
        free(ck->password);
        return 1;
    }
    ck->now_ms = clock_monotonic_ms();
    model_init(&ck->model, &ck->sup.cluster);
    model_set_time(&ck->model, ck->now_ms, clock_wall_ms());
    sup_attach_model(&ck->sup, &ck->model);
    if (ck->opt.record_path) {
        ck->recorder = record_open(ck->opt.record_path, &ck->sup.cluster, ck->sup.cluster_path,
                                   ck->opt.speed, ck->now_ms, clock_wall_ms(), err, sizeof err);
        if (ck->recorder == NULL) {
            fprintf(stderr, "raftkv: %s\n", err);
            sup_close(&ck->sup);
            model_free(&ck->model);
            script_free(ck->script);
            free(ck->password);
            return 1;
        }
        record_attach(ck->recorder, &ck->model);
    }
    client_init(&ck->client, &ck->sup.cluster, random_client_id());
    ck->client.password = ck->password;
    ck->ui.selected = ck->sup.cluster.nodes[0].id;

    if (!ck->opt.headless)
        start_screen(ck);
    sup_start_all(&ck->sup, ck->now_ms);
    run_loop(ck);

    stop_screen(ck);
    if (quit_signal && ck->script && !script_finished(ck->script)) {
        fprintf(stderr, "raftkv: stopped by signal %d before the script finished\n",
                (int)quit_signal);
        ck->exit_code = 1;
    }
    if (ck->opt.headless)
        model_event(&ck->model, EV_INFO, "stopping every node");
    if (ck->opt.headless)
        cockpit_print_events(ck);
    /* The recording ends where the printed lines do. */
    memset(&ck->model.observer, 0, sizeof ck->model.observer);
    if (record_close(ck->recorder, err, sizeof err) < 0) {
        fprintf(stderr, "raftkv: %s\n", err);
        ck->exit_code = ck->exit_code ? ck->exit_code : 1;
    }
    ck->recorder = NULL;
    sup_close(&ck->sup);
    client_close(&ck->client);
    model_free(&ck->model);
    free(ck->frozen);
    script_free(ck->script);
    free(ck->password);
    return ck->exit_code;
}
