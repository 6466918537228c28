/* uthash, with an allocation that fails reported instead of exit(): an add that cannot make
 * its table leaves the element out and sets kite__hash_oom (uthash's HASH_NONFATAL_OOM; a table
 * that cannot grow keeps its size and the element). Every file includes this, never
 * <uthash.h> itself. */
#ifndef KITE_HASH_H
#define KITE_HASH_H

#include <stdbool.h>

extern _Thread_local bool kite__hash_oom;

#define HASH_NONFATAL_OOM 1
#define uthash_nonfatal_oom(obj) (kite__hash_oom = true)
#include <uthash.h>

/* Runs add (a HASH_ADD...), and sets rc to 0, or KITE_ENOMEM when the element was left out. */
#define KITE_HASH_TRY(rc, add)                                                                     \
  do {                                                                                             \
    kite__hash_oom = false;                                                                        \
    add;                                                                                           \
    (rc) = kite__hash_oom ? KITE_ENOMEM : 0;                                                       \
  } while (0)

#endif
