/* screenshot.c - the screen as it is now, read back from curses cell by
 * cell: plain text (raftkv-<time>.txt) and SVG with colours
 * (raftkv-<time>.svg), ready for slides. */
#include <errno.h>
#include <ncurses.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cockpit.h"

#define CELL_W 8.4
#define CELL_H 17
#define FONT_SIZE 14
#define BACKGROUND "#1c1c1c"
#define FOREGROUND "#d0d0d0"

struct cell {
    char ch;         /* plain text form */
    const char *svg; /* SVG text form (UTF-8 for line drawing) */
    short fg, bg;    /* curses colours, -1 default */
    bool bold, dim, underline;
};

/* Line-drawing characters: ASCII for text, box drawing for SVG. */
static void line_char(chtype c, struct cell *out)
{
    static const struct {
        char acs, text;
        const char *svg;
    } map[] = {
        {'q', '-', "\u2500"}, {'x', '|', "\u2502"}, {'l', '+', "\u250c"}, {'k', '+', "\u2510"},
        {'m', '+', "\u2514"}, {'j', '+', "\u2518"}, {'t', '+', "\u251c"}, {'u', '+', "\u2524"},
        {'n', '+', "\u253c"}, {'w', '+', "\u252c"}, {'v', '+', "\u2534"},
    };
    char ch = (char)(c & A_CHARTEXT);
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (map[i].acs == ch) {
            out->ch = map[i].text;
            out->svg = map[i].svg;
            return;
        }
    out->ch = '#';
    out->svg = "#";
}

static void read_cell(int y, int x, struct cell *out)
{
    static char plain[256][2];
    chtype c = mvinch(y, x);
    memset(out, 0, sizeof *out);
    if (c & A_ALTCHARSET) {
        line_char(c, out);
    } else {
        unsigned char ch = (unsigned char)(c & A_CHARTEXT);
        out->ch = (ch >= 32 && ch < 127) ? (char)ch : ' ';
        plain[(unsigned char)out->ch][0] = out->ch;
        out->svg = plain[(unsigned char)out->ch];
    }
    short pair = (short)PAIR_NUMBER(c);
    out->fg = out->bg = -1;
    if (pair > 0)
        pair_content(pair, &out->fg, &out->bg);
    if (c & A_REVERSE) {
        short fg = out->fg < 0 ? COLOR_WHITE : out->fg;
        out->fg = out->bg < 0 ? COLOR_BLACK : out->bg;
        out->bg = fg;
    }
    out->bold = (c & A_BOLD) != 0;
    out->dim = (c & A_DIM) != 0;
    out->underline = (c & A_UNDERLINE) != 0;
}

static const char *colour_hex(short c, bool bold, bool background)
{
    static const char *normal[8] = {"#1c1c1c", "#d75f5f", "#5faf5f", "#d7af5f",
                                    "#5f87d7", "#af5fd7", "#5fafd7", "#d0d0d0"};
    static const char *bright[8] = {"#6c6c6c", "#ff8787", "#87d787", "#ffd787",
                                    "#87afff", "#d787ff", "#87d7ff", "#ffffff"};
    if (c < 0 || c > 7)
        return background ? BACKGROUND : (bold ? "#ffffff" : FOREGROUND);
    return bold && !background ? bright[c] : normal[c];
}

static bool same_style(const struct cell *a, const struct cell *b)
{
    return a->fg == b->fg && a->bg == b->bg && a->bold == b->bold && a->dim == b->dim &&
           a->underline == b->underline;
}

static void svg_escape(FILE *f, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '<':
            fputs("&lt;", f);
            break;
        case '>':
            fputs("&gt;", f);
            break;
        case '&':
            fputs("&amp;", f);
            break;
        default:
            fputc(*s, f);
        }
    }
}

/* Files appear whole: written under a temporary name, then renamed. */
static FILE *open_temp(const char *path, char *tmp, size_t size)
{
    if (snprintf(tmp, size, "%s.part", path) >= (int)size)
        return NULL;
    return fopen(tmp, "w");
}

static int finish_temp(FILE *f, const char *tmp, const char *path)
{
    if (fclose(f) != 0 || rename(tmp, path) != 0) {
        int saved = errno;
        unlink(tmp);
        errno = saved;
        return -1;
    }
    return 0;
}

