/* cockpit.h - the state every part of `raftkv` shares: options, the
 * supervisor, the model, the client, the script and the screen's state. */
#ifndef RAFTKV_UI_COCKPIT_H
#define RAFTKV_UI_COCKPIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "clock.h"

#include "client.h"
#include "model.h"
#include "supervisor.h"

#define UI_LINE_MAX 256
#define UI_HISTORY 64

struct cockpit_options {
    size_t nodes;
    const char *data_dir;
    const char *config_path;
    const char *node_bin;
    const char *script_path;
    double speed;
    bool speed_given;
    bool headless;
    int port_base;
    const char *requirepass_file;
    bool lease_reads;        /* --lease-reads: nodes serve reads on leader leases */
    const char *record_path; /* --record FILE */
    const char *replay_path; /* --replay FILE */
};

enum ui_mode { UI_NORMAL, UI_COMMAND, UI_CONFIRM_QUIT, UI_HELP };

/* What the screen shows besides the model: selection, modes, the command line. */
struct ui_state {
    bool active; /* curses is running */
    bool color;  /* colours allowed (terminal has them, NO_COLOR unset) */
    bool paused; /* the display is frozen */
    bool dirty;  /* draw soon */
    enum ui_mode mode;
    uint32_t selected;
    char line[UI_LINE_MAX]; /* the command line being typed */
    size_t line_len, cursor;
    char history[UI_HISTORY][UI_LINE_MAX];
    size_t n_history;
    size_t history_pos; /* == n_history: the line being typed */
    char saved_line[UI_LINE_MAX];
    char message[UI_LINE_MAX]; /* the last command's answer or error */
    bool message_error;
    uint64_t message_ms;
    uint64_t last_draw_ms;
    int help_top;
    char status_line[UI_LINE_MAX]; /* replay: shown on the bottom line instead of the keys */
    bool wire_hidden;              /* the wire panel is off ('w', :wire off) */
};

struct script;
struct recorder;

struct cockpit {
    struct cockpit_options opt;
    struct supervisor sup;
    struct model model;
    struct client client;
    char *password; /* from --requirepass-file: the client sends AUTH */
    struct script *script;
    struct recorder *recorder; /* --record; NULL without */
    struct ui_state ui;
    struct model *frozen; /* the model as it was when the display was paused */
    uint64_t now_ms;
    uint64_t printed_events; /* headless: events already printed */
    bool quit;
    int exit_code;
};

/* cockpit_main.c */
/* Show a command's answer: on the command line, and in headless mode on stdout. */
void cockpit_message(struct cockpit *ck, bool error, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void cockpit_hints(const struct cockpit *ck, struct client_hints *h);
/* Headless: print the events not printed yet, as lines. */
void cockpit_print_events(struct cockpit *ck);
/* The signal that asks the cockpit to stop, 0 if none. */
int cockpit_quit_signal(void);
/* "12:04:05.123" */
void cockpit_format_time(uint64_t wall_ms, char *out, size_t size, bool millis);

/* command.c: the ':' command line, also used by scripts. */
struct command_outcome {
    bool error;
    int client_op; /* > 0: a client command was queued with this id */
    bool direct;   /* "on N ...": one node, no retries */
};
void command_run(struct cockpit *ck, const char *line, struct command_outcome *out);
/* Complete the word before the cursor: returns how many names matched and
 * fills `shown` with them when more than one did. */
size_t command_complete(struct cockpit *ck, char *line, size_t size, size_t *len, char *shown,
                        size_t shown_size);
void command_history_add(struct cockpit *ck, const char *line);
/* One line per command, for help screens and --help. */
size_t command_help_lines(const char **lines, size_t max);

/* keys.c */
enum key_flags { KEY_HANDLED = 1, KEY_REDRAW = 2, KEY_QUIT = 4 };
int keys_handle(struct cockpit *ck, int key);
size_t keys_help_lines(const char **lines, size_t max);

/* draw.c */
void draw_init(struct cockpit *ck);
void draw_screen(struct cockpit *ck);

/* draw_wire.c */
void draw_wire_init(bool colour);
void draw_wire_panel(struct cockpit *ck, const struct model *m, int y, int x, int h, int w);
#ifdef NCURSES_VERSION /* the files that draw */
/* A line box h by w at (y, x) in attribute a (draw.c); nothing when under 2x2. */
void draw_box_at(int y, int x, int h, int w, attr_t a);
#endif

/* screenshot.c: the screen as plain text and as SVG. Returns 0, or -1 with err. */
int screenshot_write(struct cockpit *ck, const char *name, char *written, size_t written_size,
                     char *err, size_t errlen);

/* script.c */
struct script *script_load(const char *path, char *err, size_t errlen);
void script_free(struct script *s);
void script_tick(struct cockpit *ck);
/* Returns true when the result was the script's own check (not worth logging). */
bool script_on_client_result(struct cockpit *ck, const struct client_result *r);
bool script_finished(const struct script *s);

#endif
