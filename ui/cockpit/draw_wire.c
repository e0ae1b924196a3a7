/* draw_wire.c - the wire panel: the links between nodes (ok, cut, lossy),
 * the messages held while frozen (numbered), then the newest messages, each
 * with a glyph, its words and its state: a bar while in flight, "delivered",
 * "LOST: link cut". Colour is never the only signal. */
#include <inttypes.h>
#include <ncurses.h>
#include <stdio.h>
#include <string.h>

#include "cockpit.h"

/* Colour pairs of their own, after draw.c's. */
enum wire_pair {
    WP_VOTE = 40,
    WP_APPEND,
    WP_REPLY,
    WP_SNAPSHOT,
    WP_LOST,
    WP_HELD,
};

static bool wire_colour;

void draw_wire_init(bool colour)
{
    wire_colour = colour;
    if (!colour)
        return;
    init_pair(WP_VOTE, COLOR_YELLOW, -1);
    init_pair(WP_APPEND, COLOR_CYAN, -1);
    init_pair(WP_REPLY, COLOR_GREEN, -1);
    init_pair(WP_SNAPSHOT, COLOR_MAGENTA, -1);
    init_pair(WP_LOST, COLOR_RED, -1);
    init_pair(WP_HELD, COLOR_BLACK, COLOR_YELLOW);
}

static attr_t wire_pair_attr(enum wire_pair p, attr_t plain)
{
    return wire_colour ? COLOR_PAIR(p) : plain;
}

static attr_t wire_line_attr(const struct wire_line *l)
{
    if (l->shown == WMSG_LOST || l->shown == WMSG_DROPPED)
        return wire_pair_attr(WP_LOST, A_BOLD);
    if (l->heartbeat)
        return A_DIM;
    switch (wire_type_class(l->type)) {
    case WCLASS_VOTE:
        return wire_pair_attr(WP_VOTE, A_BOLD);
    case WCLASS_APPEND:
        return wire_pair_attr(WP_APPEND, A_NORMAL);
    case WCLASS_REPLY:
        return wire_pair_attr(WP_REPLY, A_NORMAL);
    case WCLASS_SNAPSHOT:
        return wire_pair_attr(WP_SNAPSHOT, A_NORMAL);
    case WCLASS_OTHER:
        break;
    }
    return A_NORMAL;
}

static void wire_put(int y, int x, int w, attr_t a, const char *text)
{
    if (w <= 0)
        return;
    attron(a);
    mvaddnstr(y, x, text, w);
    attroff(a);
}

/* "links 1-2 ok  1-3 CUT  2-3 drop 30%"; whether every link is ok. */
static bool wire_links_text(const struct model *m, char *out, size_t size)
{
    bool all_ok = true;
    size_t used = (size_t)snprintf(out, size, "links");
    for (size_t i = 0; i < m->n; i++) {
        for (size_t j = i + 1; j < m->n && used + 24 < size; j++) {
            const struct model_node *a = &m->nodes[i], *b = &m->nodes[j];
            bool cut = (a->blocked_mask & (1u << b->id)) || (b->blocked_mask & (1u << a->id));
            uint32_t drop = a->drop_percent > b->drop_percent ? a->drop_percent : b->drop_percent;
            all_ok &= !cut && drop == 0;
            if (cut)
                used += (size_t)snprintf(out + used, size - used, "  %u-%u CUT", a->id, b->id);
            else if (drop > 0)
                used += (size_t)snprintf(out + used, size - used, "  %u-%u drop %u%%", a->id, b->id,
                                         drop);
            else
                used += (size_t)snprintf(out + used, size - used, "  %u-%u ok", a->id, b->id);
        }
    }
    return all_ok;
}

/* The node speed the panel draws transit at: any live node's. */
static double wire_speed(const struct model *m, double fallback)
{
    for (size_t i = 0; i < m->n; i++)
        if (m->nodes[i].have_status && m->nodes[i].speed > 0)
            return m->nodes[i].speed;
    return fallback;
}

