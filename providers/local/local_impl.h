#ifndef KITE_LOCAL_IMPL_H
#define KITE_LOCAL_IMPL_H

/* Declarations shared by the local provider's files. Never installed. */

#include <stddef.h>

/* The pids of the live processes whose environment has KITE_NODE_TAG=<tag> (reads /proc, like
 * kite_local_count_tagged). *pids is malloc'd (NULL when *n is 0). */
int kite__local_tagged_pids(const char *tag, int **pids, size_t *n);

#endif
