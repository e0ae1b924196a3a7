/* cli_main.c - raftkv-cli: flags, then one command or an interactive prompt. */
#include <editline/readline.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <termios.h>
#include <unistd.h>

#include "cli_commands.h"
#include "cli_conn.h"
#include "cli_line.h"
#include "cluster.h"

#define DEFAULT_ADDRESS "127.0.0.1:6401"
#define DEFAULT_TIMEOUT_S 5.0
#define MAX_TIMEOUT_S 86400.0
#define USAGE_LINE                                                                                 \
    "usage: raftkv-cli [--config FILE | --connect HOST:PORT] [--timeout S] [--askpass]\n"          \
    "                  [COMMAND ...]\n"
#define HISTORY_FILE ".raftkv_history"
#define HISTORY_MAX 1000

static void print_usage(FILE *out)
{
    fprintf(out, USAGE_LINE
            "\n"
            "  --config FILE       the cluster file: every node by id; unreachable nodes are\n"
            "                      passed over for the others\n"
            "  --connect HOST:PORT the node to talk to first (default " DEFAULT_ADDRESS ")\n"
            "  --timeout S         seconds one command may take, retries included (default "
            "5)\n"
            "  --askpass           ask for the nodes' password (AUTH) on the terminal; without\n"
            "                      it, the REDISCLI_AUTH environment variable is used if set\n"
            "  --help              this text\n"
            "\n"
            "Without a command: an interactive prompt. With one: run it, print the answer and\n"
            "exit 0, or 1 when it failed, 2 on wrong arguments.\n"
            "\n");
    cli_command_help(out);
}

/* The flags, as given. */
struct cli_options {
    const char *config;
    const char *connect;
    double timeout_s;
    bool askpass;
};

/* Returns the index of the first command word, -1 to exit 0 (--help), -2 on bad flags. */
static int parse_flags(int argc, char **argv, struct cli_options *opt)
{
    static const struct option longopts[] = {
        {"config", required_argument, NULL, 'c'},  {"connect", required_argument, NULL, 'a'},
        {"timeout", required_argument, NULL, 't'}, {"askpass", no_argument, NULL, 'p'},
        {"help", no_argument, NULL, 'h'},          {NULL, 0, NULL, 0},
    };
    opt->config = NULL;
    opt->connect = NULL;
    opt->timeout_s = DEFAULT_TIMEOUT_S;
    opt->askpass = false;
    int ch;
    while ((ch = getopt_long(argc, argv, "+h", longopts, NULL)) != -1) {
        switch (ch) {
        case 'c':
            opt->config = optarg;
            break;
        case 'a':
            opt->connect = optarg;
            break;
        case 't': {
            char *end;
            errno = 0;
            double t = strtod(optarg, &end);
            if (errno != 0 || end == optarg || *end != '\0' || !isfinite(t) || t <= 0 ||
                t > MAX_TIMEOUT_S) {
                fprintf(stderr, "raftkv-cli: --timeout must be seconds above 0, got '%s'\n",
                        optarg);
                return -2;
            }
            opt->timeout_s = t;
            break;
        }
        case 'p':
            opt->askpass = true;
            break;
        case 'h':
            return -1;
        default: /* getopt has said what is wrong */
            return -2;
        }
    }
    return optind;
}

/* Fill the node table from the flags. Returns 0, or -1 after printing the error. */
static int setup_nodes(struct cli_conn *c, const struct cli_options *opt)
{
    char err[512];
    if (opt->config != NULL) {
        struct cluster cluster;
        if (cluster_load(opt->config, &cluster, err, sizeof err) < 0) {
            fprintf(stderr, "error: %s\n", err);
            return -1;
        }
        if (cli_conn_add_cluster(c, &cluster) < 0 || cluster.n == 0) {
            fprintf(stderr, "error: %s: no usable nodes\n", opt->config);
            return -1;
        }
    }
    if (opt->connect != NULL || opt->config == NULL) {
        const char *address = opt->connect != NULL ? opt->connect : DEFAULT_ADDRESS;
        char host[CLUSTER_HOST_MAX];
        int port;
        if (cluster_parse_hostport(address, host, sizeof host, &port, err, sizeof err) < 0) {
            fprintf(stderr, "error: --connect %s: %s\n", address, err);
            return -1;
        }
        int index = cli_conn_add_node(c, 0, host, port);
        if (index < 0) {
            fprintf(stderr, "error: --connect %s: too many nodes\n", address);
            return -1;
        }
        cli_conn_select(c, (size_t)index);
    }
    return 0;
}

/* Read a password from the terminal without echoing it. NULL when there is
 * no terminal or nothing was typed. */
static char *ask_password(void)
{
    FILE *tty = fopen("/dev/tty", "r+");
    if (tty == NULL)
        return NULL;
    struct termios old, quiet;
    bool echo_off = tcgetattr(fileno(tty), &old) == 0;
    if (echo_off) {
        quiet = old;
        quiet.c_lflag &= ~(tcflag_t)ECHO;
        tcsetattr(fileno(tty), TCSAFLUSH, &quiet);
    }
    fputs("Please input password: ", tty);
    fflush(tty);
    char *line = NULL;
    size_t cap = 0;
    ssize_t len = getline(&line, &cap, tty);
    if (echo_off)
        tcsetattr(fileno(tty), TCSAFLUSH, &old);
    fputc('\n', tty);
    fclose(tty);
    while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
        line[--len] = '\0';
    if (len <= 0) {
        free(line);
        return NULL;
    }
    return line;
}