void draw_wire_panel(struct cockpit *ck, const struct model *m, int y, int x, int h, int w)
{
    if (h < 3 || w < 30)
        return;
    attr_t border = A_DIM;
    size_t held = 0;
    bool frozen = false;
    for (size_t i = 0; i < m->n; i++) {
        held += m->nodes[i].held;
        frozen |= m->nodes[i].frozen && model_node_live(m, &m->nodes[i]);
    }
    draw_box_at(y, x, h, w, border);
    char title[128];
    snprintf(title, sizeof title, " wire%s ",
             m->wire.hide_heartbeats ? " (heartbeats hidden)" : "");
    wire_put(y, x + 2, w - 4, A_BOLD, title);
    if (frozen) {
        snprintf(title, sizeof title, " FROZEN: %zu held  n deliver  x drop  1-9 pick ", held);
        int tx = x + 2 + (int)strlen(" wire ") + (m->wire.hide_heartbeats ? 20 : 0);
        wire_put(y, tx, x + w - 1 - tx, wire_pair_attr(WP_HELD, A_REVERSE) | A_BOLD, title);
    }

    int inner = h - 2, row = y + 1, iw = w - 2, ix = x + 1;
    char links[256];
    bool all_ok = wire_links_text(m, links, sizeof links);
    /* The links line, unless the panel is small and every link is fine. */
    if (inner >= 5 || (inner >= 2 && !all_ok)) {
        wire_put(row++, ix, iw, all_ok ? A_DIM : wire_pair_attr(WP_LOST, A_BOLD), links);
        inner--;
    }
    static struct wire_line lines[64];
    size_t max = inner < 64 ? (size_t)inner : 64;
    size_t n = wire_lines(&m->wire, m->now_ms, wire_speed(m, ck->sup.speed), m->n, lines, max);
    if (n == 0) {
        wire_put(row, ix, iw, A_DIM,
                 m->wire.records ? " (only heartbeats, hidden)" : " (no messages reported yet)");
        return;
    }
    /* Newest at the bottom. */
    row += inner - (int)n;
    bool narrow = iw < 80;
    int state_w = narrow ? 16 : 26;
    int text_w = iw - state_w - 6;
    for (size_t i = 0; i < n; i++, row++) {
        const struct wire_line *l = &lines[i];
        attr_t a = wire_line_attr(l);
        char head[8];
        if (l->held_number > 0 && l->held_number <= 99)
            snprintf(head, sizeof head, "%2d", l->held_number);
        else
            snprintf(head, sizeof head, "  ");
        wire_put(row, ix, 2, wire_pair_attr(WP_HELD, A_REVERSE), l->held_number ? head : "  ");
        char glyph[4] = {' ', l->shown == WMSG_LOST ? 'x' : l->glyph, ' ', '\0'};
        wire_put(row, ix + 2, 3, a | A_BOLD, glyph);
        wire_put(row, ix + 5, text_w, a, l->text);
        int sx = ix + iw - state_w;
        char state[64];
        if (l->shown == WMSG_IN_FLIGHT) {
            /* A bar that fills as the message travels. */
            char bar[16];
            int cells = 8, done = (int)(l->progress * cells);
            for (int k = 0; k < cells; k++)
                bar[k] = k < done ? '=' : (k == done ? '>' : ' ');
            bar[cells] = '\0';
            snprintf(state, sizeof state, narrow ? "[%s]" : "[%s] %s", bar, l->state);
            wire_put(row, sx, state_w, A_BOLD, state);
        } else if (l->shown == WMSG_HELD) {
            wire_put(row, sx, state_w, wire_pair_attr(WP_HELD, A_REVERSE) | A_BOLD, l->state);
        } else if (l->shown == WMSG_LOST || l->shown == WMSG_DROPPED) {
            wire_put(row, sx, state_w, wire_pair_attr(WP_LOST, A_BOLD) | A_BOLD, l->state);
        } else {
            wire_put(row, sx, state_w, A_DIM, l->state);
        }
    }
}
