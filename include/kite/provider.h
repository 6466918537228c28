#ifndef KITE_PROVIDER_H
#define KITE_PROVIDER_H

/* The provider interface.
 *
 * A provider is a component (runtime.h, tier KITE_TIER_PROVIDER) that answers the instance
 * requests of the event table for its name, i.e. it registers responders keyed by
 * kite_key_str(name):
 *
 *   instance_launch    → instance_launched  (one instance for (pool, node, rank); no timeout:
 *                        an instance that exists is always reported, however late)
 *   instance_terminate → instance_terminated (only once the provider confirmed it is gone)
 *   instance_describe  → instance_state
 *   instance_list      → instance_listed     (instances carrying a pool's tag, to find leaks)
 *   preempt_check      → preempt_status      (0 running, 1 notice with deadline, 2 preempted)
 *
 * or with kite_bus_reply_error() and a message that says what was wrong and what to do.
 *
 * An instance (the instance_launched payload) carries: the provider's id for it, its address
 * and SSH port, the login user, its host key when known at launch (pinned, so the first
 * connection is verified), its hourly price when known, the tag naming its pool, and the
 * private key file that logs in to it.
 *
 * The pool and the nodes never call a provider directly; they send these requests. A new
 * provider is one folder under providers/ (with its public header, kite/NAME.h, which
 * kite/providers.h includes), one constructor, and one row of the registry (registry.h: its
 * name, what it honours of a spec, its options). */

#include "kite/bus.h"
#include "kite/runtime.h"

/* Values of preempt_status.state. */
enum { KITE_PREEMPT_NONE = 0, KITE_PREEMPT_NOTICE = 1, KITE_PREEMPT_GONE = 2 };

#endif