/* The password from --askpass or REDISCLI_AUTH (as redis-cli). Returns 0, or
 * -1 after printing the error. */
static int setup_password(struct cli_conn *c, const struct cli_options *opt)
{
    if (opt->askpass) {
        c->password = ask_password();
        if (c->password == NULL) {
            fprintf(stderr, "error: --askpass: no password read from the terminal\n");
            return -1;
        }
        return 0;
    }
    const char *env = getenv("REDISCLI_AUTH");
    if (env != NULL && *env != '\0') {
        c->password = strdup(env);
        if (c->password == NULL) {
            fprintf(stderr, "error: out of memory\n");
            return -1;
        }
    }
    return 0;
}

/* Split and run one typed line. Returns CLI_QUIT to leave. */
static enum cli_status run_line(struct cli_conn *c, const char *line)
{
    struct cli_words words;
    char err[128];
    if (cli_split_line(line, &words, err, sizeof err) < 0) {
        fprintf(stderr, "error: %s\n", err);
        return CLI_USAGE;
    }
    enum cli_status s = CLI_OK;
    if (words.argc > 0)
        s = cli_command_run(c, words.argc, words.argv);
    cli_words_free(&words);
    fflush(stdout);
    return s;
}

/* Complete command names in the first word. */
static char *command_generator(const char *text, int state)
{
    static size_t next;
    if (state == 0)
        next = 0;
    const char *name;
    while ((name = cli_command_name(next++)) != NULL)
        if (strncasecmp(name, text, strlen(text)) == 0)
            return strdup(name);
    return NULL;
}

static char **complete(const char *text, int start, int end)
{
    (void)end;
    rl_attempted_completion_over = 1;
    if (start != 0)
        return NULL;
    return rl_completion_matches(text, command_generator);
}

/* Interactive mode on a terminal: libedit with history in ~/.raftkv_history. */
static void run_terminal(struct cli_conn *c)
{
    char history[4096] = "";
    const char *home = getenv("HOME");
    if (home != NULL && *home != '\0')
        snprintf(history, sizeof history, "%s/%s", home, HISTORY_FILE);
    rl_readline_name = "raftkv";
    rl_attempted_completion_function = complete;
    using_history();
    stifle_history(HISTORY_MAX);
    if (history[0] != '\0')
        read_history(history); /* a missing file is fine */

    for (;;) {
        char where[CLI_ADDR_MAX + 32], prompt[CLI_ADDR_MAX + 48];
        cli_conn_describe(c, where, sizeof where);
        snprintf(prompt, sizeof prompt, "raftkv %s> ", where);
        char *line = readline(prompt);
        if (line == NULL) {
            putchar('\n');
            break;
        }
        if (line[strspn(line, " \t")] != '\0')
            add_history(line);
        enum cli_status s = run_line(c, line);
        free(line);
        if (s == CLI_QUIT)
            break;
    }
    if (history[0] != '\0')
        write_history(history); /* failures are not worth a word */
}

/* Commands from a pipe or file: one a line, no prompt. The exit status is
 * the worst of the lines': a script learns that something failed. */
static int run_stream(struct cli_conn *c)
{
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int worst = CLI_OK;
    unsigned long number = 0;
    while ((len = getline(&line, &cap, stdin)) >= 0) {
        number++;
        enum cli_status s;
        if (memchr(line, '\0', (size_t)len) != NULL) {
            fprintf(stderr, "error: line %lu holds a NUL byte; nothing sent\n", number);
            s = CLI_USAGE;
        } else {
            s = run_line(c, line);
        }
        if (s == CLI_QUIT)
            break;
        if ((int)s > worst)
            worst = (int)s;
    }
    free(line);
    return worst;
}

int main(int argc, char **argv)
{
    struct cli_options opt;
    int first = parse_flags(argc, argv, &opt);
    if (first == -1) {
        print_usage(stdout);
        return 0;
    }
    if (first == -2) {
        fprintf(stderr, "%s(try --help)\n", USAGE_LINE);
        return CLI_USAGE;
    }
    signal(SIGPIPE, SIG_IGN);

    struct cli_conn conn;
    char err[256];
    if (cli_conn_init(&conn, (int64_t)(opt.timeout_s * 1000.0 + 0.5), err, sizeof err) < 0) {
        fprintf(stderr, "error: %s\n", err);
        return CLI_FAILED;
    }
    if (setup_nodes(&conn, &opt) < 0 || setup_password(&conn, &opt) < 0) {
        cli_conn_close(&conn);
        return CLI_FAILED;
    }

    int status = CLI_OK;
    if (first < argc) {
        status = cli_command_run(&conn, argc - first, argv + first);
        if (status == CLI_QUIT)
            status = CLI_OK;
    } else if (isatty(STDIN_FILENO)) {
        run_terminal(&conn);
    } else {
        status = run_stream(&conn);
    }
    cli_conn_close(&conn);
    return status;
}
