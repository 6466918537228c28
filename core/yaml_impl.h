#ifndef KITE_YAML_IMPL_H
#define KITE_YAML_IMPL_H

/* The typed YAML reader (yaml.c): a document read node by node against a schema that its
 * caller writes (pool/spec.c: the pool spec; bootstrap/spec.c: its bootstrap section), with
 * one message naming file, line and column for the first problem. Never installed.
 *
 * - Parsing refuses a syntax error (a tab in indentation gets its own message), an alias and
 *   a second document; then the document tree is loaded and walked with positions.
 * - Typing: quoted and block scalars are strings; a plain scalar is resolved after ${VAR}
 *   expansion with the YAML 1.2 core schema (null, true/false, integer, float, else string).
 *   An empty or null value means the key was not given: the typed readers leave *out as it
 *   was.
 * - Every reader returns 0 or a negative KITE_E… code; on failure the reader's err holds the
 *   message (the first one only: later failures keep it).
 * - Strings handed out are owned by a kite__ykept_t, which outlives the reader (a spec keeps
 *   it), together with where each mapping key was written. */

#include <jansson.h>
#include <yaml.h>

#include "kite_impl.h"

typedef enum kite__ykind {
  KITE__Y_NULL,
  KITE__Y_BOOL,
  KITE__Y_INT,
  KITE__Y_FLOAT,
  KITE__Y_STR
} kite__ykind_t;

/* A position in the text, from 1. */
typedef struct kite__ypos {
  unsigned line, column;
} kite__ypos_t;

/* Where a key was written: its dotted path and the positions of the key and of its value. */
typedef struct kite__ykey {
  char *path;
  kite__ypos_t key, value;
} kite__ykey_t;

/* What a read leaves behind: the strings it handed out and where every key was. */
typedef struct kite__ykept {
  char **owned;
  size_t n_owned, cap_owned;
  kite__ykey_t *keys;
  size_t n_keys, cap_keys;
} kite__ykept_t;

typedef struct kite__yaml {
  /* Set by the caller. */
  const char *file;    /* for messages */
  const char *unit;    /* what the document is, for messages ("spec") */
  const char *basedir; /* for relative paths; NULL: the working directory */
  const char *text;
  size_t len;
  kite__ykept_t *kept; /* receives the strings and key positions */
  /* The reader's. */
  yaml_document_t doc;
  bool doc_loaded;
  char *err; /* the first problem, malloc'd; the caller takes or frees it */
} kite__yaml_t;

/* Parses y->text: refuses a NUL byte, a syntax error, an alias or a second document, then
 * loads the tree; *root is its root node (NULL when the document is empty). */
int kite__yaml_load(kite__yaml_t *y, yaml_node_t **root);
/* Frees the loaded tree (not err, not what was kept). */
void kite__yaml_release(kite__yaml_t *y);
/* Frees what a read kept. */
void kite__yaml_kept_free(kite__ykept_t *k);
/* Keeps s (malloc'd) in k; KITE_ENOMEM (and s freed) when it cannot. */
int kite__yaml_keep(kite__ykept_t *k, char *s);
/* Where the key at the dotted path and its value were written; KITE_ENOENT when nowhere. */
int kite__yaml_where(const kite__ykept_t *k, const char *path, kite__ypos_t *key,
                     kite__ypos_t *value);

/* ---- errors ---- */

/* The problem at node n (or at mark m): "FILE:LINE:COLUMN: message". KITE_ESPEC. */
int kite__yaml_fail(kite__yaml_t *y, const yaml_node_t *n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int kite__yaml_fail_at(kite__yaml_t *y, yaml_mark_t m, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* "FILE: out of memory". KITE_ENOMEM. */
int kite__yaml_oom(kite__yaml_t *y);

/* ---- nodes ---- */

yaml_node_t *kite__yaml_node(kite__yaml_t *y, int index);
/* Whether n is absent or a plain null scalar (before expansion). */
bool kite__yaml_is_null(const yaml_node_t *n);
/* "a mapping", "a sequence" or "a value". */
const char *kite__yaml_kind_name(const yaml_node_t *n);
/* Takes s (malloc'd; NULL: out of memory) into y->kept; *out (if not NULL) points at it. */
int kite__yaml_own(kite__yaml_t *y, char *s, const char **out);
/* A scalar's expanded text (malloc'd) and its kind. n must be a scalar. */
int kite__yaml_scalar(kite__yaml_t *y, const yaml_node_t *n, const char *path, char **text,
                      kite__ykind_t *kind);

/* ---- typed readers: path names the value in messages ---- */

int kite__yaml_str(kite__yaml_t *y, const yaml_node_t *n, const char *path, const char **out);
int kite__yaml_bool(kite__yaml_t *y, const yaml_node_t *n, const char *path, bool *out);
/* An integer in [lo, hi]. */
int kite__yaml_int(kite__yaml_t *y, const yaml_node_t *n, const char *path, long long lo,
                   long long hi, long long *out);
int kite__yaml_uint(kite__yaml_t *y, const yaml_node_t *n, const char *path, long long lo,
                    long long hi, unsigned *out);
/* A number, integer or real, in [lo, hi]. */
int kite__yaml_real(kite__yaml_t *y, const yaml_node_t *n, const char *path, double lo, double hi,
                    double *out);
/* A duration "NUMBER UNIT" (ms, s, m, h) in [lo_ms, hi_ms], in ms. */
int kite__yaml_duration(kite__yaml_t *y, const yaml_node_t *n, const char *path, uint64_t lo_ms,
                        uint64_t hi_ms, uint64_t *out);
/* A list of non-empty strings: a NULL-terminated array (malloc'd) of strings kept by y. */
int kite__yaml_str_list(kite__yaml_t *y, const yaml_node_t *n, const char *path, char ***out);
/* Any value as JSON (mappings with keys of the caller's choosing). */
int kite__yaml_to_json(kite__yaml_t *y, const yaml_node_t *n, const char *path, json_t **out);

/* ---- mappings and sequences ---- */

/* Checks a mapping against its keys: every key known (else "did you mean"), none twice.
 * vals[i] is the value of keys[i] (NULL when absent or empty), knodes[i] its key node. where
 * names the mapping in messages ("" for the top level); every key's position is kept. */
int kite__yaml_mapping(kite__yaml_t *y, const yaml_node_t *map, const char *where,
                       const char *const *keys, size_t nkeys, yaml_node_t **vals,
                       yaml_node_t **knodes);
/* A mapping whose keys are names of the caller's choosing (env): duplicates refused. */
int kite__yaml_free_keys(kite__yaml_t *y, const yaml_node_t *map, const char *where);
int kite__yaml_expect_mapping(kite__yaml_t *y, const yaml_node_t *n, const char *path);
int kite__yaml_expect_sequence(kite__yaml_t *y, const yaml_node_t *n, const char *path);

#endif
