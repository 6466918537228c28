#ifndef KITE_BOOTSTRAP_IMPL_H
#define KITE_BOOTSTRAP_IMPL_H

/* Declarations shared by the files of bootstrap/ (and its tests). Never installed. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The runner keeps this much of the running step's output for the error it reports. */
#define KITE__BOOT_TAIL_MAX (64 * 1024)
/* A stdout line longer than this is never a marker. */
#define KITE__BOOT_LINE_MAX 1024

/* ---- builder.c ------------------------------------------------------------------------- */

typedef enum kite__step_kind {
  KITE__STEP_APT,
  KITE__STEP_PIP,
  KITE__STEP_ENV,
  KITE__STEP_FILE,
  KITE__STEP_RUN,
  KITE__STEP_CHECKPOINT
} kite__step_kind_t;

typedef struct kite__step {
  kite__step_kind_t kind;
  char *name;   /* shown in progress and errors; any text */
  char *body;   /* the step's shell text, every value in it already quoted */
  char *line;   /* env: its line of the env file, "export NAME='value'" */
  char *secret; /* env: the value when it is secret (wiped when freed) */
} kite__step_t;

struct kite_bootstrap {
  kite__step_t *steps;
  size_t n, cap;
};

/* The kind's name, as it goes into a step's hash. */
const char *kite__step_kind_name(kite__step_kind_t kind);

/* ---- progress.c ------------------------------------------------------------------------ */

/* Reads a bootstrap script's output as it arrives, in chunks of any size cut anywhere, with
 * stdout and stderr chunks interleaved. A marker is a whole stdout line
 * "@kite-step N TOTAL NAME" (1 <= N <= TOTAL) or "@kite-done TOTAL"; everything else is the
 * running step's output, of which the last KITE__BOOT_TAIL_MAX bytes (both streams, in
 * arrival order) are kept. A marker starts a new step, so the kept output is always the
 * output of the step named by the last marker. on_step runs for every step marker, inside
 * feed; its name is valid only during the call. */
typedef void (*kite__boot_step_fn)(void *data, unsigned step, unsigned total, const char *name);

typedef struct kite__boot_progress {
  kite__boot_step_fn on_step;
  void *data;
  unsigned step, total; /* of the last step marker; 0 before the first */
  char *name;           /* of the last step marker, or NULL */
  bool done;            /* the @kite-done marker was seen */
  /* private */
  char line[KITE__BOOT_LINE_MAX]; /* a stdout line that may still become a marker */
  size_t line_len;
  bool at_line_start; /* the next stdout byte starts a line */
  bool passing;       /* the current stdout line is output, not a candidate marker */
  char *tail;         /* ring of the step's output, KITE__BOOT_TAIL_MAX bytes when allocated */
  size_t tail_start, tail_len;
  bool oom;
} kite__boot_progress_t;

void kite__boot_progress_init(kite__boot_progress_t *p, kite__boot_step_fn on_step, void *data);
/* stream: 1 stdout, anything else stderr. */
void kite__boot_progress_feed(kite__boot_progress_t *p, int stream, const void *buf, size_t len);
/* The end of output: a pending partial stdout line becomes output. */
void kite__boot_progress_finish(kite__boot_progress_t *p);
/* The kept output of the current step as a malloc'd NUL-terminated string (NUL bytes in the
 * output are shown as spaces), or NULL when out of memory. */
char *kite__boot_progress_output(const kite__boot_progress_t *p);
void kite__boot_progress_free(kite__boot_progress_t *p);

/* ---- spec.c ---------------------------------------------------------------------------- */

typedef struct kite__yaml kite__yaml_t;
typedef struct kite_bootstrap kite_bootstrap_t;
struct yaml_node_s;
/* Reads a spec's bootstrap section n with the YAML reader y (core/yaml_impl.h). *out is the
 * builder, as soon as it exists (the caller frees it, also on error); NULL when the section
 * has no step. */
int kite__bootstrap_read(kite__yaml_t *y, const struct yaml_node_s *n, kite_bootstrap_t **out,
                         uint64_t *timeout_ms);

#endif
