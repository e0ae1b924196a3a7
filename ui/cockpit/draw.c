/* draw.c - the cockpit's screen, drawn from the model with ncurses.
 *
 *   header: program, speed, cluster file, client addresses
 *   cluster line: leader, term, majority, safety checks
 *   one card per node: role, term, vote, commit, timer, peers, log, KV
 *   event log
 *   bottom line: keys, or the command line, or the last answer
 *
 * Colour is never the only signal: roles are words with a glyph, faults and
 * violations are words, uncommitted log entries carry '+'.
 */
#include <inttypes.h>
#include <ncurses.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cockpit.h"

enum pair {
    P_LEADER = 1,
    P_CANDIDATE,
    P_FOLLOWER,
    P_SUSPENDED,
    P_DOWN,
    P_VIOLATION,
    P_HEADER,
    P_FAULT,
    P_CLIENT,
    P_OK,
    P_TERM0, /* six term colours from here */
};
#define TERM_COLOURS 6

static bool colour;

void draw_init(struct cockpit *ck)
{
    const char *no_color = getenv("NO_COLOR");
    colour = has_colors() && !(no_color && *no_color);
    ck->ui.color = colour;
    if (!colour) {
        draw_wire_init(false);
        return;
    }
    start_color();
    use_default_colors();
    init_pair(P_LEADER, COLOR_GREEN, -1);
    init_pair(P_CANDIDATE, COLOR_YELLOW, -1);
    init_pair(P_FOLLOWER, COLOR_CYAN, -1);
    init_pair(P_SUSPENDED, COLOR_MAGENTA, -1);
    init_pair(P_DOWN, COLOR_RED, -1);
    init_pair(P_VIOLATION, COLOR_WHITE, COLOR_RED);
    init_pair(P_HEADER, COLOR_BLACK, COLOR_CYAN);
    init_pair(P_FAULT, COLOR_MAGENTA, -1);
    init_pair(P_CLIENT, COLOR_CYAN, -1);
    init_pair(P_OK, COLOR_GREEN, -1);
    static const short terms[TERM_COLOURS] = {COLOR_YELLOW, COLOR_CYAN, COLOR_MAGENTA,
                                              COLOR_GREEN,  COLOR_BLUE, COLOR_WHITE};
    for (int i = 0; i < TERM_COLOURS; i++)
        init_pair((short)(P_TERM0 + i), terms[i], -1);
    draw_wire_init(colour);
}

/* A colour pair, or the attribute that stands for it without colour. */
static attr_t style(enum pair p)
{
    if (colour)
        return COLOR_PAIR(p) | (p == P_VIOLATION || p == P_LEADER ? A_BOLD : 0);
    switch (p) {
    case P_LEADER:
        return A_BOLD;
    case P_CANDIDATE:
        return A_UNDERLINE;
    case P_VIOLATION:
    case P_HEADER:
        return A_REVERSE | A_BOLD;
    case P_SUSPENDED:
    case P_DOWN:
        return A_DIM;
    default:
        return A_NORMAL;
    }
}

static attr_t term_style(uint64_t term)
{
    return colour ? COLOR_PAIR(P_TERM0 + (int)(term % TERM_COLOURS)) : A_NORMAL;
}

static enum pair role_pair(enum model_role r)
{
    switch (r) {
    case ROLE_LEADER:
        return P_LEADER;
    case ROLE_CANDIDATE:
    case ROLE_PRECANDIDATE:
        return P_CANDIDATE;
    case ROLE_FOLLOWER:
        return P_FOLLOWER;
    case ROLE_SUSPENDED:
        return P_SUSPENDED;
    case ROLE_DOWN:
        return P_DOWN;
    case ROLE_STARTING:
        break;
    }
    return P_FOLLOWER;
}

static const char *role_glyph(enum model_role r)
{
    switch (r) {
    case ROLE_LEADER:
        return "*";
    case ROLE_CANDIDATE:
    case ROLE_PRECANDIDATE: /* the card spells the role out beside it */
        return "?";
    case ROLE_SUSPENDED:
        return "Z";
    case ROLE_DOWN:
        return "X";
    case ROLE_STARTING:
        return "~";
    case ROLE_FOLLOWER:
        break;
    }
    return "-";
}

