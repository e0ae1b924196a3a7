/* keys.c - what each key does. Normal-mode keys are a table; each handler
 * returns flags (handled, redraw, quit). Acts go through command_run, so a
 * key and its command behave and report alike. */
#include <ncurses.h>
#include <stdio.h>
#include <string.h>

#include "cockpit.h"

#define CTRL(c) ((c)&0x1f)

struct key_binding {
    int lo, hi; /* keys lo..hi */
    const char *label;
    const char *help;
    int (*fn)(struct cockpit *ck, int key);
};

static int run(struct cockpit *ck, const char *fmt, uint32_t id)
{
    char line[64];
    struct command_outcome out;
    snprintf(line, sizeof line, fmt, id);
    command_run(ck, line, &out);
    return KEY_HANDLED | KEY_REDRAW;
}

static int select_node(struct cockpit *ck, int key)
{
    uint32_t id = (uint32_t)(key - '0');
    if (ck->sup.frozen) /* frozen: a number picks a held message */
        return run(ck, "deliver %u", id);
    if (!sup_node(&ck->sup, id)) {
        cockpit_message(ck, true, "there is no node %u", id);
        return KEY_HANDLED | KEY_REDRAW;
    }
    ck->ui.selected = id;
    return KEY_HANDLED | KEY_REDRAW;
}

static int toggle_suspend(struct cockpit *ck, int key)
{
    (void)key;
    const struct sup_node *n = sup_node(&ck->sup, ck->ui.selected);
    return run(ck, n && n->stopped ? "resume %u" : "suspend %u", ck->ui.selected);
}

static int kill_node(struct cockpit *ck, int key)
{
    (void)key;
    return run(ck, "kill %u", ck->ui.selected);
}

static int restart_node(struct cockpit *ck, int key)
{
    (void)key;
    return run(ck, "restart %u", ck->ui.selected);
}

static int isolate_node(struct cockpit *ck, int key)
{
    (void)key;
    return run(ck, "isolate %u", ck->ui.selected);
}

static int heal_all(struct cockpit *ck, int key)
{
    (void)key;
    return run(ck, "heal", 0);
}

static int force_timeout(struct cockpit *ck, int key)
{
    (void)key;
    return run(ck, "timeout %u", ck->ui.selected);
}

static int transfer_to_selected(struct cockpit *ck, int key)
{
    (void)key;
    return run(ck, "transfer %u", ck->ui.selected);
}

static int client_write(struct cockpit *ck, int key)
{
    (void)key;
    return run(ck, "incr clicks", 0);
}

static const double speeds[] = {0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2, 3, 5};
#define N_SPEEDS (sizeof speeds / sizeof speeds[0])

static int change_speed(struct cockpit *ck, int key)
{
    double now = ck->sup.speed, next = now;
    if (key == '+' || key == '=') {
        for (size_t i = 0; i < N_SPEEDS; i++)
            if (speeds[i] > now + 1e-9) {
                next = speeds[i];
                break;
            }
    } else {
        for (size_t i = N_SPEEDS; i-- > 0;)
            if (speeds[i] < now - 1e-9) {
                next = speeds[i];
                break;
            }
    }
    char line[64];
    struct command_outcome out;
    snprintf(line, sizeof line, "speed %g", next);
    command_run(ck, line, &out);
    return KEY_HANDLED | KEY_REDRAW;
}

static int toggle_freeze(struct cockpit *ck, int key)
{
    (void)key;
    return run(ck, ck->sup.frozen ? "thaw" : "freeze", 0);
}

static int deliver_oldest(struct cockpit *ck, int key)
{
    (void)key;
    return run(ck, "deliver 1", 0);
}

static int drop_oldest(struct cockpit *ck, int key)
{
    (void)key;
    if (!ck->sup.frozen) {
        cockpit_message(ck, true, "x drops a held message: freeze first (f)");
        return KEY_HANDLED | KEY_REDRAW;
    }
    return run(ck, "drop 1", 0);
}

static int toggle_wire(struct cockpit *ck, int key)
{
    (void)key;
    return run(ck, ck->ui.wire_hidden ? "wire on" : "wire off", 0);
}

static int toggle_pause(struct cockpit *ck, int key)
{
    (void)key;
    return run(ck, "pause", 0);
}

static int show_help(struct cockpit *ck, int key)
{
    (void)key;
    ck->ui.mode = UI_HELP;
    ck->ui.help_top = 0;
    return KEY_HANDLED | KEY_REDRAW;
}

