/* cli_commands.h - raftkv-cli's commands: a table of {name, arguments, usage,
 * handler}; each handler sends its request and prints the answer. */
#ifndef RAFTKV_CLI_COMMANDS_H
#define RAFTKV_CLI_COMMANDS_H

#include <stdio.h>

#include "cli_conn.h"

/* What running a command came to; also the exit status in one-shot mode. */
enum cli_status {
    CLI_OK = 0,
    CLI_FAILED = 1, /* the cluster said no, or could not be reached */
    CLI_USAGE = 2,  /* wrong arguments or unknown command */
    CLI_QUIT = 3,   /* quit or exit */
};

/* Run argv[0] with its arguments; answers go to stdout, errors to stderr. */
enum cli_status cli_command_run(struct cli_conn *c, int argc, char **argv);

/* Every command with its usage and what it does. */
void cli_command_help(FILE *out);

/* The i-th command name (for completion), or NULL past the end. */
const char *cli_command_name(size_t i);

#endif