/* Print at (y, x), at most w columns. */
static void put(int y, int x, int w, attr_t a, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static void put(int y, int x, int w, attr_t a, const char *fmt, ...)
{
    if (w <= 0)
        return;
    char text[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    attron(a);
    mvaddnstr(y, x, text, w);
    attroff(a);
}

static void fill_line(int y, int x, int w, attr_t a)
{
    attron(a);
    mvhline(y, x, ' ', w);
    attroff(a);
}

void draw_box_at(int y, int x, int h, int w, attr_t a)
{
    if (h < 2 || w < 2)
        return;
    attron(a);
    mvaddch(y, x, ACS_ULCORNER);
    mvhline(y, x + 1, ACS_HLINE, w - 2);
    mvaddch(y, x + w - 1, ACS_URCORNER);
    mvvline(y + 1, x, ACS_VLINE, h - 2);
    mvvline(y + 1, x + w - 1, ACS_VLINE, h - 2);
    mvaddch(y + h - 1, x, ACS_LLCORNER);
    mvhline(y + h - 1, x + 1, ACS_HLINE, w - 2);
    mvaddch(y + h - 1, x + w - 1, ACS_LRCORNER);
    attroff(a);
}

/* "1.2s", "340ms" */
static void age_text(uint64_t ms, char *out, size_t size)
{
    if (ms < 1000)
        snprintf(out, size, "%" PRIu64 "ms", ms);
    else if (ms < 100000)
        snprintf(out, size, "%.1fs", (double)ms / 1000.0);
    else
        snprintf(out, size, "%" PRIu64 "s", ms / 1000);
}

/* ------------------------------------------------------------ header */

static void draw_header(struct cockpit *ck, const struct model *m, int cols)
{
    attr_t h = colour ? COLOR_PAIR(P_HEADER) : A_REVERSE;
    fill_line(0, 0, cols, h);
    put(0, 0, cols, h | A_BOLD, " raftkv ");
    char head[96];
    snprintf(head, sizeof head, "| %zu nodes | speed %gx | cluster file ", m->n, ck->sup.speed);
    int x = 8;
    put(0, x, cols - x, h, "%s", head);
    x += (int)strlen(head);
    /* The path, its middle left out when it does not fit: the end names the file. */
    const char *path = ck->sup.cluster_path;
    bool frozen = false;
    for (size_t i = 0; i < m->n; i++)
        frozen |= m->nodes[i].frozen && model_node_live(m, &m->nodes[i]);
    int room = cols - x - (ck->ui.paused ? 17 : 0) - (frozen ? 9 : 0);
    int len = (int)strlen(path);
    if (len <= room)
        put(0, x, room, h, "%s", path);
    else if (room > 10)
        put(0, x, room, h, "...%s", path + len - (room - 3));
    if (ck->ui.paused && cols > 20)
        put(0, cols - 16, 16, A_REVERSE | A_BOLD | A_BLINK, " DISPLAY PAUSED ");
    if (frozen && cols > 40)
        put(0, cols - (ck->ui.paused ? 25 : 9), 8, A_REVERSE | A_BOLD, " FROZEN ");

    /* Client addresses: "clients 1 127.0.0.1:6401  2 ..." or ports when narrow. */
    char line[512];
    size_t used = (size_t)snprintf(line, sizeof line, " clients:");
    const struct cluster *c = &ck->sup.cluster;
    size_t full = used;
    for (size_t i = 0; i < c->n; i++)
        full += strlen(c->nodes[i].client_addr) + 5;
    bool short_form = full > (size_t)cols;
    for (size_t i = 0; i < c->n && used + 32 < sizeof line; i++) {
        if (short_form)
            used +=
                (size_t)snprintf(line + used, sizeof line - used, " %u=%s:%d", c->nodes[i].id,
                                 i == 0 ? c->nodes[i].client_host : "", c->nodes[i].client_port);
        else
            used += (size_t)snprintf(line + used, sizeof line - used, "  %u %s", c->nodes[i].id,
                                     c->nodes[i].client_addr);
    }
    if (used + 40 < (size_t)cols)
        snprintf(line + used, sizeof line - used, "   (redis-cli -p PORT, raftkv-cli --config)");
    put(1, 0, cols, A_DIM, "%s", line);
}

static void draw_cluster_line(const struct model *m, int y, int cols)
{
    struct model_view v;
    model_get_view(m, &v);
    char text[160];
    int x = 0;
    if (v.leader && !v.leader_in_majority)
        snprintf(text, sizeof text, " Leader: node %u (cannot commit: no majority)", v.leader);
    else if (v.leader)
        snprintf(text, sizeof text, " Leader: node %u", v.leader);
    else
        snprintf(text, sizeof text, " Leader: none");
    put(y, x, cols - x, style(v.leader ? P_LEADER : P_CANDIDATE), "%s", text);
    x += (int)strlen(text);
    snprintf(text, sizeof text, " | term %" PRIu64 " | majority: %s (%zu/%zu) | ", v.term,
             v.majority ? "yes" : "NO", v.largest_group, m->n);
    put(y, x, cols - x, v.majority ? A_NORMAL : style(P_DOWN), "%s", text);
    x += (int)strlen(text);
    if (v.voters_mask != 0 && x < cols) {
        /* The configuration and the majority it needs (dissertation 4.1). */
        char voters[32], learners[32];
        cluster_ids_text(v.voters_mask, voters, sizeof voters);
        cluster_ids_text(v.learners_mask, learners, sizeof learners);
        int nv = __builtin_popcount(v.voters_mask);
        snprintf(text, sizeof text, "config #%" PRIu64 ": %s%s%s, needs %d | ", v.config_index,
                 voters, learners[0] ? " +" : "", learners, nv / 2 + 1);
        put(y, x, cols - x, A_NORMAL, "%s", text);
        x += (int)strlen(text);
    }
    if (x >= cols)
        return;
    if (m->violations)
        put(y, x, cols - x, style(P_VIOLATION), "SAFETY VIOLATED (%" PRIu64 "): %s", m->violations,
            m->last_violation);
    else if (cols - x >= 62)
        put(y, x, cols - x, style(P_OK),
            "safety OK: one leader a term, logs agree, same data at same index");
    else
        put(y, x, cols - x, style(P_OK), "safety: OK");
}

/* ------------------------------------------------------------ node cards */

struct card_rows {
    int peers; /* lines of peers: one each, or 1 for all */
    int log;   /* log entries shown */
    int kv;    /* KV rows shown */
};

static void plan_card(const struct model_node *n, size_t peers, int inner_h, struct card_rows *r)
{
    int rem = inner_h - 3; /* term, commit, timer */
    r->peers = rem >= (int)peers + 6 ? (int)peers : (rem >= 5 ? 1 : 0);
    rem -= r->peers;
    r->log = r->kv = 0;
    if (rem >= 4) {
        int want_kv = n->n_kv ? (int)n->n_kv : 1;
        if (n->kv_count > n->n_kv)
            want_kv++;
        r->kv = want_kv < (rem - 2) / 2 ? want_kv : (rem - 2) / 2;
        if (r->kv < 1)
            r->kv = 1;
        r->log = rem - 2 - r->kv;
    } else if (rem >= 2) {
        r->log = rem - 1;
    }
}

static void draw_timer_line(const struct model *m, const struct model_node *n, enum model_role role,
                            int y, int x, int w)
{
    char age[32];
    switch (role) {
    case ROLE_DOWN:
        age_text(m->now_ms - n->process_since_ms, age, sizeof age);
        if (n->exit_code < 0)
            put(y, x, w, style(P_DOWN), "down %s (signal %d)", age, -n->exit_code);
        else if (n->process == PROC_EXITED)
            put(y, x, w, style(P_DOWN), "down %s (exit %d)", age, n->exit_code);
        else
            put(y, x, w, style(P_DOWN), "down: not started");
        return;
    case ROLE_SUSPENDED:
        age_text(model_report_age_ms(m, n), age, sizeof age);
        if (n->process == PROC_STOPPED)
            put(y, x, w, style(P_SUSPENDED), "SIGSTOP, silent %s", age);
        else
            put(y, x, w, style(P_SUSPENDED), "suspended, %.1fs left",
                (double)n->suspend_left_ms / 1000.0);
        return;
    case ROLE_STARTING:
        put(y, x, w, A_DIM, "starting...");
        return;
    default:
        break;
    }
    uint64_t age_ms = model_report_age_ms(m, n);
    if (age_ms >= MODEL_SILENT_MS) {
        age_text(age_ms, age, sizeof age);
        put(y, x, w, style(P_DOWN), "no report for %s", age);
        return;
    }
    if (role == ROLE_LEADER) {
        /* In real time: at speed 0.1 a 50 ms heartbeat comes every 500 ms. */
        double speed = n->speed > 0 ? n->speed : 1;
        unsigned every = (unsigned)(n->heartbeat_ms / speed + 0.5);
        char lease[48] = "";
        if (n->lease_ms > 0) /* reads on the lease, or by a round while it lapsed */
            snprintf(lease, sizeof lease, n->lease_held ? ", lease %ums" : ", lease lapsed",
                     (unsigned)(n->lease_ms / speed + 0.5));
        char text[96];
        snprintf(text, sizeof text, "heartbeat every %ums%s", every, lease);
        if ((int)strlen(text) > w)
            snprintf(text, sizeof text, "heartbeat %ums%s", every, lease);
        if ((int)strlen(text) > w)
            snprintf(text, sizeof text, "heartbeat %ums", every);
        put(y, x, w, style(P_LEADER), "%s", text);
        return;
    }
    /* The election timer runs on between reports: extrapolate at the node's
     * speed (not while frozen: its clock stands still). */
    double elapsed =
        n->election_elapsed_ms + (n->frozen ? 0.0 : (double)age_ms * (n->speed > 0 ? n->speed : 1));
    double timeout = n->election_timeout_ms ? n->election_timeout_ms : 1;
    if (elapsed > timeout)
        elapsed = timeout;
    char nums[32];
    snprintf(nums, sizeof nums, " %.0f/%.0fms", elapsed, timeout);
    const char *label = "timer [";
    int bar = w - 8 - (int)strlen(nums);
    if (bar < 6) { /* narrow: the bar alone */
        nums[0] = '\0';
        label = "[";
        bar = w - 2;
    }
    int lx = x + (int)strlen(label);
    int filled = (int)(bar * elapsed / timeout + 0.5);
    put(y, x, w, A_NORMAL, "%s", label);
    attr_t fill = elapsed / timeout > 0.8 ? style(P_CANDIDATE) | A_BOLD : A_BOLD;
    attron(fill);
    for (int i = 0; i < bar; i++)
        mvaddch(y, lx + i, i < filled ? '#' : '.');
    attroff(fill);
    put(y, lx + bar, x + w - lx - bar, A_NORMAL, "]%s", nums);
}

static void draw_peer(const struct model *m, const struct model_node *n, const struct model_peer *p,
                      int y, int x, int w)
{
    if (p->blocked) {
        put(y, x, w, style(P_FAULT), "x%u BLOCKED (no messages)", p->id);
        return;
    }
    if (n->role == ROLE_LEADER) {
        /* Recently sent (in the node's clock, extrapolated): an arrow. */
        double ago = (double)p->last_send_ago_ms +
                     (double)model_report_age_ms(m, n) * (n->speed > 0 ? n->speed : 1);
        bool hot = ago < (n->heartbeat_ms ? n->heartbeat_ms : 50) * 0.6;
        bool behind = p->match + 2 < n->last_index;
        char ack[32];
        age_text(p->last_ack_ago_ms, ack, sizeof ack);
        if (p->snapshot_index > 0) {
            put(y, x, w, hot ? A_BOLD : A_NORMAL, "%s%u snap #%" PRIu64 " chunk %u/%u ack %s",
                hot ? ">" : " ", p->id, p->snapshot_index, p->snapshot_chunk, p->snapshot_chunks,
                ack);
            return;
        }
        put(y, x, w, hot ? A_BOLD : A_NORMAL, "%s%u match %-4" PRIu64 " ack %s%s", hot ? ">" : " ",
            p->id, p->match, ack, behind ? " behind" : "");
    } else {
        put(y, x, w, A_DIM, " %u sent %" PRIu64 " got %" PRIu64, p->id, p->sent, p->received);
    }
}

static void draw_peers_compact(const struct model_node *n, int y, int x, int w)
{
    char line[128];
    size_t used = (size_t)snprintf(line, sizeof line, "peers");
    for (size_t i = 0; i < n->n_peers && used + 16 < sizeof line; i++) {
        const struct model_peer *p = &n->peers[i];
        if (p->blocked)
            used += (size_t)snprintf(line + used, sizeof line - used, " %u:cut", p->id);
        else if (n->role == ROLE_LEADER)
            used +=
                (size_t)snprintf(line + used, sizeof line - used, " %u:%" PRIu64, p->id, p->match);
        else
            used += (size_t)snprintf(line + used, sizeof line - used, " %u:ok", p->id);
    }
    put(y, x, w, A_NORMAL, "%s", line);
}

static void draw_card(struct cockpit *ck, const struct model *m, const struct model_node *n, int y,
                      int x, int h, int w)
{
    enum model_role role = model_role_of(m, n);
    bool selected = ck->ui.selected == n->id;
    bool live = model_node_live(m, n);
    attr_t border = selected ? A_BOLD : A_NORMAL;
    if (role == ROLE_DOWN || role == ROLE_SUSPENDED)
        border |= style(role_pair(role));
    draw_box_at(y, x, h, w, border);

    /* Title in the top border: ">2< * Leader"; a learner (a node being
     * added, catching up) "+ Learner" with how far it has got. */
    char title[64];
    const char *glyph = role_glyph(role), *name = model_role_name(role);
    bool learner = role == ROLE_FOLLOWER && model_is_learner(m, n->id);
    if (learner) {
        glyph = "+";
        name = "Learner";
    }
    snprintf(title, sizeof title, "%s%u%s %s %s", selected ? ">" : " ", n->id, selected ? "<" : " ",
             glyph, name);
    if ((int)strlen(title) > w - 2) /* narrow: ">2<?Candidate" */
        snprintf(title, sizeof title, "%s%u%s%s%s", selected ? ">" : "", n->id, selected ? "<" : "",
                 glyph, name);
    put(y, x + 1, w - 2, style(role_pair(role)) | A_BOLD | (selected ? A_REVERSE : 0), "%s ",
        title);
    if (w >= 30 && n->pid)
        put(y, x + w - 12, 10, A_DIM, " pid %d ", n->pid);

    int iw = w - 2, ix = x + 1, row = y + 1, inner_h = h - 2;
    if (inner_h < 1 || iw < 4)
        return;
    attr_t stale = live ? A_NORMAL : A_DIM;
    int end = y + h - 1;

    /* term, vote, leader */
    char vote[16] = "-", leader[16] = "-";
    if (n->voted_for)
        snprintf(vote, sizeof vote, "%u", n->voted_for);
    if (n->leader)
        snprintf(leader, sizeof leader, "%u", n->leader);
    char line[128];
    snprintf(line, sizeof line, "term %-4" PRIu64 " voted for %-2s leader %s", n->term, vote,
             leader);
    if ((int)strlen(line) > iw)
        snprintf(line, sizeof line, "term %" PRIu64 " vote %s ldr %s", n->term, vote, leader);
    if ((int)strlen(line) > iw)
        snprintf(line, sizeof line, "term %" PRIu64 " vote %s", n->term, vote);
    put(row++, ix, iw, stale, "%s", line);
    if (row >= end)
        return;
    snprintf(line, sizeof line, "commit %-4" PRIu64 " applied %-4" PRIu64 " last %" PRIu64,
             n->commit_index, n->last_applied, n->last_index);
    if ((int)strlen(line) > iw)
        snprintf(line, sizeof line, "commit %" PRIu64 " appl %" PRIu64, n->commit_index,
                 n->last_applied);
    if ((int)strlen(line) > iw)
        snprintf(line, sizeof line, "commit %" PRIu64 " ap %" PRIu64, n->commit_index,
                 n->last_applied);
    if ((int)strlen(line) > iw)
        snprintf(line, sizeof line, "c%" PRIu64 " a%" PRIu64, n->commit_index, n->last_applied);
    put(row++, ix, iw, stale, "%s", line);
    if (row >= end)
        return;
    draw_timer_line(m, n, role, row++, ix, iw);

    struct card_rows r;
    plan_card(n, n->n_peers, inner_h, &r);
    if (r.peers == 1 && n->n_peers > 1)
        draw_peers_compact(n, row++, ix, iw);
    else
        for (int i = 0; i < r.peers && row < end; i++)
            draw_peer(m, n, &n->peers[i], row++, ix, iw);

    /* Log tail: newest at the bottom, '+' marks entries not yet committed. */
    if (r.log > 0 && row < end) {
        char head[96];
        int len = n->snapshot_index > 0
                      ? snprintf(head, sizeof head, "snap #%" PRIu64 " t%" PRIu64 ", then log",
                                 n->snapshot_index, n->snapshot_term)
                      : snprintf(head, sizeof head, "log");
        const char *hint = " (+ = not committed)";
        put(row++, ix, iw, A_DIM | A_UNDERLINE, "%s%s", head,
            len + (int)strlen(hint) <= iw ? hint : "");
        size_t first = n->n_log > (size_t)r.log ? n->n_log - (size_t)r.log : 0;
        for (size_t i = first; i < n->n_log && row < end; i++) {
            const struct model_entry *e = &n->log[i];
            bool committed = e->index <= n->commit_index;
            put(row++, ix, iw, term_style(e->term) | (committed ? A_NORMAL : A_DIM) | stale,
                iw >= 24 ? "%c%-3" PRIu64 " t%-2" PRIu64 " %s" : "%c%" PRIu64 " t%" PRIu64 " %s",
                committed ? ' ' : '+', e->index, e->term, e->text);
        }
        if (n->n_log == 0 && row < end)
            put(row++, ix, iw, A_DIM, " (empty)");
        row = row < end ? row : end;
    }
    /* KV table. */
    if (r.kv > 0 && row + 1 < end) {
        /* Keep the KV block at the bottom of the card. */
        int kv_row = end - r.kv - 1;
        if (kv_row > row)
            row = kv_row;
        put(row++, ix, iw, A_DIM | A_UNDERLINE, "kv: %" PRIu64 " key%s", n->kv_count,
            n->kv_count == 1 ? "" : "s");
        int shown = 0;
        for (size_t i = 0; i < n->n_kv && row < end; i++) {
            if (shown == r.kv - 1 && n->n_kv > (size_t)r.kv) {
                put(row++, ix, iw, A_DIM, " ... %zu more", n->n_kv - i);
                break;
            }
            const struct model_kv *kv = &n->kv[i];
            char ttl[32] = "";
            if (kv->ttl_ms >= 0)
                snprintf(ttl, sizeof ttl, " (ttl %.1fs)", (double)kv->ttl_ms / 1000.0);
            put(row++, ix, iw, stale, " %s = %s%s", kv->key, kv->value, ttl);
            shown++;
        }
    }
}

/* ------------------------------------------------------------ events */

static attr_t event_style(enum model_event_kind k)
{
    switch (k) {
    case EV_VIOLATION:
        return style(P_VIOLATION);
    case EV_LEADER:
        return style(P_LEADER);
    case EV_ELECTION:
        return style(P_CANDIDATE);
    case EV_FAULT:
        return style(P_FAULT);
    case EV_CLIENT:
        return style(P_CLIENT);
    case EV_NODE:
        return A_DIM;
    case EV_SCRIPT:
        return A_BOLD;
    case EV_COMMIT:
    case EV_INFO:
        break;
    }
    return A_NORMAL;
}

/* How much of text fits on a row of width w, broken at a space if it can be. */
static size_t wrap_chunk(const char *text, size_t w)
{
    size_t len = strlen(text);
    if (len <= w)
        return len;
    for (size_t k = w; k > w / 2; k--)
        if (text[k] == ' ')
            return k;
    return w;
}

static const char *skip_spaces(const char *s)
{
    while (*s == ' ')
        s++;
    return s;
}

/* Rows an event needs when wrapped to width w. */
static int event_rows(const struct model_event *e, int w)
{
    char text[MODEL_EVENT_TEXT + 4];
    snprintf(text, sizeof text, "%s%s", e->kind == EV_VIOLATION ? "!! " : "", e->text);
    int rows = 0;
    for (const char *p = text; *p; p = skip_spaces(p + wrap_chunk(p, (size_t)w)))
        rows++;
    return rows ? rows : 1;
}

static void draw_events(const struct model *m, int y, int x0, int h, int cols)
{
    if (h < 3)
        return;
    draw_box_at(y, x0, h, cols, A_DIM);
    put(y, x0 + 2, cols - 4, A_BOLD, " events ");
    int lines = h - 2, w = cols - 13;
    if (w < 10)
        return;
    /* The newest events that fit, long ones wrapped. */
    uint64_t first = model_first_event(m), start = m->n_events;
    int used = 0;
    while (start > first) {
        const struct model_event *e = model_event_at(m, start - 1);
        int need = e ? event_rows(e, w) : 1;
        if (used + need > lines)
            break;
        used += need;
        start--;
    }
    int row = y + 1 + (lines - used); /* the newest on the last row */
    for (uint64_t seq = start; seq < m->n_events && row < y + h - 1; seq++) {
        const struct model_event *e = model_event_at(m, seq);
        if (!e)
            continue;
        char when[32], text[MODEL_EVENT_TEXT + 4];
        cockpit_format_time(e->wall_ms, when, sizeof when, false);
        snprintf(text, sizeof text, "%s%s", e->kind == EV_VIOLATION ? "!! " : "", e->text);
        put(row, x0 + 1, 11, A_DIM, "%s", when);
        for (const char *p = text; *p && row < y + h - 1;) {
            size_t n = wrap_chunk(p, (size_t)w);
            put(row++, x0 + 12, w, event_style(e->kind), "%.*s", (int)n, p);
            p = skip_spaces(p + n);
        }
    }
}

/* ------------------------------------------------------------ bottom line, help */

static void draw_bottom(struct cockpit *ck, int y, int cols)
{
    struct ui_state *ui = &ck->ui;
    move(y, 0);
    clrtoeol();
    switch (ui->mode) {
    case UI_COMMAND:
        put(y, 0, cols, A_BOLD, ":");
        put(y, 1, cols - 1, A_NORMAL, "%s", ui->line);
        if (ui->message[0] && ck->now_ms - ui->message_ms < 4000 && (int)ui->line_len + 4 < cols)
            put(y, (int)ui->line_len + 4, cols - (int)ui->line_len - 4,
                ui->message_error ? style(P_DOWN) : A_DIM, "%s", ui->message);
        return;
    case UI_CONFIRM_QUIT:
        put(y, 0, cols, A_REVERSE | A_BOLD, " Quit and stop all %zu nodes? (y/n) ",
            ck->sup.cluster.n);
        return;
    default:
        break;
    }
    if (ui->status_line[0] && !(ui->message[0] && ck->now_ms - ui->message_ms < 3000)) {
        put(y, 0, cols, A_BOLD, "%s", ui->status_line);
        return;
    }
    if (ui->message[0] && ck->now_ms - ui->message_ms < 8000) {
        put(y, 0, cols, ui->message_error ? style(P_DOWN) | A_BOLD : A_NORMAL, "%s%s",
            ui->message_error ? "error: " : "", ui->message);
        return;
    }
    static const char wide[] =
        "1-9 select  s suspend  k kill  r restart  i isolate  h heal  t timeout  c write  "
        "+/- speed  space pause  : command  ? help  q quit";
    static const char narrow[] =
        "1-9 select  s suspend  k kill  r restart  i isolate  h heal  :cmd  ?keys  q quit";
    static const char frozen[] = "FROZEN  n deliver oldest  x drop it  1-9 deliver N  t timeout  "
                                 ":tick N MS  f thaw  : command  ? help";
    if (ck->sup.frozen)
        put(y, 0, cols, A_BOLD, "%s", frozen);
    else
        put(y, 0, cols, A_DIM, "%s", cols >= (int)sizeof wide - 1 ? wide : narrow);
}

static void draw_help(struct cockpit *ck, int rows, int cols)
{
    const char *lines[128];
    size_t n = 0;
    lines[n++] = "Keys (they act on the selected node):";
    n += keys_help_lines(lines + n, 40);
    lines[n++] = "";
    lines[n++] = "Commands (press ':' first; Tab completes; node N may be 'leader'):";
    n += command_help_lines(lines + n, 60);
    lines[n++] = "";
    lines[n++] = "Reading a card: * Leader  ? Candidate  - Follower  Z Suspended  X Down";
    lines[n++] = "  log lines: index, term (t4), command; '+' = not committed yet";
    lines[n++] = "  timer: time since the last message from a leader; full = election";
    lines[n++] = "  '>' before a peer: the leader just sent it a heartbeat or entries";
    lines[n++] = "";
    lines[n++] = "Wire panel: ? RequestVote  v its reply  > AppendEntries  < its reply";
    lines[n++] = "  S/s InstallSnapshot and reply  . heartbeat  x LOST; (x4): 4 heartbeats";
    lines[n++] = "  frozen (f): held messages numbered on top; n delivers, x drops, 1-9 picks";
    lines[n++] = "";
    lines[n++] = "Any key closes this help; arrows scroll.";

    int w = cols - 4 < 90 ? cols - 4 : 90;
    int h = rows - 2;
    if (w < 20 || h < 5)
        return;
    int y = 1, x = (cols - w) / 2;
    for (int i = 0; i < h; i++)
        fill_line(y + i, x, w, A_NORMAL);
    draw_box_at(y, x, h, w, A_BOLD);
    put(y, x + 2, w - 4, A_BOLD, " help ");
    int top = ck->ui.help_top;
    if (top > (int)n - (h - 2))
        top = (int)n - (h - 2);
    if (top < 0)
        top = 0;
    ck->ui.help_top = top;
    for (int i = 0; i < h - 2 && (size_t)(top + i) < n; i++)
        put(y + 1 + i, x + 2, w - 4, i + top == 0 ? A_BOLD : A_NORMAL, "%s", lines[top + i]);
}

/* ------------------------------------------------------------ the screen */

void draw_screen(struct cockpit *ck)
{
    const struct model *m = ck->ui.paused && ck->frozen ? ck->frozen : &ck->model;
    int rows, cols;
    getmaxyx(stdscr, rows, cols);
    erase();
    if (rows < 10 || cols < 40) {
        put(0, 0, cols, A_BOLD, "raftkv: the window is too small (%dx%d); 80x24 or more", cols,
            rows);
        refresh();
        return;
    }
    draw_header(ck, m, cols);
    draw_cluster_line(m, 2, cols);

    /* Cards: as many per row as fit at 16+ columns, the event log below. */
    size_t n = m->n;
    size_t fit = (size_t)cols / 16 ? (size_t)cols / 16 : 1;
    size_t card_rows = (n + fit - 1) / fit;
    size_t per_row = (n + card_rows - 1) / card_rows; /* rows as even as they can be */
    int avail = rows - 4;
    int events_min = avail / 3 > 5 ? avail / 3 : 5;
    /* The wire panel beside the events when wide, above them when not. */
    bool wire = !ck->ui.wire_hidden;
    bool wire_beside = wire && cols >= 140;
    if (wire && !wire_beside && events_min < avail / 2)
        events_min = avail / 2;
    int card_h = (avail - events_min) / (int)card_rows;
    /* No taller than the content needs: borders, 3 info lines, peers, log, KV. */
    size_t most_log = 6, most_kv = 3;
    for (size_t i = 0; i < n; i++) {
        if (m->nodes[i].n_log > most_log)
            most_log = m->nodes[i].n_log;
        if (m->nodes[i].n_kv + 1 > most_kv)
            most_kv = m->nodes[i].n_kv + 1;
    }
    int ideal = 2 + 3 + (int)(n - 1) + 1 + (int)(most_log < 16 ? most_log : 16) + 1 +
                (int)(most_kv < 12 ? most_kv : 12);
    if (card_h > ideal)
        card_h = ideal;
    if (card_h < 5)
        card_h = 5;
    int y = 3;
    for (size_t r = 0; r < card_rows; r++) {
        size_t in_row = r + 1 < card_rows ? per_row : n - r * per_row;
        int w = cols / (int)per_row;
        for (size_t i = 0; i < in_row; i++) {
            int cw = i + 1 == in_row && in_row == per_row ? cols - (int)i * w : w;
            draw_card(ck, m, &m->nodes[r * per_row + i], y, (int)i * w, card_h, cw);
        }
        y += card_h;
    }
    int bottom_h = rows - 1 - y;
    if (!wire) {
        draw_events(m, y, 0, bottom_h, cols);
    } else if (wire_beside) {
        int ww = cols * 45 / 100 > 110 ? 110 : cols * 45 / 100;
        draw_events(m, y, 0, bottom_h, cols - ww);
        draw_wire_panel(ck, m, y, cols - ww, bottom_h, ww);
    } else {
        int wh = bottom_h / 2 >= 4 ? bottom_h / 2 : bottom_h;
        draw_wire_panel(ck, m, y, 0, wh, cols);
        draw_events(m, y + wh, 0, bottom_h - wh, cols);
    }
    if (ck->ui.mode == UI_HELP)
        draw_help(ck, rows, cols);
    draw_bottom(ck, rows - 1, cols);
    if (ck->ui.mode == UI_COMMAND) {
        curs_set(1);
        move(rows - 1, 1 + (int)ck->ui.cursor);
    } else {
        curs_set(0);
    }
    refresh();
}