static int screenshot(struct cockpit *ck, int key)
{
    (void)key;
    return run(ck, "screenshot", 0);
}

static int ask_quit(struct cockpit *ck, int key)
{
    (void)key;
    ck->ui.mode = UI_CONFIRM_QUIT;
    return KEY_HANDLED | KEY_REDRAW;
}

static int open_command(struct cockpit *ck, int key)
{
    (void)key;
    ck->ui.mode = UI_COMMAND;
    ck->ui.line[0] = '\0';
    ck->ui.line_len = ck->ui.cursor = 0;
    ck->ui.history_pos = ck->ui.n_history;
    return KEY_HANDLED | KEY_REDRAW;
}

static int redraw(struct cockpit *ck, int key)
{
    (void)ck;
    (void)key;
    clearok(curscr, TRUE);
    return KEY_HANDLED | KEY_REDRAW;
}

static const struct key_binding bindings[] = {
    {'1', '9', "1-9", "select a node (its card is marked >N<); frozen: deliver held message N",
     select_node},
    {'s', 's', "s", "suspend the selected node (SIGSTOP), or resume it", toggle_suspend},
    {'k', 'k', "k", "kill the selected node (SIGKILL)", kill_node},
    {'r', 'r', "r", "restart the selected node from its data dir", restart_node},
    {'i', 'i', "i", "isolate the selected node from the others", isolate_node},
    {'h', 'h', "h", "heal everything: no partitions, losses or delays", heal_all},
    {'t', 't', "t", "force the selected node's election timeout", force_timeout},
    {'T', 'T', "T", "the leader hands leadership to the selected node", transfer_to_selected},
    {'c', 'c', "c", "send a client write to the leader (incr clicks)", client_write},
    {'+', '+', "+", "faster node timers", change_speed},
    {'=', '=', NULL, NULL, change_speed},
    {'-', '-', "-", "slower node timers", change_speed},
    {' ', ' ', "space", "pause or resume the display", toggle_pause},
    {'f', 'f', "f", "freeze the cluster (clocks stop, messages held), or thaw it", toggle_freeze},
    {'n', 'n', "n", "frozen: deliver the oldest held message", deliver_oldest},
    {'x', 'x', "x", "frozen: drop the oldest held message", drop_oldest},
    {'w', 'w', "w", "show or hide the wire panel", toggle_wire},
    {':', ':', ":", "open the command line (Tab completes, arrows recall)", open_command},
    {'P', 'P', "P", "screenshot: raftkv-<time>.txt and .svg", screenshot},
    {'?', '?', "?", "this help", show_help},
    {'q', 'q', "q", "quit (asks first); every node is stopped", ask_quit},
    {CTRL('l'), CTRL('l'), "ctrl-l", "redraw the screen", redraw},
    {KEY_RESIZE, KEY_RESIZE, NULL, NULL, redraw},
};

size_t keys_help_lines(const char **lines, size_t max)
{
    static char text[sizeof bindings / sizeof bindings[0]][96];
    size_t n = 0;
    for (size_t i = 0; i < sizeof bindings / sizeof bindings[0] && n < max; i++) {
        if (!bindings[i].label)
            continue;
        snprintf(text[n], sizeof text[n], "  %-7s %s", bindings[i].label, bindings[i].help);
        lines[n] = text[n];
        n++;
    }
    return n;
}

/* ------------------------------------------------------------ command line */

static void set_line(struct ui_state *ui, const char *s)
{
    snprintf(ui->line, sizeof ui->line, "%s", s);
    ui->line_len = ui->cursor = strlen(ui->line);
}