static int write_text(const char *path, int rows, int cols)
{
    char tmp[UI_LINE_MAX + 16];
    FILE *f = open_temp(path, tmp, sizeof tmp);
    if (!f)
        return -1;
    char line[1024];
    for (int y = 0; y < rows; y++) {
        int n = 0;
        for (int x = 0; x < cols && n < (int)sizeof line - 1; x++) {
            struct cell c;
            read_cell(y, x, &c);
            line[n++] = c.ch;
        }
        while (n > 0 && line[n - 1] == ' ')
            n--;
        line[n] = '\0';
        fprintf(f, "%s\n", line);
    }
    return finish_temp(f, tmp, path);
}

static int write_svg(const char *path, int rows, int cols)
{
    char tmp[UI_LINE_MAX + 16];
    FILE *f = open_temp(path, tmp, sizeof tmp);
    if (!f)
        return -1;
    double width = cols * CELL_W + 16, height = rows * CELL_H + 16;
    fprintf(f,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
            "viewBox=\"0 0 %.0f %.0f\">\n",
            width, height, width, height);
    fprintf(f, "<rect width=\"100%%\" height=\"100%%\" fill=\"%s\"/>\n", BACKGROUND);
    fprintf(f,
            "<g font-family=\"'DejaVu Sans Mono', 'Menlo', 'Consolas', monospace\" "
            "font-size=\"%d\" xml:space=\"preserve\">\n",
            FONT_SIZE);
    struct cell row[512];
    if (cols > 512)
        cols = 512;
    for (int y = 0; y < rows; y++) {
        for (int x = 0; x < cols; x++)
            read_cell(y, x, &row[x]);
        double ty = 8 + y * CELL_H;
        for (int x = 0; x < cols;) {
            int end = x + 1;
            while (end < cols && same_style(&row[x], &row[end]))
                end++;
            const struct cell *c = &row[x];
            if (c->bg >= 0)
                fprintf(
                    f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%d\" fill=\"%s\"/>\n",
                    8 + x * CELL_W, ty, (end - x) * CELL_W, CELL_H, colour_hex(c->bg, false, true));
            int last = end;
            while (last > x && row[last - 1].ch == ' ')
                last--;
            if (last > x) {
                fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" fill=\"%s\"%s%s%s>", 8 + x * CELL_W,
                        ty + CELL_H - 4, colour_hex(c->fg, c->bold, false),
                        c->bold ? " font-weight=\"bold\"" : "", c->dim ? " opacity=\"0.6\"" : "",
                        c->underline ? " text-decoration=\"underline\"" : "");
                for (int k = x; k < last; k++)
                    svg_escape(f, row[k].svg);
                fputs("</text>\n", f);
            }
            x = end;
        }
    }
    fputs("</g>\n</svg>\n", f);
    return finish_temp(f, tmp, path);
}

int screenshot_write(struct cockpit *ck, const char *name, char *written, size_t written_size,
                     char *err, size_t errlen)
{
    (void)ck;
    char base[UI_LINE_MAX];
    if (name && *name) {
        snprintf(base, sizeof base, "%s", name);
        size_t n = strlen(base);
        if (n > 4 && (strcmp(base + n - 4, ".txt") == 0 || strcmp(base + n - 4, ".svg") == 0))
            base[n - 4] = '\0';
    } else {
        time_t t = time(NULL);
        struct tm tm;
        localtime_r(&t, &tm);
        strftime(base, sizeof base, "raftkv-%Y%m%d-%H%M%S", &tm);
    }
    char txt[UI_LINE_MAX + 8], svg[UI_LINE_MAX + 8];
    snprintf(txt, sizeof txt, "%s.txt", base);
    snprintf(svg, sizeof svg, "%s.svg", base);
    int rows, cols;
    getmaxyx(stdscr, rows, cols);
    int cy, cx;
    getyx(stdscr, cy, cx);
    if (write_text(txt, rows, cols) != 0) {
        snprintf(err, errlen, "cannot write %s: %s", txt, strerror(errno));
        move(cy, cx);
        return -1;
    }
    if (write_svg(svg, rows, cols) != 0) {
        snprintf(err, errlen, "cannot write %s: %s", svg, strerror(errno));
        move(cy, cx);
        return -1;
    }
    move(cy, cx);
    snprintf(written, written_size, "%s and %s", txt, svg);
    return 0;
}
