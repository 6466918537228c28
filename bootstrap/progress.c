/* The bootstrap's progress parser: turns the script's output, as the transport delivers it, into
 * step markers and the running step's output.
 *
 * Output comes in chunks cut anywhere (a marker may be split over several chunks, down to one
 * byte each) and stdout and stderr chunks interleave. Only stdout lines are candidate markers,
 * so a stdout line is held back only while it still looks like one: as soon as its first bytes
 * differ from "@kite-", it is output and passes through at once, which keeps stdout and stderr
 * close to the order they arrived in. */

#include <stdlib.h>
#include <string.h>

#include "bootstrap_impl.h"

static const char prefix[] = "@kite-";
#define PREFIX_LEN (sizeof(prefix) - 1)

void kite__boot_progress_init(kite__boot_progress_t *p, kite__boot_step_fn on_step, void *data) {
  memset(p, 0, sizeof(*p));
  p->on_step = on_step;
  p->data = data;
  p->at_line_start = true;
}

void kite__boot_progress_free(kite__boot_progress_t *p) {
  free(p->tail);
  free(p->name);
  p->tail = NULL;
  p->name = NULL;
}

static void tail_add(kite__boot_progress_t *p, const char *buf, size_t len) {
  const size_t max = KITE__BOOT_TAIL_MAX;
  if (len == 0 || p->oom)
    return;
  if (p->tail == NULL && (p->tail = malloc(max)) == NULL) {
    p->oom = true;
    return;
  }
  if (len >= max) {
    memcpy(p->tail, buf + len - max, max);
    p->tail_start = 0;
    p->tail_len = max;
    return;
  }
  size_t end = (p->tail_start + p->tail_len) % max;
  size_t first = len < max - end ? len : max - end;
  memcpy(p->tail + end, buf, first);
  memcpy(p->tail, buf + first, len - first);
  p->tail_len += len;
  if (p->tail_len > max) {
    p->tail_start = (p->tail_start + p->tail_len - max) % max;
    p->tail_len = max;
  }
}

/* A run of 1 to 9 decimal digits at *s (no sign, no blanks), advancing *s past it. */
static bool number(const char **s, const char *end, unsigned *out) {
  unsigned v = 0;
  const char *at = *s;
  while (*s < end && **s >= '0' && **s <= '9' && *s - at < 9)
    v = v * 10 + (unsigned)(*(*s)++ - '0');
  if (*s == at || (*s < end && **s >= '0' && **s <= '9'))
    return false;
  *out = v;
  return true;
}

/* Whether line (without its newline) is a marker; acts on it if so. */
static bool marker(kite__boot_progress_t *p, const char *line, size_t len) {
  const char *s = line + PREFIX_LEN, *end = line + len;
  unsigned n = 0, total = 0;
  if (len > PREFIX_LEN + 5 && memcmp(s, "step ", 5) == 0) {
    s += 5;
    if (!number(&s, end, &n) || s == end || *s++ != ' ' || !number(&s, end, &total) ||
        s == end || *s++ != ' ' || n < 1 || n > total)
      return false;
    char *name = malloc((size_t)(end - s) + 1);
    if (name == NULL)
      return false;
    memcpy(name, s, (size_t)(end - s));
    name[end - s] = '\0';
    free(p->name);
    p->name = name;
    p->step = n;
    p->total = total;
    p->tail_start = p->tail_len = 0;
    if (p->on_step)
      p->on_step(p->data, n, total, name);
    return true;
  }
  if (len > PREFIX_LEN + 5 && memcmp(s, "done ", 5) == 0) {
    s += 5;
    if (!number(&s, end, &total) || s != end)
      return false;
    p->done = true;
    return true;
  }
  return false;
}

/* The held line is not a marker after all: it is output. */
static void release_line(kite__boot_progress_t *p) {
  tail_add(p, p->line, p->line_len);
  p->line_len = 0;
  p->passing = true;
}

void kite__boot_progress_feed(kite__boot_progress_t *p, int stream, const void *data,
                              size_t len) {
  const char *buf = data;
  if (stream != 1) {
    tail_add(p, buf, len);
    return;
  }
  size_t i = 0;
  while (i < len) {
    if (p->at_line_start) {
      p->at_line_start = false;
      p->passing = false;
      p->line_len = 0;
    }
    if (p->passing) {
      /* Plain output up to and including the end of its line, in one piece. */
      const char *nl = memchr(buf + i, '\n', len - i);
      size_t n = nl ? (size_t)(nl - (buf + i)) + 1 : len - i;
      tail_add(p, buf + i, n);
      i += n;
      p->at_line_start = nl != NULL;
      continue;
    }
    char c = buf[i++];
    if (c == '\n') {
      if (!(p->line_len >= PREFIX_LEN && marker(p, p->line, p->line_len))) {
        release_line(p);
        tail_add(p, "\n", 1);
      }
      p->line_len = 0;
      p->at_line_start = true;
      continue;
    }
    if ((p->line_len < PREFIX_LEN && c != prefix[p->line_len]) ||
        p->line_len == sizeof(p->line)) {
      release_line(p);
      tail_add(p, &c, 1);
      continue;
    }
    p->line[p->line_len++] = c;
  }
}

void kite__boot_progress_finish(kite__boot_progress_t *p) {
  if (!p->at_line_start && !p->passing && p->line_len)
    release_line(p);
}

char *kite__boot_progress_output(const kite__boot_progress_t *p) {
  size_t len = p->tail_len, skip = 0;
  char *out = malloc(len + 1);
  if (out == NULL)
    return NULL;
  for (size_t i = 0; i < len; i++)
    out[i] = p->tail[(p->tail_start + i) % KITE__BOOT_TAIL_MAX];
  /* Output cut to its last bytes may start inside a UTF-8 sequence: drop the stray bytes. */
  if (len == KITE__BOOT_TAIL_MAX)
    while (skip < 3 && skip < len && ((unsigned char)out[skip] & 0xc0) == 0x80)
      skip++;
  memmove(out, out + skip, len - skip);
  len -= skip;
  out[len] = '\0';
  for (size_t i = 0; i < len; i++)
    if (out[i] == '\0')
      out[i] = ' ';
  return out;
}