static int command_key(struct cockpit *ck, int key)
{
    struct ui_state *ui = &ck->ui;
    switch (key) {
    case '\n':
    case '\r':
    case KEY_ENTER: {
        char line[UI_LINE_MAX];
        snprintf(line, sizeof line, "%s", ui->line);
        ui->mode = UI_NORMAL;
        command_history_add(ck, line);
        struct command_outcome out;
        command_run(ck, line, &out);
        return KEY_HANDLED | KEY_REDRAW | (ck->quit ? KEY_QUIT : 0);
    }
    case 27: /* Esc */
    case CTRL('c'):
    case CTRL('g'):
        ui->mode = UI_NORMAL;
        return KEY_HANDLED | KEY_REDRAW;
    case KEY_BACKSPACE:
    case 127:
    case CTRL('h'):
        if (ui->line_len == 0) {
            ui->mode = UI_NORMAL;
        } else if (ui->cursor > 0) {
            memmove(ui->line + ui->cursor - 1, ui->line + ui->cursor,
                    ui->line_len - ui->cursor + 1);
            ui->cursor--;
            ui->line_len--;
        }
        return KEY_HANDLED | KEY_REDRAW;
    case KEY_DC:
    case CTRL('d'):
        if (ui->cursor < ui->line_len) {
            memmove(ui->line + ui->cursor, ui->line + ui->cursor + 1, ui->line_len - ui->cursor);
            ui->line_len--;
        }
        return KEY_HANDLED | KEY_REDRAW;
    case KEY_LEFT:
    case CTRL('b'):
        if (ui->cursor > 0)
            ui->cursor--;
        return KEY_HANDLED | KEY_REDRAW;
    case KEY_RIGHT:
    case CTRL('f'):
        if (ui->cursor < ui->line_len)
            ui->cursor++;
        return KEY_HANDLED | KEY_REDRAW;
    case KEY_HOME:
    case CTRL('a'):
        ui->cursor = 0;
        return KEY_HANDLED | KEY_REDRAW;
    case KEY_END:
    case CTRL('e'):
        ui->cursor = ui->line_len;
        return KEY_HANDLED | KEY_REDRAW;
    case CTRL('u'):
        set_line(ui, "");
        return KEY_HANDLED | KEY_REDRAW;
    case KEY_UP:
    case CTRL('p'):
        if (ui->history_pos > 0) {
            if (ui->history_pos == ui->n_history)
                snprintf(ui->saved_line, sizeof ui->saved_line, "%s", ui->line);
            ui->history_pos--;
            set_line(ui, ui->history[ui->history_pos]);
        }
        return KEY_HANDLED | KEY_REDRAW;
    case KEY_DOWN:
    case CTRL('n'):
        if (ui->history_pos < ui->n_history) {
            ui->history_pos++;
            set_line(ui, ui->history_pos == ui->n_history ? ui->saved_line
                                                          : ui->history[ui->history_pos]);
        }
        return KEY_HANDLED | KEY_REDRAW;
    case '\t': {
        char shown[UI_LINE_MAX];
        size_t matches =
            command_complete(ck, ui->line, sizeof ui->line, &ui->line_len, shown, sizeof shown);
        ui->cursor = ui->line_len;
        if (matches > 1)
            cockpit_message(ck, false, "%s", shown);
        else if (matches == 0)
            cockpit_message(ck, true, "no command starts with '%s'", ui->line);
        return KEY_HANDLED | KEY_REDRAW;
    }
    default:
        if (key >= 32 && key < 127 && ui->line_len + 1 < sizeof ui->line) {
            memmove(ui->line + ui->cursor + 1, ui->line + ui->cursor,
                    ui->line_len - ui->cursor + 1);
            ui->line[ui->cursor++] = (char)key;
            ui->line_len++;
            return KEY_HANDLED | KEY_REDRAW;
        }
        return KEY_RESIZE == key ? redraw(ck, key) : 0;
    }
}

int keys_handle(struct cockpit *ck, int key)
{
    struct ui_state *ui = &ck->ui;
    switch (ui->mode) {
    case UI_COMMAND:
        return command_key(ck, key);
    case UI_CONFIRM_QUIT:
        if (key == 'y' || key == 'Y' || key == 'q') {
            ck->quit = true;
            return KEY_HANDLED | KEY_QUIT;
        }
        if (key == KEY_RESIZE)
            return redraw(ck, key);
        ui->mode = UI_NORMAL;
        cockpit_message(ck, false, "still running");
        return KEY_HANDLED | KEY_REDRAW;
    case UI_HELP:
        if (key == KEY_UP && ui->help_top > 0) {
            ui->help_top--;
        } else if (key == KEY_DOWN) {
            ui->help_top++;
        } else if (key == KEY_RESIZE) {
            return redraw(ck, key);
        } else {
            ui->mode = UI_NORMAL;
        }
        return KEY_HANDLED | KEY_REDRAW;
    case UI_NORMAL:
        break;
    }
    for (size_t i = 0; i < sizeof bindings / sizeof bindings[0]; i++)
        if (key >= bindings[i].lo && key <= bindings[i].hi)
            return bindings[i].fn(ck, key) | (ck->quit ? KEY_QUIT : 0);
    return 0;
}
